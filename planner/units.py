"""How effft writes an amount of memory for people: the planner's reasons, `effft plan`, the CLI and the run view."""

from __future__ import annotations


def size_text(n: float | None) -> str:
    """In decimal units, as GPU makers state memory: '12.34 GB', or '123.4 MB' below a tenth of a GB."""
    if n is None:  # not measured (yet): the CPU measures its peak on a run's second step
        return "n/a"
    return f"{n / 1e9:,.2f} GB" if abs(n) >= 1e8 else f"{n / 1e6:,.1f} MB"
