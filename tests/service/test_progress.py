"""Following a run without a terminal (`effft submit --follow | cat`): plain progress lines every N seconds."""

from __future__ import annotations

import io

from rich.console import Console

from service.progress import follow, progress_line


def step(number: int, total: int = 10, **fields) -> dict:
    return {"kind": "step", "step": number, "total_steps": total, "loss": 2.0 / number, "tokens_per_second": 1234.5,
            "memory_peak_bytes": 12_300_000, "eta_seconds": 5.0 * (total - number), "mfu": 0.01,
            "memory_predicted_bytes": 12_000_000, **fields}


class Clock:
    """Ten seconds pass with each record the run yields."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def records(self, records: list[dict]):
        for record in records:
            yield record
            self.now += 10


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=80), out


def test_without_a_terminal_a_progress_line_every_n_seconds_and_the_last_step():
    console, out = plain_console()
    clock = Clock()
    summary = {"kind": "summary", "step": 10}
    records = [{"kind": "start", "total_steps": 10}, *[step(n) for n in range(1, 11)], summary]
    assert follow(clock.records(records), console, every_seconds=30, clock=clock) == summary
    lines = out.getvalue().splitlines()
    # steps arrive at t = 10, 20, ..., 100: a line at once, then one 30 s later each time, and the last step
    assert [line.split(" |")[0] for line in lines] == ["training: 10 steps", "step 1/10", "step 4/10", "step 7/10",
                                                       "step 10/10"]
    assert lines[1] == "step 1/10 | loss 2.0000 | 1,234 tok/s | mem peak 12.3 MB | ETA 0m 45s"
    assert "\x1b[" not in out.getvalue()  # no colours or cursor moves in a log


def test_a_step_without_measured_memory_says_so():
    line = progress_line(step(1, memory_peak_bytes=None, loss=None))
    assert line == "step 1/10 | loss n/a | 1,234 tok/s | mem peak n/a | ETA 0m 45s"


def test_on_a_terminal_it_is_a_progress_bar_not_lines():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    follow(iter([step(n) for n in range(1, 11)]), console, every_seconds=0)
    assert "step 1/10 |" not in out.getvalue() and "10/10" in out.getvalue()


class FollowedServer:
    """What `effft submit --follow` asks the server for, for a job that has run its 5 steps."""

    def wait_planned(self, job_id):
        return {"planned": False, "state": "succeeded"}

    def records(self, job_id):
        yield from (step(n, total=5) for n in range(1, 6))

    def job(self, job_id):
        return {"state": "succeeded", "cause": None, "summary": None}


def test_submit_follow_piped_prints_plain_progress(capsys):
    from service.cli.follow import follow_job
    from service.exit_codes import EXIT_OK

    assert follow_job(FollowedServer(), "job-1", every_seconds=30) == EXIT_OK
    printed = capsys.readouterr().out.splitlines()  # pytest's capture: stdout is not a terminal, as under `| cat`
    assert printed[0].startswith("step 1/5 | loss 2.0000 | 1,234 tok/s | mem peak 12.3 MB | ETA")
    assert printed[1].startswith("step 5/5 | loss 0.4000") and printed[2] == "job job-1: succeeded"
