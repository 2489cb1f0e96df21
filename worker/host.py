"""This machine, without torch or Ray: `effft plan` (base install) and Ray's inventory read the same numbers."""

from __future__ import annotations

import os


def host_memory_bytes() -> int:
    """Physical memory: what a CPU "device" is budgeted, by a preview and by the scheduler alike."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
