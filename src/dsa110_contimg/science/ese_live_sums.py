"""Sums of the live ESE templates kept from image to image: an exact screen of the live search.

The live search (:func:`~dsa110_contimg.science.ese_stage.live_dip_search`) fits every live
template of a source over the epochs it reaches (up to 540 d for the longest), so its cost
per image grows with the window. Its significance is sqrt(Delta chi2 / s), s >= 1, and
every rule of the search (recovery windows, admissible depth, consistently low epochs) only
lowers it to 0 or rejects the template; an upper bound of the significance therefore needs
only the unconstrained fit ``Delta chi2 = A**2 / B`` (docs/science.md, section 11.3), with
A and B from three sums per (source, template) over the source's epochs -- sum w T,
sum w T**2 and sum w (f - ref) T (T the template shape, w = 1/err**2, ``ref`` a flux fixed
per source) -- and the source's totals. Two counts per (source, template), the epochs in
the dip (P >= 0.5) and those after the pre-event side (u > -1), give the rules on epoch
counts exactly.

Templates are anchored at absolute times (:func:`~dsa110_contimg.science.ese.template_grid`),
so these sums are kept per (source, template) and a new image adds its one column to each
(:class:`LiveSums`); only the sources whose bound reaches the threshold are fitted in full,
so the cost per image stops depending on the window's length. The sums are tied to the
epochs they were taken over -- each epoch's MJD and a token of its rows' version given by the
caller -- and are taken again from the light curves whenever an earlier epoch changed, went
or came, or a new one is not the latest.

Fluxes in Jy/beam (or normalised), errors alike; times MJD.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

#: Sums kept per (source, template): sum w T, sum w T**2, sum w (f - ref) T, epochs in the
#: dip (P >= 0.5), epochs after the template's pre-event side (u > -1), and for the pre-event
#: window and for the epochs after the event (u >= 1) each: epochs, sum w, sum w (f - ref),
#: sum w T.
N_SUMS = 13
#: (source, template) cells held by the process at most (13 floats each, 104 bytes: ~83 MB).
MAX_CELLS = 800_000
#: Margin (sigma) below the threshold at which a source is still fitted in full: covers the
#: rounding of sums taken in another order and the caustic tails (< 1e-21 of the depth)
#: of epochs outside a template's reach.
MARGIN_SIGMA = 1e-6


def template_keys(grid: dict, durations, step_fraction: float) -> np.ndarray:
    """One int64 per template of ``grid``: (duration rank, shape, t0 / step), unique over
    every grid of the same ``durations`` and ``step_fraction`` (t0 on multiples of the step)."""
    ladder = np.sort(np.asarray(durations, float))
    rank = np.searchsorted(ladder, grid["duration"])
    k = np.rint(grid["t0"] / (step_fraction * grid["duration"])).astype(np.int64)
    return ((rank * 16 + grid["shape"]).astype(np.int64) << 40) + (k + (1 << 39))


def template_sums(t, w, wr, counts, ok, grid) -> np.ndarray:
    """The :data:`N_SUMS` sums of each (source, template of ``grid``) over the points ``ok``
    of the light curves (times ``t`` MJD, weights ``w``, weighted offsets ``wr`` =
    w (f - ref), epochs each point stands for ``counts``; all (n_sources, n_points));
    ``grid`` holds each template's recovery length ``rec`` (days) too.
    Returns shape (n_sources, n_templates, N_SUMS)."""
    from dsa110_contimg.science.ese import _template_shapes

    s, k = t.shape[0], grid["t0"].size
    if not (k and ok.any()):
        return np.zeros((s, k, N_SUMS))
    tu, inv = np.unique(t[ok], return_inverse=True)
    at = np.nonzero(ok)[0] * tu.size + inv.ravel()
    W, WR, C = (np.bincount(at, weights=x[ok], minlength=s * tu.size).reshape(s, tu.size)
                for x in (w, wr, counts))
    p, T = _template_shapes(tu, grid)
    u = 2.0 * (tu[None, :] - grid["t0"][:, None]) / grid["duration"][:, None]
    reach_u = 1.0 + 2.0 * grid["rec"][:, None] / grid["duration"][:, None]
    out = np.empty((s, k, N_SUMS))
    out[..., 0], out[..., 1], out[..., 2] = W @ T.T, W @ (T * T).T, WR @ T.T
    out[..., 3], out[..., 4] = C @ (p >= 0.5).T.astype(float), C @ (u > -1.0).T.astype(float)
    for j, win in ((5, (u <= -1.0) & (u >= -reach_u)), (9, u >= 1.0)):
        wf = win.astype(float)
        out[..., j], out[..., j + 1], out[..., j + 2] = C @ wf.T, W @ wf.T, WR @ wf.T
        out[..., j + 3] = W @ (wf * T).T
    return out


class _Block:
    """Sums of sources taken together: ``keys`` (sorted template keys), ``sums``
    (n_sources, n_keys, N_SUMS), ``ref`` (n_sources,), the epochs summed (``mjd``, ``token``,
    sorted by MJD) and the latest of them ``t_done`` (MJD)."""

    __slots__ = ("keys", "sums", "ref", "mjd", "token", "t_done", "alive")

    def __init__(self, keys, sums, ref, mjd, token):
        self.keys, self.sums, self.ref, self.mjd, self.token = keys, sums, ref, mjd, token
        self.t_done = float(mjd.max()) if mjd.size else -np.inf
        self.alive = sums.shape[0]


class LiveSums:
    """Per-process sums of the live templates by (scope, source id), bounded by
    :data:`MAX_CELLS` (least recently used sources dropped first)."""

    def __init__(self, max_cells: int = MAX_CELLS):
        self.max_cells = int(max_cells)
        self._where: OrderedDict = OrderedDict()      # (scope, source) -> (block, row)
        self._cells = 0
        #: Whether the step screens its live search with these sums (off: every source is
        #: fitted in full, as without a screen).
        self.enabled = True
        #: (source, template) cells summed over the whole light curve and cells updated by
        #: new epochs only, since the start.
        self.rebuilt_cells = 0
        self.updated_cells = 0

    def clear(self) -> None:
        self._where.clear()
        self._cells = 0

    @property
    def cells(self) -> int:
        """(source, template) cells held."""
        return self._cells

    def sums(self, scope, source_ids, epochs: tuple, since: float, grid: dict, keys: np.ndarray,
             reach_lo: np.ndarray, t, w, f, counts, ok) -> tuple[np.ndarray, np.ndarray]:
        """The sums (n_sources, n_templates, N_SUMS) of the templates ``grid`` (``keys``,
        earliest time each reaches ``reach_lo``, MJD) over the points ``ok`` of the light
        curves ``t``, ``w``, ``f``, ``counts``, and the ``ref`` (n_sources,) they are taken
        about; kept for the next call.

        ``epochs`` = (MJD, token) of the images the light curves are made of (a token
        changes whenever an image's rows do); ``since`` (MJD): the light curves hold every
        epoch from it on (the window's start; -inf for whole light curves). A source's kept
        sums are reused when it was summed with the same epochs from ``since`` on, those
        up to the latest summed, and every newer epoch is later than it: the new points are
        added; templates reaching before ``since`` and new templates are summed afresh."""
        src = np.asarray(source_ids, np.int64)
        mjd, token = _sorted_epochs(epochs)
        S = src.size
        out = np.zeros((S, keys.size, N_SUMS))
        ref = np.zeros(S)
        fresh = np.ones(S, bool)
        for block, rows, at in self._groups(scope, src):
            if not block.keys.size or not _same_epochs(block, mjd, token, since):
                continue
            have = np.minimum(np.searchsorted(block.keys, keys), block.keys.size - 1)
            known = (block.keys[have] == keys) & (reach_lo >= since)
            ref[at] = block.ref[rows]
            # kept templates: their sums plus the points after the latest summed epoch
            part = block.sums[np.ix_(rows, have)]
            with np.errstate(invalid="ignore"):
                new_pts = ok[at] & (t[at] > block.t_done)
            if new_pts.any():
                part += self._on(t[at], w[at], f[at], ref[at], counts[at], new_pts, grid)
                self.updated_cells += at.size * int(known.sum())
            if not known.all():
                sub = {k: (v[~known] if k != "names" else v) for k, v in grid.items()}
                with np.errstate(invalid="ignore"):
                    reach = ok[at] & (t[at] >= float(np.min(reach_lo[~known])))
                part[:, ~known] = self._on(t[at], w[at], f[at], ref[at], counts[at], reach, sub)
                self.rebuilt_cells += at.size * int((~known).sum())
            out[at] = part
            fresh[at] = False
        if fresh.any():
            at = np.flatnonzero(fresh)
            wf = np.where(ok[at], w[at] * f[at], 0.0)
            sw = np.where(ok[at], w[at], 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                ref[at] = np.where(sw > 0, wf.sum(axis=1) / np.where(sw > 0, sw, 1.0), 0.0)
            out[at] = self._on(t[at], w[at], f[at], ref[at], counts[at], ok[at], grid)
            self.rebuilt_cells += at.size * keys.size
        self._keep(scope, src, keys, out, ref, mjd, token)
        return out, ref

    @staticmethod
    def _on(t, w, f, ref, counts, pts, grid):
        """:func:`template_sums` of ``grid`` over the points ``pts``, about ``ref``; only the
        columns holding some point are looked at."""
        cols = np.flatnonzero(pts.any(axis=0))
        if cols.size < pts.shape[1]:
            t, w, f, counts, pts = (x[:, cols] for x in (t, w, f, counts, pts))
        with np.errstate(invalid="ignore"):
            wr = np.where(pts, w * (f - ref[:, None]), 0.0)
        return template_sums(t, np.where(pts, w, 0.0), wr, counts, pts, grid)

    def _groups(self, scope, src):
        """(block, its rows, positions in ``src``) of the sources of ``src`` held."""
        groups: dict[int, tuple] = {}
        for i, s in enumerate(src.tolist()):
            got = self._where.get((scope, s))
            if got is not None:
                groups.setdefault(id(got[0]), (got[0], [], []))
                groups[id(got[0])][1].append(got[1])
                groups[id(got[0])][2].append(i)
        return [(b, np.array(r), np.array(a)) for b, r, a in groups.values()]

    def _keep(self, scope, src, keys, sums, ref, mjd, token) -> None:
        if keys.size > 1 and not np.all(keys[1:] > keys[:-1]):
            order = np.argsort(keys, kind="stable")
            keys, sums = keys[order], sums[:, order]
        block = _Block(keys, sums, ref, mjd, token)
        for i, s in enumerate(src.tolist()):
            old = self._where.pop((scope, s), None)
            if old is not None:
                self._release(old[0])
            self._where[(scope, s)] = (block, i)
        self._cells += src.size * keys.size
        while self._cells > self.max_cells and self._where:
            _, (b, _) = self._where.popitem(last=False)
            self._release(b)

    def _release(self, block: _Block) -> None:
        block.alive -= 1
        self._cells -= block.keys.size
        if block.alive == 0:
            block.sums = block.ref = None


def _sorted_epochs(epochs: tuple) -> tuple[np.ndarray, np.ndarray]:
    mjd = np.asarray(epochs[0], float)
    token = np.asarray(epochs[1], np.int64)
    order = np.lexsort((token, mjd))
    return mjd[order], token[order]


def _same_epochs(block: _Block, mjd, token, since: float) -> bool:
    """Whether ``block`` summed the epochs (``mjd``, ``token``, sorted) from ``since`` up to
    its latest, and every other epoch is later than that."""
    if not np.isfinite(block.t_done):
        return False
    with np.errstate(invalid="ignore"):
        old = (block.mjd >= since) & (block.mjd <= block.t_done)
        cur = (mjd >= since) & (mjd <= block.t_done)
    if not np.array_equal(block.mjd[old], mjd[cur]) or \
            not np.array_equal(block.token[old], token[cur]):
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.all(cur | (mjd > block.t_done) | (mjd < since)))


def live_bound(sums, ref, t_last, t_first, n_total, sw, sf, sff, mu, grid, rec, rules) -> np.ndarray:
    """Upper bound (sigma) of every live template's significance per source, from ``sums``
    (:meth:`LiveSums.sums`, about ``ref``) and the sources' totals over all their points
    (``n_total`` epochs, ``sw`` = sum w, ``sf`` = sum w fc, ``sff`` = sum w fc**2 with the
    summarised epochs' own scatter, fc = f - ``mu``), with the search's rules on epoch counts,
    liveness, depth and the baseline beside the event (``rules`` = (min_in, min_pre, min_side,
    recovery_tol, overhang, max_depth) as the live fit): only the dip consistency is left to
    the full fit. NaN bounds (unusable sums) stand for any significance. Returns shape
    (n_sources,)."""
    from dsa110_contimg.science.ese import _profiles

    min_in, min_pre, min_side, recovery_tol, overhang, max_depth = rules
    St, Stt, Sfr, n_in, n_after = np.moveaxis(sums[..., :5], -1, 0)
    d = grid["duration"][None, :]
    t0 = grid["t0"][None, :]
    u_last = 2.0 * (t_last[:, None] - t0) / d
    p_last, _ = _profiles(t_last[:, None], t0, d, with_q=False)
    live = (p_last >= 0.5) | ((u_last >= 0.0) & (t_last[:, None] <= t0 + d / 2 + rec[None, :]))
    inside = t0 >= t_first[:, None] - overhang * d
    n_pre = n_total[:, None] - n_after
    shift = (mu - ref)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        Sft = Sfr - shift * St
        A = Sft - St * (sf / sw)[:, None]
        B = Stt - St * St / sw[:, None]
        usable = B > 1e-9 * sw[:, None]
        dchi2 = np.where(usable, A * A / np.where(usable, B, 1.0), np.nan)
        c = A / np.where(usable, B, 1.0)
        a = (sf[:, None] - c * St) / sw[:, None]
        base = a + mu[:, None]
        depth = -c / base
        # the fitted depth as the search computes it (a margin for rounding at its largest)
        fits = (base > 0) & (depth > 0) & (depth <= max_depth * (1.0 + 1e-6))
        sides = []
        for j in (5, 9):                # the pre-event window, the epochs after the event
            n_s, w_s, wfr_s, wt_s = np.moveaxis(sums[..., j:j + 4], -1, 0)
            w_safe = np.where(w_s > 0, w_s, 1.0)
            r = (wfr_s - shift * w_s - a * w_s - c * wt_s) / w_safe
            tol = recovery_tol * np.abs(c) + 2.0 / np.sqrt(w_safe)
            sides.append((n_s, np.abs(r) <= tol * (1.0 + 1e-6)))
        fits &= (sides[0][0] >= min_side) & sides[0][1] & ((sides[1][0] == 0) | sides[1][1])
        dchi2 = np.where(usable & ~fits, 0.0, dchi2)
        chi2_const = (sff - sf * sf / sw)[:, None]
        # unusable sums of a template the counts allow bound by chi2_const (Cauchy-Schwarz)
        dchi2 = np.where(B <= 1e-9 * sw[:, None], chi2_const, dchi2)
        dchi2 = np.minimum(dchi2, chi2_const)
        scale = np.maximum(1.0, np.maximum(chi2_const - dchi2, 0.0) /
                           np.maximum(n_total - 2.0, 1.0)[:, None])
        sig = np.sqrt(dchi2 / scale)
    allowed = (n_in >= min_in) & (n_pre >= min_pre) & live & inside
    sig = np.where(allowed, sig, 0.0)
    bad = np.isnan(sig).any(axis=1) | ~np.isfinite(sw) | (sw <= 0)
    best = np.max(np.where(np.isnan(sig), 0.0, sig), axis=1, initial=0.0)
    return np.where(bad, np.nan, best)


class LiveScreen:
    """What the live search needs to screen its sources with kept sums: the ``cache``
    (:class:`LiveSums`), its ``scope`` (e.g. the database and flux kind), the light curves'
    ``source_ids``, their ``epochs`` (MJD and token per image) and ``since`` (MJD: the light
    curves hold every epoch from it on; points before it, the summarised epochs, are not
    summed)."""

    def __init__(self, cache: LiveSums, scope, source_ids, epochs: tuple, since: float):
        self.cache, self.scope, self.source_ids = cache, scope, source_ids
        self.epochs, self.since = epochs, float(since)

    def subset(self, rows) -> "LiveScreen":
        """The screen of the light curves ``rows`` (mask or indices) only."""
        return LiveScreen(self.cache, self.scope, np.asarray(self.source_ids)[rows], self.epochs,
                          self.since)

    def bound(self, grid, rec, reach_lo, t, f, w, ok, t_last, t_first, totals, rules,
              durations, step_fraction) -> np.ndarray:
        """:func:`live_bound` of the live templates ``grid`` (recovery lengths ``rec``, days;
        earliest time each reaches ``reach_lo``, MJD) for the light curves (``t``, ``f``,
        ``w``, usable points ``ok``, their ``t_last`` and ``t_first``; ``totals`` = (epochs,
        sum w, sum w fc, sum w fc**2 with the summarised scatter, mu)), with the sums of this
        call kept."""
        keys = template_keys(grid, durations, step_fraction)
        with np.errstate(invalid="ignore"):
            pts = ok & (t >= self.since)
        sums, ref = self.cache.sums(self.scope, self.source_ids, self.epochs, self.since,
                                    dict(grid, rec=rec),
                                    keys, reach_lo, t, w, f, np.ones(t.shape), pts)
        n_total, sw, sf, sff, mu = totals
        return live_bound(sums, ref, t_last, t_first, n_total, sw, sf, sff, mu, grid, rec, rules)


#: The process's sums.
SUMS = LiveSums()

__all__ = ["LiveScreen", "LiveSums", "MARGIN_SIGMA", "MAX_CELLS", "N_SUMS", "SUMS", "live_bound",
           "template_keys", "template_sums"]
