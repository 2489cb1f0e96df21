"""What the drill left: counted from the store (the API and a direct SQL read), Ray's job list and the outputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.chaos.procs import ray_submissions


def output_checksum(folder: Path) -> str:
    """sha256 over the saved weights' tensors (names, dtypes, shapes and bytes, in name order): the adapter
    (adapter_model.safetensors) or the full model (model*.safetensors)."""
    import torch
    from safetensors.torch import load_file

    files = sorted(folder.glob("adapter_model.safetensors")) or sorted(folder.glob("model*.safetensors"))
    if not files:
        return "missing"
    digest = hashlib.sha256()
    for file in files:
        tensors = load_file(str(file))
        for name in sorted(tensors):
            tensor = tensors[name].contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def steps_twice(database_url: str, job_ids: list[str]) -> int:
    """(job, step) pairs stored more than once, counted in the database itself."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT job_id, step, COUNT(*) FROM step_metrics GROUP BY job_id, step "
                                           "HAVING COUNT(*) > 1")).all()
    finally:
        engine.dispose()
    return sum(1 for job_id, _, _ in rows if job_id in job_ids)


def overlapping_runs(dashboard_url: str, job_ids: list[str]) -> int:
    """Ray submissions of one job that ran at the same time (two drivers training one job): a duplicated run."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for info in ray_submissions(dashboard_url):
        owner = next((job_id for job_id in job_ids if (info.submission_id or "").startswith(job_id)), None)
        if owner is not None and info.start_time:
            spans.setdefault(owner, []).append((info.start_time, info.end_time or 2**62))
    overlaps = 0
    for runs in spans.values():
        runs.sort()
        overlaps += sum(1 for (_, end), (start, _) in zip(runs, runs[1:], strict=False) if start < end)
    return overlaps


def collect(drill, specs: list[dict], ids: list[str], references: dict[str, str]) -> dict:
    jobs = {job_id: drill.api(f"/v1/jobs/{job_id}") for job_id in ids}
    listed = [job for job in drill.api("/v1/jobs?limit=500")["items"] if job["name"].startswith("chaos")]
    names = [job["name"] for job in listed]
    failed = [f"{job['name']}: {job['cause']}: {(job.get('message') or '')[:160]}" for job in jobs.values()
              if job["state"] == "failed"]
    weights, resumed_equal, missing_steps = [], [], []
    for job_id, job in jobs.items():
        if job["state"] != "succeeded":
            continue
        equal = output_checksum(Path(job["spec"]["output"]["dir"])) == references.get(job["name"])
        weights.append(equal)
        if job_id in drill.resumed:
            resumed_equal.append(equal)
        stored = [m["step"] for m in drill.api(f"/v1/jobs/{job_id}/metrics")["items"]]
        if stored != list(range(1, job["spec"]["training"]["max_steps"] + 1)):
            missing_steps.append(job["name"])
    return {
        "database": drill.database, "submitted": len(specs),
        "succeeded": sum(job["state"] == "succeeded" for job in jobs.values()), "failed": failed,
        "lost": sum(1 for spec in specs if spec["name"] not in names)
        + sum(job["state"] not in ("succeeded", "failed", "cancelled") for job in jobs.values()),
        "duplicated": len(names) - len(set(names)) + overlapping_runs(drill.dashboard_url, ids),
        "steps_twice": steps_twice(drill.server.env["EFFFT_DATABASE_URL"], ids),
        "steps_missing": missing_steps, "weights_equal": f"{sum(weights)}/{len(weights)}",
        "resumed_equal": f"{sum(resumed_equal)}/{len(resumed_equal)}", "faults": drill.faults,
        "ok": not failed and all(weights) and len(weights) == len(specs)
        and not any(f["judged_by"] == "NOT INJECTED:" for f in drill.faults),
    }


def table(result: dict, header: str) -> str:
    lines = [header, "",
             f"{'database':<34}{result['database']}",
             f"{'jobs submitted':<34}{result['submitted']}",
             f"{'succeeded':<34}{result['succeeded']}",
             f"{'failed (cause: message)':<34}{len(result['failed'])}"]
    lines += [f"{'':<36}{line}" for line in result["failed"]]
    lines += [f"{'lost (missing or never ended)':<34}{result['lost']}",
              f"{'duplicated runs':<34}{result['duplicated']}",
              f"{'steps stored twice':<34}{result['steps_twice']}",
              f"{'succeeded jobs missing a step':<34}{len(result['steps_missing'])}",
              f"{'weights = uninterrupted run':<34}{result['weights_equal']} succeeded jobs "
              f"({result['resumed_equal']} of those that resumed from a checkpoint)",
              "", f"{'fault':<20}{'at (s)':>8}{'recovery (s)':>14}  target; judged by"]
    for fault in result["faults"]:
        recovery = "-" if fault["recovery_s"] is None else f"{fault['recovery_s']:.1f}"
        lines.append(f"{fault['fault']:<20}{fault['at_s']:>8.1f}{recovery:>14}  {fault['target']}; "
                     f"{fault['judged_by']} {fault['note']}".rstrip())
    api = [f["recovery_s"] for f in result["faults"] if f["fault"] == "api SIGKILL" and f["recovery_s"]]
    if api:
        lines.append(f"api SIGKILL x{len(api)}: recovery median {sorted(api)[len(api) // 2]:.1f} s, "
                     f"worst {max(api):.1f} s")
    return "\n".join(lines)
