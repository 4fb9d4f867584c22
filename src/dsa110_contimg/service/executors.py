"""The shipped executors (see :mod:`dsa110_contimg.service.runtime`).

:class:`PhotometryExecutor` (``[daemon] executor = "photometry"``) runs every
unfinished image of a job through :meth:`PhotometryManager.run_image`:

* between images it checks the operator's cancel flag and extends the lease;
* each image's result transaction is fenced on the lease (``ctx.fence``), as
  are the item rows (``ctx.update_item``) and the data-registry status (checked
  just before the write: the registry is another database);
* a permanent error (bad input, :func:`~dsa110_contimg.service.runtime.classify_error`)
  fails the image with its reason; an environmental one leaves it ``pending``
  and the job is retried with back-off.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

import structlog

from dsa110_contimg.core.paths import fs_path, printable
from dsa110_contimg.service.runtime import JobContext, JobSummary, classify_error
from dsa110_contimg.store.queue import LeaseLost

log = structlog.get_logger("dsa110_contimg.service.executors")

#: One manager (engines, migrated databases, catalogue stores) per database triple and
#: process: a worker process runs many jobs, and opening + checking migrations per job
#: costs more than measuring a small image.
_MANAGERS: dict[tuple, Any] = {}


def _manager(products_db: str, registry_db: str | None, catalog_dir: str | None):
    from dsa110_contimg.pipeline.manager import PhotometryManager

    key = (str(products_db), registry_db, catalog_dir)
    if key not in _MANAGERS:
        _MANAGERS[key] = PhotometryManager(products_db, registry_db, catalog_dir=catalog_dir)
    return _MANAGERS[key]


class PhotometryExecutor:
    """The photometry workflow, one image per item (see the module docstring)."""

    name = "photometry"

    def run(self, ctx: JobContext) -> JobSummary:
        from dsa110_contimg.core.config import PhotometryConfig

        from dsa110_contimg.pipeline.backfill import BACKFILL_JOB

        cfg = PhotometryConfig.from_dict(ctx.params.get("config", {}))
        manager = _manager(ctx.products_db, ctx.registry_db, ctx.catalog_dir)
        summary = JobSummary()
        backfill = ctx.params.get(BACKFILL_JOB)
        for item in ctx.todo(summary):
            try:
                if not ctx.heartbeat():
                    raise LeaseLost(ctx.job_id, ctx.owner)
                # every log line of this item (manager, QC, astropy warnings) carries job and path
                with structlog.contextvars.bound_contextvars(job_id=ctx.job_id,
                                                             path=printable(item["fits_path"])):
                    if backfill is not None:
                        self._run_backfill_item(manager, ctx, item, cfg, backfill, summary)
                    else:
                        self._run_item(manager, ctx, item, cfg, summary)
            except LeaseLost as exc:
                log.warning("lease_lost", job_id=ctx.job_id, owner=ctx.owner, error=str(exc))
                summary.lease_lost = True
                break
        return summary

    @staticmethod
    def _link(manager, ctx: JobContext, item: dict, status: str, error: str | None = None) -> None:
        data_id = item.get("data_id")
        if not data_id or manager.registry is None:
            return
        if not ctx.holds_lease():
            raise LeaseLost(ctx.job_id, ctx.owner)
        manager._link(data_id, Path(fs_path(item["fits_path"])), item["kind"], status, ctx.job_id,
                      error=error)

    @staticmethod
    def _run_backfill_item(manager, ctx: JobContext, item: dict, cfg, sources: list,
                           summary: JobSummary) -> None:
        """Forced photometry of a backfill job's sources on one stored image
        (:mod:`dsa110_contimg.pipeline.backfill`): those of them the image covers (its
        stored footprint), the others get no row; an unreadable image fails its item with
        the reason."""
        from dsa110_contimg.pipeline.backfill import (measure_backfill, sources_covered,
                                                      store_backfill)
        from dsa110_contimg.store.engine import read_connection, serialise_writes

        t0 = time.perf_counter()
        ctx.update_item(item["id"], "running")
        try:
            with read_connection(manager.products.engine) as conn:
                image_id, sources = sources_covered(conn, item["fits_path"], sources)
            n = 0
            if sources:
                table = measure_backfill(item["fits_path"], cfg, sources)
                with manager.products.engine.begin() as conn:
                    serialise_writes(conn)
                    ctx.fence(conn)
                    image_id = store_backfill(conn, item["fits_path"], sources, table, cfg)
                n = len(table)
        except LeaseLost:
            raise
        except Exception as exc:  # classified and recorded below, never swallowed
            permanent, reason = classify_error(exc)
            permanent = permanent or isinstance(exc, (LookupError, FileNotFoundError))
            summary.record_failure(reason, permanent)
            log.error("backfill_item_failed", job_id=ctx.job_id, path=printable(item["fits_path"]),
                      permanent=permanent, error=reason)
            ctx.update_item(item["id"], "failed" if permanent else "pending", error=reason)
            return
        ctx.update_item(item["id"], "done", image_id=image_id, n_measurements=n)
        summary.done += 1
        summary.durations[item["fits_path"]] = time.perf_counter() - t0

    def _run_item(self, manager, ctx: JobContext, item: dict, cfg, summary: JobSummary) -> None:
        # an item holds the database form of its name (``fsb64:`` when not valid UTF-8):
        # opened by its filesystem form, stored again in the database form by the manager
        path = Path(fs_path(item["fits_path"]))
        t0 = time.perf_counter()
        ctx.update_item(item["id"], "running")
        self._link(manager, ctx, item, "running")
        try:
            result = manager.run_image(path, item["kind"], cfg, data_id=item.get("data_id"),
                                       fence=ctx.fence)
        except LeaseLost:
            raise
        except Exception as exc:  # classified and recorded below, never swallowed
            permanent, reason = classify_error(exc)
            summary.record_failure(reason, permanent)
            log.error("item_failed", job_id=ctx.job_id, path=printable(path), permanent=permanent,
                      error=reason, traceback=None if permanent else traceback.format_exc())
            if permanent:
                ctx.update_item(item["id"], "failed", error=reason)
                self._link(manager, ctx, item, "failed", error=reason)
            else:   # left pending for the retry; the job records the reason
                ctx.update_item(item["id"], "pending", error=reason)
            return
        ctx.update_item(item["id"], "done", image_id=result.image_id,
                        n_measurements=result.measurements_total)
        self._link(manager, ctx, item, "completed")
        summary.done += 1
        summary.durations[item["fits_path"]] = time.perf_counter() - t0
        summary.add_stages(getattr(result, "step_seconds", None))
