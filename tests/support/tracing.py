"""Peak memory of a call, as the memory-bound tests measure it."""

from __future__ import annotations

import tracemalloc


def traced_peak(fn):
    """``(fn(), peak bytes allocated by Python and numpy while it ran)``."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
