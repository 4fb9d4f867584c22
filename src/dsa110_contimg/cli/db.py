"""``contimg-photometry db``: database upkeep.

``db upgrade``
    Apply the schema migrations to the products and registry databases (every command
    that writes also does it on open).
``db backup DEST``
    A consistent copy of both databases in the folder DEST while the daemon runs
    (SQLite: the online backup API; PostgreSQL: ``pg_dump``), each copy checked.
``db check [--full]``
    Integrity and schema revision of both databases; exit 1 when anything is wrong.
``db prune --jobs-before DATE [--dry-run]``
    Remove settled job records and the records of files gone from disk, older than DATE;
    never images or measurements. Says what it removed.

The two databases may be one (``products_db`` = ``registry_db``): it is then copied,
checked and migrated once, for both schemas.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from dsa110_contimg.cli import common

_DAYS = re.compile(r"^(\d+)d$")


def register(sub) -> None:
    p = sub.add_parser("db", help="database upkeep: upgrade, backup, check, prune",
                       description="Database upkeep for the products and registry databases: "
                                   "apply schema migrations, copy them consistently while the "
                                   "daemon runs, check their integrity and schema, remove old "
                                   "job and file records.")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser("upgrade", help="apply schema migrations to the products and registry databases")
    up.set_defaults(func=upgrade)
    bk = dsub.add_parser("backup", help="consistent copy of both databases into DEST while the daemon runs",
                         description="Copy the products and registry databases into the folder DEST "
                                     "(created if missing) while the daemon keeps running: SQLite "
                                     "through its online backup API (a snapshot of the last commit), "
                                     "PostgreSQL through pg_dump --format=custom. Each copy is checked "
                                     "(integrity, schema revision) before the command succeeds.")
    bk.add_argument("dest", metavar="DEST", help="folder receiving the copies (products.sqlite3, "
                                                 "data_registry.sqlite3 or *.dump)")
    bk.add_argument("--force", action="store_true", help="overwrite copies already in DEST")
    bk.set_defaults(func=backup)
    ck = dsub.add_parser("check", help="integrity and schema revision of both databases",
                         description="Check both databases: SQLite's quick_check (integrity_check "
                                     "with --full) and foreign keys, the schema revision against "
                                     "this release's, the tables against this release's schema. "
                                     "Read-only. Exit 1 when a problem is found.")
    ck.add_argument("--full", action="store_true",
                    help="SQLite: the complete integrity_check (reads every index; slow on large files)")
    ck.set_defaults(func=check)
    pr = dsub.add_parser("prune", help="remove settled job and file records older than a date",
                         description="Remove done and cancelled jobs, and failed or dead jobs an "
                                     "operator acknowledged (`jobs ack`), finished before DATE, with "
                                     "their items; records of file versions gone from disk or "
                                     "replaced; heartbeat rows of daemons stopped before DATE. Images, "
                                     "measurements, light curves and ESE candidates are never "
                                     "touched. Safe while the daemon runs (short transactions).")
    pr.add_argument("--jobs-before", required=True, metavar="DATE", type=_cutoff,
                    help="UTC date or time (2026-01-31, 2026-01-31T12:00) or an age in days (90d)")
    pr.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    pr.set_defaults(func=prune)
    for q in (up, bk, ck, pr):
        common.add_db_options(q, registry=q is not pr)


def _cutoff(text: str) -> float:
    """``--jobs-before``: Unix seconds of a UTC date/time, or of now minus ``Nd`` days."""
    import argparse
    import time

    m = _DAYS.match(text.strip())
    if m:
        return time.time() - 86400.0 * int(m.group(1))
    try:
        when = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a UTC date such as 2026-01-31 (or "
                                         f"2026-01-31T12:00) or an age such as 90d, got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp()


def _targets(args, *, existing: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """:func:`~dsa110_contimg.cli.common.database_targets`; ``existing`` leaves out an SQLite
    registry database not created yet (with a note; the first image linked to the registry
    creates it)."""
    targets = common.database_targets(args)
    if existing and len(targets) == 2:
        registry = targets[1][0]
        if "://" not in registry and not Path(registry).expanduser().is_file():
            import sys

            print(f"note: registry database {registry} does not exist yet (created when the first "
                  "image is linked); left out", file=sys.stderr)
            return targets[:1]
    return targets


def upgrade(args) -> int:
    from dsa110_contimg.store.engine import open_products_db, open_registry_db
    from dsa110_contimg.store.urls import mask_url

    for target, histories in _targets(args):
        opener = open_products_db if histories[0] == "products" else open_registry_db
        db = common.creating(opener, target, migrate=False)
        try:
            for which in histories:
                head = _upgrade_one(db.engine, which, target)
                print(f"{which} database {mask_url(target)}: at revision {head}")
        finally:
            db.dispose()
    return 0


def _upgrade_one(engine, which: str, target: str) -> str:
    from dsa110_contimg.core.errors import StoreError
    from dsa110_contimg.store.migrate import upgrade as do_upgrade
    from dsa110_contimg.store.urls import error_line, mask_url

    try:
        return do_upgrade(engine, which)
    except StoreError:
        raise
    except Exception as exc:   # noqa: BLE001 - sqlalchemy / alembic: name the database and the cause
        raise StoreError(f"cannot upgrade the {which} schema: {error_line(exc, target)}",
                         mask_url(target)) from None


def _problems(report) -> list[str]:
    """The problems of a check; a registry schema not created yet (the first image linked
    to the registry creates it) is a note, not a problem."""
    if report.which == "registry" and report.revision is None and report.integrity != "unreadable":
        import sys

        print("note: no registry schema yet (created when the first image is linked)", file=sys.stderr)
        return []
    return [f"{report.which}: {p}" for p in report.problems]


def _open(target: str, *, read_only: bool):
    from dsa110_contimg.store.engine import open_products_db

    if "://" not in target and not Path(target).is_file():
        raise common.NoDatabase("database does not exist", target)
    return common.creating(open_products_db, target, migrate=False, read_only=read_only)


def check(args) -> int:
    from dsa110_contimg.core.errors import PhotometryError
    from dsa110_contimg.store.maintenance import check_database
    from dsa110_contimg.store.urls import mask_url

    problems = []
    for target, histories in _targets(args, existing=True):
        db = _open(target, read_only=True)
        try:
            for which in histories:
                r = check_database(db, which, full=args.full)
                found = _problems(r)
                print(f"{which} database {mask_url(target)}: {'PROBLEMS' if found else 'ok'}; "
                      f"schema revision {r.revision or 'none'} (this release: {r.head}); {r.integrity}")
                problems += found
        finally:
            db.dispose()
    if problems:
        raise PhotometryError("; ".join(problems))
    return 0


def backup(args) -> int:
    from dsa110_contimg.core.errors import PhotometryError
    from dsa110_contimg.store.backup import backup_postgres, backup_sqlite
    from dsa110_contimg.store.maintenance import check_database
    from dsa110_contimg.store.urls import mask_url

    dest_dir = Path(args.dest).expanduser()
    dest_dir.mkdir(parents=True, exist_ok=True)
    plan = []
    for target, histories in _targets(args, existing=True):
        name = (f"{histories[0]}.dump" if "://" in target else Path(target).name)
        dest = dest_dir / name
        if dest.exists() and not args.force:
            raise PhotometryError("a backup exists already (use --force to overwrite it)", dest)
        plan.append((target, histories, dest))
    for target, histories, dest in plan:
        if "://" in target:
            backup_postgres(target, dest, histories)
            print(f"{' and '.join(histories)} database {mask_url(target)} -> {dest} "
                  f"({dest.stat().st_size / 1e6:.1f} MB, pg_dump custom format; checked with "
                  "pg_restore --list)")
            continue
        if not Path(target).is_file():
            raise common.NoDatabase("database does not exist", target)
        backup_sqlite(target, dest)
        db = _open(str(dest), read_only=True)
        try:
            reports = [check_database(db, which) for which in histories]
        finally:
            db.dispose()
        bad = [p for r in reports for p in _problems(r)]
        if bad:
            raise PhotometryError(f"the copy does not pass `db check`: {'; '.join(bad)}", dest)
        print(f"{' and '.join(histories)} database {target} -> {dest} ({dest.stat().st_size / 1e6:.1f} "
              f"MB, schema revision {reports[0].revision}, {reports[0].integrity})")
    return 0


def prune(args) -> int:
    from dsa110_contimg.store.maintenance import prune as do_prune

    db = common.open_products(args, write=not args.dry_run)
    try:
        report = do_prune(db, before=args.jobs_before, dry_run=args.dry_run)
    finally:
        db.dispose()
    when = _dt.datetime.fromtimestamp(args.jobs_before, _dt.timezone.utc).isoformat(timespec="seconds")
    print(f"records older than {when}:")
    print("\n".join("  " + line for line in report.lines(dry_run=args.dry_run)))
    return 0
