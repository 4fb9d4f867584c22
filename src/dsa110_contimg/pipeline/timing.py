"""Wall time of the workflow's steps (``PhotometryResult.step_seconds``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class StepTimer:
    """Seconds per named step, summed over every ``with timer(name):`` block.

    The names are the stages of ``service/metrics.py: STAGES`` (plus ``write_lock`` and
    ``<step>_lock``, how long a write transaction held the database).
    """

    def __init__(self, seconds: dict[str, float] | None = None):
        self.seconds: dict[str, float] = dict(seconds or {})

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
