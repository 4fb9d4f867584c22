"""``contimg-photometry config``: the configuration schema from the command line.

``config dump``
    The documented configuration (every section and key, its docstring as a comment, its
    default as the value) on standard output: the text of ``config/photometry.toml``,
    generated from the schema (:func:`dsa110_contimg.service.config.documented_toml`).
``config check``
    Load and validate a configuration file (``--config`` or ``$CONTIMG_PHOTOMETRY_CONFIG``)
    without starting anything: exit 0 and one line when it is valid, else the one-line error
    naming the file, the key, the value and what is allowed (exit 1).
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
    check = csub.add_parser("check", help="validate a configuration file without running anything")
    common.add_config_option(check)
    check.set_defaults(func=run_check)


def run_dump(args) -> int:
    import sys

    from dsa110_contimg.service.config import documented_toml

    sys.stdout.write(documented_toml())
    return 0


def run_check(args) -> int:
    from dsa110_contimg.service.config import load_config
    from dsa110_contimg.store.urls import mask_url

    cfg = load_config(args.config)
    print(f"{cfg.source}: valid (products_db {mask_url(cfg.paths.products_db)}, "
          f"{len(cfg.paths.watched)} watched folder(s), catalog {cfg.photometry.catalog}, "
          f"method {cfg.photometry.method}, {cfg.daemon.workers} worker(s))")
    return 0
