"""``contimg-photometry run``: the daemon in the foreground (systemd runs this)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="run the watcher daemon in the foreground",
        description="Watch the configured image and mosaic directories, queue each new science "
                    "image and measure it in a pool of worker processes. Job state lives in the "
                    "products database, so a restart resumes. SIGTERM/SIGINT: graceful stop "
                    "(running jobs get daemon.drain_timeout_s, the rest are handed back; exit 0). "
                    "SIGHUP: rescan the watched trees. Speaks the systemd notify protocol when "
                    "NOTIFY_SOCKET is set.")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="service configuration (TOML); default $CONTIMG_PHOTOMETRY_CONFIG")
    p.add_argument("--workers", type=int, default=None, help="override daemon.workers")
    p.add_argument("--node", default=None, metavar="NAME",
                   help="override daemon.node (run a second daemon on the same state on purpose)")
    p.set_defaults(func=run)


def run(args) -> int:
    from dsa110_contimg.core.errors import ConfigError
    from dsa110_contimg.service.config import load_config
    from dsa110_contimg.service.daemon import Daemon
    from dsa110_contimg.service.logging import configure_logging

    cfg = load_config(args.config)
    if args.workers is not None:
        if not 1 <= args.workers <= 64:
            raise ConfigError("--workers", args.workers, "an integer in [1, 64]")
        cfg = cfg.replace(daemon=cfg.daemon.replace(workers=args.workers))
    if args.node is not None:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", args.node):
            raise ConfigError("--node", args.node, "a node name of 1-64 letters, digits, '.', '_' or '-'")
        cfg = cfg.replace(daemon=cfg.daemon.replace(node=args.node))
    configure_logging(cfg.logging.format, cfg.logging.level)
    return Daemon(cfg).run()
