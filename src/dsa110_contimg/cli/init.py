"""``contimg-photometry init``: write a ready configuration and create its directories.

Two layouts:

* ``init DIR``: everything under DIR (``DIR/photometry.toml``, ``DIR/{images,mosaics,
  state,catalogs}``), for a development or single-user service;
* ``init --systemd``: the layout the shipped unit (``systemd/contimg-photometry.service``)
  can run: the configuration at ``/etc/contimg/photometry.toml`` (the unit's
  ``ExecStart --config``), the state (SQLite databases) and catalogues in
  ``/var/lib/contimg`` (its ``StateDirectory=``), the watched directories under its
  ``ReadWritePaths=`` (``/stage/dsa110-contimg/{images,mosaics}``), JSON logs and
  metrics on ``127.0.0.1:9464``. ``--destdir`` writes the same files under another root
  (packaging, tests) without changing the paths inside the configuration.

``init DIR`` with a DIR the unit cannot write says so (on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

#: What the shipped unit allows (keep in step with systemd/contimg-photometry.service;
#: tests/test_service_systemd.py checks it).
UNIT_CONFIG = Path("/etc/contimg/photometry.toml")
UNIT_STATE_DIR = Path("/var/lib/contimg")
UNIT_READ_WRITE_PATHS = (Path("/stage/dsa110-contimg"), Path("/data/dsa110-contimg"))
UNIT_IMAGE_DIR = Path("/stage/dsa110-contimg/images")
UNIT_MOSAIC_DIR = Path("/stage/dsa110-contimg/mosaics")
METRICS_LISTEN = "127.0.0.1:9464"


def register(sub) -> None:
    p = sub.add_parser("init", help="write a configuration and create its directories "
                                    "(DIR/..., or the systemd layout with --systemd)",
                       description="Write a ready service configuration and create its directories. "
                                   "With DIR: DIR/photometry.toml whose paths point at DIR/images, "
                                   "DIR/mosaics, DIR/state and DIR/catalogs. With --systemd: the "
                                   f"layout the shipped unit can run ({UNIT_CONFIG}, state and "
                                   f"catalogues in {UNIT_STATE_DIR}, images in {UNIT_IMAGE_DIR}, "
                                   f"mosaics in {UNIT_MOSAIC_DIR}). Refuses to overwrite an existing "
                                   "configuration unless --force.")
    p.add_argument("dir", metavar="DIR", nargs="?", default=None,
                   help="service root directory (created if missing); not with --systemd")
    p.add_argument("--systemd", action="store_true",
                   help="the layout of the shipped systemd unit (see above)")
    p.add_argument("--destdir", metavar="ROOT", default=None,
                   help="with --systemd: write the files under ROOT instead of / (packaging, tests); "
                        "the configuration still names the real paths")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="write the configuration here instead of DIR/photometry.toml "
                        f"(with --systemd: instead of {UNIT_CONFIG})")
    p.add_argument("--force", action="store_true", help="overwrite an existing configuration file")
    p.set_defaults(func=run)


def _under(path: Path, roots) -> bool:
    return any(path == r or r in path.parents for r in roots)


def run(args) -> int:
    from dsa110_contimg.cli.common import UsageError
    from dsa110_contimg.core.errors import PhotometryError
    import tomllib

    from dsa110_contimg.service.config import config_from_dict, render_config

    if args.systemd == (args.dir is not None):
        raise UsageError("give exactly one of DIR or --systemd")
    if args.destdir and not args.systemd:
        raise UsageError("--destdir goes with --systemd")
    if args.systemd:
        root = None
        target = Path(args.config) if args.config else UNIT_CONFIG
        paths = {"image_dirs": [str(UNIT_IMAGE_DIR)], "mosaic_dirs": [str(UNIT_MOSAIC_DIR)],
                 "state_dir": str(UNIT_STATE_DIR),
                 "products_db": str(UNIT_STATE_DIR / "products.sqlite3"),
                 "registry_db": str(UNIT_STATE_DIR / "data_registry.sqlite3"),
                 "catalog_dir": str(UNIT_STATE_DIR / "catalogs")}
        text = _systemd_config(render_config, paths)
        dirs = [UNIT_IMAGE_DIR, UNIT_MOSAIC_DIR, UNIT_STATE_DIR, UNIT_STATE_DIR / "catalogs"]
    else:
        root = Path(args.dir).expanduser().resolve()
        target = Path(args.config).expanduser().resolve() if args.config else root / "photometry.toml"
        text = render_config(root, daemon={"metrics_listen": METRICS_LISTEN})
        dirs = [root / sub for sub in ("images", "mosaics", "state", "catalogs")]
    dest = Path(args.destdir).resolve() if args.destdir else None

    def real(p: Path) -> Path:
        return dest / p.relative_to(p.anchor) if dest is not None else p

    written = real(target)
    if written.exists() and not args.force:
        raise PhotometryError("a configuration file exists already (use --force to overwrite it)",
                              written)
    for d in dirs:
        real(d).mkdir(parents=True, exist_ok=True)
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text(text, encoding="utf-8")
    config_from_dict(tomllib.loads(text), base_dir=written.parent, source=written)  # must validate
    print(f"wrote {written}")
    if args.systemd:
        print("install systemd/contimg-photometry.service in /etc/systemd/system/, then: "
              "systemctl daemon-reload && systemctl enable --now contimg-photometry")
        print(f"state and catalogues: {UNIT_STATE_DIR} (the unit's StateDirectory=, owned by the "
              "service user); ingest catalogues there with: contimg-photometry catalog ingest ... "
              f"--catalog-dir {UNIT_STATE_DIR / 'catalogs'}")
    else:
        print(f"run the daemon with: contimg-photometry run --config {target}")
        allowed = (*UNIT_READ_WRITE_PATHS, UNIT_STATE_DIR)
        if not _under(root / "state", allowed):
            print(f"note: the shipped systemd unit can write only {', '.join(map(str, allowed))}; "
                  f"{root / 'state'} is outside them. For systemd use 'contimg-photometry init "
                  "--systemd' or add the folder to the unit's ReadWritePaths=.", file=sys.stderr)
    return 0


def _systemd_config(render_config, paths: dict) -> str:
    """render_config's text with the systemd paths (render_config roots every path in one
    directory; the unit needs them split between StateDirectory and ReadWritePaths)."""
    text = render_config(Path("/"), daemon={"metrics_listen": METRICS_LISTEN},
                         logging={"format": "json"})
    out, section = [], None
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "paths" and " = " in line:
            key = line.split(" = ", 1)[0]
            if key in paths:
                from dsa110_contimg.service.config import _toml_value

                line = f"{key} = {_toml_value(paths[key])}"
        out.append(line)
    return "\n".join(out) + "\n"
