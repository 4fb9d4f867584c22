"""Sky-like seasons of the real NVSS field for the false-new-source check (tests and bench).

Several fields of the real NVSS VizieR extract, each observed over many epochs, every
image run through the real pipeline (:meth:`PhotometryManager.run_image`, blind detection
on, default thresholds). What an image holds, besides the catalogue sources at their
NVSS fluxes:

* each catalogue source at its true position, off the catalogue's by the catalogue's own
  errors (NVSS: 1-9" for faint sources, half a beam); compact ones as the beam with the
  NVSS flux as peak, the 92 that NVSS resolves as their deconvolved Gaussian convolved with
  the beam (same integrated flux, a lower peak);

* noise correlated on the beam scale (:func:`~dsa110_contimg.science.simulate.correlated_noise`),
  its level varying by epoch (x0.8-1.25) and rising towards the corners (x1.3, as on a
  primary-beam-corrected image);
* a gain per epoch (``gain_rms``, a calibration scale common to every source);
* a pointing offset per epoch (``pointing_jitter_pix``), so sources near the edges come and go;
* sources below the NVSS limit (0.8-2.5 mJy, in no catalogue, present from the first epoch);
* around every catalogue source brighter than ``artefact_min_snr`` x the measurement noise,
  sidelobe / calibration-artefact structure: beam-shaped blobs of both signs along six
  spokes 1.5-4.5 beams out, at ``artefact_level`` (a few per cent) of the source's peak
  falling with distance; the spokes turn from epoch to epoch (hour angle, calibration);
* blanked (NaN) regions in some images: a flagged disc (half of them over a catalogue
  source's centre, its wing left showing), or a strip along one side with a ragged edge
  (a mosaic border);
* a few genuine transients per field (in no catalogue, 10-50 sigma, switching on mid-season,
  far from the edges and from bright sources) that must be found as new sources.

Fluxes Jy/beam, positions deg, pixels 0-based ``data[y, x]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NVSS_REAL = "real/nvss_vizier_VIII65_extract.fits"
#: noise-correlation factor of beam-convolved white noise for the default beam and pixels:
#: a fixed-beam measurement's error is C x the pixel rms
C = 1.41
#: statuses a detection can end with that make a source of it
SOURCE_MAKING = ("new_source", "blind_source")


@dataclass(frozen=True)
class SkySeasonSpec:
    """The shape of a season (see the module docstring)."""

    n_fields: int = 6
    epochs: int = 25
    shape: tuple[int, int] = (320, 320)
    pixscale: float = 6.0
    beam: tuple[float, float, float] = (18.0, 13.0, 25.0)
    noise: float = 0.6e-3
    gain_rms: float = 0.05
    pointing_jitter_pix: float = 10.0
    faint_per_deg2: float = 100.0
    artefact_min_snr: float = 40.0
    artefact_level: float = 0.03
    blank_disc_fraction: float = 0.2
    blank_strip_fraction: float = 0.2
    transients_per_field: int = 2
    position_errors: bool = True
    extended: bool = True
    seed: int = 2323

    @property
    def n_images(self) -> int:
        return self.n_fields * self.epochs

    @property
    def beam_pix(self) -> float:
        return self.beam[0] / self.pixscale


@dataclass
class Injected:
    """What was put into the images (truth for the checks)."""

    transient_ra: np.ndarray
    transient_dec: np.ndarray
    transient_snr: np.ndarray
    transient_on_mjd: np.ndarray
    #: per image path: artefact blob positions (ra, dec; positive blobs only) and blank mask
    artefacts: dict = field(default_factory=dict)
    blanks: dict = field(default_factory=dict)


def read_nvss(shared_data: Path, extra: bool = False):
    """The real extract: ra, dec (deg), flux (Jy) of its finite-flux rows; with ``extra``
    also their position errors (arcsec on the sky, RA and Dec) and deconvolved sizes
    (major, minor FWHM arcsec, NaN where NVSS gives an upper limit; PA deg)."""
    from astropy.table import Table

    t = Table.read(Path(shared_data) / NVSS_REAL)
    ra = np.asarray(t["_RAJ2000"], float)
    dec = np.asarray(t["_DEJ2000"], float)
    flux = np.asarray(t["S1.4"], float) / 1000.0
    ok = np.isfinite(flux) & (flux > 0)
    if not extra:
        return ra[ok], dec[ok], flux[ok]

    def col(name):
        return np.ma.filled(np.ma.asarray(t[name], float), np.nan)[ok]

    upper = np.asarray(np.ma.filled(t["l_MajAxis"].astype(str), ""))[ok] == "<"
    e_ra = col("e_RAJ2000") * 15.0 * np.cos(np.radians(dec[ok]))
    maj, mnr = np.where(upper, np.nan, col("MajAxis")), np.where(upper, np.nan, col("MinAxis"))
    return ra[ok], dec[ok], flux[ok], e_ra, col("e_DEJ2000"), maj, mnr, np.nan_to_num(col("PA"))


def field_centres(spec: SkySeasonSpec, ra, flux):
    """Field centres spread along the extract's RA range (Dec -31.5); the first one holds
    the extract's brightest source (its artefacts are the strongest)."""
    lo, hi = 91.0, 104.0
    centres = list(np.linspace(lo, hi, spec.n_fields))
    brightest = float(ra[np.argmax(flux)])
    k = int(np.argmin(np.abs(np.asarray(centres) - brightest)))
    centres[k] = brightest + 0.08
    return [(float(c), -31.5) for c in centres]


def _far_from(x, y, px, py, min_pix):
    if len(px) == 0:
        return np.ones(np.shape(x), bool)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(np.column_stack([px, py])).query(np.column_stack([x, y]))
    return d >= min_pix


class SkySeason:
    """Makes the images of a season and runs them (:meth:`images`, :meth:`run`)."""

    def __init__(self, spec: SkySeasonSpec, shared_data: Path, root: Path):
        from dsa110_contimg.science.simulate import sky_wcs

        self.spec, self.root = spec, Path(root)
        (self.ra, self.dec, self.flux, e_ra, e_dec, self.maj, self.min,
         self.pa) = read_nvss(shared_data, extra=True)
        self.rng = np.random.default_rng(spec.seed)
        # the true positions: the catalogue's, off by its own errors
        self.tra = self.ra + (self.rng.normal(0, 1, self.ra.size) * e_ra / 3600.0
                              / np.cos(np.radians(self.dec)) if spec.position_errors else 0.0)
        self.tdec = self.dec + (self.rng.normal(0, 1, self.ra.size) * e_dec / 3600.0
                                if spec.position_errors else 0.0)
        if not spec.extended:
            self.maj = np.full(self.ra.size, np.nan)
        self.shared_data = Path(shared_data)
        self.centres = field_centres(spec, self.ra, self.flux)
        self.mjd0 = 60676.25
        ny, nx = spec.shape
        self.faint = []
        tr_ra, tr_dec, tr_snr, tr_on = [], [], [], []
        bright = self.flux >= spec.artefact_min_snr * C * spec.noise
        for ra0, dec0 in self.centres:
            w = sky_wcs(ra0, dec0, spec.pixscale, spec.shape)
            cx, cy = w.wcs_world2pix(self.ra, self.dec, 0)
            # sources below the NVSS limit, in no catalogue, steady
            area = nx * ny * (spec.pixscale / 3600.0) ** 2
            n_faint = self.rng.poisson(spec.faint_per_deg2 * area)
            fx, fy = self.rng.uniform(0, nx, n_faint), self.rng.uniform(0, ny, n_faint)
            fra, fdec = w.wcs_pix2world(fx, fy, 0)
            s = 0.8e-3 * (1 - self.rng.uniform(0, 1, n_faint) * (1 - (0.8 / 2.5) ** 1.5)) ** (-1 / 1.5)
            self.faint.append((np.asarray(fra), np.asarray(fdec), s))
            # transients: far from edges (with the pointing jitter), catalogue and bright sources
            margin = 4 * spec.beam_pix + spec.pointing_jitter_pix * 3
            got = 0
            while got < spec.transients_per_field:
                x, y = self.rng.uniform(margin, nx - margin), self.rng.uniform(margin, ny - margin)
                if not (_far_from(x, y, cx, cy, 4 * spec.beam_pix)
                        and _far_from(x, y, cx[bright], cy[bright], 10 * spec.beam_pix)
                        and _far_from(x, y, fx, fy, 2 * spec.beam_pix)):
                    continue
                r, d = w.wcs_pix2world([x], [y], 0)
                tr_ra.append(float(r[0]))
                tr_dec.append(float(d[0]))
                tr_snr.append(float(np.exp(self.rng.uniform(np.log(10), np.log(50)))))
                tr_on.append(self.mjd0 + float(self.rng.integers(2, max(3, spec.epochs // 2))))
                got += 1
        self.injected = Injected(np.asarray(tr_ra), np.asarray(tr_dec), np.asarray(tr_snr),
                                 np.asarray(tr_on))

    # -- images ------------------------------------------------------------------------------
    def image(self, f: int, k: int) -> Path:
        """Write epoch ``k`` of field ``f`` and return its path."""
        from astropy.io import fits

        from dsa110_contimg.science.simulate import (
            _simulated_header, correlated_noise, paint_sources, sky_wcs)

        spec = self.spec
        rng = np.random.default_rng((spec.seed, f, k))
        ny, nx = spec.shape
        bp = spec.beam_pix
        fmin = spec.beam[1] / spec.pixscale
        jit = rng.normal(0, spec.pointing_jitter_pix, 2) * spec.pixscale / 3600.0
        ra0 = self.centres[f][0] + jit[0] / np.cos(np.radians(self.centres[f][1]))
        dec0 = self.centres[f][1] + jit[1]
        w = sky_wcs(ra0, dec0, spec.pixscale, spec.shape)
        mjd = self.mjd0 + k
        noise = spec.noise * rng.uniform(0.8, 1.25)
        yy, xx = np.mgrid[0:ny, 0:nx]
        r2 = ((xx - nx / 2) / (nx / 2)) ** 2 + ((yy - ny / 2) / (ny / 2)) ** 2
        data = correlated_noise(spec.shape, noise, bp, fmin, spec.beam[2], rng) * (1 + 0.15 * r2)
        gain = 1.0 + spec.gain_rms * rng.standard_normal()
        cx, cy = w.wcs_world2pix(self.tra, self.tdec, 0)
        near = (cx > -6 * bp) & (cx < nx + 6 * bp) & (cy > -6 * bp) & (cy < ny + 6 * bp)
        ext = near & np.isfinite(self.maj)
        peak = self._paint_extended(data, cx[ext], cy[ext], self.flux[ext] * gain, self.maj[ext],
                                    self.min[ext], self.pa[ext])
        ax, ay, ap = self._artefacts(np.r_[cx[near & ~ext], cx[ext]], np.r_[cy[near & ~ext], cy[ext]],
                                     np.r_[self.flux[near & ~ext] * gain, peak], rng)
        near &= ~ext
        fra, fdec, fs = self.faint[f]
        fx, fy = w.wcs_world2pix(fra, fdec, 0)
        inj = self.injected
        on = (inj.transient_on_mjd <= mjd + 1e-6)
        tx, ty = w.wcs_world2pix(inj.transient_ra[on], inj.transient_dec[on], 0)
        xs = np.concatenate([cx[near], fx, tx, ax])
        ys = np.concatenate([cy[near], fy, ty, ay])
        ps = np.concatenate([self.flux[near] * gain, fs * gain,
                             inj.transient_snr[on] * C * spec.noise * gain, ap])
        paint_sources(data, xs, ys, ps, bp, fmin, spec.beam[2])
        inside = (cx > 0) & (cx < nx - 1) & (cy > 0) & (cy < ny - 1)
        blank = self._blank(rng, cx[inside], cy[inside])
        data[blank] = np.nan
        header = _simulated_header(w, spec.shape, naxis=4, freq_hz=1.405e9, beam_arcsec=spec.beam,
                                   bunit="Jy/beam", mjd=mjd, extra_header=None)
        path = self.root / "images" / f"field{f}" / f"2025-03-{f + 1:02d}T{k // 60:02d}:{k % 60:02d}:00.img-image-pb.fits"
        path.parent.mkdir(parents=True, exist_ok=True)
        fits.PrimaryHDU(data[np.newaxis, np.newaxis].astype(np.float32), header).writeto(path, overwrite=True)
        pos = ap > 0
        pra, pdec = w.wcs_pix2world(ax[pos], ay[pos], 0)
        self.injected.artefacts[str(path)] = (np.asarray(pra), np.asarray(pdec), ap[pos])
        self.injected.blanks[str(path)] = blank if blank.any() else None
        return path

    def _paint_extended(self, data, x, y, flux, maj, mnr, pa):
        """Resolved sources: the catalogue's deconvolved Gaussian convolved with the beam
        (axes added in quadrature, the source's PA), integrated flux ``flux`` (Jy); returns
        their peaks (Jy/beam)."""
        from dsa110_contimg.science.simulate import paint_sources

        bmaj, bmin, _ = self.spec.beam
        cmaj, cmin = np.hypot(maj, bmaj), np.hypot(np.nan_to_num(mnr), bmin)
        peak = flux * bmaj * bmin / (cmaj * cmin)
        for k in range(x.size):
            paint_sources(data, x[k:k + 1], y[k:k + 1], peak[k:k + 1], cmaj[k] / self.spec.pixscale,
                          cmin[k] / self.spec.pixscale, pa[k])
        return peak

    def _artefacts(self, x, y, peak, rng):
        """Blobs of both signs on six spokes around each bright source (pixels, Jy/beam)."""
        spec = self.spec
        hosts = np.flatnonzero(peak >= spec.artefact_min_snr * C * spec.noise)
        dist = np.array([1.5, 2.5, 3.5, 4.5]) * spec.beam_pix
        sign = np.array([1.0, -1.0, 1.0, -1.0])
        xs, ys, ps = [], [], []
        for h in hosts:
            theta = rng.uniform(0, np.pi / 3) + np.arange(6) * np.pi / 3
            for t in theta:
                amp = spec.artefact_level * peak[h] * rng.uniform(0.5, 1.0) * (1.5 * spec.beam_pix / dist)
                xs.append(x[h] - dist * np.sin(t))
                ys.append(y[h] + dist * np.cos(t))
                ps.append(amp * sign * rng.choice([-1.0, 1.0]))
        if not xs:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ps)

    def _blank(self, rng, src_x, src_y) -> np.ndarray:
        """A blanked disc (half of them with a catalogue source just inside the rim, so its
        wing shows next to the blank), a ragged strip along one side, or nothing."""
        spec = self.spec
        ny, nx = spec.shape
        yy, xx = np.mgrid[0:ny, 0:nx]
        mask = np.zeros(spec.shape, bool)
        u = rng.uniform()
        if u < spec.blank_disc_fraction:
            r = rng.uniform(3, 10) * spec.beam_pix
            x0, y0 = rng.uniform(0, nx), rng.uniform(0, ny)
            if len(src_x) and rng.uniform() < 0.5:
                j, phi = rng.integers(len(src_x)), rng.uniform(0, 2 * np.pi)
                x0 = src_x[j] + (r - 0.3 * spec.beam_pix) * np.cos(phi)
                y0 = src_y[j] + (r - 0.3 * spec.beam_pix) * np.sin(phi)
            mask |= (xx - x0) ** 2 + (yy - y0) ** 2 < r ** 2
        elif u < spec.blank_disc_fraction + spec.blank_strip_fraction:
            width = rng.uniform(0.05, 0.2) * nx + 3 * np.sin(yy / 7.0 + rng.uniform(0, 6))
            side = rng.integers(4)
            coord = [xx, nx - 1 - xx, yy, ny - 1 - yy][side]
            mask |= coord < width
        return mask

    # -- the pipeline --------------------------------------------------------------------------
    def manager(self):
        """A manager on a fresh products database with the real NVSS extract ingested."""
        from dsa110_contimg.core.config import PhotometryConfig
        from dsa110_contimg.photometry import PhotometryManager
        from dsa110_contimg.store.catalogs import CatalogStore

        cat_dir = self.root / "catalogs"
        CatalogStore(cat_dir).ingest("nvss", [self.shared_data / NVSS_REAL], progress=False)
        cfg = PhotometryConfig(catalog="nvss")
        assert cfg.detect
        return PhotometryManager(self.root / "products.sqlite3", default_config=cfg,
                                 catalog_dir=cat_dir), cfg

    def run(self, progress=None) -> dict:
        """Every image, epoch by epoch (fields interleaved), through ``run_image``.
        Returns ``{"manager", "paths", "images"}`` (paths in processing order)."""
        manager, cfg = self.manager()
        paths = []
        for k in range(self.spec.epochs):
            for f in range(self.spec.n_fields):
                p = self.image(f, k)
                manager.run_image(p, "image", cfg)
                paths.append(p)
                if progress:
                    progress(len(paths))
        return {"manager": manager, "paths": paths}


def detections_table(manager) -> dict:
    """Every stored detection with its image path (arrays keyed by column)."""
    import sqlalchemy as sa

    with manager.products.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT d.id, i.path, d.ra_deg, d.dec_deg, d.x_pix, d.y_pix, d.peak_jyb, d.snr, "
            "d.status, d.reason, d.source_id, d.related_source_id FROM detections d "
            "JOIN images i ON i.id = d.image_id ORDER BY d.id")).all()
    cols = ("id", "path", "ra", "dec", "x", "y", "peak", "snr", "status", "reason", "source_id",
            "related")
    def column(i, c):
        if c in ("path", "status", "reason"):
            return np.asarray([r[i] for r in rows], dtype=object)
        return np.asarray([np.nan if r[i] is None else r[i] for r in rows], dtype=float)

    return {c: column(i, c) for i, c in enumerate(cols)}


def within(ra, dec, tra, tdec, radius_arcsec):
    """Per (ra, dec): the index of a truth position within ``radius_arcsec``, or -1."""
    from scipy.spatial import cKDTree

    from dsa110_contimg.core.geometry import chord_of_angle, unit_vectors

    out = np.full(np.size(ra), -1, np.int64)
    if np.size(ra) == 0 or np.size(tra) == 0:
        return out
    d, i = cKDTree(unit_vectors(tra, tdec)).query(unit_vectors(ra, dec))
    hit = d <= chord_of_angle(radius_arcsec / 3600.0)
    out[hit] = i[hit]
    return out


def classify(season: SkySeason, det: dict) -> dict:
    """The season's outcome: new sources split into the injected transients and false ones,
    the transients found, and the rejected detections by reason class."""
    spec, inj = season.spec, season.injected
    radius = 1.5 * spec.beam[0]
    new = det["status"] == "new_source"
    match = within(det["ra"][new], det["dec"][new], inj.transient_ra, inj.transient_dec, radius)
    found = np.zeros(inj.transient_ra.size, bool)
    found[match[match >= 0]] = True
    rejected = det["status"] == "rejected"
    classes = {}
    for r in det["reason"][rejected]:
        key = (r or "(none)").split(":")[0]
        classes[key] = classes.get(key, 0) + 1
    return {"n_detections": int(det["id"].size), "n_new": int(new.sum()),
            "false_new": np.flatnonzero(new)[match < 0], "found": found,
            "rejected_classes": classes,
            "status_counts": {s: int(np.sum(det["status"] == s)) for s in np.unique(det["status"])}}


def poisson_upper(k: int, cl: float = 0.95) -> float:
    """One-sided Poisson upper limit on the mean for ``k`` observed events."""
    from scipy.stats import chi2

    return float(chi2.ppf(cl, 2 * (k + 1)) / 2.0)
