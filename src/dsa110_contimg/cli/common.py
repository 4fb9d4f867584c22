"""Helpers shared by the sub-commands: locating databases and catalogues.

Resolution order for every path: the command-line option, else the service
configuration (``--config FILE`` or ``CONTIMG_PHOTOMETRY_CONFIG``), else the
built-in default (``state/products.sqlite3``, ``state/data_registry.sqlite3``,
``./catalogs``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_PRODUCTS_DB = Path("state/products.sqlite3")
DEFAULT_REGISTRY_DB = Path("state/data_registry.sqlite3")
DEFAULT_CATALOG_DIR = Path("catalogs")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="service configuration (TOML); default $CONTIMG_PHOTOMETRY_CONFIG")


def add_db_options(parser: argparse.ArgumentParser, *, registry: bool = True) -> None:
    add_config_option(parser)
    parser.add_argument("--products-db", metavar="PATH", default=None,
                        help=f"products database (path or SQLAlchemy URL; default from the "
                             f"configuration, else {DEFAULT_PRODUCTS_DB})")
    if registry:
        parser.add_argument("--registry-db", metavar="PATH", default=None,
                            help="data registry database (default from the configuration, "
                                 f"else {DEFAULT_REGISTRY_DB})")


def service_config(args: argparse.Namespace):
    """The service configuration named by ``--config`` / the environment, or None."""
    path = getattr(args, "config", None) or os.environ.get("CONTIMG_PHOTOMETRY_CONFIG")
    if not path:
        return None
    from dsa110_contimg.service.config import load_config

    return load_config(path)


def products_db(args: argparse.Namespace) -> str:
    if getattr(args, "products_db", None):
        return args.products_db
    cfg = service_config(args)
    return str(cfg.paths.products_db) if cfg is not None else str(DEFAULT_PRODUCTS_DB)


def registry_db(args: argparse.Namespace) -> str:
    if getattr(args, "registry_db", None):
        return args.registry_db
    cfg = service_config(args)
    return str(cfg.paths.registry_db) if cfg is not None else str(DEFAULT_REGISTRY_DB)


def catalog_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "catalog_dir", None):
        return Path(args.catalog_dir)
    cfg = service_config(args)
    if cfg is not None:
        return Path(cfg.paths.catalog_dir)
    return Path(os.environ.get("CONTIMG_CATALOG_DIR", DEFAULT_CATALOG_DIR))


#: Output table formats by file suffix.
TABLE_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits",
                 ".vot": "votable", ".xml": "votable"}


def write_table(table, out: Path) -> None:
    """Write an astropy Table in the format given by ``out``'s suffix.

    Raises ConfigError for an unknown suffix and PhotometryError when the file
    cannot be written.
    """
    import warnings

    from dsa110_contimg.photometry.errors import ConfigError, PhotometryError

    out = Path(out)
    fmt = TABLE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError("-o", str(out), "a file ending in " + ", ".join(TABLE_FORMATS))
    if fmt in ("fits", "votable"):
        table = table.copy(copy_data=False)
        table.meta = {k: (str(v) if isinstance(v, (tuple, list, dict)) or v is None else v)
                      for k, v in table.meta.items()}
        for name in table.colnames:   # object columns (ids) as strings
            if table[name].dtype.kind == "O":
                table[name] = table[name].astype(str)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # HIERARCH cards for long meta keys
            table.write(out, format=fmt, overwrite=True)
    except OSError as exc:
        raise PhotometryError(f"cannot write the output table: {exc}", out) from None
