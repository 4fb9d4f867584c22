"""structlog set-up: JSON lines on stdout for journald, readable on a terminal.

``format``: ``json`` (one object per line: ``event``, ``level``,
``timestamp`` ISO-8601 UTC and the bound fields such as ``job_id``, ``path``,
``duration_s``, ``outcome``), ``console`` (coloured key=value), or ``auto``
(console when stdout is a TTY, else JSON). Standard-library logging (watchdog,
SQLAlchemy, alembic) is routed through the same renderer, and so are Python
warnings (:func:`logging.captureWarnings`) and astropy's logger (its own stderr
handler is removed, whenever astropy is imported), so that with ``json`` every
line on stdout/stderr is a JSON object. Every line carries ``node`` (the host
name); the workers bind ``job_id`` and ``path`` while they run a job.

Spawned worker processes inherit the choice through the environment
(:data:`ENV_FORMAT`, :data:`ENV_LEVEL`, :data:`ENV_STREAM`) and call
:func:`configure_from_env` when they start.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import socket
import sys

import structlog

#: Environment variables passing the logging set-up to spawned worker processes.
ENV_FORMAT, ENV_LEVEL, ENV_STREAM = ("CONTIMG_LOG_FORMAT", "CONTIMG_LOG_LEVEL", "CONTIMG_LOG_STREAM")
NODE = socket.gethostname()

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _add_node(_logger, _name, event_dict):
    event_dict.setdefault("node", NODE)
    return event_dict


def configure_logging(fmt: str = "auto", level: str = "info", *, stream=None) -> None:
    """Configure structlog and the stdlib root logger (idempotent)."""
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    if stream is sys.stdout or stream is sys.__stdout__:
        os.environ[ENV_STREAM] = "stdout"
    elif stream is sys.stderr or stream is sys.__stderr__:
        os.environ[ENV_STREAM] = "stderr"
    os.environ[ENV_FORMAT], os.environ[ENV_LEVEL] = fmt, level
    renderer = (structlog.processors.JSONRenderer(sort_keys=False) if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)()))
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_node,
    ]
    structlog.configure(
        processors=shared + [structlog.processors.format_exc_info,
                             structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer])
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_contimg", False):
            root.removeHandler(h)
    handler._contimg = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    for noisy in ("sqlalchemy", "alembic", "watchdog"):
        logging.getLogger(noisy).setLevel(max(_LEVELS[level], logging.WARNING))
    # matplotlib's font-cache notices ("generated new fontManager", "building the font
    # cache") say nothing about the service: only its errors are shown
    for chatty in ("matplotlib", "PIL", "fontTools"):
        logging.getLogger(chatty).setLevel(max(_LEVELS[level], logging.ERROR))
    logging.captureWarnings(True)   # warnings.warn -> logger "py.warnings" -> this handler
    _route_astropy()


def configure_from_env() -> None:
    """In a spawned worker: the parent's format, level and stream (no-op when unset)."""
    fmt = os.environ.get(ENV_FORMAT)
    if not fmt:
        return
    stream = sys.stderr if os.environ.get(ENV_STREAM) == "stderr" else sys.stdout
    configure_logging(fmt, os.environ.get(ENV_LEVEL, "info"), stream=stream)


def _tame_astropy_logger() -> None:
    """astropy's logger: drop its own stderr handler and let records propagate to ours.
    Never creates the ``astropy`` logger (astropy must create it, of its own class)."""
    alog = logging.Logger.manager.loggerDict.get("astropy")
    if not isinstance(alog, logging.Logger):
        return
    for h in list(alog.handlers):
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            alog.removeHandler(h)
    alog.propagate = True


class _AstropyLoggerHook(importlib.abc.MetaPathFinder):
    """Wraps ``astropy.logger._init_log`` when that module is first imported, so that
    astropy's stderr handler is removed as soon as astropy creates its logger (and
    importing astropy is not paid by commands that never use it)."""

    def find_spec(self, name, path, target=None):
        if name != "astropy.logger":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_wrap(module):
            exec_module(module)
            _wrap_init_log(module)

        spec.loader.exec_module = exec_and_wrap
        return spec


def _wrap_init_log(module) -> None:
    init = getattr(module, "_init_log", None)
    if init is None or getattr(init, "_contimg", False):
        return

    def init_log(*args, **kwargs):
        log = init(*args, **kwargs)
        _tame_astropy_logger()
        return log

    init_log._contimg = True  # type: ignore[attr-defined]
    module._init_log = init_log


_HOOK = _AstropyLoggerHook()


def _route_astropy() -> None:
    if "astropy.logger" in sys.modules:
        _tame_astropy_logger()
        _wrap_init_log(sys.modules["astropy.logger"])
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
