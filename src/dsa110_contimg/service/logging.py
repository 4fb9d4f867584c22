"""structlog set-up: JSON lines on stdout for journald, readable on a terminal.

``format``: ``json`` (one object per line: ``event``, ``level``,
``timestamp`` ISO-8601 UTC and the bound fields such as ``job_id``, ``path``,
``duration_s``, ``outcome``), ``console`` (coloured key=value), or ``auto``
(console when stdout is a TTY, else JSON). Standard-library logging (watchdog,
SQLAlchemy, alembic) is routed through the same renderer.
"""

from __future__ import annotations

import logging
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure_logging(fmt: str = "auto", level: str = "info", *, stream=None) -> None:
    """Configure structlog and the stdlib root logger (idempotent)."""
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer = (structlog.processors.JSONRenderer(sort_keys=False) if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)()))
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
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
