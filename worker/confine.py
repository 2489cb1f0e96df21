"""Where one job may read and write: every path resolved (symlinks too, files inside folders too).

The service builds a Confinement per job owner, checks it at submit and before planning, and
passes it in the job file, so the job's driver checks again right before it reads. The rules
are paths in, reasons out: no I/O beyond listing folders and resolving links.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

MAX_ENTRIES = 20_000  # files and folders checked inside one model or dataset folder
# a model loader may open anything below its folder (and what an index names); a dataset reader only its own files
WALKED_WHOLE = {"model.path"}


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclass(frozen=True)
class Confinement:
    read_roots: tuple[Path, ...]  # datasets and local models are read only under these
    output_roots: tuple[Path, ...]  # each owner writes (and reads) only its own area of these
    owner: str
    private: tuple[Path, ...] = ()  # never read or written: the service's run folders
    private_files_in: tuple[Path, ...] = ()  # folders whose own files are the service's (the data dir's database)

    @property
    def owner_areas(self) -> tuple[Path, ...]:
        return tuple(root / self.owner for root in self.output_roots)

    def _private(self, path: Path) -> bool:
        if any(_within(path, folder) for folder in self.private):
            return True
        if path.parent in self.private_files_in and not path.is_dir():
            return True
        # another owner's area of an output root (its trained models)
        return any(_within(path, root) and not _within(path, root / self.owner) for root in self.output_roots)

    def unreadable(self, path: Path) -> str | None:
        """Why `path` (a file or folder, already resolved) may not be read; None when it may."""
        if not any(_within(path, root) for root in (*self.read_roots, *self.owner_areas)):
            return "outside the roots this server reads"
        return "a private file of the service or another user" if self._private(path) else None

    def unwritable(self, path: Path) -> str | None:
        if not any(_within(path, area) for area in self.owner_areas):
            return "outside your own area of the output roots"
        return "a private folder of the service" if self._private(path) else None

    def to_dict(self) -> dict:
        return {"read_roots": [str(p) for p in self.read_roots], "output_roots": [str(p) for p in self.output_roots],
                "owner": self.owner, "private": [str(p) for p in self.private],
                "private_files_in": [str(p) for p in self.private_files_in]}

    @classmethod
    def from_dict(cls, data: dict) -> Confinement:
        paths = {key: tuple(Path(p) for p in data[key])
                 for key in ("read_roots", "output_roots", "private", "private_files_in")}
        return cls(owner=data["owner"], **paths)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except RuntimeError:  # a symlink loop (Python < 3.13 raises this rather than OSError)
        raise ValueError(f"{path} is a loop of symbolic links") from None


def _folder_entries(folder: Path, recursive: bool) -> list[Path]:
    """Entries a reader may open: the folder's own (a dataset) or everything below it, links followed (a model)."""
    if not recursive:
        return sorted(folder.iterdir())
    found, seen = [], set()
    for parent, dirs, files in os.walk(folder, followlinks=True):
        real = _resolved(Path(parent))
        if real in seen:  # a link back up: each real folder once
            dirs.clear()
            continue
        seen.add(real)
        found += [Path(parent) / name for name in (*dirs, *files)]
        if len(found) > MAX_ENTRIES:
            raise ValueError(f"holds more than {MAX_ENTRIES:,} files and folders; point to the folder itself")
    return found


def _index_targets(folder: Path) -> list[Path]:
    """Files a sharded checkpoint's index points to: transformers joins them to the folder unchecked."""
    targets = []
    for index in folder.glob("*.index.json"):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")[:50_000_000]).get("weight_map", {})
        except (OSError, ValueError, AttributeError, RecursionError):
            continue  # not an index transformers could use either
        if isinstance(weight_map, dict):
            targets += [folder / str(name) for name in set(weight_map.values())]
    return targets


def entries_read(path: Path, recursive: bool = False) -> list[tuple[Path, Path]]:
    """(as named, resolved) for the path and what a reader opens from it; a folder's entries one level down
    (datasets) or all of them (`recursive`: models, whose index files are followed too)."""
    found = [(path, _resolved(path))]
    if not found[0][1].is_dir():
        return found
    entries = _folder_entries(path, recursive)
    if recursive:
        entries += _index_targets(path)
    return found + [(entry, _resolved(entry)) for entry in entries]


def read_problem(confinement: Confinement, path: str, recursive: bool = False) -> str | None:
    """Why the dataset (or, `recursive`, the model) at `path` may not be read, naming the offending entry."""
    named = Path(path)
    if not named.is_absolute():
        return "not an absolute path"
    try:
        entries = entries_read(named, recursive)
    except (OSError, ValueError) as error:
        return str(error)
    for entry, resolved in entries:
        reason = confinement.unreadable(resolved)
        if reason is not None:
            shown = "it" if entry == named else f"{entry} (inside it)"
            target = f" (it resolves to {resolved})" if resolved != entry else ""
            return f"{shown} is {reason}{target}"
    return None


def field_read_problem(confinement: Confinement, field: str, path: str) -> str | None:
    """read_problem for a spec field (`dataset.path`, `model.path`), walking what that field's reader opens."""
    return read_problem(confinement, path, recursive=field in WALKED_WHOLE)


def write_problem(confinement: Confinement, path: str) -> str | None:
    named = Path(path)
    if not named.is_absolute():
        return "not an absolute path"
    try:
        resolved = _resolved(named)
    except ValueError as error:
        return str(error)
    reason = confinement.unwritable(resolved)
    if reason is None:
        return None
    return f"it is {reason}" + (f" (it resolves to {resolved})" if resolved != named else "")
