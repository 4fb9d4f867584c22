"""Archive reprocessing on a Dask distributed cluster (``contimg-photometry reprocess``).

The work is split where the workflow splits (:meth:`PhotometryManager.measure_image`
/ :meth:`PhotometryManager.store_measured`):

* **Dask workers measure** (the pure part, no database): open the image, query the
  catalogue, noise maps, the estimator, the image-wide QC statistics. Each task
  returns a picklable :class:`~dsa110_contimg.pipeline.measure.MeasuredImage`.
* **The coordinator stores**, one transaction per image, in epoch order (MJD, then
  path): measurements, QC against the field's history, normalisation, running
  statistics, ESE candidates, the data-registry link. The light-curve maths
  (baselines over the first epochs, O(1) running sums) thus sees the archive in the
  order it was observed, and the result is the same as measuring the images one by
  one in that order in this process.

The service's own sources (new and blind, made by blind detection) are measured forward
as in process: a worker has no database, so when an image is written the coordinator
looks up the own sources that were first detected at an earlier epoch and lie on the
image (exactly those the in-process workflow would have measured, at the same weighted-mean
positions, since every earlier epoch is written by then) and measures them on a worker
(:func:`measure_forward_task`, forced photometry at those positions); the coordinator
stores those rows and recomputes the sources' statistics from their light curves
(:func:`~dsa110_contimg.pipeline.backfill.store_backfill`). That read also gives the
image its ``own_seen``, so that an own source a daemon on the same database makes after
it is measured in the image's store transaction (:mod:`dsa110_contimg.pipeline.inflight`).

Futures (``dask.distributed``, not DataFrames) are submitted in epoch order through a
bounded window (memory stays bounded for 100,000 images); results are collected in
batches as they complete and written as soon as every earlier epoch is written.

Re-running skips file versions already stored (same path and ``content_id``) unless
``force``; since every image is committed on its own, an interrupted run resumes
where it stopped. Per-image failures (bad files, worker crashes) are collected and
returned; the registry records them.

Clusters: :func:`open_client` starts a local cluster (processes, one thread each,
dashboard off, 127.0.0.1) or connects to an existing scheduler
(``tcp://host:port``); ``docs/reprocess-dask.md`` has the ``dask-jobqueue`` recipe for
SLURM sites.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import structlog

from dsa110_contimg.core.enums import is_fits_name
from dsa110_contimg.core.errors import ConfigError, PhotometryError
from dsa110_contimg.core.progress import ProgressBar as _ProgressBar
from dsa110_contimg.core.paths import db_path, printable

log = structlog.get_logger("dsa110_contimg.service.reprocess")

#: Futures in flight per Dask worker thread (bounds coordinator memory).
WINDOW_PER_WORKER = 4


# --------------------------------------------------------------------------- plan
@dataclass
class Task:
    """One image to reprocess (``mjd`` None when the header has no epoch)."""

    path: Path
    kind: str
    mjd: float | None

    @property
    def data_id(self) -> str:
        return printable(self.path.stem)   # a registry key: storable whatever the name's encoding


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class Plan:
    """What a run will do: ``tasks`` in epoch order, and what it leaves out and why."""

    tasks: list[Task]
    already_done: int = 0
    outside_dates: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Report:
    """Outcome of :func:`reprocess`."""

    planned: int
    done: int = 0
    failures: list[Failure] = field(default_factory=list)
    already_done: int = 0
    outside_dates: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def images_per_min(self) -> float:
        return 60.0 * self.done / self.seconds if self.seconds > 0 else 0.0


def parse_date(text: str, *, end_of_day: bool = False) -> float:
    """``--since``/``--until`` value -> MJD.

    Accepts an MJD (``60676`` or ``60676.25``), an ISO date (``2025-01-01``: its start,
    or with ``end_of_day`` its end, so ``--until`` includes that day) or an ISO time
    (``2025-01-01T06:00:00``, UTC). Raises ConfigError for anything else.
    """
    text = str(text).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        if len(text) == 10:
            day = _dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=_dt.timezone.utc)
            when = day + (_dt.timedelta(days=1) if end_of_day else _dt.timedelta(0))
        else:
            when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        raise ConfigError("date", text, "an MJD, an ISO date (2025-01-31) or an ISO time "
                          "(2025-01-31T06:00:00)") from None
    mjd_epoch = _dt.datetime(1858, 11, 17, tzinfo=_dt.timezone.utc)
    return (when - mjd_epoch).total_seconds() / 86400.0


def discover(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Science images under ``paths`` (folders, recursively, or files), and what was left out.

    Folders are filtered by :func:`~dsa110_contimg.service.classify.classify_name` like the
    daemon does (residuals, PSFs, models, BANE maps ... skipped; a restored image only
    without its primary-beam-corrected sibling). A file named explicitly is measured
    unless its name says it is not an image. A missing path is a ConfigError.
    """
    from dsa110_contimg.service.classify import classify_name, pb_sibling

    found: dict[Path, None] = {}
    skipped: list[tuple[str, str]] = []
    for p in paths:
        p = Path(p).expanduser()
        if not p.exists():
            raise ConfigError("PATH", str(p), "an existing image file or folder")
        candidates = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        for q in candidates:
            nc = classify_name(q)
            if not nc.measured:
                if p.is_file() or is_fits_name(q.name):
                    skipped.append((str(q), nc.reason))
                continue
            if nc.role == "restored" and pb_sibling(q) is not None:
                skipped.append((str(q), "restored image with a primary-beam-corrected sibling"))
                continue
            found[q.resolve()] = None
    return list(found), skipped


def _header_epoch_kind(path: Path, mosaic_dirs) -> tuple[float | None, str]:
    """(MJD, kind) from the primary header only (cheap); (None, 'image') if unreadable."""
    from astropy.io import fits

    from dsa110_contimg.science.image import RadioImage
    from dsa110_contimg.service.classify import file_kind

    try:
        header = fits.getheader(path)
    except Exception:  # noqa: BLE001 - the worker reports the real error with the reason
        return None, "image"
    return RadioImage._read_mjd(header), file_kind(path, header, mosaic_dirs)


def make_plan(files: list[Path], products_db, *, since_mjd: float | None = None,
              until_mjd: float | None = None, force: bool = False, mosaic_dirs=()) -> Plan:
    """Order ``files`` by epoch and drop those already stored or outside the dates.

    A file version is done when the products database has its path with the same
    ``content_id`` (size, mtime and header digest). With a date window, images without
    an epoch are left out (their date is unknown).
    """
    from dsa110_contimg.store.images import stored_content_ids
    from dsa110_contimg.store.products import content_id

    stored: dict[str, str] = {}
    if not force:
        with products_db.engine.connect() as conn:
            stored = stored_content_ids(conn)
            conn.rollback()
    plan = Plan(tasks=[])
    for path in files:
        cid = stored.get(db_path(path.resolve()))   # the images table holds the database form
        if cid is not None:
            st = path.stat()
            if cid.startswith(f"{st.st_size}:{st.st_mtime_ns}:") and cid == content_id(path):
                plan.already_done += 1
                continue
        mjd, kind = _header_epoch_kind(path, mosaic_dirs)
        if since_mjd is not None or until_mjd is not None:
            if mjd is None or (since_mjd is not None and mjd < since_mjd) or \
                    (until_mjd is not None and mjd > until_mjd):
                plan.outside_dates += 1
                continue
        plan.tasks.append(Task(path, kind, mjd))
    plan.tasks.sort(key=lambda t: (t.mjd is None, t.mjd if t.mjd is not None else 0.0, str(t.path)))
    return plan


# --------------------------------------------------------------------------- workers
#: Measure-only managers per worker process (catalogue stores are cached in them).
_MEASURERS: dict[str | None, Any] = {}


def measure_task(path: str, kind: str, config: dict, catalog_dir: str | None) -> tuple:
    """Run on a Dask worker: the pure part of the workflow for one image.

    Returns ``("ok", MeasuredImage)`` or ``("failed", reason)``; never raises for a bad
    image (the coordinator lists it).
    """
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.pipeline.manager import PhotometryManager

    try:
        manager = _MEASURERS.get(catalog_dir)
        if manager is None:
            manager = _MEASURERS[catalog_dir] = PhotometryManager(None, catalog_dir=catalog_dir)
        return "ok", manager.measure_image(Path(path), kind, PhotometryConfig.from_dict(config))
    except PhotometryError as exc:
        return "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - reported per image, the run goes on
        return "failed", f"{type(exc).__name__}: {exc}"


def measure_forward_task(path: str, config: dict, sources: list[dict]) -> tuple:
    """Run on a Dask worker: forced photometry of the service's own sources on one image
    (:func:`~dsa110_contimg.pipeline.backfill.measure_backfill`). Returns ``("ok", table)``
    or ``("failed", reason)``."""
    from dsa110_contimg.core.config import PhotometryConfig
    from dsa110_contimg.pipeline.backfill import measure_backfill

    try:
        return "ok", measure_backfill(path, PhotometryConfig.from_dict(config), sources)
    except PhotometryError as exc:
        return "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - reported per image, the run goes on
        return "failed", f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- clients
def open_client(scheduler: str | None = None, *, workers: int | None = None):
    """A ``distributed.Client``: on ``scheduler`` (``tcp://host:port``) or on a new local
    cluster of ``workers`` processes (one thread each, no dashboard, 127.0.0.1).

    Raises ConfigError (one line) when dask is not installed or the scheduler cannot be
    reached.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--scheduler", scheduler, "dask.distributed installed "
                          "(pip install 'dsa110-contimg-photometry[dask]')") from None
    import logging

    if scheduler:
        _check_reachable(scheduler)
        try:
            return Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerUnreachable(
                f"--scheduler {scheduler}: expected a reachable Dask scheduler address "
                f"tcp://host:port ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    n = max(1, int(workers or os.cpu_count() or 1))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           host="127.0.0.1", silence_logs=logging.ERROR)
    return Client(cluster)


class SchedulerUnreachable(PhotometryError):
    """The Dask scheduler named by ``--scheduler`` does not answer (an environmental
    failure, exit code 1; a malformed address is a usage error)."""


def _check_reachable(address: str) -> None:
    """Fail at once (one line) when a tcp:// scheduler refuses connections."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp":
        return      # tls://, ucx://, inproc://: left to distributed
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise ConfigError("--scheduler", address, "a Dask scheduler address tcp://host:port")
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise SchedulerUnreachable(f"--scheduler {address}: expected a reachable Dask scheduler "
                                   f"address tcp://host:port ({exc.strerror or exc})") from None


def close_client(client) -> None:
    """Close a client and, for a local cluster it started, the cluster."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


# --------------------------------------------------------------------------- coordinator
class ProgressBar(_ProgressBar):
    """``reprocess [#####.....] 12/40 images, 1 failed, 35.2 img/min`` on a terminal (stderr)."""

    def __init__(self, total: int, stream=None):
        super().__init__(total, "reprocess", unit="images", stream=stream, enabled=None if total > 0 else False)

    def update(self, done: int, failed: int) -> None:
        n = done + failed
        super().update(n, f"{failed} failed, {60.0 * n / max(self.elapsed_s, 1e-9):.1f} img/min")


def _default_window(client) -> int:
    """Futures in flight: ``WINDOW_PER_WORKER`` per worker thread of ``client``, at least 8."""
    threads = sum(client.nthreads().values()) or 1
    return max(8, WINDOW_PER_WORKER * threads)


def _outcomes(client, batch, futures: dict) -> list[tuple[int, tuple]]:
    """(task index, outcome) of the measurement futures of ``batch`` (``futures``: future
    -> task index; each one is removed from it and released). A task that raised or
    whose worker died gives ``("failed", reason)``."""
    batch = [f for f in batch if f in futures]
    done_ok = [f for f in batch if f.status == "finished"]
    gathered = client.gather(done_ok) if done_ok else []
    results = list(zip(done_ok, gathered))
    for f in batch:
        if f.status != "finished":
            exc = f.exception()
            results.append((f, ("failed", f"{type(exc).__name__}: {exc}")))
    indexed = []
    for f, outcome in results:
        indexed.append((futures.pop(f), outcome))
        f.release()
    return indexed


def reprocess(plan: Plan, manager, cfg, client, *, catalog_dir: str | None = None,
              window: int | None = None, progress: ProgressBar | None = None,
              on_stored: Callable[[Task, Any], None] | None = None) -> Report:
    """Measure ``plan.tasks`` on ``client``'s workers and store them in epoch order.

    Parameters
    ----------
    plan : Plan
        From :func:`make_plan` (tasks in epoch order).
    manager : PhotometryManager
        The coordinator's manager (products and registry databases).
    cfg : PhotometryConfig
        The workflow configuration (catalogue, method, normalisation, ESE ...).
    client : distributed.Client
    catalog_dir : str, optional
        Catalogue directory on the workers (shared filesystem) when ``cfg`` names none.
    window : int, optional
        Futures in flight (default ``WINDOW_PER_WORKER`` x worker threads, >= 8).
    progress : ProgressBar, optional
    on_stored : callable, optional
        Called with (task, PhotometryResult) after each image is committed (tests).

    Returns
    -------
    Report
    """
    from distributed import as_completed

    tasks = plan.tasks
    report = Report(planned=len(tasks), already_done=plan.already_done, outside_dates=plan.outside_dates)
    t0 = time.perf_counter()
    if window is None:
        window = _default_window(client)
    config = cfg.to_dict()
    catalog_dir = None if catalog_dir is None else str(catalog_dir)
    futures: dict[Any, int] = {}
    ready: dict[int, tuple] = {}
    next_submit = next_write = 0
    ac = as_completed([], with_results=False)
    forward = _Forward(client, ac, manager, cfg, report)

    def submit_more():
        nonlocal next_submit
        while next_submit < len(tasks) and next_submit < next_write + window:
            t = tasks[next_submit]
            fut = client.submit(measure_task, str(t.path), t.kind, config, catalog_dir, pure=False,
                                key=f"contimg-measure-{next_submit}-{os.getpid()}-{time.time_ns()}")
            futures[fut] = next_submit
            ac.add(fut)
            next_submit += 1

    def write_ready():
        nonlocal next_write
        while next_write in ready:
            outcome = ready.pop(next_write)
            gaps = forward.gaps(outcome)              # read before the image is stored
            result = _store_one(tasks[next_write], outcome, manager, cfg, report)
            if result is not None and gaps:
                forward.submit(outcome[1].path, gaps)
            next_write += 1
            if result is not None and on_stored is not None:
                on_stored(tasks[next_write - 1], result)
            if progress is not None:
                progress.update(report.done, len(report.failures))

    try:
        submit_more()
        for batch in ac.batches():
            forward.store_finished(batch)
            for index, outcome in _outcomes(client, batch, futures):
                ready[index] = outcome
            write_ready()
            submit_more()
        write_ready()
        forward.drain()                             # any submitted after the last batch
    except KeyboardInterrupt:
        report.interrupted = True
        for f in futures:
            f.cancel()
        forward.queue_rest()
    finally:
        report.seconds = time.perf_counter() - t0
        if progress is not None:
            progress.close()
    return report


class _Forward:
    """The own sources measured forward by a run (see the module's docstring): the futures
    of their measurements on the stored images, stored as they finish."""

    def __init__(self, client, ac, manager, cfg, report: Report):
        self.client, self.ac, self.manager, self.cfg, self.report = client, ac, manager, cfg, report
        self.config = cfg.to_dict()
        self.pending: dict[Any, tuple[str, list]] = {}    # future -> (stored path, sources)

    def gaps(self, outcome) -> list:
        """The own sources the measured image lacks (read before it is stored); the image's
        ``own_seen`` becomes the ids this read counts as seen, so that its store measures
        the own sources made after the read (by a daemon writing to the same database)."""
        from dsa110_contimg.pipeline.backfill import forward_gaps
        from dsa110_contimg.store.engine import read_connection

        if outcome[0] != "ok":
            return []
        with read_connection(self.manager.products.engine) as conn:
            gaps, seen = forward_gaps(conn, outcome[1])
        outcome[1].own_seen = seen
        return gaps if self.cfg.detect else []

    def submit(self, path: Path, sources: list) -> None:
        fut = self.client.submit(measure_forward_task, str(path), self.config, sources, pure=False,
                                 key=f"contimg-forward-{os.getpid()}-{time.time_ns()}")
        self.pending[fut] = (db_path(path.resolve()), sources)     # the images row's path
        self.ac.add(fut)

    def store_finished(self, batch) -> None:
        for f in [f for f in batch if f in self.pending]:
            self._store(f, *self.pending.pop(f))
            f.release()

    def drain(self) -> None:
        for f in list(self.pending):
            self.client.gather([f], errors="skip")
            self._store(f, *self.pending.pop(f))

    def queue_rest(self) -> None:
        """On an interruption: the forward measurements not stored yet become backfill jobs
        in the queue (one per image, run by the daemon or ``worker``), so that a resumed
        run, which skips the images already stored, loses none of them."""
        from dsa110_contimg.pipeline.backfill import BACKFILL_JOB
        from dsa110_contimg.store.engine import serialise_writes
        from dsa110_contimg.store.products import image_by_path
        from dsa110_contimg.store.queue import insert_job

        if not self.pending:
            return
        with self.manager.products.engine.begin() as conn:
            serialise_writes(conn)
            for fut, (path, sources) in self.pending.items():
                fut.cancel()
                image = image_by_path(conn, path)
                insert_job(conn, {"config": self.config, BACKFILL_JOB: sources},
                           [(path, image["kind"] if image else "image", None)], now=time.time(),
                           origin="reprocess", data_id=f"{BACKFILL_JOB}:" + ",".join(
                               str(int(s["id"])) for s in sources))
        log.warning("reprocess_forward_queued", images=len(self.pending))
        self.pending.clear()

    def _store(self, fut, path: str, sources: list) -> None:
        """Store a worker's measurement on the stored image ``path`` (one write
        transaction); a failure is listed with the image."""
        from dsa110_contimg.pipeline.backfill import store_backfill
        from dsa110_contimg.store.engine import serialise_writes

        try:
            outcome = fut.result() if fut.status == "finished" else ("failed", str(fut.exception()))
            if outcome[0] == "ok":
                with self.manager.products.engine.begin() as conn:
                    serialise_writes(conn)
                    store_backfill(conn, path, sources, outcome[1], self.cfg)
                return
            reason = outcome[1]
        except Exception as exc:  # noqa: BLE001 - listed at the end; the image itself is stored
            reason = str(exc) if isinstance(exc, PhotometryError) else f"{type(exc).__name__}: {exc}"
        reason = f"forward measurement of {len(sources)} own source(s): {reason}"
        self.report.failures.append(Failure(str(path), reason))
        log.error("reprocess_forward_failed", path=str(path), error=reason)


def _store_one(task: Task, outcome: tuple, manager, cfg, report: Report):
    """Store one image's measurement: its PhotometryResult, None when it failed."""
    path = task.path
    if outcome[0] != "ok":
        reason = outcome[1]
        report.failures.append(Failure(str(path), reason))
        if manager.registry is not None:
            manager._link(task.data_id, path, task.kind, "failed", None, error=reason)
        log.warning("reprocess_failed", path=str(path), error=reason)
        return None
    measured = outcome[1]
    try:
        result = manager.store_measured(measured, cfg, data_id=task.data_id)
    except Exception as exc:  # noqa: BLE001 - listed at the end; the image stays not done
        reason = str(exc) if isinstance(exc, PhotometryError) else f"{type(exc).__name__}: {exc}"
        report.failures.append(Failure(str(path), reason))
        if manager.registry is not None:
            manager._link(task.data_id, path, measured.kind, "failed", None, error=reason)
        log.error("reprocess_store_failed", path=str(path), error=reason)
        return None
    if manager.registry is not None:
        manager._link(task.data_id, path, measured.kind, "completed", None)
    report.done += 1
    return result
