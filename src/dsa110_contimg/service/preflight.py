"""Start-up check of the folders the daemon needs, all at once and immediately.

:func:`check_folders` looks at every configured folder before anything starts and
raises one :class:`PreflightError` naming *every* problem (missing watched
directory, a directory that cannot be read, a state directory or database folder
that cannot be written, e.g. outside the systemd unit's ``ReadWritePaths``), rather
than failing on the first one after retries. A missing catalogue directory is only
reported as a warning (jobs then fail with the reason; the fake executor of the
tests needs none).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dsa110_contimg.core.errors import ConfigError


class PreflightError(ConfigError):
    """One or more configured folders are missing or not usable."""

    def __init__(self, problems: list[str], source=None):
        from dsa110_contimg.core.errors import PhotometryError

        self.problems = list(problems)
        self.field, self.value, self.allowed = "paths", list(problems), "existing, usable folders"
        PhotometryError.__init__(self, f"cannot start, {len(problems)} folder problem(s): "
                                       + "; ".join(problems), source)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")   # a database URL, not a file


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable_dir(path: Path, what: str, problems: list[str]) -> None:
    """``path`` exists and is writable, or can be created (its nearest existing ancestor
    is a writable directory)."""
    if path.exists():
        if not path.is_dir():
            problems.append(f"{what} {path} is not a directory")
        elif not os.access(path, os.W_OK | os.X_OK):
            problems.append(f"{what} {path} is not writable by uid {os.geteuid()}")
        return
    base = _nearest_existing(path)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        problems.append(f"{what} {path} does not exist and cannot be created "
                        f"({base} is not writable by uid {os.geteuid()})")


def check_folders(cfg) -> list[str]:
    """Check the folders of a :class:`~dsa110_contimg.service.config.ServiceConfig`.

    Returns warnings (e.g. a missing catalogue directory); raises
    :class:`PreflightError` listing every blocking problem.
    """
    problems: list[str] = []
    warnings: list[str] = []
    paths = cfg.paths
    if not paths.watched:
        problems.append("no watched directory: set paths.image_dirs and/or paths.mosaic_dirs")
    for key, dirs in (("paths.image_dirs", paths.image_dirs), ("paths.mosaic_dirs", paths.mosaic_dirs)):
        for d in dirs:
            d = Path(d)
            if not d.exists():
                problems.append(f"{key}: {d} does not exist")
            elif not d.is_dir():
                problems.append(f"{key}: {d} is not a directory")
            elif not os.access(d, os.R_OK | os.X_OK):
                problems.append(f"{key}: {d} is not readable by uid {os.geteuid()}")
    for key, db in (("paths.products_db", paths.products_db), ("paths.registry_db", paths.registry_db)):
        if db is not None and not _URL.match(str(db)):
            db = Path(db)
            if db.exists():
                if not os.access(db, os.R_OK | os.W_OK):
                    problems.append(f"{key}: {db} is not writable by uid {os.geteuid()}")
                # SQLite writes its journal/WAL beside the file
                _writable_dir(db.parent, f"{key} folder", problems)
            else:
                _writable_dir(db.parent, f"{key} folder", problems)
    cat = Path(paths.catalog_dir)
    if not cat.is_dir():
        warnings.append(f"paths.catalog_dir: {cat} does not exist (ingest catalogues with "
                        "'contimg-photometry catalog ingest'; jobs needing one fail until then)")
    if problems:
        raise PreflightError(list(dict.fromkeys(problems)), cfg.source)
    return warnings


#: Filesystems on which SQLite's WAL (shared-memory index, POSIX locks) is not safe.
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "lustre", "cifs", "smb3", "smbfs", "gpfs", "ceph", "glusterfs",
                       "beegfs", "fuse.sshfs", "9p", "afs")


def network_filesystem(path: str | os.PathLike, mounts: str | None = None) -> str | None:
    """The type of the network filesystem holding ``path`` (symlinks resolved), or None on
    a local one. ``mounts``: the text of ``/proc/self/mounts`` (read when None;
    None is returned where it cannot be read)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    where = Path(os.path.realpath(Path(path).expanduser().absolute()))
    best, fstype = -1, None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = Path(parts[1].replace("\\040", " "))
        if (where == point or point in where.parents) and len(point.parts) > best:
            best, fstype = len(point.parts), parts[2]
    return fstype if fstype in NETWORK_FILESYSTEMS else None


def check_startup(cfg, *, mounts: str | None = None) -> list[str]:
    """Everything the daemon can judge before it opens anything: the folders
    (:func:`check_folders`), the SQLite databases on a local disk (a network filesystem
    is refused: SQLite's WAL and locks are not safe there), the executor importable, and
    SQLite new enough. Returns the folder warnings; raises a ConfigError (or StoreError
    for SQLite) naming the first blocking problem. ``mounts``: the text of
    ``/proc/self/mounts`` (read when None)."""
    import sqlite3

    from dsa110_contimg.core.errors import StoreError
    from dsa110_contimg.service.runtime import load_executor

    warnings = check_folders(cfg)
    for key, db in (("paths.products_db", cfg.paths.products_db), ("paths.registry_db", cfg.paths.registry_db)):
        if db is not None and not _URL.match(str(db)):
            fstype = network_filesystem(Path(db).parent, mounts)
            if fstype:
                raise ConfigError(key, str(db), f"a file on a local disk, not on a network filesystem "
                                  f"({fstype}: SQLite's WAL needs a local disk; or a PostgreSQL URL)",
                                  cfg.source)
    try:  # fail at start-up, naming the key, rather than in every worker
        load_executor(cfg.daemon.task)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError("daemon.executor", cfg.daemon.executor,
                          f"an importable executor ({exc})", cfg.source) from None
    if sqlite3.sqlite_version_info < (3, 35):
        raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: the queue needs >= 3.35 "
                         "(UPDATE ... RETURNING)")
    return warnings
