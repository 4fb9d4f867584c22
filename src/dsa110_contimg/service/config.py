"""The service configuration: one TOML file, validated before anything runs.

Sections (every key, its default and its meaning are documented in
``config/photometry.toml``):

``[paths]``
    ``image_dirs``, ``mosaic_dirs`` (watched trees), ``state_dir``,
    ``products_db``, ``registry_db``, ``catalog_dir``, ``db_password_file``.
    Relative paths are resolved against the directory of the configuration
    file. A database value with a scheme (``postgresql+psycopg://...``) is an
    SQLAlchemy URL, kept as a URL (see :mod:`dsa110_contimg.store.urls`).
``[photometry]``
    Passed to :meth:`PhotometryConfig.from_dict` (catalog, method, radius_deg,
    ...); its own validation names the bad key.
``[daemon]``
    Watcher, queue and pool settings (:class:`DaemonConfig`).
``[logging]``
    ``format`` (``auto`` | ``json`` | ``console``) and ``level``.
``[web]``
    ``listen`` (``host:port`` of ``contimg-photometry serve``) and ``token_file``
    (:class:`WebConfig`).

An unknown key or a bad value raises :class:`ConfigError` naming the key, the
file and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dsa110_contimg.core.config import PhotometryConfig
from dsa110_contimg.core.errors import ConfigError

#: Environment variable naming the configuration file.
CONFIG_ENV = "CONTIMG_PHOTOMETRY_CONFIG"
#: Default executor: the photometry workflow shared with ``contimg-photometry worker``
#: (see :mod:`dsa110_contimg.service.runtime`; the former value
#: ``dsa110_contimg.photometry.worker:execute_job`` still means the same).
DEFAULT_EXECUTOR = "photometry"
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class PathsConfig:
    """Where the service reads and writes (absolute paths after loading).

    ``products_db`` / ``registry_db`` are SQLite file paths (:class:`Path`) or
    SQLAlchemy URLs (:class:`~dsa110_contimg.store.urls.DatabaseURL`, a ``str``
    whose ``repr`` hides the password). ``db_password_file`` holds the password of
    URLs that name a user but no password.
    """

    image_dirs: tuple[Path, ...] = ()
    mosaic_dirs: tuple[Path, ...] = ()
    state_dir: Path = Path("state")
    products_db: Path | str | None = None
    registry_db: Path | str | None = None
    catalog_dir: Path = Path("catalogs")
    db_password_file: Path | None = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("state_dir", Path(self.state_dir))
        if self.products_db is None:
            set_("products_db", self.state_dir / "products.sqlite3")
        if self.registry_db is None:
            set_("registry_db", self.state_dir / "data_registry.sqlite3")

    @property
    def watched(self) -> tuple[Path, ...]:
        return tuple(self.image_dirs) + tuple(self.mosaic_dirs)


@dataclass(frozen=True)
class DaemonConfig:
    """Watcher, queue and worker-pool settings.

    Parameters
    ----------
    workers : int
        Worker processes (spawned), 1..64.
    polling : bool
        Use a polling observer (network filesystems: NFS, Lustre, GPFS, CIFS)
        instead of inotify.
    poll_interval_s : float
        Polling observer interval (s).
    rescan_interval_s : float
        Period of the reconciliation scan of every watched tree (s).
    settle_s : float
        A file that is not complete stays ``incomplete``; once its size and
        mtime have not changed for ``settle_s`` seconds it is re-checked and,
        if still incomplete, queued anyway so the job fails with the reason.
        In polling mode it is also the quiescence time before a file is checked.
    recheck_interval_s : float
        How often incomplete files are re-examined (s).
    pbcor_wait_s : float
        How long a non-primary-beam-corrected image waits for its PB-corrected
        sibling before it is measured itself (s).
    lease_s : float
        Job lease; the daemon extends it while a job runs.
    max_attempts : int
        Claims before a job is ``dead``.
    backoff_base_s, backoff_cap_s : float
        Exponential retry back-off (s).
    job_timeout_s : float
        Per-job wall-clock limit; the worker is killed and the job retried.
    drain_timeout_s : float
        On SIGTERM, how long running jobs may finish before being handed back.
    reap_interval_s : float
        Period of the expired-lease reaper (s).
    heartbeat_interval_s : float
        Period of the daemon's heartbeat row update (s).
    stale_after_s : float
        The status CLI calls a heartbeat older than this stale.
    max_event_queue : int
        Bound of the in-memory event queue; when full, events are dropped and
        a rescan is scheduled.
    executor : str
        ``module:function`` run in the worker processes (default the
        photometry workflow).
    metrics_listen : str
        ``HOST:PORT`` of the Prometheus ``/metrics`` endpoint (e.g.
        ``127.0.0.1:9464``); empty disables it (:mod:`dsa110_contimg.service.metrics`).
        The job executor run in the worker processes: ``"photometry"`` (the
        default) or ``"package.module:attribute"`` naming an executor class or
        instance (:class:`dsa110_contimg.service.runtime.Executor`).
    worker_memory_limit_mb : int
        Address-space limit of each worker process (``RLIMIT_AS``, MiB); an
        image needing more fails permanently instead of exhausting the host.
        0: no limit.
    max_interruptions : int
        Times a job may be interrupted by the death of the daemon running it
        (not counted as attempts) before it is ``dead``.
    node : str
        Name of this daemon instance (default: the host name). One daemon per
        node and state directory (an advisory lock in ``state_dir``); give a
        second daemon on the same state another node name on purpose.
    symlinks : str
        ``within_roots`` (follow a symlink only when its target lies inside a
        watched directory; the default), ``refuse`` (record every symlink as
        skipped) or ``follow`` (any target; non-regular targets are skipped).
        The same rule for events and scans.
    check_timeout_s : float
        Bound of one intake examination of a file (s); a slower filesystem call
        is abandoned and the file re-examined later.
    max_header_bytes : int
        Header bytes read at most while looking for END cards.
    loop_stall_s : float
        A main loop without a completed tick for this long is stalled: the
        health thread reports it (``degraded`` with an outside cause such as a
        foreign database lock or a full disk; otherwise ``unhealthy`` and no
        watchdog ping).
    dask_scheduler : str
        ``tcp://host:port`` of a Dask scheduler: jobs run on its workers
        (:class:`~dsa110_contimg.service.dask_pool.DaskPool`) instead of local worker
        processes, with the same queue and leases (``executor = "dask"`` is the
        photometry executor there). Empty: local workers.
    """

    workers: int = 2
    polling: bool = False
    poll_interval_s: float = 5.0
    rescan_interval_s: float = 300.0
    settle_s: float = 30.0
    recheck_interval_s: float = 1.0
    pbcor_wait_s: float = 60.0
    lease_s: float = 300.0
    max_attempts: int = 3
    backoff_base_s: float = 5.0
    backoff_cap_s: float = 600.0
    job_timeout_s: float = 1800.0
    drain_timeout_s: float = 60.0
    reap_interval_s: float = 30.0
    heartbeat_interval_s: float = 5.0
    stale_after_s: float = 60.0
    max_event_queue: int = 100_000
    executor: str = DEFAULT_EXECUTOR
    metrics_listen: str = ""
    worker_memory_limit_mb: int = 4096
    max_interruptions: int = 10
    node: str = ""
    symlinks: str = "within_roots"
    check_timeout_s: float = 10.0
    max_header_bytes: int = 8 * 1024 * 1024
    loop_stall_s: float = 20.0
    dask_scheduler: str = ""

    @property
    def node_name(self) -> str:
        """``node``, or the host name when unset."""
        import socket

        return self.node or socket.gethostname()

    @property
    def task(self) -> str:
        """The executor each job runs (``executor``, with ``"dask"`` meaning the photometry
        executor on ``dask_scheduler``)."""
        return "photometry" if self.executor == "dask" else self.executor


@dataclass(frozen=True)
class LoggingConfig:
    """``format``: auto (console on a TTY, else JSON), json or console; ``level``."""

    format: str = "auto"
    level: str = "info"


@dataclass(frozen=True)
class WebConfig:
    """``contimg-photometry serve``: ``listen`` (``host:port``, localhost by default) and
    ``token_file`` (a file holding the review token; unset = the site is read-only)."""

    listen: str = "127.0.0.1:8088"
    token_file: Path | None = None


def parse_listen(value, src=None, key: str = "web.listen") -> tuple[str, int]:
    """``host:port`` -> (host, port); raises ConfigError naming ``key``."""
    if isinstance(value, str) and ":" in value:
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 0 <= int(port) <= 65535:
            return host, int(port)
    raise ConfigError(key, value, "'host:port' with a port in [0, 65535], e.g. 127.0.0.1:8088", src)


def _web(table: Mapping, base: Path, src) -> WebConfig:
    _check_keys(table, ("listen", "token_file"), "web", src)
    listen = table.get("listen", WebConfig.listen)
    parse_listen(listen, src)
    token = table.get("token_file")
    if token is not None:
        if not isinstance(token, str) or not token:
            raise ConfigError("web.token_file", token, "a non-empty path string", src)
        token = Path(os.path.expandvars(token)).expanduser()
        token = token if token.is_absolute() else (base / token).resolve()
    return WebConfig(listen=listen, token_file=token)


@dataclass(frozen=True)
class ServiceConfig:
    """The whole service configuration."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    photometry: PhotometryConfig = field(default_factory=PhotometryConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: Path | None = None
    web: WebConfig = field(default_factory=WebConfig)

    def photometry_params(self) -> dict:
        """Job parameters of the photometry executor (:mod:`dsa110_contimg.service.executors`)."""
        return {"config": self.photometry.to_dict()}


# -- validation -------------------------------------------------------------------
_SECTIONS = ("paths", "photometry", "daemon", "logging", "web")
_POSITIVE = {"poll_interval_s", "rescan_interval_s", "recheck_interval_s", "lease_s", "backoff_base_s",
             "backoff_cap_s", "job_timeout_s", "reap_interval_s", "heartbeat_interval_s",
             "stale_after_s", "check_timeout_s", "loop_stall_s"}
_NON_NEGATIVE = {"settle_s", "pbcor_wait_s", "drain_timeout_s"}


def _check_keys(table: Mapping, allowed, section: str, src) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{section}.{key}" if section else key, table[key],
                              "one of the keys " + ", ".join(sorted(allowed)), src)


def _paths(table: Mapping, base: Path, src) -> PathsConfig:
    names = [f.name for f in dataclasses.fields(PathsConfig)]
    _check_keys(table, names, "paths", src)

    def one(key, value) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"paths.{key}", value, "a non-empty path string", src)
        p = Path(os.path.expandvars(value)).expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    out: dict[str, Any] = {}
    for key in ("image_dirs", "mosaic_dirs"):
        if key in table:
            value = table[key]
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise ConfigError(f"paths.{key}", value, "a list of directory paths", src)
            out[key] = tuple(one(key, v) for v in value)
    for key in ("state_dir", "catalog_dir", "db_password_file"):
        if key in table and not (key == "db_password_file" and table[key] == ""):
            out[key] = one(key, table[key])
    for key in ("products_db", "registry_db"):
        if key in table:
            out[key] = _database(key, table[key], base, out.get("db_password_file"), src)
    out.setdefault("state_dir", (base / "state").resolve())
    out.setdefault("catalog_dir", (base / "catalogs").resolve())
    return PathsConfig(**out)


def _database(key: str, value, base: Path, password_file: Path | None, src):
    """A database value: SQLAlchemy URL when it has a scheme, else an SQLite path."""
    from dsa110_contimg.store.urls import expand_env, is_url, mask_url, parse_database_url

    name = f"paths.{key}"
    if not isinstance(value, str) or not value:
        raise ConfigError(name, value, "a non-empty SQLite file path or SQLAlchemy URL", src)
    try:
        text = expand_env(value)
    except KeyError as exc:
        raise ConfigError(name, mask_url(value), f"an environment variable ${{{exc.args[0]}}} that is "
                          "set (it is not)", src) from None
    if not is_url(text):
        p = Path(text).expanduser()
        return p if p.is_absolute() else (base / p).resolve()
    try:
        return parse_database_url(text, password_file=password_file)
    except ValueError as exc:
        raise ConfigError(name, mask_url(value), "an SQLAlchemy URL such as "
                          f"postgresql+psycopg://user@host/dbname ({exc})", src) from None


def _daemon(table: Mapping, src) -> DaemonConfig:
    fields = {f.name: f for f in dataclasses.fields(DaemonConfig)}
    _check_keys(table, fields, "daemon", src)
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"daemon.{key}"
        default = fields[key].default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(name, value, "true or false", src)
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(name, value, "an integer", src)
            low, high = {"workers": (1, 64), "max_attempts": (1, 100),
                         "max_event_queue": (100, 10_000_000),
                         "worker_memory_limit_mb": (0, 16_777_216),
                         "max_interruptions": (1, 1000),
                         "max_header_bytes": (2880, 1 << 30)}[key]
            if not low <= value <= high:
                raise ConfigError(name, value, f"an integer in [{low}, {high}]", src)
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(name, value, "a number of seconds", src)
            value = float(value)
            if key in _POSITIVE and not value > 0:
                raise ConfigError(name, value, "a number of seconds > 0", src)
            if key in _NON_NEGATIVE and value < 0:
                raise ConfigError(name, value, "a number of seconds >= 0", src)
        elif key == "symlinks":
            if value not in ("within_roots", "refuse", "follow"):
                raise ConfigError(name, value, "'within_roots', 'refuse' or 'follow'", src)
        elif key == "executor":
            from dsa110_contimg.service.runtime import BUILTIN_EXECUTORS, normalise_executor_spec

            if not isinstance(value, str):
                raise ConfigError(name, value, "a string", src)
            value = normalise_executor_spec(value)
            if value not in BUILTIN_EXECUTORS and value != "dask" and (value.count(":") != 1 or value.startswith(":")
                                                   or value.endswith(":")):
                raise ConfigError(name, value, f"one of {sorted(BUILTIN_EXECUTORS) + ['dask']} or "
                                               "'package.module:attribute'", src)
        elif key == "metrics_listen":
            from dsa110_contimg.service.metrics import parse_listen

            parse_listen(value, src)
        elif key == "node":
            import re

            if not isinstance(value, str) or (value and not re.fullmatch(
                    r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value)):
                raise ConfigError(name, value, "a node name of 1-64 letters, digits, '.', '_' or "
                                               "'-' (\"\" = the host name)", src)
        elif key == "dask_scheduler":
            if not isinstance(value, str) or (value and "://" not in value):
                raise ConfigError(name, value, "a Dask scheduler address tcp://host:port, or \"\"", src)
        out[key] = value
    cfg = DaemonConfig(**out)
    if cfg.executor == "dask" and not cfg.dask_scheduler:
        raise ConfigError("daemon.dask_scheduler", cfg.dask_scheduler,
                          "a Dask scheduler address tcp://host:port (executor = \"dask\")", src)
    if cfg.drain_timeout_s >= cfg.lease_s:
        raise ConfigError("daemon.drain_timeout_s", cfg.drain_timeout_s,
                          f"less than daemon.lease_s ({cfg.lease_s})", src)
    return cfg


def _logging(table: Mapping, src) -> LoggingConfig:
    _check_keys(table, ("format", "level"), "logging", src)
    fmt = table.get("format", "auto")
    level = table.get("level", "info")
    if fmt not in LOG_FORMATS:
        raise ConfigError("logging.format", fmt, "one of " + ", ".join(LOG_FORMATS), src)
    if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
        raise ConfigError("logging.level", level, "one of " + ", ".join(LOG_LEVELS), src)
    return LoggingConfig(fmt, level.lower())


def config_from_dict(data: Mapping[str, Any], *, base_dir: Path | None = None,
                     source: Path | None = None) -> ServiceConfig:
    """Validate a parsed TOML document and build a :class:`ServiceConfig`.

    Relative paths are resolved against ``base_dir`` (default: the current
    directory). Raises :class:`ConfigError` naming key, file and allowed values.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    _check_keys(data, _SECTIONS, "", source)
    for section in _SECTIONS:
        if section in data and not isinstance(data[section], dict):
            raise ConfigError(section, data[section], "a [table]", source)
    phot_table = dict(data.get("photometry", {}))
    try:
        photometry = PhotometryConfig.from_dict(phot_table)
    except ConfigError as exc:
        raise ConfigError(f"photometry.{exc.field}", exc.value, exc.allowed, source) from None
    if photometry.catalog_path is not None and not Path(photometry.catalog_path).is_absolute():
        photometry = photometry.replace(catalog_path=(base / photometry.catalog_path).resolve())
    return ServiceConfig(
        paths=_paths(data.get("paths", {}), base, source),
        photometry=photometry,
        daemon=_daemon(data.get("daemon", {}), source),
        logging=_logging(data.get("logging", {}), source),
        source=source,
        web=_web(data.get("web", {}), base, source),
    )


def find_config_path(arg: str | os.PathLike | None = None) -> Path | None:
    """The configuration file: ``arg`` if given, else ``$CONTIMG_PHOTOMETRY_CONFIG``, else None."""
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get(CONFIG_ENV)
    return Path(env).expanduser() if env else None


def load_config(path: str | os.PathLike | None = None) -> ServiceConfig:
    """Read and validate the configuration file.

    Parameters
    ----------
    path : str or Path, optional
        The TOML file; default ``$CONTIMG_PHOTOMETRY_CONFIG``.

    Raises
    ------
    ConfigError
        No file named, file missing or unreadable, TOML syntax error, unknown
        key or bad value (the message names the key, the file and what is allowed).
    """
    found = find_config_path(path)
    if found is None:
        raise ConfigError("--config", None, f"a configuration file (option --config or ${CONFIG_ENV}); "
                          "create one with 'contimg-photometry init DIR'")
    found = found.resolve()
    try:
        text = found.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", str(found), f"a readable TOML file ({exc.strerror or exc})",
                          found) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(syntax)", str(exc), "valid TOML", found) from None
    return config_from_dict(data, base_dir=found.parent, source=found)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))   # a TOML basic string (same escapes as JSON)


def render_config(root: Path, *, photometry: Mapping[str, Any] | None = None,
                  daemon: Mapping[str, Any] | None = None,
                  logging: Mapping[str, Any] | None = None,
                  paths: Mapping[str, Any] | None = None) -> str:
    """The TOML text of a service rooted at ``root`` (what ``contimg-photometry init`` writes).

    Paths point at ``root/{images,mosaics,state,catalogs}``. The main keys are written with
    their defaults; ``photometry``, ``daemon``, ``logging`` and ``paths`` add or override keys
    of those sections (validated when the file is loaded; e.g. ``paths={"products_db": URL}``).
    """
    root = Path(root).resolve()
    phot, d = PhotometryConfig(), DaemonConfig()
    sections = {
        "paths": {"image_dirs": [str(root / "images")], "mosaic_dirs": [str(root / "mosaics")],
                  "state_dir": str(root / "state"),
                  "products_db": str(root / "state" / "products.sqlite3"),
                  "registry_db": str(root / "state" / "data_registry.sqlite3"),
                  "catalog_dir": str(root / "catalogs"), **(paths or {})},
        "photometry": {"catalog": phot.catalog, "method": phot.method, "normalize": phot.normalize,
                       "detect_ese": phot.detect_ese, "ese_preset": phot.ese_preset,
                       **(photometry or {})},
        "daemon": {"workers": d.workers, "polling": d.polling, "rescan_interval_s": d.rescan_interval_s,
                   "settle_s": d.settle_s, "lease_s": d.lease_s, "max_attempts": d.max_attempts,
                   "job_timeout_s": d.job_timeout_s, "drain_timeout_s": d.drain_timeout_s,
                   "metrics_listen": d.metrics_listen, **(daemon or {})},
        "logging": {"format": "auto", "level": "info", **(logging or {})},
    }
    lines = ["# DSA-110 photometry service configuration (written by 'contimg-photometry init').",
             "# Every key is documented with its default in config/photometry.toml of the source tree."]
    for name, table in sections.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
