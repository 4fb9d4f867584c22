"""``contimg-photometry config``: the configuration schema from the command line.

``config dump``
    The documented configuration (every section and key, its docstring as a comment, its
    default as the value) on standard output: the text of ``config/photometry.toml``,
    generated from the schema (:func:`dsa110_contimg.service.config.documented_toml`).
``config check``
    Load and validate a configuration file (``--config`` or ``$CONTIMG_PHOTOMETRY_CONFIG``)
    without starting anything, then look at its databases (read-only; ``--no-db`` skips
    this): each one's schema revisions against this release's, a database holding the
    schema of the other store without being configured for it, an SQLite file on a network
    filesystem (its WAL needs a local disk), a server that cannot be reached. Exit 0 and
    what it found when valid, else the one-line error naming the file, the key, the value
    and what is allowed, or the database problems (exit 1).
"""

from __future__ import annotations

from dsa110_contimg.cli import common


def register(sub) -> None:
    p = sub.add_parser("config", help="the configuration schema: print the documented file, "
                                      "validate a file")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    dump = csub.add_parser("dump", help="print the documented configuration (every key with its "
                                        "default; the text of config/photometry.toml)")
    dump.set_defaults(func=run_dump)
    check = csub.add_parser("check", help="validate a configuration file and look at its databases "
                                          "without running anything")
    common.add_config_option(check)
    check.add_argument("--no-db", action="store_true",
                       help="validate the file only, without opening its databases")
    check.set_defaults(func=run_check)


def run_dump(args) -> int:
    import sys

    from dsa110_contimg.service.config import documented_toml

    sys.stdout.write(documented_toml())
    return 0


def run_check(args) -> int:
    from dsa110_contimg.core.errors import PhotometryError
    from dsa110_contimg.service.config import load_config
    from dsa110_contimg.store.urls import mask_url

    cfg = load_config(args.config)
    print(f"{cfg.source}: valid (products_db {mask_url(cfg.paths.products_db)}, "
          f"{len(cfg.paths.watched)} watched folder(s), catalog {cfg.photometry.catalog}, "
          f"method {cfg.photometry.method}, {cfg.daemon.workers} worker(s))")
    if args.no_db:
        return 0
    args.config = str(cfg.source)
    problems = []
    for target, histories in common.database_targets(args):
        label = " = ".join(f"{h}_db" for h in histories)
        notes, found = _look_at_database(target, histories)
        print(f"  {label} {mask_url(target)}: {'; '.join(notes + found)}")
        problems += [f"{label}: {p}" for p in found]
    if problems:
        raise PhotometryError("; ".join(problems), cfg.source)
    return 0


def _look_at_database(target: str, histories) -> tuple[list[str], list[str]]:
    """``(notes, problems)`` about one configured database, opened read-only."""
    import os
    from pathlib import Path

    from dsa110_contimg.service.preflight import network_filesystem
    from dsa110_contimg.store.engine import open_products_db
    from dsa110_contimg.store.migrate import inspect_schemas
    from dsa110_contimg.store.urls import error_line

    problems = []
    if "://" not in target:
        fstype = network_filesystem(Path(target).parent)
        if fstype:
            problems.append(f"on a network filesystem ({fstype}): SQLite's WAL needs a local "
                            "disk (put state_dir on one, or use PostgreSQL)")
        if not Path(target).is_file():
            return ["does not exist yet (the daemon creates it)"], problems
    os.environ.setdefault("PGCONNECT_TIMEOUT", "10")   # an unreachable server: fail in 10 s
    try:
        db = open_products_db(target, migrate=False, read_only="://" not in target)
        try:
            with db.engine.connect() as conn:
                notes, found = inspect_schemas(conn, histories)
                conn.rollback()
        finally:
            db.dispose()
    except Exception as exc:  # noqa: BLE001 - any driver error: one line, password masked
        return [], problems + [f"cannot be read: {error_line(exc, target)}"]
    return notes, problems + found
