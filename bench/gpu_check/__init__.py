"""The GPU proof: predicted vs measured on a real device, in one prepared run (bench/gpu_check.sh).

Modules: configs (what is measured), planning (the planner's verdicts and the tasks; pure), launch and
schedule (one process per run, several at once where only memory is measured), child, build, measure,
clock and anchor (what runs inside a child), tables and summary (what is written under OUT), fold
(the measurements as calibration observations).
"""
