"""The GPU proof in one run: predicted vs measured memory, effft vs plain vs naive speed, the planner's
micro-batch vs a sweep; tables under OUT. bench/gpu_check.sh is the entry (wheels, budget, log).

    python -m bench.gpu_check --out OUT [--dry-run] [--budget-seconds 420] [--sections memory,speed,auto,fsdp]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.gpu_check import planning
from bench.gpu_check.configs import DRY_SUITE, GPU_SUITE, Suite
from bench.gpu_check.launch import COMMON_PRELOAD, CPU_PRELOAD, Launcher, Task
from bench.gpu_check.schedule import Admission, run_section
from bench.gpu_check.summary import write_summary
from bench.gpu_check.tables import Tables, merged_row, with_observation
from planner import GpuSpec
from planner.throughput import MATMUL_EFFICIENCY

SECTIONS = ("memory", "speed", "auto", "fsdp")
# no run of a section starts after this share of the budget: what is left belongs to the sections after it
START_UNTIL = {"anchor": 0.1, "memory": 0.42, "speed": 0.70, "auto": 0.97}
LAST_RUN_SECONDS = 45  # past the budget, the runs under way may finish for this long; then they are stopped
GPU_CONCURRENCY = 4  # memory runs sharing the H200 (each measures its own process's allocator)
GPU_HEADROOM = 6 * 2**30  # device memory left out of the concurrent runs' reservations


class Run:
    """One proof: the suite, where rows go, and the device as the anchor run found it."""

    def __init__(self, args):
        self.suite: Suite = DRY_SUITE if args.dry_run else GPU_SUITE
        self.started = time.monotonic()
        self.stop_by = self.started + args.budget_seconds + LAST_RUN_SECONDS
        self.budget_seconds = args.budget_seconds
        self.out = Path(args.out)
        self.tables = Tables(self.out)
        work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        cores = os.cpu_count() or 1
        threads = 1 if self.suite.dry_run else max(1, cores // GPU_CONCURRENCY)
        self.launcher = Launcher(work, args.launch, CPU_PRELOAD if self.suite.dry_run else COMMON_PRELOAD, threads)
        self.anchor: dict = {}
        self.gpu: GpuSpec | None = None
        self.peak_flops = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self, section: str, tasks: list[Task], admission: Admission | None = None) -> None:
        print(f"[{self.elapsed():5.0f} s] {section}: {len(tasks)} runs", flush=True)
        run_section(self.launcher, tasks, self.started + START_UNTIL[section] * self.budget_seconds, self.stop_by,
                    admission or Admission(1, 0), self.on_row, planning.naive_retry)

    def on_row(self, task: Task, result: dict) -> None:
        matmul = self.anchor.get("matmul_flops")
        row = merged_row(task, result, self.peak_flops, matmul)
        if task.job.get("kind") == "worker" and "plan" in task.row:
            row = with_observation(row, task.row["plan"])
        self.tables.add(task.section, row)
        print(f"[{self.elapsed():5.0f} s] {task.id} {task.row.get('label', '')} {row.get('variant', '')}: "
              f"{row.get('outcome')} peak {row.get('measured_peak', '-')} predicted {row.get('predicted_bytes', '-')} "
              f"tokens/s {row.get('tokens_per_second', '-')} {row.get('note', '')[:160]}", flush=True)

    def measure_anchor(self) -> bool:
        self.run("anchor", [planning.anchor_task(self.suite)])
        anchor = self.tables.rows["anchor"][-1]
        if anchor.get("outcome") != "ok":
            print(f"the anchor run failed ({anchor.get('note')}): no device to plan for", flush=True)
            return False
        if anchor["device_name"] == "cpu" and not self.suite.dry_run:
            print("no CUDA device here: the GPU suite needs one (--dry-run runs the pipeline on the CPU)", flush=True)
            return False
        self.gpu = planning.device_spec(anchor, self.suite.dry_run)
        # MFU's denominator as effft's metrics have it: the catalog's bf16 peak; on a CPU the measured matmul
        self.peak_flops = anchor["matmul_flops"] if self.gpu.is_cpu else self.gpu.peak_flops("bf16")
        anchor.update(catalog_name=self.gpu.name, catalog_memory_bytes=self.gpu.memory_bytes,
                      catalog_peak_flops=self.peak_flops, matmul_over_peak=anchor["matmul_flops"] / self.peak_flops,
                      planner_matmul_efficiency=MATMUL_EFFICIENCY)
        self.anchor = anchor
        self.tables.write_csv("anchor")
        return True

    def device_total(self) -> int:
        return self.anchor.get("device_total_bytes") or self.gpu.memory_bytes

    def memory_admission(self) -> Admission:
        if self.suite.dry_run:  # a CPU: the runs' tensor bytes are counted per process, only the cores are shared
            return Admission(2, 2**60)
        return Admission(GPU_CONCURRENCY, self.device_total() - GPU_HEADROOM)

    def section(self, name: str) -> None:
        if name == "memory":
            self.run(name, planning.memory_tasks(self.suite, self.gpu, self.device_total()), self.memory_admission())
        elif name == "speed":
            self.run(name, planning.speed_tasks(self.suite, self.gpu))
        elif name == "auto":
            self.run(name, planning.auto_tasks(self.suite, self.gpu))
        else:  # fsdp: its place until a machine with several GPUs builds it (summary.fsdp_lines)
            print(f"[{self.elapsed():5.0f} s] fsdp: not built (needs 2 or more GPUs)", flush=True)

    def summarize(self, fsdp_asked: bool) -> None:
        write_summary(self.out, self.tables, self.anchor, self.peak_flops, fsdp_asked, self.suite.dry_run,
                      self.elapsed(), self.budget_seconds)


def parse(argv: list[str]):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the tables")
    parser.add_argument("--dry-run", action="store_true", help="tiny configs on the CPU: the pipeline, not a proof")
    parser.add_argument("--budget-seconds", type=int, default=420,
                        help=f"no run starts after it; runs under way get {LAST_RUN_SECONDS} s more")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"any of {', '.join(SECTIONS)}")
    parser.add_argument("--launch", choices=("fork", "exec"), default="fork",
                        help="fork from a preloaded server (default) or start a fresh interpreter per run")
    args = parser.parse_args(argv)
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the shell's timeout: stop the runs, keep the tables
    proof = Run(args)
    try:
        if not proof.measure_anchor():
            return 1
        for name in args.sections:
            proof.section(name)
            proof.summarize("fsdp" in args.sections)
    finally:
        proof.summarize("fsdp" in args.sections)
    print(f"[{proof.elapsed():5.0f} s] tables in {proof.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
