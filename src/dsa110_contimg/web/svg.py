"""Hand-built SVG plots for the web site (no matplotlib: a thumbnail costs ~0.1 ms).

Every function returns an ``<svg>`` element as a string, sized in CSS pixels, with a
``viewBox`` so it scales. Fluxes are drawn in mJy/beam (inputs in Jy/beam), times in MJD.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

C_RAW, C_NORM, C_QC, C_REF, C_FIT, C_HL = "#8a8a8a", "#1f5fa8", "#c0392b", "#2e8b57", "#d35400", "#c0392b"
C_CAT = "#6b4c9a"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


class _Frame:
    """Maps data coordinates into a plot rectangle inside a ``w`` x ``h`` canvas."""

    def __init__(self, w, h, xlim, ylim, margin=(8, 8, 8, 8)):
        self.w, self.h = w, h
        self.l, self.r, self.t, self.b = margin
        self.x0, self.x1 = xlim
        self.y0, self.y1 = ylim

    def x(self, v):
        return self.l + (np.asarray(v, float) - self.x0) / (self.x1 - self.x0) * (self.w - self.l - self.r)

    def y(self, v):
        return self.h - self.b - (np.asarray(v, float) - self.y0) / (self.y1 - self.y0) * (self.h - self.t - self.b)


def _limits(*arrays, pad=0.06):
    vals = np.concatenate([np.asarray(a, float).ravel() for a in arrays if np.size(a)] or [np.array([])])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < 1e-12:
        lo, hi = lo - max(abs(lo) * 0.1, 1e-3), hi + max(abs(hi) * 0.1, 1e-3)
    span = hi - lo
    return lo - pad * span, hi + pad * span


def _open(w, h, label, css="plot"):
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>']


def _axes(out, f: _Frame, xlabel, ylabel, *, xfmt="{:g}", yfmt="{:g}", logx=False, logy=False,
          xticks=True, xlabel_y=None):
    out.append(f'<rect x="{f.l}" y="{f.t}" width="{f.w - f.l - f.r}" height="{f.h - f.t - f.b}" '
               'fill="none" stroke="#444" stroke-width="1"/>')
    for v in (nice_ticks(f.x0, f.x1, 6) if xticks else []):
        x = float(f.x(v))
        txt = f"{10 ** v:.3g}" if logx else xfmt.format(v)
        out.append(f'<line x1="{x:.1f}" y1="{f.h - f.b}" x2="{x:.1f}" y2="{f.h - f.b + 4}" stroke="#444"/>'
                   f'<text x="{x:.1f}" y="{f.h - f.b + 16}" text-anchor="middle" class="tick">{txt}</text>')
    for v in nice_ticks(f.y0, f.y1, 5):
        y = float(f.y(v))
        txt = f"{10 ** v:.3g}" if logy else yfmt.format(v)
        out.append(f'<line x1="{f.l - 4}" y1="{y:.1f}" x2="{f.l}" y2="{y:.1f}" stroke="#444"/>'
                   f'<line x1="{f.l}" y1="{y:.1f}" x2="{f.w - f.r}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{f.l - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{txt}</text>')
    out.append(f'<text x="{(f.l + f.w - f.r) / 2:.0f}" y="{xlabel_y or f.h - 4}" text-anchor="middle" '
               f'class="axlabel">{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(13 {(f.t + f.h - f.b) / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle" class="axlabel">{escape(ylabel)}</text>')


def _points(out, xs, ys, *, shape="circle", r=3.0, fill="#000", stroke="none", css=""):
    cls = f' class="{css}"' if css else ""
    x = np.asarray(xs, float).ravel()
    y = np.asarray(ys, float).ravel()
    paint = f'fill="{fill}" stroke="{stroke}"/>'.replace("%", "%%")
    if shape == "square":
        one = '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" ' + paint
        cols = (x - r, y - r, np.full(x.size, 2 * r), np.full(x.size, 2 * r))
    elif shape == "star":
        one = '<path d="M%.1f %.1fL%.1f %.1fL%.1f %.1fL%.1f %.1fL%.1f %.1fZ" ' + paint
        cols = (x, y - r * 1.6, x + r, y + r, x - r * 1.5, y - r * 0.4, x + r * 1.5, y - r * 0.4,
                x - r, y + r)
    else:
        one = '<circle cx="%.1f" cy="%.1f" r="%.1f" ' + paint
        cols = (x, y, np.full(x.size, r))
    out.append(f"<g{cls}>" + _repeat(one, cols) + "</g>")


def _repeat(one: str, cols) -> str:
    """``one`` (a %-format of ``len(cols)`` values) filled in with each row of the columns
    ``cols``, concatenated: one formatting call for every point, not one per point."""
    n = int(np.asarray(cols[0]).size)
    if n == 0:
        return ""
    return (one * n) % tuple(np.column_stack(cols).ravel().tolist())


def _errorbars(out, xs, lo, hi, color):
    x, a, b = (np.asarray(v, float).ravel() for v in (xs, lo, hi))
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.any():
        d = _repeat("M%.1f %.1fV%.1f", (x[keep], a[keep], b[keep]))
        out.append(f'<path d="{d}" stroke="{color}" stroke-width="1" opacity="0.7"/>')


#: Approximate advance of one legend character (px at the 11 px legend font) and the
#: room a legend symbol with its gap takes.
LEGEND_CHAR_PX, LEGEND_SYMBOL_PX, LEGEND_ROW_PX = 6.4, 30, 16


def _legend_rows(labels: list[str], width: float) -> list[list[int]]:
    """Indices of the legend items on each row, wrapped so that no row is wider than ``width``."""
    rows: list[list[int]] = [[]]
    used = 0.0
    for i, label in enumerate(labels):
        w = LEGEND_SYMBOL_PX + LEGEND_CHAR_PX * len(label)
        if rows[-1] and used + w > width:
            rows.append([])
            used = 0.0
        rows[-1].append(i)
        used += w
    return rows


def _legend(out, items, x0: float, y0: float, width: float) -> None:
    """Draw legend ``items`` ((label, colour, kind) with kind circle, square, star, hollow,
    band, line or dotted) in rows from (x0, y0), wrapped within ``width``."""
    for r, row in enumerate(_legend_rows([label for label, _, _ in items], width)):
        lx, y = x0, y0 + r * LEGEND_ROW_PX
        for i in row:
            label, col, kind = items[i]
            if kind in ("line", "dotted"):
                dash = ' stroke-dasharray="2 3"' if kind == "dotted" else ""
                out.append(f'<line x1="{lx}" y1="{y - 4}" x2="{lx + 14}" y2="{y - 4}" stroke="{col}" '
                           f'stroke-width="2"{dash}/>')
            elif kind == "band":
                out.append(f'<rect x="{lx}" y="{y - 9}" width="12" height="10" fill="{col}" opacity="0.2"/>')
            elif kind == "hollow":
                out.append(f'<circle cx="{lx + 6}" cy="{y - 4}" r="4" fill="none" stroke="{col}"/>')
            else:
                _points(out, [lx + 6], [y - 4], shape=kind, fill=col, r=3)
            out.append(f'<text x="{lx + 18}" y="{y}" class="legend">{escape(label)}</text>')
            lx += LEGEND_SYMBOL_PX + LEGEND_CHAR_PX * len(label)


def lightcurve_svg(lc: dict, *, fit=None, width: int = 760, height: int = 340, baseline_epochs: int = 10,
                   title: str = "light curve", reference_jyb: float | None = None,
                   catalog_mjy: float | None = None, catalog_label: str = "catalogue flux") -> str:
    """The full light-curve plot of a source.

    ``lc`` as from :func:`dsa110_contimg.store.lightcurves.source_lightcurve` (Jy/beam, MJD).
    Raw fluxes grey circles, normalised blue squares with 1-sigma bars, epochs whose image
    failed QC hollow red circles (class ``qc-failed``), epochs where the source served as a
    normalisation reference green stars, the first ``baseline_epochs`` epochs shaded,
    ``fit`` (an ESEFit with ``model(mjd)``) as an orange line, ``reference_jyb`` (the source's
    stored normalisation baseline, Jy/beam) as a dashed green line, ``catalog_mjy`` (the
    catalogue flux density, mJy) as a dotted grey line. The legend wraps onto as many rows
    as it needs below the plot (the canvas grows by them), so no item is cut.
    """
    mjd = np.asarray(lc["mjd"], float)
    ok = np.asarray(lc["success"], bool) & np.isfinite(mjd)
    qc_bad = np.array([s == "failed" for s in lc["qc_status"]], bool)
    raw, rawe = 1e3 * np.asarray(lc["peak_jyb"], float), 1e3 * np.asarray(lc["peak_err_jyb"], float)
    nf, ne = 1e3 * np.asarray(lc["norm_flux_jyb"], float), 1e3 * np.asarray(lc["norm_err_jyb"], float)
    norm = ok & np.isfinite(nf) & ~qc_bad
    good = ok & ~qc_bad
    if not ok.any():
        out = _open(width, height, title, "plot lightcurve")
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no measurements</text></svg>')
        return "".join(out)
    grid = fitv = None
    if fit is not None:
        grid = np.linspace(mjd[ok].min(), mjd[ok].max(), 200)
        fitv = 1e3 * np.asarray(fit.model(grid), float)
    ref_mjy = 1e3 * reference_jyb if reference_jyb is not None and math.isfinite(reference_jyb) else None
    cat_mjy = float(catalog_mjy) if catalog_mjy is not None and math.isfinite(catalog_mjy) else None
    items = [("raw", C_RAW, "circle"), ("normalised", C_NORM, "square"), ("image failed QC", C_QC, "hollow"),
             ("used as reference", C_REF, "star"), ("baseline epochs", C_REF, "band")]
    items += [("reference baseline", C_REF, "line")] if ref_mjy is not None else []
    items += [(f"{catalog_label} ({cat_mjy:.1f} mJy)", C_CAT, "dotted")] if cat_mjy is not None else []
    items += [("fitted ESE template", C_FIT, "line")] if fitv is not None else []
    margin_l, margin_r = 62, 12
    n_rows = len(_legend_rows([i[0] for i in items], width - margin_l - margin_r))
    legend_h = LEGEND_ROW_PX * n_rows
    height += legend_h - LEGEND_ROW_PX
    out = _open(width, height, title, "plot lightcurve")
    ylo, yhi = _limits(raw[ok], nf[norm], fitv if fitv is not None else [],
                       [v for v in (ref_mjy, cat_mjy) if v is not None])
    f = _Frame(width, height, _limits(mjd[ok], pad=0.03), (ylo, yhi),
               margin=(margin_l, margin_r, 12, 46 + legend_h))
    sm = np.sort(mjd[ok])
    end = sm[min(baseline_epochs, sm.size) - 1]
    x0, x1 = float(f.x(sm[0])) - 3, float(f.x(end)) + 3
    out.append(f'<rect class="baseline" x="{x0:.1f}" y="{f.t}" width="{max(x1 - x0, 1):.1f}" '
               f'height="{height - f.t - f.b}" fill="{C_REF}" opacity="0.08"/>')
    _axes(out, f, "MJD", "peak flux density (mJy/beam)", xfmt="{:.0f}", yfmt="{:g}",
          xlabel_y=height - f.b + 30)
    _errorbars(out, f.x(mjd[good]), f.y(raw[good] - rawe[good]), f.y(raw[good] + rawe[good]), C_RAW)
    _points(out, f.x(mjd[good]), f.y(raw[good]), fill=C_RAW, r=2.8, css="raw")
    if norm.any():
        _errorbars(out, f.x(mjd[norm]), f.y(nf[norm] - ne[norm]), f.y(nf[norm] + ne[norm]), C_NORM)
        _points(out, f.x(mjd[norm]), f.y(nf[norm]), shape="square", fill=C_NORM, r=2.8, css="norm")
    if (ok & qc_bad).any():
        _points(out, f.x(mjd[ok & qc_bad]), f.y(raw[ok & qc_bad]), fill="none", stroke=C_QC, r=4,
                css="qc-failed")
    ref = norm & np.asarray(lc.get("used_as_reference", np.zeros(mjd.size, bool)), bool)
    if ref.any():
        _points(out, f.x(mjd[ref]), f.y(nf[ref]) - 9, shape="star", fill=C_REF, r=3.2, css="reference")
    for value, css, col, dash in ((ref_mjy, "reference-baseline", C_REF, "6 4"),
                                  (cat_mjy, "catalog-flux", C_CAT, "2 3")):
        if value is not None:
            y = float(f.y(value))
            out.append(f'<line class="{css}" x1="{f.l}" y1="{y:.1f}" x2="{width - f.r}" y2="{y:.1f}" '
                       f'stroke="{col}" stroke-width="1.5" stroke-dasharray="{dash}"/>')
    if fitv is not None:
        d = "M" + "L".join(f"{x:.1f} {y:.1f}" for x, y in zip(f.x(grid).tolist(), f.y(fitv).tolist()))
        out.append(f'<path class="fit" d="{d}" fill="none" stroke="{C_FIT}" stroke-width="2"/>')
    out.append('<g class="legend">')
    _legend(out, items, f.l, height - legend_h + 4, width - f.l - f.r)
    out.append("</g></svg>")
    return "".join(out)


def thumbnail_svg(mjd, flux, *, width: int = 180, height: int = 46, label: str = "light curve") -> str:
    """A sparkline: flux (any unit) against MJD, points joined by a line, no axes."""
    mjd, flux = np.asarray(mjd, float), np.asarray(flux, float)
    keep = np.isfinite(mjd) & np.isfinite(flux)
    out = _open(width, height, label, "plot thumb")
    if keep.sum() == 0:
        out.append("</svg>")
        return "".join(out)
    order = np.argsort(mjd[keep])
    x, y = mjd[keep][order], flux[keep][order]
    f = _Frame(width, height, _limits(x, pad=0.02), _limits(y, pad=0.08), margin=(3, 3, 3, 3))
    px, py = f.x(x).tolist(), f.y(y).tolist()
    d = "M" + "L".join(f"{a:.1f} {b:.1f}" for a, b in zip(px, py))
    out.append(f'<path d="{d}" fill="none" stroke="{C_NORM}" stroke-width="1.2"/>')
    _points(out, px, py, fill=C_NORM, r=1.5)
    out.append("</svg>")
    return "".join(out)


def bar_svg(values, labels, *, width: int = 520, height: int = 150, title: str = "",
            ylabel: str = "") -> str:
    """A bar chart (e.g. jobs done per hour); ``labels`` shown under every 4th bar."""
    vals = np.asarray(values, float)
    out = _open(width, height, title or ylabel, "plot bars")
    top = max(float(vals.max()) if vals.size else 0.0, 1.0)
    f = _Frame(width, height, (0, max(vals.size, 1)), (0, top * 1.1), margin=(44, 8, 10, 30))
    _axes(out, f, "", ylabel, yfmt="{:g}", xticks=False)
    bw = (width - f.l - f.r) / max(vals.size, 1)
    for i, v in enumerate(vals.tolist()):
        y = float(f.y(v))
        out.append(f'<rect x="{f.l + i * bw + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" '
                   f'height="{height - f.b - y:.1f}" fill="{C_NORM}"><title>{escape(labels[i])}: {v:g}</title></rect>')
        if i % 4 == 0:
            out.append(f'<text x="{f.l + i * bw + bw / 2:.1f}" y="{height - f.b + 14}" text-anchor="middle" '
                       f'class="tick">{escape(labels[i])}</text>')
    out.append("</svg>")
    return "".join(out)


def eta_v_svg(eta, v, *, highlight: int | None = None, source_ids=None, width: int = 420,
              height: int = 320, thresholds: tuple[float, float] | None = None,
              selected=None) -> str:
    """The η–V diagram (log–log) of a field; the source ``highlight`` (a source id) in red;
    ``selected`` (bool per source): the field's variables, in red."""
    eta, v = np.asarray(eta, float), np.asarray(v, float)
    keep = (eta > 0) & (v > 0) & np.isfinite(eta) & np.isfinite(v)
    out = _open(width, height, "eta-V diagram of the field", "plot etav")
    if not keep.any():
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no variability metrics</text></svg>')
        return "".join(out)
    le, lv = np.log10(eta[keep]), np.log10(v[keep])
    f = _Frame(width, height, _limits(le), _limits(lv), margin=(70, 12, 12, 40))
    _axes(out, f, "η (weighted reduced χ²)", "V (fractional variability)", logx=True, logy=True)
    if thresholds is not None:
        te, tv = (math.log10(t) if t and t > 0 else None for t in thresholds)
        if te is not None and f.x0 < te < f.x1:
            out.append(f'<line x1="{float(f.x(te)):.1f}" y1="{f.t}" x2="{float(f.x(te)):.1f}" y2="{height - f.b}" '
                       'stroke="#999" stroke-dasharray="4 3"/>')
        if tv is not None and f.y0 < tv < f.y1:
            out.append(f'<line x1="{f.l}" y1="{float(f.y(tv)):.1f}" x2="{width - f.r}" y2="{float(f.y(tv)):.1f}" '
                       'stroke="#999" stroke-dasharray="4 3"/>')
    _points(out, f.x(le), f.y(lv), fill="#5b7fa6", r=1.8, css="field")
    if selected is not None:
        sel = np.asarray(selected, bool)[keep]
        if sel.any():
            _points(out, f.x(le[sel]), f.y(lv[sel]), fill=C_HL, r=3.5, css="selected")
    if highlight is not None and source_ids is not None:
        sel = np.asarray(source_ids)[keep] == highlight
        if sel.any():
            _points(out, f.x(le[sel]), f.y(lv[sel]), fill=C_HL, stroke="#000", r=5.5, css="this-source")
    out.append("</svg>")
    return "".join(out)
