"""Helpers shared by the sub-commands: exit codes, error printing, locating databases
and catalogues.

Conventions every command follows (apply them to a new command by raising the
exceptions below and letting :func:`dsa110_contimg.cli.main.main` print them, or
by wrapping your own entry point with :func:`run_command`):

* exit codes :data:`EXIT_OK` 0, :data:`EXIT_FAILURE` 1, :data:`EXIT_USAGE` 2,
  :data:`EXIT_NOT_RUNNING` 3, :data:`EXIT_NO_DB` 4 (:data:`EXIT_CODES_EPILOG`);
* every error is one line on stderr, ``contimg-photometry CMD: error: ...``, never a
  traceback: :class:`UsageError` (and a :class:`ConfigError` about a command-line
  option) exits 2, :class:`NoDatabase` exits 4, any other
  :class:`PhotometryError` or ``OSError`` (unwritable output) exits 1;
* a closed stdout (``| head``) ends the command silently with exit code 1, stdout
  redirected to ``/dev/null`` so the interpreter's final flush cannot fail.

Resolution order for every path: the command-line option, else the service
configuration (``--config FILE`` or ``CONTIMG_PHOTOMETRY_CONFIG``), else the
built-in default (``state/products.sqlite3``, ``state/data_registry.sqlite3``,
``./catalogs``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dsa110_contimg.core.errors import ConfigError, PhotometryError, StoreError
from dsa110_contimg.pipeline import export

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_NO_DB = 0, 1, 2, 3, 4
#: The ``--help`` epilog of every command.
EXIT_CODES_EPILOG = ("exit codes: 0 ok; 1 failure (one line on stderr; also a closed stdout); "
                     "2 usage error; 3 daemon not running; 4 database missing or unreadable")


class UsageError(PhotometryError):
    """A command-line usage error (exit code 2)."""


class NoDatabase(StoreError):
    """The database a command reads does not exist or cannot be opened (exit code 4)."""


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an error raised by a command."""
    if isinstance(exc, NoDatabase):
        return EXIT_NO_DB
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, ConfigError) and str(exc.field).startswith("-"):
        return EXIT_USAGE
    return EXIT_FAILURE


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def error_line(command: str, exc: BaseException) -> str:
    """``contimg-photometry COMMAND: error: REASON`` on one line."""
    if isinstance(exc, OSError) and not isinstance(exc, PhotometryError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        reason = f"{where}{exc.strerror or exc}"
    else:
        reason = str(exc)
    from dsa110_contimg.store.urls import mask_passwords

    reason = mask_passwords(" ".join(reason.split()))   # one line, no database password
    return f"contimg-photometry {command}: error: {reason}"


def silence_stdout() -> None:
    """After a ``BrokenPipeError``: point stdout at /dev/null (as the Python docs
    recommend) so that the interpreter's final flush does not raise again."""
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def run_command(command: str, func, *args, **kwargs) -> int:
    """Call ``func(*args, **kwargs)`` under the CLI conventions; returns the exit code.

    Errors become one line on stderr and their documented exit code; a closed stdout
    ends silently with exit code 1; stdout is flushed before returning.
    """
    import sys

    try:
        try:
            rc = int(func(*args, **kwargs) or 0)
        finally:
            sys.stdout.flush()
        return rc
    except BrokenPipeError:
        silence_stdout()
        return EXIT_FAILURE
    except (PhotometryError, OSError) as exc:
        _stderr(error_line(command, exc))
        return exit_code_for(exc)
    except KeyboardInterrupt:
        _stderr(f"contimg-photometry {command}: interrupted")
        return 130


def _stderr(line: str) -> None:
    import sys

    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def open_products(args: argparse.Namespace, *, write: bool = False, migrate: bool = False):
    """Open the existing products database named by the options/configuration.

    Raises :class:`NoDatabase` (exit code 4) when it does not exist or cannot be opened;
    never creates one.
    """
    from dsa110_contimg.store.engine import open_products_db

    path = products_db(args)
    if "://" not in path and not Path(path).is_file():
        raise NoDatabase("products database does not exist", path)
    try:
        return open_products_db(path, read_only=not write, migrate=migrate)
    except StoreError as exc:
        raise NoDatabase(exc.reason, exc.path) from None


def creating(opener, *args, **kwargs):
    """Call a database opener that may create the database (``worker``, ``db upgrade``,
    ``measure --catalog``); a database that cannot be opened or created raises
    :class:`NoDatabase` (exit code 4)."""
    try:
        return opener(*args, **kwargs)
    except StoreError as exc:
        if isinstance(exc, NoDatabase):
            raise
        raise NoDatabase(exc.reason, exc.path) from None


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


def database_targets(args: argparse.Namespace) -> list[tuple[str, tuple[str, ...]]]:
    """``(database, schemas it holds)`` of the products and registry databases: one entry
    when both name the same database (``products_db`` = ``registry_db``)."""
    from dsa110_contimg.store.urls import same_database

    products, registry = products_db(args), registry_db(args)
    if same_database(products, registry):
        return [(products, ("products", "registry"))]
    return [(products, ("products",)), (registry, ("registry",))]


def catalog_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "catalog_dir", None):
        return Path(args.catalog_dir)
    cfg = service_config(args)
    if cfg is not None:
        return Path(cfg.paths.catalog_dir)
    return Path(os.environ.get("CONTIMG_CATALOG_DIR", DEFAULT_CATALOG_DIR))


#: Output table formats by file suffix.
TABLE_FORMATS = export.TABLE_FORMATS


def write_table(table, out: Path) -> None:
    """Write an astropy Table in the format given by ``out``'s suffix, with units on its
    columns and its metadata (:func:`dsa110_contimg.pipeline.export.write_table`, the
    writer the web site's downloads share).

    Raises ConfigError for an unknown suffix and PhotometryError when the file
    cannot be written.
    """
    out = Path(out)
    fmt = export.format_for(out.suffix)
    if fmt is None:
        raise ConfigError("-o", str(out), "a file ending in " + ", ".join(TABLE_FORMATS))
    try:
        export.write_table(table, out, fmt)
    except OSError as exc:
        raise PhotometryError(f"cannot write the output table: {exc.strerror or exc}", out) from None
