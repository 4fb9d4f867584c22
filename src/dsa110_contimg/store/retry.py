"""Retrying a short write transaction when the database is momentarily locked.

SQLite answers "database is locked" (or "busy") when the busy timeout ran out while
another process held the write lock; the transaction did nothing and can simply run
again. Every repository function that writes wraps its transaction in
:func:`with_retry`.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from sqlalchemy.exc import OperationalError


def with_retry(fn: Callable[[], Any], *, attempts: int = 8, base_s: float = 0.05) -> Any:
    """Run ``fn``; on "database is locked/busy" retry with jittered back-off
    (``base_s * 2**i * U(0.5, 1)`` seconds before try ``i + 1``)."""
    for i in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or i == attempts - 1:
                raise
            time.sleep(base_s * (2 ** i) * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")  # pragma: no cover
