"""A one-line progress report on stderr for long builds (no dependency; tqdm-style)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def reporter(label: str, progress: bool | None) -> Callable[[int, int], None] | None:
    """A ``(done, total)`` callback that redraws ``label: done/total (p%, rate/s)`` on stderr,
    or None. ``progress=None`` reports only when stderr is a terminal; True or False force it."""
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not progress:
        return None
    start = time.perf_counter()

    def show(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - start, 1e-9)
        pct = 100.0 * done / total if total else 100.0
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{label}: {done:,}/{total:,} ({pct:.0f}%, {rate:,.0f}/s){end}")
        sys.stderr.flush()

    return show
