"""Postage stamps: cutouts of a source in its epochs, rendered on the server as PNG.

Which epochs (:func:`strip_epochs`): for an ESE candidate, epochs spread over twice the
fitted event around its minimum (before, in and after the dip); otherwise the latest
epoch and a sample spread over the earlier ones. The strip shares one colour scale
(:func:`common_scale`, from the cutouts' pixels: the median minus 2σ up to the brightest
source peak), so a dip is seen as a fainter stamp. Each stamp (:func:`render_png`) is the
cutout resampled to :data:`STAMP_PX` pixels, north up and east left for images on the
usual grid, an asinh stretch on an inferno-like colour map, the position marked by four
ticks (cyan) and the restoring beam drawn in the lower left (white).

Rendering is numpy into a PNG written with zlib (:mod:`dsa110_contimg.web.png`): a few
milliseconds a stamp, no plotting package (matplotlib would take ~50 ms a figure and is
only an extra). The source page carries its stamps inline (``data:`` URLs of ~5 kB), so a
view costs one request, not one per stamp; each stamp is also its own URL
(:mod:`dsa110_contimg.web.handlers.stamps`). Cutouts come from the disk cache (:mod:`dsa110_contimg.web.stamp_cache`)
or are cut from the stored image (a memory-mapped read of the cutout's rows only); an
image that moved or cannot be read gives a :class:`Stamp` with the reason instead.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.core.paths import fs_path, printable
from dsa110_contimg.science.cutout import Cutout
from dsa110_contimg.web.png import encode_rgb
from dsa110_contimg.web.stamp_cache import StampCache, cutout_key

#: Stamps in a source's strip.
STRIP_LENGTH = 8
#: Side of a rendered stamp (px).
STAMP_PX = 128
#: Half width of a cutout in beam FWHM (so neighbours that could blend are in view).
HALF_WIDTH_BEAMS = 4.0
#: Softening of the asinh stretch, as a fraction of the colour range.
STRETCH = 0.25
#: Inferno-like colour map anchors (position 0..1, RGB).
_ANCHORS = ((0.0, (0, 0, 4)), (0.25, (87, 16, 110)), (0.5, (188, 55, 84)), (0.75, (249, 142, 9)),
            (1.0, (252, 255, 164)))
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), [a for a, _ in _ANCHORS], [c[k] for _, c in _ANCHORS])
                 for k in range(3)], axis=1).astype(np.uint8)
BLANK_RGB, MARK_RGB, BEAM_RGB = (72, 72, 72), (0, 230, 255), (255, 255, 255)


@dataclass(frozen=True)
class Stamp:
    """One epoch of a strip: its image and measurement, and the cutout or why there is none."""

    image_id: int
    mjd: float
    path: str
    peak_jyb: float
    qc_status: str
    cutout: Cutout | None
    reason: str | None


def strip_epochs(lc: dict, candidate: dict | None, n: int = STRIP_LENGTH) -> np.ndarray:
    """Indices (MJD order) of the light-curve rows a strip shows: for a candidate with a
    fitted event (``t_min_mjd``, ``duration_days``) the epochs nearest ``n`` times spread
    over the event's minimum ± its duration, else the latest and ``n - 1`` spread over the
    earlier ones."""
    mjd = np.asarray(lc["mjd"], float)
    rows = np.flatnonzero(np.isfinite(mjd))
    if rows.size <= n:
        return rows
    t_min = (candidate or {}).get("t_min_mjd")
    duration = (candidate or {}).get("duration_days")
    if t_min is not None and duration and math.isfinite(t_min) and math.isfinite(duration):
        targets = np.linspace(t_min - duration, t_min + duration, n)
        order = np.argsort(np.abs(mjd[rows][None, :] - targets[:, None]), axis=1)
        chosen: list[int] = []
        for k in range(n):     # the nearest epoch not taken yet, target by target
            chosen.append(next(int(rows[j]) for j in order[k] if int(rows[j]) not in chosen))
        return np.array(sorted(chosen, key=lambda i: mjd[i]))
    earlier = rows[np.unique(np.round(np.linspace(0, rows.size - 2, n - 1)).astype(int))]
    return np.append(earlier, rows[-1])


def load_stamp(cache: StampCache, stored_path: str, ra_deg: float, dec_deg: float,
               half_width_deg: float) -> tuple[Cutout | None, str | None]:
    """(cutout, None) from the cache or the image at ``stored_path``, or (None, why not)."""
    from dsa110_contimg.core.errors import PhotometryError
    from dsa110_contimg.science.cutout import cut
    from dsa110_contimg.science.image import RadioImage

    path = fs_path(stored_path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None, f"image moved or deleted: nothing at {printable(stored_path)}"
    except OSError as exc:
        return None, f"image not readable: {exc.strerror or exc}"
    key = cutout_key(path, stat, ra_deg, dec_deg, half_width_deg)
    cached = cache.get(key)
    if cached is not None:
        return cached, None
    try:
        with RadioImage.open(path, check_empty=False) as image:
            cutout = cut(image, ra_deg, dec_deg, half_width_deg)
    except (PhotometryError, OSError, ValueError) as exc:
        return None, f"image unreadable: {exc}"
    cache.put(key, cutout)
    return cutout, None


def common_scale(cutouts: list[Cutout]) -> tuple[float, float]:
    """(low, high) Jy/beam of a strip's colour scale: the pixels' median minus 2σ (σ from
    the median absolute deviation) up to the brightest pixel within a beam of the position
    in any epoch (at least 10σ above the median)."""
    pixels = np.concatenate([c.data[np.isfinite(c.data)] for c in cutouts] or [np.zeros(1)])
    if pixels.size == 0:
        return 0.0, 1.0
    med = float(np.median(pixels))
    sigma = 1.4826 * float(np.median(np.abs(pixels - med))) or 1e-6
    peaks = [_peak_near(c) for c in cutouts]
    peak = max([p for p in peaks if math.isfinite(p)] or [med + 10 * sigma])
    return med - 2.0 * sigma, max(peak, med + 10.0 * sigma)


def _peak_near(c: Cutout) -> float:
    r = max(c.beam_pix[0] if c.beam_pix else 2.0, 2.0)
    yy, xx = np.mgrid[:c.data.shape[0], :c.data.shape[1]]
    near = np.hypot(xx - c.x, yy - c.y) <= r
    vals = c.data[near & np.isfinite(c.data)]
    return float(vals.max()) if vals.size else float("nan")


def _draw(rgb: np.ndarray, xs, ys, colour) -> None:
    """Set the pixels nearest (xs, ys) (display coordinates, row 0 at the top) to ``colour``."""
    xs, ys = np.rint(np.asarray(xs, float)).astype(int), np.rint(np.asarray(ys, float)).astype(int)
    keep = (xs >= 0) & (xs < rgb.shape[1]) & (ys >= 0) & (ys < rgb.shape[0])
    rgb[ys[keep], xs[keep]] = colour


def _overlays(rgb: np.ndarray, c: Cutout, scale: float) -> None:
    """Four ticks around the position, and the beam in the lower-left corner."""
    n = c.data.shape[0]
    px, py = (c.x + 0.5) * scale, (n - 0.5 - c.y) * scale         # display: y down
    beam_r = 0.5 * (c.beam_pix[0] if c.beam_pix else 2.0) * scale
    inner = max(beam_r * 2.0, 6.0)              # clear of the source: one FWHM out
    t = np.linspace(inner, inner + max(0.12 * rgb.shape[0], 6.0), 40)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        for w in (-0.5, 0.5):
            _draw(rgb, px + dx * t + dy * w, py + dy * t + dx * w, MARK_RGB)
    if c.beam_pix:
        a, b = 0.5 * c.beam_pix[0] * scale, 0.5 * c.beam_pix[1] * scale
        shrink = min(1.0, 0.2 * rgb.shape[0] / a)       # a beam wider than the corner: drawn smaller
        a, b = a * shrink, b * shrink
        cx, cy = 4.0 + a, rgb.shape[0] - 4.0 - a
        phi = np.linspace(0, 2 * np.pi, 240)
        th = c.beam_pix[2]
        ex = a * np.cos(phi) * np.cos(th) - b * np.sin(phi) * np.sin(th)
        ey = a * np.cos(phi) * np.sin(th) + b * np.sin(phi) * np.cos(th)
        _draw(rgb, cx + ex, cy - ey, BEAM_RGB)


def render_png(c: Cutout, low: float, high: float, size: int = STAMP_PX) -> bytes:
    """The PNG of a cutout on the colour scale ``low``..``high`` (Jy/beam)."""
    n = c.data.shape[0]
    idx = (np.arange(size) * n) // size
    img = c.data[::-1][np.ix_(idx, idx)]                    # row 0 = north for the usual grid
    span = max(high - low, 1e-12)
    with np.errstate(invalid="ignore"):
        t = np.clip((img - low) / span, 0.0, 1.0)
    t = np.arcsinh(t / STRETCH) / np.arcsinh(1.0 / STRETCH)
    rgb = _LUT[np.nan_to_num(t * 255.0, nan=0.0).astype(np.uint8)]
    rgb[~np.isfinite(img)] = BLANK_RGB
    _overlays(rgb, c, size / n)
    return encode_rgb(rgb, level=1)      # stamps are mostly noise: more effort buys little


def strip(cache: StampCache, lc: dict, source: dict, candidate: dict | None, beam_arcsec: float
          ) -> tuple[list[Stamp], tuple[float, float]]:
    """The stamps of a source's strip (MJD order) and their common colour scale (Jy/beam)."""
    half = HALF_WIDTH_BEAMS * beam_arcsec / 3600.0
    stamps = []
    for i in strip_epochs(lc, candidate):
        cutout, reason = load_stamp(cache, str(lc["image_path"][i]), source["ra_deg"], source["dec_deg"], half)
        stamps.append(Stamp(image_id=int(lc["image_id"][i]), mjd=float(lc["mjd"][i]),
                            path=printable(str(lc["image_path"][i])), peak_jyb=float(lc["peak_jyb"][i]),
                            qc_status=str(lc["qc_status"][i]), cutout=cutout, reason=reason))
    scale = common_scale([s.cutout for s in stamps if s.cutout is not None])
    return stamps, scale
