"""What a checkpoint save costs the training step: the tiny example on Ray Train, as `effft run` runs it.

A timing callback rides along on every rank (RayRun.callbacks, after effft's own hand-off to Ray): on rank 0
it measures from the end of each optimizer step to the end of the save that follows (the Trainer's write,
the hand-off to Ray, the step's log line), which is what the save holds training for. Also printed: the
median step time after a save and elsewhere, from the run's own step records (noisier on a loaded machine).

    .venv/bin/python bench/checkpoint_cost.py [--steps 60] [--every 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from transformers import TrainerCallback

from planner.spec import parse_job
from worker.example import init_example
from worker.jsonl import read_jsonl
from worker.ray_run import RayRun, run_on_ray
from worker.sinks import JsonlSink, last_per_step
from worker.standalone import prepare_local_run

WARM_STEPS = 3  # the first steps (warm-up, the memory-tracked step) are slower for reasons of their own


class SaveTimer(TrainerCallback):
    """Rank 0: the seconds from an optimizer step's end to the end of the save after it."""

    def __init__(self, sink: JsonlSink):
        self.sink, self.step_ended = sink, 0.0

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ended = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.sink.write({"kind": "save_timing", "step": state.global_step,
                             "held_seconds": time.perf_counter() - self.step_ended})


def run_once(job_yaml: Path, folder: Path, steps: int, every: int) -> tuple[list[dict], list[dict]]:
    spec = yaml.safe_load(job_yaml.read_text())
    spec["training"].update(max_steps=steps, checkpoint_every_steps=every)
    run = prepare_local_run(parse_job(spec), folder)
    folder.mkdir(parents=True, exist_ok=True)
    timings = JsonlSink(folder / "timings.jsonl")
    ray_run = RayRun(run.worker_job(), storage_path=str(folder / "ray"), name=run.spec.name,
                     callbacks=(SaveTimer(timings),))
    run_on_ray(ray_run, JsonlSink(run.metrics_path))
    return list(read_jsonl(run.metrics_path)), list(read_jsonl(folder / "timings.jsonl"))


def save_cost(records: list[dict], timings: list[dict], every: int) -> dict:
    steps = [r for r in last_per_step(records) if r["step"] > WARM_STEPS and not r.get("memory_probe")]
    after_save = [r["step_seconds"] for r in steps if (r["step"] - 1) % every == 0]
    others = [r["step_seconds"] for r in steps if (r["step"] - 1) % every != 0]
    held = [t["held_seconds"] for t in timings]
    return {"after_save": statistics.median(after_save), "others": statistics.median(others),
            "held": statistics.median(held), "held_max": max(held), "saves": len(held)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        job_yaml = init_example(Path(temp, "example"))
        for repeat in range(args.repeats):
            cost = save_cost(*run_once(job_yaml, Path(temp, f"run{repeat}"), args.steps, args.every), args.every)
            print(f"run {repeat}: a save holds training {cost['held'] * 1000:.0f} ms (median of {cost['saves']}, "
                  f"max {cost['held_max'] * 1000:.0f} ms); step after a save {cost['after_save'] * 1000:.0f} ms, "
                  f"other steps {cost['others'] * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
