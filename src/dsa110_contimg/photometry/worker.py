"""Former home of the batch-job runner, kept for imports that still use it.

The job runtime now lives in the service layer:
:mod:`dsa110_contimg.service.runtime` (job context, executor protocol, error
classification, settling) and :mod:`dsa110_contimg.service.executors` (the
photometry executor). These names forward there.
"""

from __future__ import annotations


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the same input cannot succeed (see ``classify_error``)."""
    from dsa110_contimg.service.runtime import is_permanent as _is_permanent

    return _is_permanent(exc)


def run_claimed(queue, job, products_db: str, registry_db: str | None,
                catalog_dir: str | None = None) -> str:
    """Run a claimed job in this process with the photometry executor and settle it."""
    from dsa110_contimg.service.runtime import run_claimed as _run_claimed

    return _run_claimed(queue, job, products_db, registry_db, catalog_dir)


def settle(queue, job_id: int, summary, *, owner: str | None = None) -> str:
    """Apply an executor summary to the job's state."""
    from dsa110_contimg.service.runtime import settle as _settle

    return _settle(queue, job_id, summary, owner=owner)
