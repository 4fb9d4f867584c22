"""``contimg-photometry init DIR``: write a ready configuration and create its directories."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("init", help="write DIR/photometry.toml and create DIR/{images,mosaics,state,catalogs}",
                       description="Write a ready service configuration at DIR/photometry.toml whose "
                                   "paths point at DIR/images, DIR/mosaics, DIR/state and DIR/catalogs, "
                                   "and create those directories. Refuses to overwrite an existing file "
                                   "unless --force.")
    p.add_argument("dir", metavar="DIR", help="service root directory (created if missing)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="write the configuration here instead of DIR/photometry.toml "
                        "(e.g. /etc/contimg/photometry.toml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing configuration file")
    p.set_defaults(func=run)


def run(args) -> int:
    from dsa110_contimg.photometry.errors import ConfigError
    from dsa110_contimg.service.config import load_config, render_config

    root = Path(args.dir).expanduser().resolve()
    target = Path(args.config).expanduser().resolve() if args.config else root / "photometry.toml"
    if target.exists() and not args.force:
        raise ConfigError("--config" if args.config else "DIR", str(target),
                          "a path with no configuration file yet (or use --force)")
    for sub in ("images", "mosaics", "state", "catalogs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_config(root), encoding="utf-8")
    load_config(target)  # what we wrote must validate
    print(f"wrote {target}")
    print(f"run the daemon with: contimg-photometry run --config {target}")
    return 0
