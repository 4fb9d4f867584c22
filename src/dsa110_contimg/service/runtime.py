"""The job runtime: typed job context, executors behind a Protocol, error classes, settling.

A claimed job is run by an **executor**, any object with a ``name`` and a
``run(ctx) -> JobSummary`` method (:class:`Executor`). The daemon's worker
processes, ``contimg-photometry worker`` and the tests all call executors the
same way, with a :class:`JobContext`:

* who runs the job (``job_id``, lease ``owner``, ``attempt``), what to run
  (``params``, ``items``) and where the databases are;
* :meth:`JobContext.heartbeat` extends the lease, :meth:`JobContext.cancel_requested`
  reads the operator's cancel flag;
* every write an executor makes is fenced on the lease:
  :meth:`JobContext.update_item` (item rows), :meth:`JobContext.fence` (called
  inside the executor's own result transaction) and :meth:`JobContext.holds_lease`
  (before a write to another database, e.g. the data registry). A worker that
  lost its lease gets :class:`~dsa110_contimg.store.queue.LeaseLost` and stops.

Executors are named in ``[daemon] executor``: ``"photometry"`` (the default,
:class:`~dsa110_contimg.service.executors.PhotometryExecutor`) or
``"package.module:attribute"`` naming an executor class or instance. The former
default string ``dsa110_contimg.photometry.worker:execute_job`` still means
``"photometry"``; any other ``module:function`` with the former 7-argument
signature is wrapped (:class:`LegacyFunctionExecutor`).

Errors are classified by :func:`classify_error`: only environmental errors
(I/O, database, network, lost lease) are retried; input that can never succeed
fails at once with a human-readable reason.

:func:`settle` applies an executor's :class:`JobSummary` to the queue;
:func:`run_claimed` runs a claimed job in this process and settles it.
"""

from __future__ import annotations

import errno
import importlib
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import structlog

log = structlog.get_logger("dsa110_contimg.service.runtime")

#: ``[daemon] executor`` names of the built-in executors.
BUILTIN_EXECUTORS = {"photometry": "dsa110_contimg.service.executors:PhotometryExecutor"}
#: Former ``[daemon] executor`` strings that now mean a built-in executor.
LEGACY_ALIASES = {"dsa110_contimg.photometry.worker:execute_job": "photometry"}


@dataclass(frozen=True)
class JobContext:
    """Everything an executor needs to run one claimed job (picklable).

    Attributes
    ----------
    job_id : int
        The claimed job.
    owner : str
        The lease owner (``host:pid:uuid8`` of the daemon or worker command).
    attempt : int
        1 for the first claim.
    params : dict
        Job parameters (``{"config": PhotometryConfig.to_dict(), ...}``).
    items : tuple of dict
        ``{"id", "fits_path", "kind", "data_id", "status"}`` per image.
    products_db, registry_db, catalog_dir : str or None
        Database paths/URLs and the catalogue directory.
    lease_s : float
        Lease length (s) used by :meth:`heartbeat`.
    """

    job_id: int
    owner: str
    attempt: int
    params: dict
    items: tuple
    products_db: str
    registry_db: str | None = None
    catalog_dir: str | None = None
    lease_s: float = 300.0

    @classmethod
    def from_claim(cls, job, *, products_db, registry_db=None, catalog_dir=None,
                   lease_s: float = 300.0) -> "JobContext":
        """The context of a :class:`~dsa110_contimg.store.queue.ClaimedJob`."""
        items = tuple(dict(id=i.id, fits_path=i.fits_path, kind=i.kind, data_id=i.data_id,
                           status=i.status) for i in job.items)
        return cls(job.id, job.lease_owner, job.attempts, dict(job.params), items, str(products_db),
                   None if registry_db is None else str(registry_db),
                   None if catalog_dir is None else str(catalog_dir), float(lease_s))

    # -- the queue, opened lazily once per process ------------------------------------
    @property
    def queue(self):
        from dsa110_contimg.store.engine import open_products_db
        from dsa110_contimg.store.queue import JobQueue

        key = (self.products_db, self.owner)
        q = _QUEUES.get(key)
        if q is None:
            db = _DBS.get(self.products_db)
            if db is None:
                db = _DBS[self.products_db] = open_products_db(self.products_db, migrate=False)
            q = _QUEUES[key] = JobQueue(db, owner=self.owner, lease_s=self.lease_s)
        return q

    def heartbeat(self) -> bool:
        """Extend the lease; False when it was lost."""
        return self.queue.heartbeat(self.job_id, owner=self.owner)

    def cancel_requested(self) -> bool:
        """True when an operator asked to cancel this job."""
        return self.queue.cancel_requested(self.job_id)

    def todo(self, summary: "JobSummary"):
        """The items still to run, in order (done ones are passed over); stops, with
        ``summary.cancelled`` set, as soon as an operator asked to cancel the job."""
        for item in self.items:
            if item["status"] == "done":
                continue
            if self.cancel_requested():
                summary.cancelled = True
                return
            yield item

    def holds_lease(self) -> bool:
        """True while this owner still holds the job's lease (extends it)."""
        return self.heartbeat()

    def update_item(self, item_id: int, status: str, **kw) -> None:
        """Record an item's outcome, fenced; raises ``LeaseLost`` when refused."""
        from dsa110_contimg.store.queue import LeaseLost

        if not self.queue.update_item(item_id, status, owner=self.owner, **kw):
            raise LeaseLost(self.job_id, self.owner)

    def fence(self, conn) -> None:
        """Inside a write transaction on the products database: raise ``LeaseLost``
        (rolling the transaction back) unless this owner still holds the lease."""
        self.queue.fence(conn, self.job_id, owner=self.owner)


_DBS: dict[str, Any] = {}
_QUEUES: dict[tuple, Any] = {}


@dataclass
class JobSummary:
    """What an executor reports for one run of a job.

    ``done``/``failed``: items settled in this run; ``permanent``: every failure
    was permanent; ``error``: the first failure's reason; ``cancelled``: stopped
    because an operator cancelled the job; ``lease_lost``: stopped because
    another owner took the job (nothing more was written); ``durations``:
    seconds per item path; ``stages``: seconds per workflow stage summed over the
    items measured (open, noise, catalog, measure, qc, store, normalise,
    variability, ese), for the stage metrics.
    """

    done: int = 0
    failed: int = 0
    permanent: bool = True
    error: str | None = None
    cancelled: bool = False
    lease_lost: bool = False
    durations: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)

    def add_stages(self, seconds_by_stage) -> None:
        """Add one item's stage timings (seconds) to the totals."""
        for stage, seconds in (seconds_by_stage or {}).items():
            self.stages[stage] = self.stages.get(stage, 0.0) + float(seconds)

    def record_failure(self, reason: str, permanent: bool) -> None:
        self.failed += 1
        self.permanent = self.permanent and permanent
        self.error = self.error or reason

    @classmethod
    def coerce(cls, value) -> "JobSummary":
        """A summary from an executor's return value (a JobSummary or the former dict)."""
        if isinstance(value, JobSummary):
            return value
        if isinstance(value, dict):
            known = {k: value[k] for k in asdict(cls()) if k in value}
            return cls(**known)
        raise TypeError(f"an executor returned {type(value).__name__}, expected a JobSummary")

    def get(self, key, default=None):  # read like the former summary dict
        return getattr(self, key, default)


@runtime_checkable
class Executor(Protocol):
    """Runs one claimed job in a worker process.

    ``run`` must record each item through ``ctx.update_item`` (or its own
    transaction guarded by ``ctx.fence``), check ``ctx.cancel_requested()``
    between items, and return a :class:`JobSummary`. It may raise: the error
    is classified by :func:`classify_error` and fails the whole attempt.
    """

    name: str

    def run(self, ctx: JobContext) -> JobSummary: ...


class LegacyFunctionExecutor:
    """Adapter for a former ``module:function`` executor called as
    ``fn(products_db, registry_db, job_id, lease_owner, params, items, catalog_dir)``."""

    def __init__(self, fn, name: str):
        self.fn, self.name = fn, name

    def run(self, ctx: JobContext) -> JobSummary:
        return JobSummary.coerce(self.fn(ctx.products_db, ctx.registry_db, ctx.job_id, ctx.owner,
                                         ctx.params, [dict(i) for i in ctx.items], ctx.catalog_dir))


def normalise_executor_spec(spec: str) -> str:
    """The canonical form of an ``[daemon] executor`` value (legacy strings mapped)."""
    return LEGACY_ALIASES.get(spec, spec)


def load_executor(spec: str) -> Executor:
    """The executor named by ``spec``: a built-in name or ``package.module:attribute``.

    The attribute may be an executor instance, a class (instantiated without
    arguments), or a former-style function (wrapped). Raises ``ValueError``
    with the reason when it cannot be loaded.
    """
    spec = normalise_executor_spec(spec)
    target = BUILTIN_EXECUTORS.get(spec, spec)
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"executor {spec!r}: expected one of {sorted(BUILTIN_EXECUTORS)} "
                         "or 'package.module:attribute'")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"executor {spec!r} cannot be imported ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, type):
        obj = obj()
    if isinstance(obj, Executor):
        return obj
    if callable(obj):
        return LegacyFunctionExecutor(obj, spec)
    raise ValueError(f"executor {spec!r} is a {type(obj).__name__}, not an executor "
                     "(an object with name and run(ctx))")


# -- error classification ------------------------------------------------------------------
#: errno values of OSErrors that say "this input cannot be read", not "the system is unwell".
_INPUT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
                 errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO, errno.ENODEV}


def classify_error(exc: BaseException, *, memory_limit_mb: int | None = None) -> tuple[bool, str]:
    """``(permanent, reason)`` for an exception raised while running a job.

    Retried (environmental): lost lease, database errors (locked, connection
    lost), disk full and other I/O errors, network errors, time-outs, a missing
    external tool. Permanent (the input can never succeed): the typed image,
    catalogue and configuration errors, FITS verification errors, numeric
    overflow, a data size beyond the worker's memory limit, a file that is
    missing or unreadable for its permissions, and any other programming-level
    error (``ValueError``, ``TypeError``, ...) raised by the same input every time.
    """
    from dsa110_contimg.core.errors import (
        CatalogError, ConfigError, ExternalToolError, InvalidImage, OnlineCatalogError,
        PhotometryError, StoreError,
    )

    def text(e):
        return str(e) if isinstance(e, PhotometryError) else f"{type(e).__name__}: {e}"

    if isinstance(exc, OnlineCatalogError):
        return False, text(exc)
    if isinstance(exc, (InvalidImage, CatalogError, ConfigError)):
        return True, text(exc)
    if isinstance(exc, (StoreError, ExternalToolError)):
        return False, text(exc)
    try:
        from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError as PoolTimeout

        if isinstance(exc, (OperationalError, PoolTimeout)):
            return False, text(exc)
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return False, text(exc)
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        pass
    if isinstance(exc, MemoryError):
        limit = f" of {memory_limit_mb} MB" if memory_limit_mb else ""
        return True, (f"needs more memory than the worker limit{limit} (absurd image size or "
                      f"pixel scale?): {type(exc).__name__}: {exc}")
    if isinstance(exc, OverflowError):
        return True, f"numeric overflow (absurd header value?): {text(exc)}"
    if isinstance(exc, OSError):
        if exc.errno in _INPUT_ERRNOS:
            what = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else "cannot open"
            return True, f"{what}: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})".replace(" ()", "")
        return False, text(exc)          # disk full, EIO, stale NFS handle: environmental
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return False, text(exc)
    if type(exc).__name__ == "VerifyError":
        return True, f"FITS header fails verification: {exc}"
    if isinstance(exc, Exception):
        return True, text(exc)
    return False, text(exc)             # KeyboardInterrupt, SystemExit: never the input's fault


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the same input cannot succeed."""
    return classify_error(exc)[0]


# -- settling ----------------------------------------------------------------------------
def settle(queue, job_id: int, summary, *, owner: str | None = None) -> str:
    """Apply an executor's summary to the job. Returns the new state (``done``,
    ``failed``, ``pending``, ``dead``, ``cancelled``) or ``lease_lost``."""
    summary = JobSummary.coerce(summary)
    if summary.lease_lost:
        return "lease_lost"
    if summary.cancelled:
        return "cancelled" if queue.finish_cancelled(job_id, owner=owner) else "lease_lost"
    if summary.failed and not summary.permanent:
        return queue.fail(job_id, summary.error, retryable=True, owner=owner) or "lease_lost"
    if not queue.complete(job_id, owner=owner, error=summary.error):
        return "lease_lost"
    return (queue.get(job_id) or {}).get("status", "done")


def settle_error(queue, job_id: int, reason: str, *, permanent: bool, owner: str | None = None) -> str:
    """The attempt failed as a whole (executor raised, worker crashed or timed out)."""
    return queue.fail(job_id, reason, retryable=not permanent, owner=owner) or "lease_lost"


def run_claimed(queue, job, products_db: str, registry_db: str | None,
                catalog_dir: str | None = None, *, executor: Executor | str = "photometry") -> str:
    """Run a claimed job in this process with ``executor`` and settle it. Returns its state."""
    from dsa110_contimg.store.queue import LeaseLost

    ex = load_executor(executor) if isinstance(executor, str) else executor
    ctx = JobContext.from_claim(job, products_db=products_db, registry_db=registry_db,
                                catalog_dir=catalog_dir, lease_s=queue.lease_s)
    try:
        summary = ex.run(ctx)
    except LeaseLost:
        return "lease_lost"
    except Exception as exc:  # classified; the job records it
        permanent, reason = classify_error(exc)
        log.error("job_crashed", job_id=job.id, error=reason, permanent=permanent,
                  traceback=traceback.format_exc())
        return settle_error(queue, job.id, reason, permanent=permanent, owner=job.lease_owner)
    return settle(queue, job.id, summary, owner=job.lease_owner)
