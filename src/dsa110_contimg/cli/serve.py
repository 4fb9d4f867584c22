"""``contimg-photometry serve``: the review web site and its JSON API (read-only without a token)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def register(sub) -> None:
    from dsa110_contimg.cli import common

    p = sub.add_parser("serve", help="web pages for ESE review and service status (JSON API under /api/)",
                       description="Serve the overview, ESE candidates, sources and images pages and a "
                                   "JSON API under /api/, reading the products database. Review actions "
                                   "need the token in [web] token_file; without one the site is read-only.")
    common.add_db_options(p, registry=False)
    p.add_argument("--listen", metavar="HOST:PORT", default=None,
                   help="address to listen on (default [web] listen, else 127.0.0.1:8088)")
    p.add_argument("--token-file", metavar="FILE", default=None,
                   help="file of reviewers' 'name:token' lines, or one bare token (default [web] "
                        "token_file; none = read-only)")
    p.set_defaults(func=run)


def stamp_cache_dir(cfg, products_db: str) -> Path:
    """Where the site keeps its stamp cutouts: ``[web] stamp_cache_dir``, else
    ``<state_dir>/stamps`` of the configuration, else beside a SQLite database, else the
    user's cache directory."""
    if cfg is not None:
        return Path(cfg.web.stamp_cache_dir or Path(cfg.paths.state_dir) / "stamps")
    if "://" not in products_db:
        return Path(products_db).resolve().parent / "stamps"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "contimg-photometry" / "stamps"


def run(args) -> int:
    from dsa110_contimg.cli import common
    from dsa110_contimg.core.errors import ConfigError
    from dsa110_contimg.service.config import WebConfig, parse_listen

    try:
        import uvicorn

        from dsa110_contimg.web.app import create_app
        from dsa110_contimg.web.auth import read_reviewers
    except ImportError as exc:
        raise ConfigError("serve", exc.name, "the web extra installed: pip install '.[web]'") from None
    cfg = common.service_config(args)
    web_cfg = cfg.web if cfg is not None else WebConfig()
    listen = args.listen or web_cfg.listen
    host, port = parse_listen(listen, key="--listen" if args.listen else "web.listen")
    reviewers = read_reviewers(args.token_file or web_cfg.token_file)
    path = common.products_db(args)
    if "://" not in path and not Path(path).exists():
        raise common.NoDatabase("products database does not exist (run the daemon or 'db upgrade' first)",
                                path)
    app = create_app(path, reviewers=reviewers, stale_after_s=cfg.daemon.stale_after_s if cfg else 60.0,
                     stamp_cache_dir=stamp_cache_dir(cfg, path), stamp_cache_mb=web_cfg.stamp_cache_mb)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"contimg-photometry serve: warning: listening on {host}, not only this machine; "
              "the site has no TLS (put a reverse proxy with TLS in front)", file=sys.stderr)
    print(f"contimg-photometry serve: http://{host}:{port}/ ({f'{len(reviewers)} reviewer(s)' if reviewers else 'read-only'})",
          file=sys.stderr, flush=True)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal to the previous
    # handler: make that a no-op so that a stop by systemd exits 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
    return 0
