"""Sigma-clipped statistics of many rows at once: the per-box engine of the noise estimator.

Convention (the std convention of :mod:`dsa110_contimg.core.clipping`, row-wise):
centre = median of the kept samples, scale = their standard deviation about that
median; a sample is kept when ``|x - median| <= clip_sigma * scale`` (bounds rounded
to float32, inclusive); each round re-tests the row's finite samples against the
previous round's median and scale; the final std is divided by
``sqrt(truncated_normal_variance(clip_sigma))`` to give a Gaussian sigma.

Each row is sorted once (NaN last), so the kept samples of every round are a
contiguous range of the sorted row. A round finds every row's new range ends by a
binary search over all rows at once and updates the range's sums by the samples that
entered or left it: after the sort a round costs a few operations per row, not per
sample, and a row whose range stopped moving is settled and drops out.
"""

from __future__ import annotations

import math

import numpy as np

from dsa110_contimg.core.clipping import truncated_normal_variance


def _count_sorted(v: np.ndarray, rows: np.ndarray, t, a, b, inclusive: bool = False) -> np.ndarray:
    """Per row of ``v`` (each sorted, NaN last): how many entries are ``< t`` (``<= t`` with
    ``inclusive``; ``t`` rounded to ``v``'s dtype), given that the answer lies in ``[a, b]``.

    A binary search on every row at once (steps of decreasing powers of two): about
    log2(max(b - a)) vector operations over the rows instead of a comparison per sample.
    """
    n = v.shape[1]
    pos = np.array(a, np.int64)
    b = np.asarray(b, np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.asarray(t).astype(v.dtype)
    width = int((b - pos).max(initial=0))
    step = 1 << (width.bit_length() - 1) if width > 0 else 0
    # entries by flat index (one gather instead of a two-array fancy index); the last
    # entry of each row is at ``row_end``
    flat = v.reshape(-1) if v.flags.c_contiguous else None
    row_end = np.asarray(rows, np.int64) * n + (n - 1)
    while step:
        cand = pos + step
        if flat is not None:
            x = flat.take(np.minimum(row_end - n + cand, row_end))
        else:
            x = v[rows, np.minimum(cand - 1, n - 1)]
        below = (x <= t) if inclusive else (x < t)
        pos = np.where(below & (cand <= b), cand, pos)
        step >>= 1
    return pos


#: samples converted to float64 at a time by :func:`_range_sums`
_SUM_CHUNK = 65536


def _range_sums(v: np.ndarray, a: np.ndarray, b: np.ndarray, ref: np.ndarray, rows=None):
    """Per row: sum and sum of squares of ``v[row, a:b] - ref`` (``a <= b``), float64.

    ``rows`` selects rows of ``v`` (``a``, ``b``, ``ref`` are then per selected row).
    The columns ``min(a):max(b)`` are read when the rows' ranges line up (whole rows,
    the tails of rows of equal length), else ``max(b - a)`` samples per row are
    gathered: the cost follows the widest range, not the row length. Converted to
    float64 a chunk of rows at a time (bounded memory).
    """
    n = v.shape[1]
    nr = a.size
    width = int((b - a).max(initial=0))
    s1, s2 = np.zeros(nr), np.zeros(nr)
    if width == 0:
        return s1, s2
    c0, c1 = int(a.min()), int(b.max())
    aligned = c1 - c0 <= 2 * width
    span = c1 - c0 if aligned else width
    step = max(1, _SUM_CHUNK // span)
    for i in range(0, nr, step):
        sl = slice(i, i + step)
        ai, bi = a[sl, None], b[sl, None]
        r = np.arange(i, min(nr, i + step)) if rows is None else rows[sl]
        if aligned:
            x = (v[sl, c0:c1] if rows is None else v[r, c0:c1]).astype(np.float64)
            x -= ref[sl, None]
            # only rows whose range is not all of c0:c1 are masked (the first sums of
            # whole rows: those of boxes padded beyond the image's edge)
            part = np.flatnonzero((ai[:, 0] != c0) | (bi[:, 0] != c1))
            if part.size:
                j = np.arange(c0, c1)
                sub = x[part]
                sub[(j < ai[part]) | (j >= bi[part])] = 0.0
                x[part] = sub
        else:
            j = np.arange(width)
            x = v[r[:, None], np.minimum(ai + j, n - 1)].astype(np.float64)
            x -= ref[sl, None]
            x[j >= bi - ai] = 0.0
        s1[sl] = x.sum(axis=1)
        s2[sl] = np.einsum("ij,ij->i", x, x)
    return s1, s2


class _SortedRows:
    """Rows sorted once (NaN last) and, per row, the kept range ``[lo, hi)`` and its sums.

    ``f0:f1`` is the row's finite part (``-inf`` sorts first, ``+inf`` and NaN last);
    ``s1``/``s2`` are the sum and sum of squares of the kept samples minus ``ref``, a
    sample near the row's median (no cancellation in float64); ``med``/``std`` are
    the kept range's median and std about it (NaN for a row without samples);
    ``conv`` whether the row's last round moved at most 1 % of its kept samples.
    """

    def __init__(self, v: np.ndarray):
        self.v = v
        nr, n = v.shape
        self.rows = np.arange(nr)
        self.f0, self.f1 = self._finite_range()
        self.nfin = self.f1 - self.f0
        ref = v[self.rows, np.clip(self.f0 + self.nfin // 2, 0, n - 1)].astype(np.float64)
        self.ref = np.where(self.nfin > 0, ref, 0.0)
        self.lo, self.hi = self.f0, self.f1
        self.s1 = self.s2 = None
        self.med = np.full(nr, np.nan)
        self.std = np.full(nr, np.nan)
        self.conv = np.ones(nr, bool)

    def _finite_range(self):
        v = self.v
        nr, n = v.shape
        f0 = np.zeros(nr, np.int64)
        f1 = np.full(nr, n, np.int64)
        odd = ~(np.isfinite(v[:, 0]) & np.isfinite(v[:, -1]))
        if odd.any():
            big = np.finfo(np.float32).max
            f0 = np.where(odd, _count_sorted(v, self.rows, -big, 0, n), 0)
            f1 = np.where(odd, _count_sorted(v, self.rows, big, f0, n, inclusive=True), n)
        return f0, f1

    def start_at(self, centre, half) -> None:
        """First kept range ``|x - centre| <= half`` per row (rows with a non-finite
        centre or half-width, or an empty range, keep every finite sample)."""
        with np.errstate(invalid="ignore"):
            c = np.asarray(centre, np.float64)
            h = np.asarray(half, np.float64)
            ok = np.isfinite(c) & np.isfinite(h)
            slo = _count_sorted(self.v, self.rows, np.where(ok, c - h, 0.0), self.f0, self.f1)
            shi = _count_sorted(self.v, self.rows, np.where(ok, c + h, 0.0), slo, self.f1,
                                inclusive=True)
        use = ok & (shi > slo)
        self.lo = np.where(use, slo, self.lo)
        self.hi = np.where(use, shi, self.hi)

    def sum_kept(self) -> None:
        """Sums of the first kept ranges (the ranges are private from here on)."""
        self.s1, self.s2 = _range_sums(self.v, self.lo, self.hi, self.ref)
        self.lo, self.hi = self.lo.copy(), self.hi.copy()

    def settle(self, idx) -> None:
        """Median and std of the kept range of rows ``idx``."""
        v, lo, hi, n = self.v, self.lo, self.hi, self.v.shape[1]
        k = hi[idx] - lo[idx]
        mid_lo = np.clip(lo[idx] + (k - 1) // 2, 0, n - 1)
        mid_hi = np.clip(lo[idx] + k // 2, 0, n - 1)
        md = 0.5 * (v[idx, mid_lo].astype(np.float64) + v[idx, mid_hi].astype(np.float64))
        m = md - self.ref[idx]
        sd = np.sqrt(np.maximum(self.s2[idx] - 2 * m * self.s1[idx] + k * m * m, 0.0) / k)
        self.med[idx], self.std[idx] = md, sd

    def clip_round(self, act: np.ndarray, clip_sigma: float) -> np.ndarray:
        """One clipping round of rows ``act``; returns the rows whose range moved (and is
        not empty), which are settled again. A row whose kept range did not move is
        settled for good: the same range gives the same thresholds."""
        v, lo, hi = self.v, self.lo, self.hi
        thr = clip_sigma * self.std[act]
        f0a, f1a = self.f0[act], self.f1[act]
        nlo = _count_sorted(v, act, self.med[act] - thr, f0a, f1a)
        nhi = np.maximum(_count_sorted(v, act, self.med[act] + thr, nlo, f1a, inclusive=True),
                         nlo)
        olo, ohi = lo[act], hi[act]
        moved = (nlo != olo) | (nhi != ohi)
        self.conv[act] = (np.abs(nlo - olo) + np.abs(nhi - ohi)) <= 0.01 * (ohi - olo)
        act, nlo, nhi, olo, ohi = act[moved], nlo[moved], nhi[moved], olo[moved], ohi[moved]
        # the kept range's sums change by the samples that left or entered at each end:
        # low end [lo, nlo) leaves (nlo > lo) or [nlo, lo) enters; high end [nhi, hi)
        # leaves (nhi < hi) or [hi, nhi) enters
        for e0, e1, leaves in ((olo, nlo, nlo > olo), (nhi, ohi, nhi < ohi)):
            d1, d2 = _range_sums(v, np.minimum(e0, e1), np.maximum(e0, e1), self.ref[act], act)
            sign = np.where(leaves, -1.0, 1.0)
            self.s1[act] += sign * d1
            self.s2[act] += sign * d2
        lo[act], hi[act] = nlo, nhi
        emptied = nhi <= nlo
        self.med[act[emptied]] = self.std[act[emptied]] = np.nan
        act = act[~emptied]
        self.settle(act)
        return act


def clipped_row_stats(blocks: np.ndarray, clip_sigma: float, n_iter: int, start=None,
                      return_converged: bool = False, overwrite: bool = False):
    """Per-row sigma-clipped median and std about the median (std corrected for the truncation).

    At most ``n_iter`` clipping rounds (the module's convention); ``start = (centre,
    halfwidth)`` per row sets the first kept range (default: every finite sample).

    Returns ``(median, std, n_finite)`` (and ``converged``: the last round moved at
    most 1 % of the kept samples, with ``return_converged``); NaN where a row has no
    finite sample. With ``overwrite`` a float32 ``blocks`` is sorted in place (no copy).
    """
    if overwrite and isinstance(blocks, np.ndarray) and blocks.dtype == np.float32:
        blocks.sort(axis=1)
        rows = _SortedRows(blocks)
    else:
        rows = _SortedRows(np.sort(np.asarray(blocks, np.float32), axis=1))
    if start is not None:
        rows.start_at(*start)
    rows.sum_kept()
    act = np.flatnonzero(rows.hi > rows.lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows.settle(act)
        for _ in range(n_iter):
            if not act.size:
                break
            act = rows.clip_round(act, clip_sigma)
    std = rows.std
    if n_iter > 0:
        std = std / math.sqrt(truncated_normal_variance(clip_sigma))
    if return_converged:
        return rows.med, std, rows.nfin, rows.conv
    return rows.med, std, rows.nfin


__all__ = ["clipped_row_stats"]
