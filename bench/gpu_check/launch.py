"""Starting each run in its own process, several at once where only memory is measured.

Processes fork from a server that imported torch and transformers once (multiprocessing's
forkserver), which saves seconds of imports per run. That server must never touch CUDA (a forked
child of a process that did cannot use the GPU): on a GPU it preloads no module that imports
bitsandbytes (peft and transformers' Trainer do; bitsandbytes queries the device at import), and
`PYTORCH_NVML_BASED_CUDA_CHECK` keeps `torch.cuda.is_available()` off the driver. Should a child
still find CUDA unusable, the launcher falls back to fresh interpreters (`exec`) for the rest.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COMMON_PRELOAD = ["torch", "transformers", "transformers.models.llama.modeling_llama",
                  "transformers.models.qwen2.modeling_qwen2", "accelerate", "planner", "planner.plan"]
# on a CPU nothing can poison CUDA: everything a child needs is imported once
CPU_PRELOAD = [*COMMON_PRELOAD, "peft", "bitsandbytes", "transformers.trainer", "bench.gpu_check.child",
               "bench.gpu_check.measure", "bench.gpu_check.anchor"]


@dataclass
class Task:
    id: str  # unique in the run: names its files
    section: str  # anchor | memory | speed | auto
    job: dict  # what the child runs (JSON): kind, plan, config, steps, caps
    row: dict  # the table's columns known before the run: the config and the planner's verdict
    alone: bool = False  # timed, or an OOM check: nothing else runs meanwhile
    reserve_bytes: int = 0  # device memory this run may take: admission while others run
    timeout: float = 120.0
    tries: int = 0


@dataclass
class Running:
    task: Task
    handle: object  # multiprocessing.Process or subprocess.Popen
    result_path: Path
    log_path: Path
    started: float
    deadline: float
    overlapped: bool = False  # another run shared the device at some point
    killed: bool = False

    def finished(self) -> bool:
        if isinstance(self.handle, subprocess.Popen):
            return self.handle.poll() is not None
        return not self.handle.is_alive()

    def stop(self) -> None:
        """Past its time: killed (its GPU memory goes with the process), then reaped."""
        self.killed = True
        self.handle.kill()
        if isinstance(self.handle, subprocess.Popen):
            self.handle.wait(10)
        else:
            self.handle.join(10)

    def exit_code(self) -> int | None:
        if isinstance(self.handle, subprocess.Popen):
            return self.handle.returncode
        return self.handle.exitcode

    def result(self) -> dict:
        """The child's result, or a row that says why there is none (timeout, crash) with its log's tail."""
        if self.result_path.exists():
            return json.loads(self.result_path.read_text())
        outcome = "timeout" if self.killed else "error"
        tail = self.log_tail()
        text = f"killed after {self.task.timeout:.0f} s" if self.killed else f"exit code {self.exit_code()}"
        return {"outcome": outcome, "error": f"{text}: {tail}"[:500], "seconds": time.monotonic() - self.started,
                "oom_in_log": "OutOfMemoryError" in tail}

    def log_tail(self, lines: int = 3) -> str:
        if not self.log_path.exists():
            return "no output"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"


@dataclass
class Launcher:
    work: Path  # per-run job, result and log files
    mode: str  # "fork" (preloaded server) or "exec" (fresh interpreter)
    preload: list[str]
    threads: int  # torch threads per child
    python: str = sys.executable
    _context: object = field(default=None, repr=False)

    def start(self, task: Task, now: float) -> Running:
        task.tries += 1
        name = f"{task.id}-{task.tries}"
        result_path, log_path = self.work / f"{name}.result.json", self.work / f"{name}.log"
        if self.mode == "fork":
            process = self._fork_context().Process(target=_forked, args=(task.job, str(result_path), str(log_path),
                                                                        self.threads), name=name)
            process.start()
        else:
            job_path = self.work / f"{name}.job.json"
            job_path.write_text(json.dumps(task.job))
            with log_path.open("w") as log:
                process = subprocess.Popen([self.python, "-m", "bench.gpu_check.child", str(job_path),
                                            str(result_path), str(self.threads)], cwd=ROOT, stdout=log,
                                           stderr=subprocess.STDOUT)
        return Running(task, process, result_path, log_path, now, now + task.timeout)

    def fall_back_to_exec(self) -> None:
        print("launcher: a forked child could not use CUDA; starting fresh interpreters from now on", flush=True)
        self.mode = "exec"

    def _fork_context(self):
        if self._context is None:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # the server inherits it: no driver call at import
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(self.preload)
            self._context = context
        return self._context


def _forked(job: dict, result_path: str, log_path: str, threads: int) -> None:
    from bench.gpu_check.child import in_child

    in_child(job, result_path, log_path, threads)
