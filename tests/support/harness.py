"""Test harness for the daemon (tests only, not shipped).

:class:`Service` (a daemon configured in a temporary directory and run as a real
subprocess, with the fake executor of ``tests/support/fakes.py`` by default),
:class:`NotifySocket` (a stand-in for systemd's notify socket), :func:`fits_bytes` /
:func:`drop` (tiny images, written in place or renamed into place).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from dsa110_contimg.service.config import render_config


# -- test harness ----------------------------------------------------------------------
FAKE = "fakes:FakePhotometryExecutor"
#: The tests directory: put on the daemon's PYTHONPATH so it can load ``fakes``.
TESTS_DIR = Path(__file__).resolve().parent


def fits_bytes(seed: int = 0, n: int = 16, *, mosaic: bool = False) -> bytes:
    """A tiny complete FITS image (2-D, with a beam unless ``mosaic``)."""
    import numpy as np
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    data = rng.normal(0, 1e-3, (n, n)).astype(np.float32)
    data[n // 2, n // 2] = 0.1 + seed * 1e-6
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---SIN", "DEC--SIN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 37.0
    h["CDELT1"], h["CDELT2"] = -3 / 3600, 3 / 3600
    h["CRPIX1"] = h["CRPIX2"] = n / 2
    h["BUNIT"] = "Jy/beam"
    if mosaic:
        h["NIMAGES"] = 5
    else:
        h["BMAJ"], h["BMIN"], h["BPA"] = 15 / 3600, 10 / 3600, 0.0
    h["SEED"] = seed
    buf = io.BytesIO()
    fits.PrimaryHDU(data, h).writeto(buf)
    return buf.getvalue()


def drop(path: Path, seed: int = 0, *, how: str = "rename", **kw) -> Path:
    """Write an image: ``rename`` (hidden temp file + rename, the producer contract)
    or ``inplace`` (open, write, close)."""
    path = Path(path)
    data = fits_bytes(seed, **kw)
    if how == "rename":
        tmp = path.with_name("." + path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    else:
        path.write_bytes(data)
    return path


class Service:
    """A daemon configured in ``root`` (images/, mosaics/, state/, out/)."""

    def __init__(self, root: Path, *, workers: int = 2, photometry: dict | None = None,
                 products_db: str | None = None, registry_db: str | None = None,
                 images: Path | None = None, alerts: dict | None = None, **daemon):
        self.root = Path(root)
        self.images = Path(images) if images is not None else self.root / "images"
        self.mosaics = self.root / "mosaics"
        self.state = self.root / "state"
        self.out = self.root / "out"
        for d in (self.images, self.mosaics, self.state, self.out):
            d.mkdir(parents=True, exist_ok=True)
        self.db_path = self.state / "products.sqlite3"
        #: SQLAlchemy URL of a server database (PostgreSQL), else None (SQLite at db_path)
        self.db_url = products_db if products_db and "://" in str(products_db) else None
        self.backend = "sqlite" if self.db_url is None else "postgresql"
        self._engine = None
        paths = {"image_dirs": [str(self.images)]}
        if products_db:
            paths["products_db"] = str(products_db)
        if registry_db:
            paths["registry_db"] = str(registry_db)
        settings = {"workers": workers, "executor": FAKE, "settle_s": 1.0, "recheck_interval_s": 0.2,
                    "pbcor_wait_s": 1.0, "lease_s": 30.0, "reap_interval_s": 1.0,
                    "heartbeat_interval_s": 0.5, "drain_timeout_s": 5.0, "backoff_base_s": 0.2,
                    "backoff_cap_s": 1.0, "rescan_interval_s": 60.0, "stale_after_s": 5.0}
        settings.update(daemon)
        self.config = self.root / "photometry.toml"
        self.config.write_text(render_config(self.root, photometry=photometry, daemon=settings,
                                             logging={"format": "json", "level": "info"},
                                             paths=paths, alerts=alerts))
        self.procs: list[subprocess.Popen] = []
        self.n_started = 0

    # -- processes ----------------------------------------------------------------
    def env(self, **extra) -> dict:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env["CONTIMG_FAKE_OUT"] = str(self.out)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH")) if p)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start(self, *, wait: bool = True, node: str | None = None, python: list[str] | None = None,
              entry: str | None = None, **env) -> subprocess.Popen:
        """Start a daemon (``node``: ``run --node``, a second instance on purpose; ``python``:
        the command running the interpreter, default ``[sys.executable]``, e.g. ``setpriv ...
        python3`` to drop privileges; ``entry``: a test-only entry script of tests/support
        instead of the installed CLI, e.g. ``faulty_daemon``)."""
        self.n_started += 1
        log = open(self.root / f"daemon{self.n_started}.log", "wb")
        program = ["-m", "dsa110_contimg.cli.main"] if entry is None else [str(TESTS_DIR / f"{entry}.py")]
        argv = list(python or [sys.executable]) + program + ["run", "--config", str(self.config)]
        if node is not None:
            argv += ["--node", node]
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(**env))
        p.logfile = self.root / f"daemon{self.n_started}.log"
        self.procs.append(p)
        if wait:
            self.wait_ready(p)
        return p

    def wait_ready(self, p, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise AssertionError(f"daemon exited {p.returncode}:\n{p.logfile.read_text()[-3000:]}")
            if '"event": "ready"' in p.logfile.read_text():
                return
            time.sleep(0.1)
        raise AssertionError("daemon not ready in time:\n" + p.logfile.read_text()[-3000:])

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    # -- database --------------------------------------------------------------------
    def sql(self, query: str, *args):
        if self.db_url is not None:          # PostgreSQL: same '?' placeholders
            import sqlalchemy as sa

            if self._engine is None:
                self._engine = sa.create_engine(self.db_url, poolclass=sa.pool.NullPool)
            with self._engine.connect() as conn:
                return [tuple(r) for r in conn.exec_driver_sql(query.replace("?", "%s"), tuple(args))]
        if not self.db_path.exists():
            return []
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(query, args).fetchall()
        finally:
            con.close()

    def job_states(self) -> dict[str, int]:
        return dict(self.sql("SELECT status, count(*) FROM batch_jobs GROUP BY status"))

    def jobs_by_path(self) -> dict[str, list[tuple]]:
        out: dict[str, list[tuple]] = {}
        for path, jid, status, attempts, error in self.sql(
                "SELECT i.fits_path, j.id, j.status, j.attempts, j.error FROM batch_jobs j "
                "JOIN batch_job_items i ON i.batch_id = j.id ORDER BY j.id"):
            out.setdefault(path, []).append((jid, status, attempts, error))
        return out

    def executions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        f = self.out / "executions.log"
        if f.exists():
            for line in f.read_text().splitlines():
                _, path, _ = line.split(" ")
                counts[path] = counts.get(path, 0) + 1
        return counts

    def wait_for(self, pred, timeout: float = 60.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = pred()
            except sqlite3.OperationalError:
                last = None
            except Exception as exc:  # PostgreSQL: schema not created yet by the daemon
                if "UndefinedTable" not in type(getattr(exc, "orig", exc)).__name__:
                    raise
                last = None
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; states={self.job_states()}; "
                             f"logs: {[p.logfile.read_text()[-2000:] for p in self.procs[-1:]]}")

    def idle_with(self, n_jobs: int):
        """Predicate: at least ``n_jobs`` jobs exist and none is pending or running."""
        def pred():
            s = self.job_states()
            return sum(s.values()) >= n_jobs and not s.get("pending") and not s.get("running")
        return pred


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, needle: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.messages:
                if needle in m.split("\n"):
                    return t
            self.pump(0.2)
        raise AssertionError(f"{needle!r} not received; got {[m for _, m in self.messages][-5:]}")

    def times(self, needle: str) -> list[float]:
        return [t for t, m in self.messages if needle in m.split("\n")]

    def close(self):
        self.sock.close()


def kill_quiet(p: subprocess.Popen, sig=signal.SIGKILL) -> None:
    if p.poll() is None:
        p.send_signal(sig)
