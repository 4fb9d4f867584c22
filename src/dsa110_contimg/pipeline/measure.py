"""The database-free part of one image's workflow: open, catalogue, noise, measure, statistics.

:func:`measure_image` returns a picklable :class:`MeasuredImage` (what ``reprocess``
ships back from Dask workers); the steps of :mod:`dsa110_contimg.pipeline.steps`
store it (:func:`dsa110_contimg.pipeline.runner.store_measured`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_contimg.core.config import PhotometryConfig
from dsa110_contimg.core.enums import MOSAIC_KEYWORDS
from dsa110_contimg.core.errors import MissingBeam
from dsa110_contimg.core.paths import fs_path
from dsa110_contimg.pipeline.timing import StepTimer
from dsa110_contimg.science.results import MeasurementTable
from dsa110_contimg.store import products as product_store


@dataclass
class ImageSummary:
    """What storing, QC and normalisation need of an opened image, without its pixels.

    Built on the process that measured the image (:meth:`of`), picklable, so the
    measurement can run on another host. ``qc_stats`` holds the image-wide noise
    statistics of :func:`dsa110_contimg.science.qc.image_statistics` (Jy/beam);
    ``header`` keeps only the keys QC looks at (``NIMAGES``).
    """

    path: Path
    beam: Any
    beam_source: str
    mjd: float | None
    freq_hz: float | None
    center_deg: tuple[float, float]
    radius_deg: float
    pixel_scale_arcsec: float
    blanked_fraction: float
    header: dict
    qc_stats: dict | None = None

    @classmethod
    def of(cls, image, *, qc_stats: bool = True, maps=None) -> "ImageSummary":
        """The summary of an open image; ``maps`` are its background/noise maps when the
        caller already has them (else the QC statistics build them)."""
        from dsa110_contimg.science.qc import image_statistics

        # also caches the blanked fraction
        stats = image_statistics(image, maps=maps) if qc_stats else None
        blanked = float(image.blanked_fraction)
        if stats is not None and blanked >= 1.0:
            stats = {}
        return cls(path=image.path, beam=image.beam, beam_source=image.beam_source, mjd=image.mjd,
                   freq_hz=image.freq_hz, center_deg=tuple(image.center()),
                   radius_deg=float(image.footprint_radius_deg()),
                   pixel_scale_arcsec=float(image.pixel_scale_arcsec), blanked_fraction=blanked,
                   header={k: image.header[k] for k in MOSAIC_KEYWORDS if k in image.header},
                   qc_stats=stats)

    def center(self) -> tuple[float, float]:
        return self.center_deg

    def footprint_radius_deg(self) -> float:
        return self.radius_deg


@dataclass
class MeasuredImage:
    """The result of :func:`measure_image` (picklable).

    ``method`` is the method actually used (``peak`` for a beamless mosaic), ``notes``
    the workflow decisions so far, ``cat`` the catalogue rows measured (one per row of
    ``table``), ``steps`` the seconds spent per stage.
    """

    path: Path
    kind: str
    method: str
    notes: list
    cat: Any
    table: MeasurementTable
    image: ImageSummary
    content_id: str
    steps: dict
    #: blind detections (science/detect.py), None when detection is off or impossible
    detections: MeasurementTable | None = None
    #: the image's noise footprint (science/footprint.py, serialised), None without detection
    footprint: bytes | None = None
    #: the file's data identity (:func:`dsa110_contimg.store.products.data_digest`)
    data_digest: str | None = None
    #: catalogue sources on and around the image bright enough to throw detectable artefacts,
    #: ``(ra_deg, dec_deg, peak_jyb)`` (:func:`artefact_hosts`), None without detection
    artefact_hosts: tuple | None = None
    #: ``sources.id`` of the own sources and monitor rows of the field read when the image
    #: was measured (:mod:`dsa110_contimg.pipeline.inflight`); None when none were read
    own_seen: np.ndarray | None = None
    #: the plane's background maps, kept in the measuring process (not pickled)
    maps: Any = None

    def __getstate__(self):
        self.table._record_type = None   # a namedtuple class made on iteration: not picklable
        if self.detections is not None:
            self.detections._record_type = None
        return {**self.__dict__, "maps": None}


def open_image(path: Path, kind: str, cfg: PhotometryConfig):
    """Open the image; decide the kind and the method actually used.

    Returns ``(image, kind, method, notes)``. A header with a mosaic keyword makes it a
    mosaic; a mosaic without a beam is measured with ``peak``; an image without one
    raises :class:`~dsa110_contimg.core.errors.MissingBeam`.
    """
    from dsa110_contimg.science.image import Beam, RadioImage

    beam = Beam.from_arcsec(*cfg.beam_arcsec) if cfg.beam_arcsec else None
    image = RadioImage.open(path, beam=beam)
    notes: list[str] = []
    if kind == "image" and image.is_mosaic:      # the shared rule (core.enums.header_is_mosaic)
        kind = "mosaic"
        notes.append("header has a mosaic keyword (NIMAGES): treated as a mosaic")
    method = cfg.method
    if image.beam is None and method != "peak":
        if kind == "mosaic":
            notes.append(f"no beam in the header and no beam_arcsec configured: measured with "
                         f"'peak' instead of '{method}' (box maximum, biased high)")
            method = "peak"
        else:
            raise MissingBeam(f"image without a beam: method '{method}' needs the restoring "
                              "beam but the header has no BMAJ/BMIN/BPA or HISTORY beam, and the "
                              "file is not a mosaic (not in a mosaic directory, no NIMAGES "
                              "keyword); set photometry.beam_arcsec or use method='peak'", path)
    if image.beam_source == "caller":
        notes.append("beam taken from the configuration (beam_arcsec)")
    if image.mjd is None:
        notes.append("no observation epoch in the header (MJD-OBS / DATE-OBS): measurements are "
                     "stored but cannot enter light curves")
    return image, kind, method, notes


def query_catalog(catalogs, image, kind: str, cfg: PhotometryConfig):
    """The catalogue rows in the image's search region (``cfg.search_region(kind)``) from
    the :class:`~dsa110_contimg.store.catalogs.CatalogStore` ``catalogs``."""
    survey = catalogs.survey(cfg.catalog)
    region, radii = cfg.search_region(kind)
    limits = {"min_flux_mjy": cfg.min_flux_mjy, "max_sources": cfg.max_sources}
    if region == "footprint":
        return survey.in_footprint(image, **limits)
    ra0, dec0 = image.center()
    if region == "ellipse":
        return survey.ellipse(ra0, dec0, radii[0], radii[1], **limits)
    return survey.cone(ra0, dec0, radii[0], **limits)


def append_rows(cat, rows: dict):
    """The catalogue table ``cat`` with rows appended: ``rows`` maps column names to equal-
    length arrays. A column missing on one side is filled there (NaN for numbers, False
    for flags, None for text or objects; in ``cat``, ``survey`` None and ``kind``
    ``"catalogue"``). Column by column with numpy: no table join."""
    from astropy.table import Table

    n_old = len(cat)
    n_new = len(next(iter(rows.values()))) if rows else 0
    if n_new == 0:
        return cat
    fills = {"survey": None, "kind": "catalogue"}
    names = list(cat.colnames) + [c for c in rows if c not in cat.colnames]
    out = {}
    for name in names:
        old = np.asarray(cat[name]) if name in cat.colnames else \
            np.full(n_old, fills.get(name), object)
        new = np.asarray(rows[name]) if name in rows else _filled(old.dtype, n_new)
        if old.dtype.kind != new.dtype.kind and "O" in (old.dtype.kind, new.dtype.kind):
            old, new = old.astype(object), new.astype(object)
        out[name] = np.concatenate([old, new])
        if name in cat.colnames and np.ma.is_masked(cat[name]):   # masked stays masked
            out[name] = np.ma.MaskedArray(out[name], mask=np.r_[np.ma.getmaskarray(cat[name]),
                                                                np.full(n_new, name not in rows)])
    merged = Table(out, copy=False)
    merged.meta = dict(cat.meta)
    return merged


def _filled(dtype: np.dtype, n: int) -> np.ndarray:
    """``n`` values meaning "unknown" for a column of ``dtype``."""
    if dtype.kind == "f":
        return np.full(n, np.nan, dtype)
    if dtype.kind == "b":
        return np.zeros(n, bool)
    if dtype.kind in "iu":
        return np.zeros(n, dtype)
    return np.full(n, None, object)


def with_extra_positions(cat, catalogs, image, own_sources=None):
    """The catalogue rows plus the monitor list's positions on the image (``monitor``
    survey of ``catalogs``, when ingested) and the service's own sources of the footprint
    (``own_sources(ra_deg, dec_deg, radius_deg)`` -> columns of
    :func:`dsa110_contimg.store.detections.own_sources_near`; measured at their weighted-mean
    positions; its ``monitor`` rows are not: the list gives those). Extra rows carry
    ``survey`` and ``kind`` columns and no catalogue flux; the catalogue alone is returned
    unchanged."""
    from dsa110_contimg.core.enums import MONITOR_SURVEY

    parts = []
    if catalogs.path_of(MONITOR_SURVEY).exists():
        mon = catalogs.survey(MONITOR_SURVEY).in_footprint(image)
        if len(mon):
            parts.append({"source_id": np.asarray(mon["source_id"], str),
                          "ra_deg": np.asarray(mon["ra_deg"], float),
                          "dec_deg": np.asarray(mon["dec_deg"], float),
                          "survey": np.full(len(mon), MONITOR_SURVEY, object),
                          "kind": np.full(len(mon), "monitor", object)})
    if own_sources is not None:
        ra0, dec0 = image.center()
        own = own_sources(ra0, dec0, image.footprint_radius_deg())
        if len(own["id"]):
            x, y = image.world_to_pixel(own["ra_deg"], own["dec_deg"])
            ny, nx = image.shape
            on = np.isfinite(x) & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
            on &= own["kind"] != "monitor"
            if on.any():
                parts.append({"source_id": np.asarray(own["catalog_id"][on], str),
                              "ra_deg": own["ra_deg"][on], "dec_deg": own["dec_deg"][on],
                              "survey": np.asarray(own["survey"][on], object),
                              "kind": np.asarray(own["kind"][on], object)})
    if not parts:
        return cat
    return append_rows(cat, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def _measurement_options(method: str, cfg: PhotometryConfig) -> dict[str, Any]:
    """Options of :func:`~dsa110_contimg.science.forced.measure_positions` the workflow sets."""
    options: dict[str, Any] = {}
    if method in ("forced", "adaptive"):
        options.update(nbeam=cfg.nbeam, cluster_threshold=cfg.cluster_threshold)
    if method == "forced" and cfg.condon_errors:
        options["condon"] = True
    return options


def detect(image, cfg: PhotometryConfig, notes: list, maps):
    """Blind detections and the noise footprint of an image on its background and noise
    ``maps`` (None, None when off)."""
    if not cfg.detect:
        return None, None
    if image.beam is None:
        notes.append("no beam: blind detection skipped")
        return None, None
    from dsa110_contimg.science.detect import DetectionOptions, detect_sources
    from dsa110_contimg.science.footprint import footprint_of, remember

    detections = detect_sources(image, maps, options=DetectionOptions.from_config(cfg))
    corr = float(detections.meta.get("noise_corr_factor", 1.0))
    footprint = footprint_of(image, maps, corr)
    blob = footprint.to_bytes()
    remember(blob, footprint)          # decoded already for the field's next images here
    return detections, blob


def artefact_hosts(catalogs, image, cfg: PhotometryConfig, footprint: bytes | None):
    """The catalogue sources that can throw a detectable artefact onto the image:
    ``(ra_deg, dec_deg, peak_jyb)`` of those within the image's radius plus
    ``artefact_radius_beams`` x BMAJ (beyond the edge and under blanked pixels too) whose
    flux (taken as the peak, Jy/beam) reaches ``detect_sigma`` x the image's lowest rms /
    ``artefact_flux_ratio``. None without a footprint or a catalogue to ask."""
    from dsa110_contimg.core.errors import CatalogMissing
    from dsa110_contimg.science.footprint import NoiseFootprint

    if footprint is None or image.beam is None:
        return None
    rms_min, _ = NoiseFootprint.extremes_of(footprint)
    if not np.isfinite(rms_min):
        return None
    ra0, dec0 = image.center()
    radius = image.footprint_radius_deg() + cfg.artefact_radius_beams * image.beam.major_arcsec / 3600
    min_flux_mjy = 1000.0 * cfg.detect_sigma * rms_min / cfg.artefact_flux_ratio
    try:
        # asked at the power of two below the floor, so that a field's images, whose lowest
        # rms differs a little, repeat one query (the catalogue store caches it per region)
        rows = catalogs.survey(cfg.catalog).cone(
            ra0, dec0, radius,
            min_flux_mjy=2.0 ** np.floor(np.log2(min_flux_mjy)) if min_flux_mjy > 0 else None)
    except CatalogMissing:
        return None
    flux_mjy = np.asarray(rows["flux_mjy"], float)
    keep = flux_mjy >= min_flux_mjy
    return (np.asarray(rows["ra_deg"], float)[keep], np.asarray(rows["dec_deg"], float)[keep],
            flux_mjy[keep] / 1000.0)


def measure_image(path: Path | str, kind: str, cfg: PhotometryConfig, catalogs,
                  own_sources=None, *, data_digest: str | None = None) -> MeasuredImage:
    """Open, query the catalogue, estimate the noise, measure every position, image statistics.

    ``catalogs`` is the :class:`~dsa110_contimg.store.catalogs.CatalogStore` to query;
    monitor-list positions and, with ``own_sources`` (see :func:`with_extra_positions`),
    the service's own sources are measured too.
    Raises the typed errors of :mod:`dsa110_contimg.core.errors` (``InvalidImage`` and
    subclasses, ``CatalogMissing``, ...). ``path`` may be the filesystem form or the
    database form (``fsb64:``) of the name. ``data_digest`` is the file's
    :func:`~dsa110_contimg.store.products.data_digest` when the caller computed it (else
    it is computed here).
    """
    from dsa110_contimg.science.forced import measure_positions
    from dsa110_contimg.science.noise import background_maps_for

    path = Path(fs_path(path))   # opened by its filesystem form; stored by db_path()
    timer = StepTimer()
    seen = []
    if own_sources is not None:         # the ids read are the image's own_seen
        read_own = own_sources

        def own_sources(ra_deg, dec_deg, radius_deg):
            got = read_own(ra_deg, dec_deg, radius_deg)
            seen.append(np.asarray(got["id"], np.int64))
            return got

    with timer("open"):
        image, kind, method, notes = open_image(path, kind, cfg)
    with image:
        with timer("catalog"):
            cat = with_extra_positions(query_catalog(catalogs, image, kind, cfg), catalogs,
                                       image, own_sources)
        if cat.meta.get("coverage") == "partial":
            notes.extend(f"catalogue: {n}" for n in cat.meta.get("notes", ["coverage is partial"]))
        options = _measurement_options(method, cfg)
        maps = None
        with timer("noise"):
            if method in ("forced", "peak"):   # built once: measurement, detection and QC
                maps = options["maps"] = background_maps_for(image)
        with timer("measure"):
            table = measure_positions(image, np.asarray(cat["ra_deg"], float),
                                      np.asarray(cat["dec_deg"], float), method=method, **options)
        notes.extend(str(n) for n in table.meta.get("notes", []))
        if table.meta.get("note"):
            notes.append(str(table.meta["note"]))
        if cfg.detect:
            with timer("detect"):
                if maps is None:   # the method built its own (per plane): these serve
                    maps = background_maps_for(image)   # detection and QC
                detections, footprint = detect(image, cfg, notes, maps)
                hosts = artefact_hosts(catalogs, image, cfg, footprint)
        else:
            detections, footprint, hosts = None, None, None
        with timer("image_stats"):
            summary = ImageSummary.of(image, qc_stats=cfg.qc, maps=maps)
    return MeasuredImage(path=path, kind=kind, method=method, notes=notes, cat=cat, table=table,
                         image=summary, content_id=product_store.content_id(path),
                         steps=timer.seconds, detections=detections, footprint=footprint,
                         data_digest=data_digest or product_store.data_digest(path),
                         artefact_hosts=hosts,
                         own_seen=(None if own_sources is None else
                                   np.concatenate(seen) if seen else np.zeros(0, np.int64)),
                         maps=maps)
