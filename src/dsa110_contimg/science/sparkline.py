"""A light curve summarised to a fixed number of points, for sparklines (the candidates
page): every epoch when there are at most ``points``, else the means of ``points`` groups of
consecutive epochs of (nearly) equal size. The summary is computed where the light curve is
already in memory (the ESE step) and stored with the candidate, so that drawing a page of
candidates reads no measurement.

Vectorised over light curves: rows of NaN-padded (n_sources, n_epochs) arrays, no database.
"""

from __future__ import annotations

import json

import numpy as np

#: Points of a stored sparkline (the thumbnail is 180 px wide: 3 px a point).
SPARKLINE_POINTS = 60


def summarise(mjd, flux, points: int = SPARKLINE_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Summaries of light curves (rows of ``mjd``, MJD, and ``flux``, any unit; NaN where no
    epoch; epochs in any order).

    Returns ``(mjd, flux, n)``: (n_sources, points) arrays of the points in MJD order, NaN
    padded, and the number of points of each row (``min(valid epochs, points)``). A row with
    ``k > points`` valid epochs is cut into ``points`` groups of ``k // points`` or
    ``k // points + 1`` consecutive epochs, each shown at its mean MJD and mean flux.
    """
    mjd, flux = np.atleast_2d(np.asarray(mjd, float)), np.atleast_2d(np.asarray(flux, float))
    n_src = mjd.shape[0]
    ok = np.isfinite(mjd) & np.isfinite(flux)
    key = np.where(ok, mjd, np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    m = np.take_along_axis(np.where(ok, mjd, 0.0), order, axis=1)
    f = np.take_along_axis(np.where(ok, flux, 0.0), order, axis=1)
    k = ok.sum(axis=1)
    n_pts = np.minimum(k, points)
    j = np.arange(mjd.shape[1])[None, :]
    valid = j < k[:, None]
    # epoch j of a row with k epochs falls in group floor(j * n_pts / k)
    group = (j * n_pts[:, None]) // np.maximum(k, 1)[:, None]
    flat = (np.arange(n_src)[:, None] * points + group)[valid]
    size = np.bincount(flat, minlength=n_src * points).reshape(n_src, points)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_m = np.bincount(flat, m[valid], n_src * points).reshape(n_src, points) / size
        out_f = np.bincount(flat, f[valid], n_src * points).reshape(n_src, points) / size
    return out_m, out_f, n_pts


def encode(mjd_row, flux_row, n: int) -> str | None:
    """One summary row as stored: JSON ``{"mjd": [...], "flux": [...]}`` (MJD to 1e-4 d, flux
    to 6 significant digits), None when it has no point."""
    if n <= 0:
        return None
    return json.dumps({"mjd": [round(v, 4) for v in np.asarray(mjd_row[:n], float).tolist()],
                       "flux": [float(f"{v:.6g}") for v in np.asarray(flux_row[:n], float).tolist()]},
                      separators=(",", ":"))


def encode_all(mjd, flux, points: int = SPARKLINE_POINTS) -> list[str | None]:
    """:func:`summarise` then :func:`encode` of every row."""
    m, f, n = summarise(mjd, flux, points)
    return [encode(m[i], f[i], int(n[i])) for i in range(m.shape[0])]


def decode(text: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A stored summary as ``(mjd, flux)`` arrays, or None."""
    if not text:
        return None
    d = json.loads(text)
    return np.asarray(d["mjd"], float), np.asarray(d["flux"], float)
