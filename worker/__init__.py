"""effft's worker: runs a Plan (Ray Train + transformers + peft + bitsandbytes) and measures it.

Imports go service -> worker -> planner. The worker never plans again; a re-plan is a new Plan.
"""
