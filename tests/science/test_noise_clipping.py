"""Row-wise sigma clipping of the estimator's boxes against plain clipping, sample by sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110_contimg.core.clipping import truncated_normal_variance
from dsa110_contimg.science.noise_clipping import clipped_row_stats


def _brute_clip(row, clip_sigma, n_iter, start=None):
    """Sigma clipping of one row as written in the estimator's docstring, sample by sample."""
    x = np.sort(row[np.isfinite(row)]).astype(np.float64)
    kept = x
    if start is not None and np.isfinite(start[0]) and np.isfinite(start[1]):
        lo32 = np.float32(start[0] - start[1])
        hi32 = np.float32(start[0] + start[1])
        sub = x[(x >= lo32) & (x <= hi32)]
        kept = sub if sub.size else x
    med = std = float("nan")
    for it in range(max(1, n_iter) + 1):
        if not kept.size:
            med = std = float("nan")
            break
        med = 0.5 * (kept[(kept.size - 1) // 2] + kept[kept.size // 2])
        std = math.sqrt(np.mean((kept - med) ** 2))
        if it == n_iter:
            break
        lo32, hi32 = np.float32(med - clip_sigma * std), np.float32(med + clip_sigma * std)
        new = x[(x >= lo32) & (x <= hi32)]
        if new.size == kept.size and (not new.size or (new[0] == kept[0] and new[-1] == kept[-1])):
            break
        kept = new
    if n_iter > 0:
        std /= math.sqrt(truncated_normal_variance(clip_sigma))
    return med, std, x.size


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nr=st.integers(1, 7), n=st.integers(1, 90),
       n_iter=st.integers(0, 5), bad=st.floats(0.0, 0.4), outliers=st.floats(0.0, 0.3),
       offset=st.sampled_from([0.0, 0.25, -3.0, 1e3]), use_start=st.booleans())
def test_clipped_stats_equal_clipping_sample_by_sample(seed, nr, n, n_iter, bad, outliers, offset,
                                                       use_start):
    # the estimator's per-box statistics (one sort, a binary search per round over every
    # row, range sums updated by the samples that enter or leave, rows dropped once
    # settled) equal plain sigma clipping: NaN, +-inf, bright outliers, offsets, empty rows
    rng = np.random.default_rng(seed)
    v = (offset + rng.normal(0, 1e-3, (nr, n))).astype(np.float32)
    hit = rng.random((nr, n)) < outliers
    v[hit] += rng.exponential(0.05, hit.sum()).astype(np.float32)
    odd = rng.random((nr, n)) < bad
    v[odd] = rng.choice(np.array([np.nan, np.inf, -np.inf, -np.nan], np.float32), odd.sum())
    if nr > 2:
        v[1] = np.nan                       # a row with no finite sample
    start = None
    if use_start:
        start = (np.full(nr, offset), np.where(rng.random(nr) < 0.2, np.nan, 3e-3))
    med, std, nfin = clipped_row_stats(v.copy(), 3.0, n_iter, start=start)
    for i in range(nr):
        bm, bs, bn = _brute_clip(v[i], 3.0, n_iter,
                                 None if start is None else (start[0][i], start[1][i]))
        assert nfin[i] == bn
        if np.isnan(bm):
            assert np.isnan(med[i]) and np.isnan(std[i])
            continue
        assert med[i] == bm
        assert std[i] == pytest.approx(bs, rel=1e-9, abs=1e-15)
