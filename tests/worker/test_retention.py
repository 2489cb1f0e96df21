"""Checkpoint retention on disk: the checkpoint a run resumed from is kept (hard links), and what Ray's
retention removed is reported with the bytes that really left the disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from worker.retention import CheckpointLedger, keep_resumed


def ray_checkpoint(experiment: Path, name: str, step: int, size: int = 1000) -> Path:
    """A folder laid out as worker.ray_run hands it to Ray: checkpoint_<time>/checkpoint/<the Trainer's files>."""
    folder = experiment / name / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / "model.safetensors").write_bytes(b"w" * size)
    return experiment / name


def removed(ledger: CheckpointLedger) -> dict:
    record = ledger.removed_since()
    assert record is not None and record["kind"] == "checkpoints_removed"
    return record


def test_the_checkpoint_resumed_from_is_kept_as_hard_links_and_replaced_by_the_next_resume(tmp_path):
    experiment, pinned = tmp_path / "ray" / "run", tmp_path / "ray" / "effft-resumed-from" / "run"
    first = ray_checkpoint(experiment, "checkpoint_a", step=4)
    kept = keep_resumed(first, pinned)
    assert kept == pinned / "step-4"
    original, link = first / "checkpoint" / "model.safetensors", kept / "checkpoint" / "model.safetensors"
    assert link.stat().st_ino == original.stat().st_ino and original.stat().st_nlink == 2  # no bytes more
    assert keep_resumed(first, pinned) == kept  # the same resume again: nothing to do
    later = ray_checkpoint(experiment, "checkpoint_b", step=8)
    keep_resumed(later, pinned)
    assert sorted(p.name for p in pinned.iterdir()) == ["step-8"]  # only the latest resume's


def test_a_removal_reports_its_steps_and_only_the_bytes_that_left_the_disk(tmp_path):
    experiment, pinned = tmp_path / "ray" / "run", tmp_path / "ray" / "effft-resumed-from" / "run"
    resumed_from = ray_checkpoint(experiment, "checkpoint_a", step=4, size=1000)
    keep_resumed(resumed_from, pinned)
    ray_checkpoint(experiment, "checkpoint_b", step=6, size=2000)
    ledger = CheckpointLedger(experiment, pinned, keep=2)
    assert ledger.removed_since() is None  # nothing gone yet
    ray_checkpoint(experiment, "checkpoint_c", step=8, size=3000)
    _remove(resumed_from)  # what Ray's num_to_keep=2 does once step 8 is registered
    record = removed(ledger)
    # its files are still linked from the kept copy: removing Ray's folder freed nothing
    assert (record["steps"], record["bytes_freed"]) == ([4], 0)
    assert record["kept_steps"] == [4, 6, 8] and record["resumed_from_step"] == 4
    assert record["text"] == ("checkpoints removed: step 4 (0.0 MB freed); kept: the last 2 and step 4 "
                              "(resumed from), steps 4, 6, 8")
    ray_checkpoint(experiment, "checkpoint_d", step=10, size=4000)
    _remove(experiment / "checkpoint_b")
    record = removed(ledger)
    assert (record["steps"], record["kept_steps"]) == ([6], [4, 8, 10])
    assert record["bytes_freed"] == 2000 + len(json.dumps({"global_step": 6}))


def test_without_a_resume_the_record_names_the_last_n_only(tmp_path):
    experiment = tmp_path / "ray" / "run"
    first = ray_checkpoint(experiment, "checkpoint_a", step=2)
    ledger = CheckpointLedger(experiment, tmp_path / "ray" / "effft-resumed-from" / "run", keep=1)
    ray_checkpoint(experiment, "checkpoint_b", step=4)
    _remove(first)
    record = removed(ledger)
    assert record["resumed_from_step"] is None and record["text"].endswith("kept: the last 1, steps 4")


def _remove(folder: Path) -> None:
    shutil.rmtree(folder)
