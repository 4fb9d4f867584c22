"""Consistent copies of the databases while the daemon runs (``contimg-photometry db backup``).

SQLite (:func:`backup_sqlite`)
    SQLite's online backup API copies every page in one step inside one read
    transaction: in WAL mode that is a snapshot of the last commit before it began, taken
    without blocking the daemon's writers. The copy is written beside its destination,
    switched to a rollback journal (one self-contained file, no ``-wal`` to carry along)
    and renamed into place only when complete.
PostgreSQL (:func:`backup_postgres`)
    ``pg_dump --format=custom`` (a snapshot in one transaction, the daemons keep
    writing), its password passed in the environment, never on the command line; the
    dump is then checked by ``pg_restore --list`` for this history's tables. Restore
    with ``pg_restore --clean --if-exists --dbname URL FILE``.
"""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from dsa110_contimg.core.errors import StoreError
from dsa110_contimg.store.migrate import MARKER_TABLES, VERSION_TABLES
from dsa110_contimg.store.urls import mask_url

#: How long ``pg_dump`` may take (s) before the backup is abandoned.
PG_DUMP_TIMEOUT_S = 24 * 3600.0


def backup_sqlite(source: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the SQLite database ``source`` to ``dest`` (see the module docstring)."""
    source, dest = Path(source), Path(dest)
    if not source.is_file():
        raise StoreError("database does not exist", source)
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)                     # all pages, one step, one read transaction
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"backup failed: {exc}", source) from None
    finally:
        src.close()
    os.replace(partial, dest)
    return dest


def find_pg_tool(name: str) -> str:
    """``pg_dump`` / ``pg_restore``: on ``PATH``, else the newest Debian server package's."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if candidates:
        return candidates[-1]
    raise StoreError(f"{name} not found (install the PostgreSQL client tools, e.g. the Debian "
                     "package postgresql-client, or run it yourself as the README says)")


def _libpq(url: str) -> tuple[str, dict]:
    """A libpq connection string without the password, and the environment carrying it."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    plain = u.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def backup_postgres(url: str, dest: str | os.PathLike, histories=("products",)) -> Path:
    """``pg_dump`` the database of ``url`` to ``dest`` and check the dump holds the tables
    and version table of each history in ``histories``."""
    dest = Path(dest)
    partial = dest.with_name(f".{dest.name}.partial")
    target, env = _libpq(url)
    cmd = [find_pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={partial}", target]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=PG_DUMP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise StoreError(f"pg_dump did not finish in {PG_DUMP_TIMEOUT_S:.0f} s", mask_url(url)) from None
    if proc.returncode:
        partial.unlink(missing_ok=True)
        raise StoreError(f"pg_dump failed: {' '.join(proc.stderr.split())[:300]}", mask_url(url))
    missing = _dump_lacks(partial, histories)
    if missing:
        partial.unlink(missing_ok=True)
        raise StoreError(f"the dump lacks {', '.join(missing)}: not a database of this service?",
                         mask_url(url))
    os.replace(partial, dest)
    return dest


def _dump_lacks(dump: Path, histories) -> list[str]:
    """The tables of ``histories`` (marker and version tables) not listed in the dump."""
    proc = subprocess.run([find_pg_tool("pg_restore"), "--list", str(dump)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode:
        return [f"a readable table of contents ({' '.join(proc.stderr.split())[:200]})"]
    listed = proc.stdout
    wanted = [t for h in histories for t in (MARKER_TABLES[h], VERSION_TABLES[h])]
    return [t for t in wanted if f"TABLE DATA public {t} " not in listed]
