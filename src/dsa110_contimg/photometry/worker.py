"""Running batch jobs: the code shared by ``contimg-photometry worker`` and the daemon.

:func:`execute_job` runs every unfinished item (image) of one claimed job
through :meth:`PhotometryManager.run_image`, records each item's outcome and
the data-registry status, and returns a summary. It takes only picklable
arguments, so a daemon can run it in a spawned worker process; the caller
settles the job itself (``complete`` or ``fail``) from the summary.

Errors are classified:

* **permanent** (the input is bad: ``InvalidImage``, ``CatalogError``,
  ``ConfigError``): the item fails with its reason; retrying cannot help;
* **transient** (anything else, e.g. a locked database or an I/O error): the
  job is retried with back-off and becomes ``dead`` after its attempts.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

import structlog

from dsa110_contimg.photometry.config import PhotometryConfig
from dsa110_contimg.photometry.errors import CatalogError, ConfigError, InvalidImage, PhotometryError

log = structlog.get_logger("dsa110_contimg.photometry.worker")

PERMANENT_ERRORS = (InvalidImage, CatalogError, ConfigError)


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the same input cannot succeed."""
    return isinstance(exc, PERMANENT_ERRORS)


def execute_job(products_db: str, registry_db: str | None, job_id: int, lease_owner: str,
                params: dict, items: list[dict], catalog_dir: str | None = None) -> dict[str, Any]:
    """Run the unfinished items of one job.

    Parameters
    ----------
    products_db, registry_db : str
        Database paths or URLs.
    job_id : int
        The claimed job.
    lease_owner : str
        Owner of the claim (used to extend the lease between items).
    params : dict
        The job parameters (``{"config": PhotometryConfig.to_dict(), ...}``).
    items : list of dict
        ``{"id", "fits_path", "kind", "data_id", "status"}`` per item.
    catalog_dir : str, optional
        Catalogue directory when the config names none.

    Returns
    -------
    dict
        ``done``, ``failed`` (counts this run), ``permanent`` (True when every
        failure was permanent), ``error`` (first failure reason or None),
        ``cancelled`` (bool), ``durations`` (seconds per item path), ``stages``
        (seconds per workflow stage summed over the items measured: open, noise,
        catalog, measure, qc, store, normalise, variability, ese).
    """
    cfg = PhotometryConfig.from_dict(params.get("config", {}))
    manager = _manager(products_db, registry_db, catalog_dir)
    queue = manager.queue
    summary: dict[str, Any] = {"done": 0, "failed": 0, "permanent": True, "error": None,
                               "cancelled": False, "durations": {}, "stages": {}}
    for item in items:
        if item["status"] == "done":
            continue
        if queue.cancel_requested(job_id):
            summary["cancelled"] = True
            break
        queue.heartbeat(job_id, owner=lease_owner)
        # every log line of this item (manager, QC, astropy warnings) carries job and path
        with structlog.contextvars.bound_contextvars(job_id=job_id, path=str(item["fits_path"])):
            _run_item(manager, queue, job_id, item, cfg, summary)
    return summary


#: One manager (engines, migrated databases, catalogue stores) per database triple and
#: process: a worker process runs many jobs, and opening + checking migrations per job
#: costs more than measuring a small image.
_MANAGERS: dict[tuple, Any] = {}


def _manager(products_db: str, registry_db: str | None, catalog_dir: str | None):
    from dsa110_contimg.photometry.manager import PhotometryManager

    key = (str(products_db), None if registry_db is None else str(registry_db),
           None if catalog_dir is None else str(catalog_dir))
    if key not in _MANAGERS:
        _MANAGERS[key] = PhotometryManager(products_db, registry_db, catalog_dir=catalog_dir)
    return _MANAGERS[key]


def _run_item(manager, queue, job_id, item, cfg, summary) -> None:
    path = Path(item["fits_path"])
    data_id = item.get("data_id")
    t0 = time.perf_counter()
    queue.update_item(item["id"], "running")
    if data_id and manager.registry is not None:
        manager._link(data_id, path, item["kind"], "running", job_id)
    try:
        result = manager.run_image(path, item["kind"], cfg, data_id=data_id)
    except Exception as exc:  # classified and recorded below, never swallowed
        permanent = is_permanent(exc)
        reason = str(exc) if isinstance(exc, PhotometryError) else \
            f"{type(exc).__name__}: {exc}"
        summary["failed"] += 1
        summary["permanent"] = summary["permanent"] and permanent
        summary["error"] = summary["error"] or reason
        log.error("item_failed", job_id=job_id, path=str(path), permanent=permanent, error=reason,
                  traceback=None if permanent else traceback.format_exc())
        if permanent:
            queue.update_item(item["id"], "failed", error=reason)
            if data_id and manager.registry is not None:
                manager._link(data_id, path, item["kind"], "failed", job_id, error=reason)
        else:
            # left pending for the retry; the job records the reason
            queue.update_item(item["id"], "pending", error=reason)
        return
    queue.update_item(item["id"], "done", image_id=result.image_id,
                      n_measurements=result.measurements_total)
    if data_id and manager.registry is not None:
        manager._link(data_id, path, item["kind"], "completed", job_id)
    summary["done"] += 1
    summary["durations"][str(path)] = time.perf_counter() - t0
    for stage, seconds in (getattr(result, "step_seconds", None) or {}).items():
        summary.setdefault("stages", {})[stage] = summary.get("stages", {}).get(stage, 0.0) + seconds


def run_claimed(queue, job, products_db: str, registry_db: str | None,
                catalog_dir: str | None = None) -> str:
    """Execute a claimed job in this process and settle it. Returns its final state."""
    items = [dict(id=i.id, fits_path=i.fits_path, kind=i.kind, data_id=i.data_id, status=i.status)
             for i in job.items]
    try:
        summary = execute_job(products_db, registry_db, job.id, job.lease_owner, job.params, items,
                              catalog_dir)
    except Exception as exc:  # the job records it and is retried
        reason = f"{type(exc).__name__}: {exc}"
        log.error("job_crashed", job_id=job.id, error=reason, traceback=traceback.format_exc())
        return queue.fail(job.id, reason, retryable=not is_permanent(exc)) or "lease_lost"
    return settle(queue, job.id, summary)


def settle(queue, job_id: int, summary: dict, *, owner: str | None = None) -> str:
    """Apply an :func:`execute_job` summary to the job's state."""
    if summary["cancelled"]:
        queue.finish_cancelled(job_id, owner=owner)
        return "cancelled"
    if summary["failed"] and not summary["permanent"]:
        return queue.fail(job_id, summary["error"], retryable=True, owner=owner) or "lease_lost"
    ok = queue.complete(job_id, owner=owner, error=summary["error"])
    if not ok:
        return "lease_lost"
    return (queue.get(job_id) or {}).get("status", "done")
