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
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from dsa110_contimg.photometry.errors import ConfigError
    from dsa110_contimg.service.config import load_config
    from dsa110_contimg.service.daemon import Daemon
    from dsa110_contimg.service.logging import configure_logging

    cfg = load_config(args.config)
    if args.workers is not None:
        if not 1 <= args.workers <= 64:
            raise ConfigError("--workers", args.workers, "an integer in [1, 64]")
        cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, workers=args.workers))
    configure_logging(cfg.logging.format, cfg.logging.level)
    return Daemon(cfg).run()
