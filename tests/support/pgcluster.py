"""A throw-away PostgreSQL cluster owned by the test session (no external server).

:class:`PostgresCluster` runs ``initdb`` + ``pg_ctl`` (binaries from ``PATH`` or
``/usr/lib/postgresql/*/bin``) in a temporary directory, listening on 127.0.0.1 on a
free port, with its unix socket inside that directory. ``initdb`` refuses to run as
root, so under root (CI) the server runs as the unprivileged ``postgres`` system user
created by Debian's package (``nobody`` otherwise). Host connections use SCRAM
passwords, so the tests exercise real credentials.

Per test, :meth:`PostgresCluster.new_database` copies a pre-migrated template
(``CREATE DATABASE ... TEMPLATE``: a file copy, milliseconds) and returns its URL;
:meth:`PostgresCluster.copy_database` copies any database of the cluster the same way.

``CONTIMG_SKIP_POSTGRES=1`` (a developer machine without PostgreSQL) skips the
PostgreSQL variants explicitly; otherwise a server that cannot start fails the tests
loudly. Nothing here skips silently.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SKIP_ENV = "CONTIMG_SKIP_POSTGRES"
#: The database backends store, queue, workflow and daemon tests run on.
BACKENDS = ("sqlite", "postgresql")
USER = "contimg"
PASSWORD = "pw-For-Tests-0nly"


def find_pg_bin(name: str = "initdb") -> Path:
    """Directory holding ``initdb``/``pg_ctl``; raises RuntimeError with what was searched."""
    found = shutil.which(name)
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    raise RuntimeError(f"PostgreSQL's {name} not found on PATH nor in /usr/lib/postgresql/*/bin "
                       "(run scripts/test-setup.sh, or set CONTIMG_SKIP_POSTGRES=1 to skip the "
                       "PostgreSQL variants on a developer machine)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """A running throw-away cluster (see the module docstring)."""

    def __init__(self):
        self.bin = find_pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="contimg-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.port = free_port()
        self._names = itertools.count()
        self._run_as = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self._run_as = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            if self._run_as is None:
                raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")
        self.sockets.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._run_as is not None:
            for p in (self.root, self.sockets, pwfile):
                os.chown(p, self._run_as.pw_uid, self._run_as.pw_gid)
        self._pg("initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile), "-E", "UTF8",
                 "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
        opts = (f"-h 127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=400 "
                "-c shared_buffers=32MB")
        self._pg("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"),
                 "-w", "-t", "120", "start")
        self.admin_url = self.url("postgres")
        self._make_templates()

    # -- processes ------------------------------------------------------------------
    def _pg(self, tool: str, *args: str) -> None:
        kw = {}
        if self._run_as is not None:
            kw = dict(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        proc = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True,
                              cwd=self.root, **kw)
        if proc.returncode:
            log = self.root / "server.log"
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
                               + (f"\nserver.log: {log.read_text()[-2000:]}" if log.exists() else ""))

    def stop(self) -> None:
        try:
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases -----------------------------------------------------------------
    def url(self, dbname: str, *, password: bool = True) -> str:
        auth = f"{USER}:{PASSWORD}" if password else USER
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    def _make_templates(self) -> None:
        from dsa110_contimg.store.engine import open_products_db, open_registry_db

        for which, opener in (("products", open_products_db), ("registry", open_registry_db)):
            self._admin(f"CREATE DATABASE tpl_{which}")
            opener(self.url(f"tpl_{which}")).dispose()

    def new_database(self, which: str = "products", *, migrated: bool = True) -> str:
        """A fresh database (a copy of the migrated ``which`` template, or empty); its URL."""
        return self._create(f"tpl_{which}" if migrated else "template0")

    def copy_database(self, url: str) -> str:
        """A fresh database copied from the database at ``url`` (no session may be connected
        to it); its URL."""
        return self._create(url.rsplit("/", 1)[1])

    def _create(self, template: str) -> str:
        name = f"t{os.getpid()}_{next(self._names)}"
        deadline = time.monotonic() + 30
        while True:
            try:
                self._admin(f"CREATE DATABASE {name} TEMPLATE {template}")
                return self.url(name)
            except Exception as exc:  # noqa: BLE001 - template briefly busy: retry
                if "being accessed" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        try:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except Exception:  # noqa: BLE001 - best effort; the cluster is thrown away anyway
            pass
