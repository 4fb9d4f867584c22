"""``contimg-photometry images list|show|exclude|include|renormalise``: what happened to each
image, and why.

Per image: the QC verdict with its reasons, the normalisation status, factor and
error, the number of references and the reason when it failed, how the references
were chosen (``catalogue`` or the ``ensemble`` fallback), the photometry method and
every workflow note. ``show`` adds every candidate reference with why it was chosen
or rejected, and the jobs that measured the image; both say when an image is a duplicate
of another (the same data under another path) or excluded by an operator, with the reason.
``exclude ID --reason TEXT`` takes an epoch out of light curves, normalisation (as a
reference epoch too), variability and ESE, recomputed at once; ``include ID`` puts it back.
``renormalise [ID ...] [--field ID] [--since MJD]`` normalises images again now
(:mod:`dsa110_contimg.pipeline.renormalise`).
"""

from __future__ import annotations

import json
import sys

from dsa110_contimg.core.enums import QC_STATES
from dsa110_contimg.store.schema import NORM_STATES


def register(sub) -> None:
    from dsa110_contimg.cli import common

    p = sub.add_parser("images", help="per-image outcome: QC, normalisation and why",
                       description="Show what happened to measured images: QC verdict and reasons, "
                                   "normalisation status, factor, error, references and the reason "
                                   "when an image could not be normalised, method and notes. Exit 1 "
                                   "when the image does not exist, 4 when the database is missing.")
    isub = p.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    lp = isub.add_parser("list", help="most recently measured first")
    lp.add_argument("--norm-status", choices=NORM_STATES, default=None,
                    help="only images with this normalisation status")
    lp.add_argument("--qc-status", choices=QC_STATES, default=None,
                    help="only images with this QC verdict")
    lp.add_argument("--limit", type=int, default=100, help="at most this many (0 = all)")
    sp = isub.add_parser("show", help="one image with its reference choices")
    sp.add_argument("image", metavar="IMAGE", help="image id, path (or its tail) or data id")
    xp = isub.add_parser("exclude", help="take an epoch out of light curves, normalisation, "
                                         "variability and ESE (recomputed)")
    xp.add_argument("image", metavar="IMAGE", help="image id, path (or its tail) or data id")
    xp.add_argument("--reason", required=True, help="why (shown wherever the image is)")
    ip = isub.add_parser("include", help="put an excluded epoch back (recomputed)")
    ip.add_argument("image", metavar="IMAGE", help="image id, path (or its tail) or data id")
    rp = isub.add_parser("renormalise", help="normalise images again now (those given, the "
                                             "un-normalised ones of a field or since an MJD)",
                         description="Normalise images again with the current baselines: each "
                                     "with its own references when it has them, else with those "
                                     "of the normalised image of its field nearest in time; then "
                                     "recompute the running statistics and ESE evaluation of "
                                     "their sources. A few images per write transaction. Exit 1 "
                                     "when nothing was selected.")
    rp.add_argument("image", metavar="IMAGE", nargs="*", help="image id, path (or its tail) or data id")
    rp.add_argument("--field", metavar="IMAGE", default=None,
                    help="every un-normalised image of this image's field")
    rp.add_argument("--since", metavar="MJD", type=float, default=None,
                    help="every un-normalised image observed at or after this MJD")
    for q in (lp, sp, xp, ip, rp):
        common.add_db_options(q, registry=False)
        q.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _fmt(x, spec=".4f") -> str:
    return "-" if x is None else format(x, spec)


def _summary_line(r: dict) -> str:
    norm = r["norm_status"]
    if norm == "ok":
        norm = (f"normalised, factor {_fmt(r['norm_factor'])} +- {_fmt(r['norm_factor_err'])} "
                f"({r['norm_n_refs']} {r.get('norm_method') or 'catalogue'} refs)"
                + (f" -- {r['norm_reason']}" if r.get("norm_reason") else ""))
    elif norm == "failed":
        norm = f"NOT normalised: {r['norm_reason']}"
    else:
        norm = "normalisation off"
    if r.get("duplicate_of") is not None:
        norm = f"DUPLICATE of image #{r['duplicate_of']} (same data; no epoch)"
    elif r.get("excluded"):
        norm = f"EXCLUDED: {r['excluded_reason']}; " + norm
    return f"#{r['id']:<6} MJD {_fmt(r['mjd'], '.3f'):>10}  QC {r['qc_status']:<8} {norm}  {r['path']}"


def _detail(r: dict) -> str:
    lines = [f"image #{r['id']}: {r['path']}",
             f"  kind {r['kind']}, method {r['method']}, catalogue {r['catalog']}, beam from "
             f"{r['beam_source']}, MJD {_fmt(r['mjd'], '.5f')}",
             f"  sources {r['n_success']}/{r['n_sources']} measured"]
    if r.get("duplicate_of") is not None:
        lines.append(f"  DUPLICATE of image #{r['duplicate_of']}: the same data under another "
                     "path; not measured again and no epoch of any light curve")
    if r.get("excluded"):
        lines.append(f"  EXCLUDED from light curves, normalisation, variability and ESE: "
                     f"{r['excluded_reason']} (since {r.get('excluded_at_iso') or '-'}; "
                     f"'images include {r['id']}' puts it back)")
    lines += [
             f"  QC: {r['qc_status']}"]
    lines += [f"    - {x}" for x in r["qc_reasons"]]
    lines.append(f"  normalisation: {r['norm_status']}"
                 + (f" ({r['norm_method']})" if r.get("norm_method") else ""))
    if r["norm_factor"] is not None:
        lines.append(f"    factor {_fmt(r['norm_factor'])} +- {_fmt(r['norm_factor_err'])}, "
                     f"scatter {_fmt(r['norm_scatter'])}, references used {r['norm_n_refs']}")
    if r["norm_reason"]:
        lines.append(f"    reason: {r['norm_reason']}")
    if r["notes"]:
        lines.append("  notes:")
        lines += [f"    - {x}" for x in r["notes"]]
    if r.get("references"):
        lines.append("  candidate references (role, flux/baseline, SNR, compactness, why):")
        lines += [f"    {x['catalog_id']:<24} {(x.get('role') or '-'):<10} "
                  f"{_fmt(x.get('ratio'), '.4f'):>7}  SNR {_fmt(x['snr'], '7.1f')}  "
                  f"{x['compactness']:<8} {x['reason']}" for x in r["references"]]
    if r.get("detections") is not None:
        det = r["detections"]
        counts = {}
        for d in det:
            counts[d["status"]] = counts.get(d["status"], 0) + 1
        lines.append(f"  blind detections: {len(det)}"
                     + (" (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"
                        if det else ""))
        lines += [f"    {d['status']:<12} {(d['source_name'] or '-'):<28} "
                  f"{_fmt(d['peak_jyb'] * 1e3 if d['peak_jyb'] is not None else None, '9.3f')} "
                  f"mJy/beam  SNR {_fmt(d['snr'], '6.1f')}" + (f"  ({d['reason']})" if d['reason'] else "")
                  for d in det if d["status"] != "associated"]
    if r.get("jobs"):
        lines.append("  jobs: " + ", ".join(f"#{j}" for j in r["jobs"]))
    return "\n".join(lines)


def run(args) -> int:
    from dsa110_contimg.cli import common
    from dsa110_contimg.service.status import iso
    from dsa110_contimg.store import images as image_store

    if args.images_command in ("exclude", "include"):
        return _set_excluded(args)
    if args.images_command == "renormalise":
        return _renormalise(args)
    db = common.open_products(args)
    try:
        with db.engine.connect() as conn:
            if args.images_command == "list":
                rows = image_store.list_images(conn, norm_status=args.norm_status,
                                               qc_status=args.qc_status, limit=args.limit or None)
                for r in rows:
                    r["measured_at"] = iso(r["measured_at"])
                print(json.dumps(rows, indent=2) if args.json else
                      "\n".join(_summary_line(r) for r in rows) or "no images")
                return 0
            image_id = image_store.find_image(conn, args.image)
            if image_id is None:
                print(f"contimg-photometry images: error: no image {args.image!r}", file=sys.stderr)
                return 1
            r = image_store.image_detail(conn, image_id)
            r["measured_at"] = iso(r["measured_at"])
            r["excluded_at_iso"] = iso(r["excluded_at"]) if r.get("excluded_at") else None
            print(json.dumps(r, indent=2) if args.json else _detail(r))
            return 0
    finally:
        db.dispose()


def _photometry_config(args):
    """The [photometry] settings of the configuration file, or the defaults without one."""
    from dsa110_contimg.cli import common
    from dsa110_contimg.core.config import PhotometryConfig

    scfg = common.service_config(args)
    return scfg.photometry if scfg is not None else PhotometryConfig()


def _set_excluded(args) -> int:
    """``images exclude|include``: one write transaction, the field recomputed."""
    from dsa110_contimg.cli import common
    from dsa110_contimg.pipeline.exclusion import ExclusionError, set_excluded
    from dsa110_contimg.store import images as image_store

    cfg = _photometry_config(args)
    db = common.open_products(args, write=True)
    try:
        with db.engine.connect() as conn:
            image_id = image_store.find_image(conn, args.image)
        if image_id is None:
            print(f"contimg-photometry images: error: no image {args.image!r}", file=sys.stderr)
            return 1
        exclude = args.images_command == "exclude"
        try:
            out = set_excluded(db.engine, cfg, image_id, excluded=exclude,
                               reason=getattr(args, "reason", None))
        except ExclusionError as exc:
            print(f"contimg-photometry images: error: {exc.reason}", file=sys.stderr)
            return 1
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(out, indent=2))
    elif not out["changed"]:
        print(f"image #{image_id} already {'excluded' if exclude else 'included'}; nothing changed")
    else:
        print(f"image #{image_id} {'excluded: ' + out['reason'] if exclude else 'included again'}; "
              f"recomputed {out['sources']} sources, {len(out['renormalised'])} images "
              f"normalised again, {out['ese_flagged']} ESE candidates flagged")
    return 0


def _renormalise(args) -> int:
    """``images renormalise``: the selected images normalised again, their field recomputed."""
    from dsa110_contimg.cli import common
    from dsa110_contimg.pipeline.renormalise import renormalise_images, select_images
    from dsa110_contimg.store import images as image_store

    cfg = _photometry_config(args)
    db = common.open_products(args, write=True)
    try:
        with db.engine.connect() as conn:
            keys = list(args.image) + ([args.field] if args.field else [])
            found = {k: image_store.find_image(conn, k) for k in keys}
            missing = [k for k, v in found.items() if v is None]
            if missing:
                print(f"contimg-photometry images: error: no image {missing[0]!r}", file=sys.stderr)
                return 1
            ids = select_images(conn, image_ids=[found[k] for k in args.image],
                                field_of=found.get(args.field) if args.field else None,
                                since_mjd=args.since)
        if not ids:
            print("contimg-photometry images: error: no image selected (give IMAGE ids, --field "
                  "or --since; only un-normalised images are taken from a field or a date)",
                  file=sys.stderr)
            return 1
        out = renormalise_images(db.engine, cfg, ids)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for r in out["images"]:
        print(f"#{r['image_id']:<6} " + (f"normalised, factor {_fmt(r['factor'])} +- "
                                         f"{_fmt(r['factor_err'])} (references of image "
                                         f"#{r['references_from']})" if r["status"] == "ok"
                                         else f"NOT normalised: {r['reason']}"))
    print(f"{out['normalised']} of {len(out['images'])} image(s) normalised; running statistics "
          f"of {out['sources']} source(s) recomputed, {out['ese_flagged']} ESE candidate(s) flagged")
    return 0
