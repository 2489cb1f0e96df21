"""Which checkpoints a run keeps, and what removing the others freed.

A run keeps its last N checkpoints (Ray's `num_to_keep` in its storage, the Trainer's `save_total_limit` in
its work folder) plus the one it resumed from. Ray's retention cannot spare one checkpoint, so effft keeps
that one itself, beside Ray's run folder: hard links to its files, so it costs no bytes while Ray still
holds it (a copy where links cannot be made). Each removal becomes a `checkpoints_removed` record (steps,
bytes freed, what is kept), which the service notes in the job's events. No Ray import here.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from planner.units import size_text

DEFAULT_CHECKPOINTS_TO_KEEP = 2
RAY_CHECKPOINT_PREFIX = "checkpoint_"  # Ray's folders in a run's storage: checkpoint_<time>/
RESUMED_FOLDER = "effft-resumed-from"  # beside Ray's run folders in its storage path: <name>/step-<S>/


def checkpoint_step(folder: str | Path | None) -> int | None:
    """The optimizer step a Trainer checkpoint was saved at."""
    state = Path(folder, "trainer_state.json") if folder else None
    return json.loads(state.read_text())["global_step"] if state is not None and state.exists() else None


def file_sizes(folder: Path) -> dict[tuple[int, int], int]:
    """Every file under `folder` by (device, inode): a file hard-linked elsewhere is one file, not two."""
    sizes = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            sizes[(stat.st_dev, stat.st_ino)] = stat.st_size
    return sizes


@dataclass(frozen=True)
class Stored:
    """One checkpoint on disk: its step and its files."""

    step: int | None
    files: dict[tuple[int, int], int]


def trainer_folder(folder: Path) -> Path:
    """The Trainer's checkpoint inside one of Ray's (worker.ray_run puts it in `checkpoint/`)."""
    return folder / "checkpoint" if (folder / "checkpoint").is_dir() else folder


def stored_checkpoints(folders: list[Path]) -> dict[str, Stored]:
    return {str(folder): Stored(checkpoint_step(trainer_folder(folder)), file_sizes(folder))
            for folder in folders if folder.is_dir()}


def ray_checkpoint_folders(experiment: Path) -> list[Path]:
    """Ray's checkpoint folders of a run (beside them: its checkpoint_manager_snapshot.json)."""
    return sorted(f for f in experiment.glob(f"{RAY_CHECKPOINT_PREFIX}*") if f.is_dir()) if experiment.is_dir() else []


def pinned_folders(pinned_root: Path) -> list[Path]:
    return sorted(pinned_root.glob("step-*")) if pinned_root.is_dir() else []


def removal_record(gone: dict[str, Stored], kept: dict[str, Stored], resumed_step: int | None,
                   keep: int) -> dict:
    """The record of checkpoints removed: their steps, the bytes that left the disk (a file still linked from
    a kept checkpoint did not), and what is kept."""
    still_held = {key for stored in kept.values() for key in stored.files}
    freed = {key: size for stored in gone.values() for key, size in stored.files.items() if key not in still_held}
    steps = sorted(stored.step for stored in gone.values() if stored.step is not None)
    kept_steps = sorted({stored.step for stored in kept.values() if stored.step is not None})
    resumed = f" and step {resumed_step} (resumed from)" if resumed_step is not None else ""
    text = (f"checkpoints removed: step {', '.join(map(str, steps)) or '?'} ({size_text(sum(freed.values()))} "
            f"freed); kept: the last {keep}{resumed}, steps {', '.join(map(str, kept_steps)) or 'none'}")
    return {"kind": "checkpoints_removed", "steps": steps, "bytes_freed": sum(freed.values()),
            "kept_steps": kept_steps, "resumed_from_step": resumed_step, "text": text, "time": time.time()}


class CheckpointLedger:
    """What a run's storage held at the last look; a look after each save says what was removed since.

    `experiment` is Ray's folder of the run, `pinned_root` where the checkpoint resumed from is kept."""

    def __init__(self, experiment: Path, pinned_root: Path, keep: int):
        self.experiment, self.pinned_root, self.keep = experiment, pinned_root, keep
        self.known = self._look()

    def _look(self) -> dict[str, Stored]:
        return stored_checkpoints(ray_checkpoint_folders(self.experiment) + pinned_folders(self.pinned_root))

    def removed_since(self) -> dict | None:
        """The record of what left the storage since the last look; None when nothing did."""
        now = self._look()
        gone = {name: stored for name, stored in self.known.items() if name not in now}
        self.known = now
        if not gone:
            return None
        pinned = stored_checkpoints(pinned_folders(self.pinned_root))
        resumed_step = next((stored.step for stored in pinned.values()), None)
        return removal_record(gone, now, resumed_step, self.keep)


def keep_resumed(source: Path, pinned_root: Path) -> Path:
    """Keep the checkpoint a run resumes from in `pinned_root/step-S` (hard links, else a copy); the one kept
    before (an earlier resume's) is removed: the ledger's next look reports it."""
    step = checkpoint_step(trainer_folder(source))
    target = pinned_root / f"step-{step}"
    if target.exists():
        return target  # resumed from the same checkpoint again
    partial = pinned_root / f".partial-step-{step}"
    shutil.rmtree(partial, ignore_errors=True)
    pinned_root.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, partial, copy_function=os.link)
    except OSError:  # another file system (or one without links): a copy
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
    partial.rename(target)  # complete or absent: a crash mid-copy never leaves a half checkpoint kept
    for older in pinned_folders(pinned_root):
        if older != target:
            shutil.rmtree(older, ignore_errors=True)
    return target
