"""A small supervised pool of spawned worker processes.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: one worker killed by
SIGKILL or the OOM killer breaks the whole executor (every running and pending
future fails with ``BrokenProcessPool``), and it has no per-task time limit.
Here every worker is a ``spawn``-ed :class:`multiprocessing.Process` with its
own pipe, and the parent supervises them:

* a worker that dies fails only the job it was running (outcome ``crashed``
  with the exit code) and is replaced;
* a job exceeding ``job_timeout_s`` has its worker killed (outcome ``timeout``);
* workers ignore SIGINT/SIGTERM (the daemon decides when to stop), drop
  ``NOTIFY_SOCKET``, run with one BLAS/OpenMP thread, and die with the parent
  (``PR_SET_PDEATHSIG``), so a SIGKILLed daemon leaves no orphan running jobs
  and the lease reaper can safely re-queue them.

* each worker runs under an address-space limit (``RLIMIT_AS``,
  ``memory_limit_mb``): an absurd header that asks for terabytes gets a
  ``MemoryError`` in that worker (a permanent failure of that file), not the
  host's OOM killer.

Only the parent talks to the pool. The work is done by an **executor**
(:class:`dsa110_contimg.service.runtime.Executor`) named by a spec string
(``"photometry"`` or ``"package.module:attribute"``), loaded in each worker; a job
is ``executor.run(payload)`` with a picklable payload (a
:class:`~dsa110_contimg.service.runtime.JobContext` for the daemon).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

#: Environment of worker processes: one thread per numeric library.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}
#: Back-off before re-spawning a worker that died before becoming ready (s): doubles per
#: consecutive death up to the cap, so a broken interpreter or import cannot spin the host.
RESPAWN_BACKOFF_S, RESPAWN_BACKOFF_CAP_S = 0.5, 30.0
#: Modules a worker imports before it reports ready (so the first job is not slowed down
#: by, or killed during, the numpy/astropy import).
WARM_IMPORTS = ("numpy", "astropy.io.fits", "astropy.wcs", "sqlalchemy",
                "dsa110_contimg.pipeline.manager")
_DROP_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass
class Outcome:
    """What happened to one submitted job.

    ``status``: ``ok`` (``result`` holds the task's return value), ``error``
    (the task raised: ``error`` is the reason, ``permanent`` whether retrying
    cannot help), ``crashed`` (the worker died: ``exitcode``, e.g. -9) or
    ``timeout`` (killed after the time limit).
    """

    job_id: int
    status: str
    result: Any = None
    error: str | None = None
    permanent: bool = False
    duration_s: float = 0.0
    exitcode: int | None = None


def resolve_task(spec: str):
    """The executor named by ``spec`` (raises ValueError with the reason)."""
    from dsa110_contimg.service.runtime import load_executor

    return load_executor(spec)


def set_memory_limit(limit_mb: int | None) -> None:
    """Cap this process's address space at ``limit_mb`` MiB (``RLIMIT_AS``; None/0: no cap)."""
    if not limit_mb:
        return
    import resource

    limit = int(limit_mb) * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _set_pdeathsig() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _classify(exc: BaseException, memory_limit_mb) -> tuple[bool, str]:
    try:
        from dsa110_contimg.service.runtime import classify_error
    except Exception:  # noqa: BLE001 - never lose the report over a broken import
        return False, f"{type(exc).__name__}: {exc}"
    return classify_error(exc, memory_limit_mb=memory_limit_mb)


def _worker_main(conn, task: str, parent_pid: int, memory_limit_mb: int | None = None) -> None:
    """The spawned child: load the executor, warm up, cap memory, serve jobs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for key in _DROP_ENV:
        os.environ.pop(key, None)
    os.environ.update(WORKER_ENV)
    _set_pdeathsig()
    if os.getppid() != parent_pid:  # parent died before prctl took effect
        os._exit(1)
    from dsa110_contimg.service.logging import configure_from_env

    configure_from_env()   # the daemon's log format (JSON lines) in this process too
    executor = resolve_task(task)
    for name in WARM_IMPORTS:  # pay the import cost before the first job, best effort
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken import surfaces in the job itself
            pass
    set_memory_limit(memory_limit_mb)   # after the imports: they map shared libraries
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, payload = msg
        t0 = time.perf_counter()
        try:
            result = executor.run(payload)
            reply = ("ok", job_id, result, None, False, time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, never swallowed
            permanent, reason = _classify(exc, memory_limit_mb)
            reply = ("error", job_id, traceback.format_exc(limit=20), reason, permanent,
                     time.perf_counter() - t0)
            del exc
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Slot:
    index: int
    process: Any = None
    conn: Any = None
    pid: int | None = None
    ready: bool = False
    job_id: int | None = None
    started: float = 0.0
    spawned_at: float = 0.0
    deaths_idle: int = field(default=0)
    respawn_at: float = 0.0     # > 0: no process; spawn again at this monotonic time


class WorkerPool:
    """Supervised spawned workers running an executor.

    Parameters
    ----------
    size : int
        Number of worker processes.
    task : str
        Executor spec (``"photometry"`` or ``"package.module:attribute"``);
        each job is ``executor.run(payload)``.
    job_timeout_s : float
        Wall-clock limit per job (s).
    memory_limit_mb : int, optional
        Address-space limit of each worker (MiB; None or 0: none).
    """

    def __init__(self, size: int, task: str, *, job_timeout_s: float = 1800.0,
                 memory_limit_mb: int | None = None):
        self.size = int(size)
        self.task = task
        self.job_timeout_s = float(job_timeout_s)
        self.memory_limit_mb = memory_limit_mb or None
        self.ctx = mp.get_context("spawn")
        self.slots = [_Slot(i) for i in range(self.size)]
        self.replaced = 0
        self.broken_reason: str | None = None

    # -- life cycle --------------------------------------------------------------
    def start(self) -> None:
        for key, value in WORKER_ENV.items():  # inherited at spawn, before numpy loads
            os.environ.setdefault(key, value)
        for slot in self.slots:
            self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        saved = {k: os.environ.pop(k) for k in _DROP_ENV if k in os.environ}
        try:
            proc = self.ctx.Process(target=_worker_main, args=(child, self.task, os.getpid(), self.memory_limit_mb),
                                    name=f"contimg-worker-{slot.index}", daemon=True)
            proc.start()
        finally:
            os.environ.update(saved)
        child.close()
        slot.process, slot.conn, slot.pid = proc, parent, proc.pid
        slot.ready, slot.job_id = False, None
        slot.spawned_at = time.monotonic()

    def _retire(self, slot: _Slot) -> None:
        """Close a slot's pipe and reap its process (killed if alive); the slot is empty."""
        try:
            slot.conn.close()
        except OSError:
            pass
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(5)
        slot.process, slot.conn, slot.pid, slot.ready = None, None, None, False

    def _replace(self, slot: _Slot) -> None:
        self._retire(slot)
        self.replaced += 1
        self._spawn(slot)

    def shutdown(self, *, kill: bool = False, timeout: float = 5.0) -> None:
        """Stop every worker: politely (idle ones exit) or by SIGKILL."""
        for slot in self.slots:
            if slot.process is None:
                continue
            if kill or slot.job_id is not None:
                slot.process.kill()
            else:
                try:
                    slot.conn.send(None)
                except OSError:
                    slot.process.kill()
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            if slot.process is None:
                continue
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(1)
            try:
                slot.conn.close()
            except OSError:
                pass

    # -- jobs ----------------------------------------------------------------------
    def idle(self) -> int:
        """Workers ready (warm) and without a job."""
        return sum(1 for s in self.slots if s.job_id is None and s.process is not None and s.ready)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until every worker is warm (or ``timeout``); True when all are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.ready for s in self.slots):
                return True
            for outcome in self.poll(0.1):  # no jobs are running here: nothing is lost
                raise RuntimeError(f"unexpected outcome while waiting: {outcome}")
        return False

    def running(self) -> dict[int, float]:
        """``{job_id: seconds running}``."""
        now = time.monotonic()
        return {s.job_id: now - s.started for s in self.slots if s.job_id is not None}

    def worker_pids(self) -> list[int]:
        return [s.pid for s in self.slots if s.pid is not None]

    def submit(self, job_id: int, payload) -> None:
        """Hand a job (``executor.run(payload)``) to an idle worker (RuntimeError when none is idle)."""
        free = [s for s in self.slots if s.job_id is None and s.process is not None]
        for slot in sorted(free, key=lambda s: not s.ready):  # warm workers first
            slot.job_id, slot.started = job_id, time.monotonic()
            try:
                slot.conn.send((job_id, payload))
            except OSError:
                pass  # the worker is dead; poll() reports the crash
            return
        raise RuntimeError("no idle worker")

    def poll(self, timeout: float = 0.2) -> list[Outcome]:
        """Wait up to ``timeout`` s for results, crashes and time-outs."""
        waitables = []
        for s in self.slots:
            if s.process is not None:
                waitables.append(s.conn)
                waitables.append(s.process.sentinel)
        try:
            multiprocessing.connection.wait(waitables, timeout)
        except OSError:
            pass
        outcomes: list[Outcome] = []
        now = time.monotonic()
        for slot in self.slots:
            outcomes.extend(self._check(slot, now))
        return outcomes

    def _check(self, slot: _Slot, now: float) -> list[Outcome]:
        out: list[Outcome] = []
        if slot.process is None:   # backing off after deaths before ready
            if slot.respawn_at and now >= slot.respawn_at:
                slot.respawn_at = 0.0
                self._spawn(slot)
            return out
        try:
            while slot.conn.poll():
                msg = slot.conn.recv()
                if msg[0] == "ready":
                    slot.ready = True
                    slot.deaths_idle = 0
                    continue
                status, job_id, payload, reason, permanent, dt = msg
                if job_id == slot.job_id:
                    slot.job_id = None
                if status == "ok":
                    out.append(Outcome(job_id, "ok", result=payload, duration_s=dt))
                else:
                    out.append(Outcome(job_id, "error", result=payload, error=reason,
                                       permanent=bool(permanent), duration_s=dt))
        except (EOFError, OSError):
            pass
        if not slot.process.is_alive():
            code = slot.process.exitcode
            if slot.job_id is not None:
                out.append(Outcome(slot.job_id, "crashed", exitcode=code,
                                   error=f"worker process died (exit code {code}"
                                         f"{', signal ' + signal.Signals(-code).name if code and code < 0 else ''})",
                                   duration_s=now - slot.started))
            elif not slot.ready:
                slot.deaths_idle += 1
                if slot.deaths_idle >= 5:
                    self.broken_reason = (f"worker {slot.index} died {slot.deaths_idle} times before "
                                          f"becoming ready (exit code {code}); task {self.task!r}")
            deaths = slot.deaths_idle
            if deaths and slot.job_id is None and not slot.ready:
                self._retire(slot)   # re-spawned by a later poll, after the back-off
                slot.respawn_at = now + min(RESPAWN_BACKOFF_CAP_S,
                                            RESPAWN_BACKOFF_S * 2 ** (deaths - 1))
            else:
                self._replace(slot)
            slot.deaths_idle = deaths
        elif slot.job_id is not None and now - slot.started > self.job_timeout_s:
            out.append(Outcome(slot.job_id, "timeout", duration_s=now - slot.started,
                               error=f"job exceeded the time limit of {self.job_timeout_s:g} s; "
                                     "worker killed"))
            self._replace(slot)
        return out

    def healthy(self) -> bool:
        """False when workers keep dying before they are ready (broken task/import)."""
        return self.broken_reason is None
