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
