"""Run the per-image steps (:data:`dsa110_contimg.pipeline.steps.STEPS`) on a measured image.

:func:`store_measured` is the database half of one image's workflow:

1. every ``image``-transaction step's ``prepare`` on one read connection (no lock);
   after the ``duplicate`` step found the image's data already stored under another path,
   no other step runs (prepare, write or own transaction);
2. one write transaction (the write lock, fenced on the job's lease) in which those
   steps ``write`` in order -- the measurements, QC, normalisation, running statistics;
3. each ``own``-transaction step (ESE): ``prepare`` on a read connection, ``write`` in a
   short transaction of its own.

It returns the image's :class:`ImageOutcome` and changes nothing it was given.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from dsa110_contimg.core.paths import db_path
from dsa110_contimg.pipeline.steps import IMAGE_TRANSACTION, STEPS, ImageContext, Step
from dsa110_contimg.pipeline.timing import StepTimer
from dsa110_contimg.store.engine import read_connection, serialise_writes


@dataclass
class ImageOutcome:
    """What storing one measured image gave.

    ``results`` maps each step's name to its result (``qc``: the QCResult; ``normalise``:
    the normalisation summary; ``variability``; ``ese``: the number of sources flagged);
    ``source_ids`` are the ``sources.id`` of the measurement rows; ``notes`` the
    measurement's and the steps' notes; ``step_seconds`` the measurement's and the steps'
    times (s) with ``write_lock`` (the image's write transaction, commit included) and
    ``<step>_lock`` for steps with a transaction of their own.
    """

    image_id: int
    source_ids: np.ndarray
    results: dict[str, Any]
    notes: list[str]
    step_seconds: dict[str, float] = field(default_factory=dict)
    #: the measured image as stored (a step may add rows: the sources blind detection found)
    measured: Any = None
    #: ``images.id`` of the image holding the same data under another path (then this image
    #: is no epoch: nothing but its duplicate row was stored)
    duplicate_of: int | None = None

    @property
    def qc_status(self) -> str | None:
        qc = self.results.get("qc")
        return None if qc is None else qc.status

    @property
    def normalization(self) -> dict:
        """The normalisation summary without the ids of images normalised again."""
        return {k: v for k, v in (self.results.get("normalise") or {}).items() if k != "renormalised"}

    @property
    def ese_candidates(self) -> int:
        return int(self.results.get("ese") or 0)


def image_context(measured, cfg, *, data_id: str | None = None) -> ImageContext:
    """The context of a measured image before any step ran."""
    image = measured.image
    ra, dec = image.center()
    return ImageContext(
        image_id=None, path=db_path(measured.path.resolve()), mjd=image.mjd, ra_deg=ra,
        dec_deg=dec, radius_deg=image.footprint_radius_deg(), kind=measured.kind,
        remeasured=False, source_ids=None, method=measured.method, cfg=cfg, measured=measured,
        data_id=data_id, notes=list(measured.notes), field_window_days=cfg.field_window_days)


@contextmanager
def _transaction(engine, fence):
    """A write transaction holding the products database's write lock, fenced."""
    with engine.begin() as conn:
        serialise_writes(conn)   # SQLite: BEGIN IMMEDIATE already; PostgreSQL: advisory lock
        if fence is not None:
            fence(conn)
        yield conn


def store_known_duplicate(engine, path, kind: str, cfg, *, data_id: str | None = None,
                          fence: Callable | None = None,
                          digest: str | None = None) -> ImageOutcome | None:
    """Record the file at ``path`` as a duplicate without measuring it when its data is
    already stored under another path (checked again under the write lock); None when it
    is not (then the file goes through :func:`store_measured`). ``digest`` is the file's
    :func:`~dsa110_contimg.store.products.data_digest` when the caller has it."""
    from dsa110_contimg.core.paths import fs_path
    from dsa110_contimg.pipeline.steps.duplicate import duplicate_note, record_duplicate
    from dsa110_contimg.store import products as product_store

    local = fs_path(path)
    if digest is None:
        try:
            digest = product_store.data_digest(local)
        except OSError:
            return None             # the measurement reports what is wrong with the file
    where = db_path(Path(local).resolve())
    with read_connection(engine) as conn:
        if product_store.original_image(conn, digest, where) is None:
            return None
    with _transaction(engine, fence) as conn:
        original = product_store.original_image(conn, digest, where)
        if original is None:
            return None
        row = product_store.duplicate_row(conn, original["id"], path=where,
                                          content_id=product_store.content_id(local),
                                          digest=digest, kind=kind, data_id=data_id)
        image_id = record_duplicate(conn, cfg, row, original["id"])
    return ImageOutcome(image_id=image_id, source_ids=np.zeros(0, np.int64),
                        results={"duplicate": {"duplicate_of": original["id"],
                                               "original_path": original["path"]}},
                        notes=[duplicate_note(original)], duplicate_of=original["id"])


def store_measured(engine, measured, cfg, *, data_id: str | None = None,
                   fence: Callable | None = None, steps: Sequence[Step] = STEPS,
                   duplicate_checked: bool = False) -> ImageOutcome:
    """Store a :class:`~dsa110_contimg.pipeline.measure.MeasuredImage` through ``steps``.

    ``engine`` is the products database's engine; ``fence(conn)``, when given, is called
    first inside every write transaction (the job runtime's lease check: it raises to
    roll the transaction back). ``duplicate_checked``: the caller found no original of
    the image's data on a read connection just before (:func:`store_known_duplicate`), so
    the ``duplicate`` step does not look again before its write (which does, under the
    write lock).
    """
    ctx = image_context(measured, cfg, data_id=data_id)
    ctx.duplicate_checked = duplicate_checked
    timer = StepTimer(measured.steps)
    active = [s for s in steps if s.enabled(cfg)]
    in_image = [s for s in active if s.transaction == IMAGE_TRANSACTION]
    with read_connection(engine) as conn:
        for step in in_image:
            if ctx.duplicate_of is not None:
                break       # a duplicate goes no further (its write re-checks under the lock)
            with timer(step.name):
                step.prepare(conn, ctx)
    with timer("write_lock"), _transaction(engine, fence) as conn:
        for step in in_image:
            with timer(step.name):
                if not step.staged_rows:
                    ctx.write_measurements(conn)
                ctx.results[step.name] = step.write(conn, ctx)
            if ctx.duplicate_of is not None:
                break
        ctx.write_measurements(conn)
    for step in active:
        if ctx.duplicate_of is not None:
            break
        if step.transaction != IMAGE_TRANSACTION:
            with timer(step.name):
                with read_connection(engine) as conn:
                    step.prepare(conn, ctx)
                with timer(f"{step.name}_lock"), _transaction(engine, fence) as conn:
                    ctx.results[step.name] = step.write(conn, ctx)
    return ImageOutcome(image_id=ctx.image_id, source_ids=ctx.source_ids, results=ctx.results,
                        notes=ctx.notes, step_seconds=timer.seconds, measured=ctx.measured,
                        duplicate_of=ctx.duplicate_of)
