"""Test executors (never shipped): a fast stand-in for the photometry executor, fault hooks
and self-killing workers. Loaded by spawned workers as ``fakes:<Name>`` (``tests/`` is on
their ``PYTHONPATH``; see ``harness.Service``).

:class:`FakePhotometryExecutor` has the contract of
:class:`dsa110_contimg.service.executors.PhotometryExecutor` (fenced item writes through the
job context, a :class:`JobSummary`), but instead of the photometry workflow it

* checks the file (:func:`check_fits_complete`) and reads its data with astropy, raising
  the typed :class:`InvalidImage` errors on damage (permanent failures);
* upserts one ``images`` row per path in a transaction fenced on the lease (the "result",
  idempotent like the real workflow) and appends ``job_id path pid`` to
  ``$CONTIMG_FAKE_OUT/executions.log`` so tests can count executions;
* sleeps ``$CONTIMG_FAKE_SLEEP_S`` seconds (default 0) before storing;
* with ``$CONTIMG_FAKE_REGISTRY`` set, opens (and migrates) the data registry once per
  worker as the photometry workflow does, and links each image there (``data_id`` = its
  path, status ``completed``);
* fault hooks by file name: ``SELFKILL`` SIGKILLs the worker (OOM stand-in), ``SLEEPY``
  sleeps 3600 s (time limits), ``SLOW`` sleeps ``$CONTIMG_FAKE_SLOW_S`` (default 5 s;
  daemon-kill tests), ``WAITFAIL`` writes ``$CONTIMG_FAKE_OUT/<name>.started``, waits for
  ``$CONTIMG_FAKE_OUT/<name>.release`` and then fails with a retryable error (disk full)
  without looking at the cancel flag (cancel tests); ``ALERT`` records an ``ese_candidate``
  alert in the outbox in the same transaction as the image row (alert delivery tests).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

from dsa110_contimg.service.runtime import JobContext, JobSummary


class FakePhotometryExecutor:
    name = "fake-photometry"

    def run(self, ctx: JobContext) -> JobSummary:
        import numpy as np
        import sqlalchemy as sa
        from astropy.io import fits

        from dsa110_contimg.core.errors import CorruptImage, InvalidImage
        from dsa110_contimg.service.intake import check_fits_complete, fs_path
        from dsa110_contimg.store.alerts import AlertEvent, record_alerts
        from dsa110_contimg.store.schema import images

        db = ctx.queue.db
        summary = JobSummary()
        sleep_s = float(os.environ.get("CONTIMG_FAKE_SLEEP_S", "0"))
        out_dir = os.environ.get("CONTIMG_FAKE_OUT")
        for item in ctx.todo(summary):
            path = item["fits_path"]
            fpath = fs_path(path)      # the stored name may be fsb64: (not UTF-8)
            t0 = time.perf_counter()
            name = Path(fpath).name
            if "SELFKILL" in name:
                os.kill(os.getpid(), signal.SIGKILL)
            if "SLEEPY" in name:
                time.sleep(3600)
            if "SLOW" in name:
                time.sleep(float(os.environ.get("CONTIMG_FAKE_SLOW_S", "5")))
            if "WAITFAIL" in name and out_dir:
                Path(out_dir, name + ".started").write_text(str(os.getpid()))
                while not Path(out_dir, name + ".release").exists():
                    time.sleep(0.1)
                reason = "OSError: [Errno 28] No space left on device (injected)"
                ctx.update_item(item["id"], "pending", error=reason)
                summary.record_failure(reason, permanent=False)
                continue
            try:
                check_fits_complete(fpath)
                try:
                    with fits.open(fpath, memmap=False) as hdul:
                        data = hdul[0].data
                        if data is None:
                            raise CorruptImage("primary HDU holds no data", path)
                        peak = float(np.nanmax(data))
                except InvalidImage:
                    raise
                except Exception as exc:  # astropy errors -> typed
                    raise CorruptImage(f"unreadable FITS data ({type(exc).__name__}: {exc})",
                                       path) from None
            except InvalidImage as exc:
                ctx.update_item(item["id"], "failed", error=exc.reason)
                summary.record_failure(str(exc), permanent=True)
                continue
            t_open = time.perf_counter() - t0
            if sleep_s:
                time.sleep(sleep_s)
            t_store = time.perf_counter()
            now = time.time()
            st = os.stat(fpath)
            with db.engine.begin() as conn:
                ctx.fence(conn)
                values = dict(content_id=f"{st.st_size}:{st.st_mtime_ns}", kind=item["kind"],
                              method="peak", catalog="nvss", n_sources=0, n_success=0,
                              median_rms_jyb=peak, measured_at=now)
                n = conn.execute(images.update().where(images.c.path == path).values(**values)).rowcount
                if not n:
                    image_id = conn.execute(images.insert().values(path=path, **values)
                                            .returning(images.c.id)).scalar_one()
                else:
                    image_id = conn.execute(sa.select(images.c.id).where(images.c.path == path)).scalar_one()
                if "ALERT" in name:   # a producer's event, recorded in the result's transaction
                    record_alerts(conn, [AlertEvent("ese_candidate", None, f"fake-{path}",
                                                    image_id=int(image_id), significance=6.0,
                                                    fields={"source_name": name, "flux_mjy": peak * 1e3})])
            if out_dir:
                with open(os.path.join(out_dir, "executions.log"), "a") as fh:
                    fh.write(f"{ctx.job_id} {path} {os.getpid()}\n")
            if os.environ.get("CONTIMG_FAKE_REGISTRY") and ctx.registry_db:
                from dsa110_contimg.store import registry

                registry.link(_registry(ctx.registry_db), path, data_type=item["kind"], path=path,
                              photometry_status="completed", job_id=ctx.job_id)
            ctx.update_item(item["id"], "done", image_id=int(image_id), n_measurements=1)
            summary.done += 1
            summary.durations[path] = time.perf_counter() - t0
            summary.add_stages({"open": t_open, "store": time.perf_counter() - t_store})
        return summary


_REGISTRIES: dict = {}


def _registry(url: str):
    """The registry database of this worker process, opened (migrated) on first use."""
    if url not in _REGISTRIES:
        from dsa110_contimg.store.engine import open_registry_db

        _REGISTRIES[url] = open_registry_db(url)
    return _REGISTRIES[url]


# -- watcher fault (installed by tests/support/faulty_daemon.py) --------------------------
class InjectedDeath(BaseException):
    """Raised by the handler fault to kill the observer's dispatcher thread."""


def handler_fault():
    """A file named ``RAISE-IN-HANDLER*.fits`` raises an ordinary exception in the event
    handler (must be survived); ``KILL-WATCHER*.fits`` raises a BaseException that kills the
    dispatcher thread (must be detected)."""

    def fault(event):
        name = os.path.basename(os.fsdecode(getattr(event, "dest_path", "") or event.src_path))
        if name.startswith("RAISE-IN-HANDLER"):
            raise RuntimeError("injected handler error")
        if name.startswith("KILL-WATCHER"):
            raise InjectedDeath("injected dispatcher death")

    return fault


# -- pool test executors (payloads are plain tuples) --------------------------------------
class SleepExecutor:
    """``(seconds, value)``: sleep, return ``value``."""

    name = "sleep"

    def run(self, payload):
        seconds, *value = payload
        time.sleep(seconds)
        return value[0] if value else None


class RaiseExecutor:
    """``(kind, reason)``: raise a typical error of that kind."""

    name = "raise"

    def run(self, payload):
        kind, reason = payload
        from dsa110_contimg.core.errors import InvalidImage

        if kind == "invalid":
            raise InvalidImage(reason, "/nowhere.fits")
        if kind == "nospace":
            raise OSError(errno.ENOSPC, f"No space left on device ({reason})")
        if kind == "permission":
            raise PermissionError(errno.EACCES, "Permission denied", "/data/secret.fits")
        if kind == "verify":
            from astropy.io.fits.verify import VerifyError

            raise VerifyError(reason)
        if kind == "overflow":
            raise OverflowError(reason)
        if kind == "dblocked":
            from sqlalchemy.exc import OperationalError

            raise OperationalError("UPDATE x", {}, Exception("database is locked"))
        raise RuntimeError(reason)


class SelfKillExecutor:
    """The worker SIGKILLs itself (OOM-killer stand-in)."""

    name = "selfkill"

    def run(self, payload):
        os.kill(os.getpid(), signal.SIGKILL)


class EnvExecutor:
    """The worker's view of some environment variables and signal handlers."""

    name = "env"

    def run(self, names):
        return ({n: os.environ.get(n) for n in names},
                signal.getsignal(signal.SIGTERM) == signal.SIG_IGN,
                signal.getsignal(signal.SIGINT) == signal.SIG_IGN)


class AllocateExecutor:
    """``mib``: allocate and touch that many MiB; return the worker's RLIMIT_AS."""

    name = "allocate"

    def run(self, mib):
        import resource

        import numpy as np

        block = np.ones(int(mib) * 1024 * 1024 // 8)
        return float(block.sum()), resource.getrlimit(resource.RLIMIT_AS)[0]


def legacy_function(products_db, registry_db, job_id, lease_owner, params, items, catalog_dir=None):
    """A former-style 7-argument executor function (back-compat of ``[daemon] executor``)."""
    return {"done": len(items), "failed": 0, "permanent": True, "error": None, "cancelled": False,
            "durations": {}, "seen": [job_id, lease_owner]}
