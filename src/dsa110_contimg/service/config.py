"""The service configuration: one TOML file, one schema, validated before anything runs.

The schema is a set of pydantic models (:mod:`dsa110_contimg.core.schema`), one per TOML
table; each key is a field whose type, limits and docstring are its specification:

``[paths]`` (:class:`PathsConfig`)
    Watched trees, state, databases, catalogues. Relative paths are resolved against the
    directory of the configuration file (:data:`~dsa110_contimg.core.schema.Directory`). A
    database value with a scheme (``postgresql+psycopg://...``) is an SQLAlchemy URL, kept
    as a URL (:data:`Database`, see :mod:`dsa110_contimg.store.urls`); a plain value is an
    SQLite file.
``[photometry]`` (:class:`~dsa110_contimg.core.config.PhotometryConfig`)
    The workflow parameters, quality control included (``qc``, ``qc_max_rms_jyb``).
``[daemon]`` (:class:`DaemonConfig`)
    Watcher, queue, pool, metrics endpoint, node identity.
``[logging]`` (:class:`LoggingConfig`)
    ``format`` (``auto`` | ``json`` | ``console``) and ``level``.
``[web]`` (:class:`WebConfig`)
    ``listen`` (``host:port`` of ``contimg-photometry serve``) and ``token_file``.
``[alerts]`` (:class:`AlertsConfig`)
    Alert destinations (``webhooks``, ``voevent_dir``), events, rate limit, retry back-off,
    VOEvent identity.

An unknown key, a bad type or a bad value raises :class:`ConfigError`, one line naming the
file, the key, the value and what is allowed.

``config/photometry.toml`` is generated from the schema by :func:`documented_toml`
(docstrings as comments, defaults as values); regenerate it with::

    PYTHONPATH=src python -m dsa110_contimg.service.config > config/photometry.toml
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, Mapping

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dsa110_contimg.core.config import PhotometryConfig
from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.core.schema import (
    Allowed,
    ConfigModel,
    Directory,
    FilePath,
    invalid,
    one_of,
    section_toml,
    toml_value,
)
from dsa110_contimg.store.alerts import PRODUCER_EVENTS
from dsa110_contimg.store.urls import (
    DatabaseURL,
    expand_env,
    is_url,
    mask_url,
    parse_database_url,
)

#: Environment variable naming the configuration file.
CONFIG_ENV = "CONTIMG_PHOTOMETRY_CONFIG"
#: Default executor: the photometry workflow shared with ``contimg-photometry worker``
#: (see :mod:`dsa110_contimg.service.runtime`; the former value
#: ``dsa110_contimg.photometry.worker:execute_job`` still means the same).
DEFAULT_EXECUTOR = "photometry"
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
SYMLINK_RULES = ("within_roots", "refuse", "follow")
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DB_ALLOWED = "a non-empty SQLite file path or SQLAlchemy URL"


# -- types -------------------------------------------------------------------------------
def _expanded(value: str, *, shown: str) -> str:
    """``value`` with ``${VAR}``/``$VAR`` taken from the environment; an unset variable is a
    configuration error (``shown``: the value as the message may show it)."""
    try:
        return expand_env(value)
    except KeyError as exc:
        raise invalid(f"an environment variable ${{{exc.args[0]}}} that is set (it is not)",
                      value=shown) from None


def _database(value: Any, info: ValidationInfo):
    """A database value: an SQLAlchemy URL (:class:`DatabaseURL`) when it has a scheme, else an
    SQLite file path resolved against the configuration folder; unset: under ``state_dir``."""
    if value is None:
        state = info.data.get("state_dir")
        if state is None:
            return None
        return Path(state) / ("products.sqlite3" if info.field_name == "products_db"
                              else "data_registry.sqlite3")
    if isinstance(value, DatabaseURL):
        return value
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise invalid(_DB_ALLOWED)
    text = _expanded(value, shown=mask_url(value))
    if not is_url(text):
        path = Path(text).expanduser()
        base = (info.context or {}).get("base")
        return (Path(base) / path).resolve() if base is not None and not path.is_absolute() else path
    try:
        return parse_database_url(text, password_file=info.data.get("db_password_file"))
    except ValueError as exc:
        raise invalid("an SQLAlchemy URL such as postgresql+psycopg://user@host/dbname "
                      f"({exc})", value=mask_url(value)) from None


#: A database: an SQLAlchemy URL (``postgresql+psycopg://user@host/db``, kept as a
#: :class:`~dsa110_contimg.store.urls.DatabaseURL` whose ``repr`` hides the password) or an
#: SQLite file path (relative to the configuration file's folder).
Database = Annotated[Path | DatabaseURL | None, PlainValidator(_database), Allowed(_DB_ALLOWED)]


def _dir_list(value):
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    return value


def _empty_is_none(value):
    return None if value == "" else value


DirectoryList = Annotated[tuple[Directory, ...], BeforeValidator(_dir_list),
                          Allowed("a list of directory paths")]
SymlinkRule = one_of(SYMLINK_RULES)
LogFormat = one_of(LOG_FORMATS)
LogLevel = one_of(LOG_LEVELS, fold_case=True)
#: Seconds, > 0 / >= 0.
Seconds = Annotated[float, Field(gt=0), Allowed("a number of seconds > 0")]
NonNegativeSeconds = Annotated[float, Field(ge=0), Allowed("a number of seconds >= 0")]


def parse_listen(value, src=None, key: str = "web.listen") -> tuple[str, int]:
    """``host:port`` -> (host, port); raises ConfigError naming ``key``."""
    parsed = _host_port(value)
    if parsed is None:
        raise ConfigError(key, value, _LISTEN_ALLOWED, src)
    return parsed


_LISTEN_ALLOWED = "'host:port' with a port in [0, 65535], e.g. 127.0.0.1:8088"


def _host_port(value) -> tuple[str, int] | None:
    if isinstance(value, str) and ":" in value:
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 0 <= int(port) <= 65535:
            return host, int(port)
    return None


# -- sections ------------------------------------------------------------------------------
class PathsConfig(ConfigModel):
    """Where the service reads and writes (absolute paths after loading).

    ``products_db`` / ``registry_db`` are SQLite file paths (:class:`Path`) or
    SQLAlchemy URLs (:class:`~dsa110_contimg.store.urls.DatabaseURL`, a ``str``
    whose ``repr`` hides the password). ``db_password_file`` holds the password of
    URLs that name a user but no password.
    """

    toml_comment = "Relative paths are resolved against the directory of this file."

    image_dirs: DirectoryList = Field((), json_schema_extra={"toml": ["images"]})
    """Directories watched recursively for new images (WSClean/tclean outputs). A file is a
    mosaic when it lies under a mosaic directory, or when its header has NIMAGES / lacks
    BMAJ."""
    mosaic_dirs: DirectoryList = Field((), json_schema_extra={"toml": ["mosaics"]})
    """Directories watched recursively for mosaics."""
    state_dir: Directory = Field(Path("state"), validate_default=True)
    """Local-disk directory for the databases (SQLite WAL does not work over NFS/Lustre)."""
    db_password_file: Annotated[FilePath | None, BeforeValidator(_empty_is_none)] = \
        Field(None, json_schema_extra={"toml": ""})
    """File whose first line is the password of database URLs that name a user but no
    password (e.g. a systemd credential, mode 0600). Empty: none."""
    products_db: Database = Field(None, validate_default=True,
                                  json_schema_extra={"toml": "state/products.sqlite3"})
    """Products database (images, measurements, the job queue, heartbeats). Default:
    <state_dir>/products.sqlite3. A value with a scheme is an SQLAlchemy URL, never a path:
    several daemons on several hosts share one PostgreSQL database (pip install
    '.[postgres]'), e.g.
      products_db = "postgresql+psycopg://contimg@dbhost:5432/contimg"
    Credentials never go in this file: ${VAR} / $VAR are expanded from the environment (an
    unset variable is an error), libpq's PGPASSWORD / PGPASSFILE (~/.pgpass) / PGUSER apply
    when the URL has no password, or see db_password_file. Logs and 'status' show URLs with
    the password masked."""
    registry_db: Database = Field(None, validate_default=True,
                                  json_schema_extra={"toml": "state/data_registry.sqlite3"})
    """Data registry database (path or URL, as products_db). Default:
    <state_dir>/data_registry.sqlite3."""
    catalog_dir: Directory = Field(Path("catalogs"), validate_default=True)
    """Catalogue directory (NVSS/FIRST/RACS/VLASS/master stores)."""

    @property
    def watched(self) -> tuple[Path, ...]:
        return tuple(self.image_dirs) + tuple(self.mosaic_dirs)


class DaemonConfig(ConfigModel):
    """Watcher, queue and worker-pool settings (each field is documented by the docstring
    under it, which is also its comment in ``config/photometry.toml``)."""

    workers: int = Field(2, ge=1, le=64)
    """Worker processes (spawned; 1..64). Each runs one job at a time."""
    polling: bool = False
    """Polling observer instead of inotify: required on NFS/Lustre/GPFS/CIFS, where writes from
    other hosts produce no inotify events."""
    poll_interval_s: Seconds = 5.0
    """Polling interval (s), polling mode only."""
    rescan_interval_s: Seconds = 300.0
    """Reconciliation scan of every watched tree (s); also at start-up, on SIGHUP and after an
    inotify overflow."""
    settle_s: NonNegativeSeconds = 30.0
    """A file that is not complete (size below what its header implies, or unreadable) stays
    'incomplete'; once unchanged for settle_s it is queued anyway and its job fails with the
    reason. Polling mode: the quiescence time (at least 2 x poll_interval_s)."""
    recheck_interval_s: Seconds = 1.0
    """How often incomplete files are re-checked (s)."""
    pbcor_wait_s: NonNegativeSeconds = 60.0
    """How long a restored image without primary-beam correction (-image.fits, .image.fits)
    waits for its PB-corrected sibling (-image-pb.fits, .pbcor.fits) before being measured
    (s)."""
    lease_s: Seconds = 300.0
    """Job lease (s); the daemon extends it while a job runs. A job whose lease expires (daemon
    killed) is queued again by the reaper."""
    max_attempts: int = Field(3, ge=1, le=100)
    """Claims before a job is 'dead' (retry with 'contimg-photometry jobs retry')."""
    backoff_base_s: Seconds = 5.0
    """Retry back-off: min(cap, base * 2**(attempt-1)) * U(0.5, 1) seconds; this is the base."""
    backoff_cap_s: Seconds = 600.0
    """Retry back-off cap (s)."""
    job_timeout_s: Seconds = 1800.0
    """Per-job wall-clock limit (s): the worker is killed and the job retried."""
    drain_timeout_s: NonNegativeSeconds = 60.0
    """On SIGTERM, running jobs get this long to finish; the rest are handed back (s). Must be
    below lease_s and below systemd's TimeoutStopSec."""
    reap_interval_s: Seconds = 30.0
    """Expired-lease reaper period (s)."""
    heartbeat_interval_s: Seconds = 5.0
    """Heartbeat row update period (s); 'status' reads its age."""
    stale_after_s: Seconds = 60.0
    """'status' reports a heartbeat older than this as stale (degraded, exit 1)."""
    max_event_queue: int = Field(100_000, ge=100, le=10_000_000)
    """Bound of the in-memory event queue; when full, events are dropped and a rescan
    scheduled."""
    executor: Annotated[str, Allowed("'photometry', 'dask' or 'package.module:attribute'")] = DEFAULT_EXECUTOR
    """The job executor run in the workers: "photometry", or 'package.module:attribute' naming
    an executor class/instance (an object with name and run(ctx)). The former value
    "dsa110_contimg.photometry.worker:execute_job" is still accepted and means "photometry"."""
    metrics_listen: Annotated[str, Allowed("'' (disabled) or 'HOST:PORT' such as '127.0.0.1:9464' "
                                           "(port 0-65535)")] = ""
    """Prometheus endpoint: "HOST:PORT" serves http://HOST:PORT/metrics from the daemon (jobs by
    state, queue depth and age, stage durations, images/min, failures by class, workers, ESE
    candidates, last success); "" disables it. 'contimg-photometry init' writes
    "127.0.0.1:9464". Example Grafana dashboard and alert rules: deploy/."""
    worker_memory_limit_mb: int = Field(4096, ge=0, le=16_777_216)
    """Address-space limit of each worker process (RLIMIT_AS, MiB; 0 = none): an image whose
    header asks for an absurd amount of memory fails with the reason instead of exhausting
    the host."""
    max_interruptions: int = Field(10, ge=1, le=1000)
    """A job interrupted this many times by the death of the daemon running it (SIGKILL, host
    crash) is 'dead'; such interruptions do not count as attempts."""
    node: Annotated[str, Allowed("a node name of 1-64 letters, digits, '.', '_' or '-' "
                                 "(\"\" = the host name)")] = ""
    """Name of this daemon instance ("" = the host name). Only one daemon may run per node and
    state directory (advisory lock state_dir/daemon-<node>.lock); to run a second daemon on
    the same state on purpose, give it another node name, e.g. "dsa-node-1". 'status' lists
    every live instance."""
    symlinks: SymlinkRule = "within_roots"
    """Symlinks among the watched files: within_roots (followed only when the target lies
    inside a watched directory) | refuse (recorded as skipped) | follow (any target). Same
    rule for events and scans; FIFOs, sockets, devices and directories are always skipped
    with the reason."""
    check_timeout_s: Seconds = 10.0
    """Bound of one examination of a file (s): a filesystem call that hangs longer is abandoned
    and the file re-examined later; the main loop never waits for it."""
    max_header_bytes: int = Field(8 * 1024 * 1024, ge=2880, le=1 << 30)
    """Header bytes read at most while looking for END cards (a file without one fails)."""
    loop_stall_s: Seconds = 20.0
    """A main loop without a completed tick for this long (s) is stalled: 'status' and the
    watchdog STATUS say degraded when another process holds the database lock or the disk is
    full (watchdog still pinged), unhealthy otherwise (no ping: systemd restarts the
    service)."""
    dask_scheduler: Annotated[str, Allowed("a Dask scheduler address tcp://host:port, or \"\"")] = ""
    """Run jobs on a Dask cluster instead of local worker processes: the scheduler's address,
    e.g. "tcp://head:8786" (with executor = "dask" or any 'module:function'). The queue, the
    leases and exactly-once stay here; workers need this package, the images, the catalogues
    and a shared database (PostgreSQL). Empty: local workers."""

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str) -> str:
        from dsa110_contimg.service.runtime import (
            BUILTIN_EXECUTORS,
            normalise_executor_spec,
        )

        value = normalise_executor_spec(value)
        if value not in BUILTIN_EXECUTORS and value != "dask" and (
                value.count(":") != 1 or value.startswith(":") or value.endswith(":")):
            raise invalid(f"one of {sorted(BUILTIN_EXECUTORS) + ['dask']} or "
                          "'package.module:attribute'")
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str) -> str:
        from dsa110_contimg.service.metrics import parse_listen as parse_metrics_listen

        try:
            parse_metrics_listen(value)
        except ConfigError as exc:
            raise invalid(exc.allowed) from None
        return value

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        if value and not _NODE.fullmatch(value):
            raise invalid("a node name of 1-64 letters, digits, '.', '_' or '-' (\"\" = the host name)")
        return value

    @field_validator("dask_scheduler")
    @classmethod
    def _dask_scheduler(cls, value: str) -> str:
        if value and "://" not in value:
            raise invalid("a Dask scheduler address tcp://host:port, or \"\"")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.executor == "dask" and not self.dask_scheduler:
            raise invalid("a Dask scheduler address tcp://host:port (executor = \"dask\")",
                          field="dask_scheduler", value=self.dask_scheduler)
        if self.drain_timeout_s >= self.lease_s:
            raise invalid(f"less than daemon.lease_s ({self.lease_s})", field="drain_timeout_s",
                          value=self.drain_timeout_s)
        return self

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


class LoggingConfig(ConfigModel):
    """How the service logs."""

    format: LogFormat = "auto"
    """auto (readable on a terminal, JSON lines otherwise, e.g. under systemd/journald) | json |
    console"""
    level: LogLevel = "info"
    """debug | info | warning | error"""


class WebConfig(ConfigModel):
    """``contimg-photometry serve``: ``listen`` (``host:port``, localhost by default),
    ``token_file`` (the reviewers' tokens; unset = the site is read-only) and the
    postage-stamp cache (``stamp_cache_dir``, ``stamp_cache_mb``)."""

    toml_comment = "'contimg-photometry serve': the review web site and its JSON API under /api/."

    listen: Annotated[str, Allowed(_LISTEN_ALLOWED)] = "127.0.0.1:8088"
    """host:port it listens on; keep it on localhost and put a reverse proxy in front for
    others."""
    token_file: FilePath | None = Field(None, json_schema_extra={"example": "state/web_token"})
    """The reviewers: one 'name:token' line each (tokens of >= 8 characters; '#' comments),
    or a single bare token for one anonymous reviewer; keep it mode 0600. Review actions
    (investigate, dismiss, reactivate a candidate) need a token, as 'Authorization: Bearer
    <token>' or entered on a page, and are logged under its reviewer's name. Unset: the site
    is read-only."""

    stamp_cache_dir: Annotated[Directory | None, BeforeValidator(_empty_is_none)] = \
        Field(None, json_schema_extra={"toml": ""})
    """Directory of the postage-stamp cutouts the source pages show (cut once from the
    stored images, then read from here). Empty: <state_dir>/stamps."""
    stamp_cache_mb: int = Field(256, ge=1, le=1_000_000)
    """Size bound of the stamp directory (MB); the least recently used cutouts go first."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if _host_port(value) is None:
            raise invalid(_LISTEN_ALLOWED)
        return value


#: Events that can be sent (``[alerts] events``; docs/alerts.md).
ALERT_EVENTS = PRODUCER_EVENTS
ALERT_ROLES = ("test", "observation")
_WEBHOOK_ALLOWED = "a list of http:// or https:// URLs (${VAR} taken from the environment)"
_IVORN = re.compile(r"ivo://[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9._~/+-]*)?")


def _webhook_list(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise invalid(_WEBHOOK_ALLOWED)
    urls = []
    for item in value:
        if not isinstance(item, str) or not item:
            raise invalid(_WEBHOOK_ALLOWED)
        url = _expanded(item, shown=item)
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid(_WEBHOOK_ALLOWED, value=item)
        urls.append(url)
    return tuple(urls)


def _empty_dir(value, info: ValidationInfo):
    from dsa110_contimg.core.schema import resolve_path

    return None if value in ("", None) else resolve_path(value, info)


class AlertsConfig(ConfigModel):
    """Alerts: where the events recorded in the outbox are delivered, how fast, and what the
    VOEvent packets say (docs/alerts.md)."""

    toml_comment = ("Alerts on new ESE candidates, raised confidences, ESE stage changes and new "
                    "sources (docs/alerts.md). Every event is recorded in the database with the "
                    "event itself; the daemon then delivers it, at least once, to each destination "
                    "configured here. Nothing is sent while webhooks and voevent_dir are empty.")

    webhooks: Annotated[tuple[str, ...], PlainValidator(_webhook_list), Allowed(_WEBHOOK_ALLOWED)] = ()
    """URLs that receive an HTTP POST of each alert as JSON (a 'text' line a chat channel
    shows as is, the structured fields and the idempotency 'key', also sent as the
    Idempotency-Key header), e.g. a Slack or Mattermost incoming webhook. A URL holding a
    secret can be written "${ALERT_WEBHOOK_URL}" and set in the environment (systemd
    EnvironmentFile); the URL is never logged or stored, only its host."""
    voevent_dir: Annotated[Path | None, PlainValidator(_empty_dir),
                           Allowed("a directory path, or \"\" for none")] = \
        Field(None, json_schema_extra={"toml": ""})
    """Spool directory: each alert is written there as a VOEvent 2.0 XML file
    (<key>.xml, atomically: temporary file, fsync, rename) for a broker (e.g. Comet) to
    pick up. "" = none."""
    events: Annotated[tuple[str, ...], BeforeValidator(_dir_list),
                      Allowed("a list of events among " + ", ".join(ALERT_EVENTS))] = ALERT_EVENTS
    """Events that are sent: ese_candidate (a new ESE candidate), ese_confidence (a
    candidate reached a higher confidence), ese_stage (an ESE stage change), new_source (a
    source not seen before, above new_source_min_sigma). Others are recorded, not sent."""
    new_source_min_sigma: float = Field(7.0, gt=0)
    """A new source (found new from [photometry] new_source_min_sigma) is sent only when its
    significance (new_high_sigma) reaches this (sigma); the earlier DSA-110 pipeline alerted at
    7 sigma (10 sigma critical)."""
    role: one_of(ALERT_ROLES) = "test"
    """VOEvent role and the payload's 'role': test (commissioning: brokers and receivers
    treat the packets as tests) | observation. 'alerts test' always sends role test."""
    ivorn_base: Annotated[str, Allowed("an IVORN such as 'ivo://dsa110.caltech/contimg'")] = \
        "ivo://dsa110.caltech/contimg"
    """IVORN of the stream; each packet's IVORN is <ivorn_base>#<key>. Register the
    authority before sending role observation."""
    author_ivorn: Annotated[str, Allowed("an IVORN such as 'ivo://dsa110.caltech/contact'")] = \
        "ivo://dsa110.caltech/contact"
    """The VOEvent Who/AuthorIVORN."""
    author: str = "DSA-110 continuum photometry"
    """The VOEvent Who/Author/shortName and the name alerts are signed with."""
    contact_email: str = ""
    """Who/Author/contactEmail ("" = left out)."""
    site_url: str = ""
    """Base URL of the review web site ('serve') as others reach it, e.g.
    "https://dsa110.example.org/photometry"; alerts then link to the candidate page. ""
    = no link."""
    rate_limit: int = Field(10, ge=2, le=10_000)
    """Messages per webhook per rate_window_s at most; when more alerts are due, the last
    message of the window summarises all the others in one message (each alert's key is in
    it). The VOEvent spool is not limited (one packet per alert)."""
    rate_window_s: Seconds = 3600.0
    """Rate-limit window (s)."""
    retry_base_s: Seconds = 10.0
    """A destination that failed (connection refused, timeout, HTTP 5xx or 429, spool not
    writable) is retried after min(retry_cap_s, retry_base_s * 2**(failures-1)) *
    U(0.5, 1) seconds; its alerts wait in the database meanwhile, across restarts."""
    retry_cap_s: Seconds = 900.0
    """Retry back-off cap (s)."""
    give_up_after_s: NonNegativeSeconds = 7 * 86400.0
    """An alert still undelivered this long after it was recorded is marked failed at that
    destination ('alerts replay' re-sends it); 0 = never give up. An endpoint that refuses
    an alert (any HTTP status but 2xx, 408, 425, 429 and 5xx) fails it at once."""
    timeout_s: Seconds = 10.0
    """Timeout of one webhook request (s)."""
    poll_interval_s: Seconds = 5.0
    """How often the daemon's delivery thread looks for due alerts (s); it also looks as
    soon as a job finishes."""

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if v not in ALERT_EVENTS]
        if bad or not all(isinstance(v, str) for v in value):
            raise invalid("a list of events among " + ", ".join(ALERT_EVENTS))
        return tuple(value)

    @field_validator("ivorn_base", "author_ivorn")
    @classmethod
    def _ivorn(cls, value: str) -> str:
        if not _IVORN.fullmatch(value) or "#" in value:
            raise invalid("an IVORN such as 'ivo://dsa110.caltech/contimg' (no '#')")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.retry_base_s > self.retry_cap_s:
            raise invalid(f"at least alerts.retry_base_s ({self.retry_base_s})", field="retry_cap_s",
                          value=self.retry_cap_s)
        return self

    @property
    def configured(self) -> bool:
        """True when there is a destination to send to."""
        return bool(self.webhooks) or self.voevent_dir is not None


_SECTIONS = ("paths", "photometry", "daemon", "logging", "web", "alerts")


class ServiceConfig(ConfigModel):
    """The whole service configuration: one attribute per TOML table, ``source`` the file."""

    paths: PathsConfig = Field(default_factory=dict, validate_default=True)
    photometry: PhotometryConfig = Field(default_factory=dict, validate_default=True)
    daemon: DaemonConfig = Field(default_factory=dict, validate_default=True)
    logging: LoggingConfig = Field(default_factory=dict, validate_default=True)
    web: WebConfig = Field(default_factory=dict, validate_default=True)
    alerts: AlertsConfig = Field(default_factory=dict, validate_default=True)
    source: Path | None = Field(None, json_schema_extra={"internal": True})

    def photometry_params(self) -> dict:
        """Job parameters of the photometry executor (:mod:`dsa110_contimg.service.executors`)."""
        return {"config": self.photometry.to_dict()}


# -- loading -------------------------------------------------------------------------------
def config_from_dict(data: Mapping[str, Any], *, base_dir: Path | None = None,
                     source: Path | None = None) -> ServiceConfig:
    """Validate a parsed TOML document and build a :class:`ServiceConfig`.

    Relative paths are resolved against ``base_dir`` (default: the current
    directory). Raises :class:`ConfigError` naming key, file and allowed values.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    data = dict(data)
    if "source" in data:
        raise ConfigError("source", data["source"], "one of the keys " + ", ".join(sorted(_SECTIONS)),
                          source)
    cfg = ServiceConfig.validate_dict(data, context={"base": base}, source=source)
    return cfg.model_copy(update={"source": source})


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


#: TOML literal of a value (kept for ``cli/init.py``).
_toml_value = toml_value

#: The top of the documented configuration file.
DOC_HEADER = """\
DSA-110 photometry service configuration: every key, with its default.

Use:   contimg-photometry run --config /etc/contimg/photometry.toml
       (or set CONTIMG_PHOTOMETRY_CONFIG). 'contimg-photometry init DIR' writes a ready file.
Relative paths are resolved against the directory of this file. An unknown key or a bad value
stops every command at start-up with an error naming the key, the file and what is allowed.
Values shown are the defaults.

This file is generated from the schema (dsa110_contimg.service.config); regenerate it with
  PYTHONPATH=src python -m dsa110_contimg.service.config > config/photometry.toml"""


def documented_toml() -> str:
    """The documented configuration file (``config/photometry.toml``): every section and key of
    the schema, its docstring as a comment and its default as the value."""
    from dsa110_contimg.core.schema import comment

    lines = comment(DOC_HEADER)
    for name in _SECTIONS:
        model = ServiceConfig.model_fields[name].annotation
        lines += [""] + section_toml(name, model)
    return "\n".join(lines) + "\n"


def render_config(root: Path, *, photometry: Mapping[str, Any] | None = None,
                  daemon: Mapping[str, Any] | None = None,
                  logging: Mapping[str, Any] | None = None,
                  paths: Mapping[str, Any] | None = None,
                  alerts: Mapping[str, Any] | None = None) -> str:
    """The TOML text of a service rooted at ``root`` (what ``contimg-photometry init`` writes).

    Paths point at ``root/{images,mosaics,state,catalogs}``. The main keys are written with
    their defaults; ``photometry``, ``daemon``, ``logging`` and ``paths`` add or override keys
    of those sections (validated when the file is loaded; e.g. ``paths={"products_db": URL}``);
    ``alerts`` adds an ``[alerts]`` section.
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
    if alerts:
        sections["alerts"] = dict(alerts)
    lines = ["# DSA-110 photometry service configuration (written by 'contimg-photometry init').",
             "# Every key, documented, with its default: contimg-photometry config dump",
             "# Check this file (and its databases): contimg-photometry config check --config FILE"]
    for name, table in sections.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":   # python -m dsa110_contimg.service.config > config/photometry.toml
    sys.stdout.write(documented_toml())
