"""``PhotometryManager``: the photometry workflow for images and mosaics.

One call runs, for one FITS file::

    catalogue query -> measure -> quality control -> store (one transaction)
        -> normalise -> variability statistics -> ESE candidates -> link

either now (``create_batch_job=False``, returning the per-source results) or
as a batch job in the products database (``create_batch_job=True``, returning
at once with its id; ``contimg-photometry worker`` or the daemon runs it).

Errors
------
Synchronous calls raise the typed errors of
:mod:`dsa110_contimg.core.errors` (``InvalidImage`` and subclasses,
``CatalogMissing``, ``UnknownCatalog``, ``ConfigError``, ``StoreError``) after
recording the failure in the data registry when a ``data_id`` is given. A
missing file raises :class:`~dsa110_contimg.core.errors.CorruptImage`.
Asynchronous calls raise only for errors in the call itself (bad config,
database); failures while the job runs are recorded on the job and in the
registry.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from dsa110_contimg.core.config import PhotometryConfig
from dsa110_contimg.core.enums import MOSAIC_KEYWORDS
from dsa110_contimg.core.errors import MissingBeam, PhotometryError
from dsa110_contimg.core.paths import db_path, fs_path, printable
from dsa110_contimg.science.results import MeasurementTable
from dsa110_contimg.store import products as product_store
from dsa110_contimg.store import registry as registry_store
from dsa110_contimg.store.engine import Database, open_products_db, open_registry_db, serialise_writes
from dsa110_contimg.store.queue import JobQueue

log = structlog.get_logger("dsa110_contimg.pipeline.manager")

DEFAULT_CATALOG_DIR = Path("catalogs")


@dataclass
class PhotometryResult:
    """Outcome of one ``measure_for_fits`` / ``measure_for_mosaic`` call.

    Attributes
    ----------
    fits_path : Path
    sources_queried : int
        Catalogue sources found in the search region.
    measurements_successful, measurements_total : int
        Successful and attempted measurements (0 for an async call).
    batch_job_id : int or None
        The batch job created by an async call.
    results : MeasurementTable or None
        Per-source results of a synchronous call (iterate for records with
        ``success``, ``ra_deg``, ``dec_deg``, ``peak_jyb`` ...).
    kind : str
        ``image`` or ``mosaic``.
    method : str or None
        The method actually used (``peak`` when a mosaic had no beam).
    notes : list of str
        Workflow decisions worth knowing (beam fallbacks, skipped steps).
    image_id : int or None
        Row id in the products database.
    data_id : str or None
    qc_status : str or None
    normalization : dict or None
        ``{"status", "factor", "factor_err", "n_refs", "scatter", "reason"}``.
    ese_candidates : int
        Active ESE candidates among this image's sources after the update.
    step_seconds : dict
        Wall time of each workflow step, seconds (``write_lock``: how long the image's
        write transaction held the database, overlapping ``store``/``normalise``/
        ``variability``; the QC statistics and history read are outside it; ``ese_lock``:
        the ESE candidates' write transaction, the evaluation itself runs before it on a
        read connection).
    """

    fits_path: Path
    sources_queried: int = 0
    measurements_successful: int = 0
    measurements_total: int = 0
    batch_job_id: int | None = None
    results: MeasurementTable | None = None
    kind: str = "image"
    method: str | None = None
    notes: list[str] = field(default_factory=list)
    image_id: int | None = None
    data_id: str | None = None
    qc_status: str | None = None
    normalization: dict | None = None
    ese_candidates: int = 0
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """measurements_successful / measurements_total (0 when nothing was measured)."""
        return self.measurements_successful / self.measurements_total if self.measurements_total else 0.0


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
    def of(cls, image, *, qc_stats: bool = True) -> "ImageSummary":
        from dsa110_contimg.science.qc import image_statistics

        stats = image_statistics(image) if qc_stats else None   # also caches the blanked fraction
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
    """The result of :meth:`PhotometryManager.measure_image` (picklable)."""

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

    def __getstate__(self):
        self.table._record_type = None   # a namedtuple class made on iteration: not picklable
        if self.detections is not None:
            self.detections._record_type = None
        return self.__dict__


class PhotometryManager:
    """Run the photometry workflow for images and mosaics.

    Parameters
    ----------
    products_db_path : Path or str or None
        Products database (SQLite path or SQLAlchemy URL); created and migrated.
        None gives a measure-only manager (:meth:`measure_image`, no storing;
        what Dask workers of ``reprocess`` use).
    data_registry_db_path : Path or str, optional
        Data registry database; without it nothing is linked.
    default_config : PhotometryConfig, optional
        Defaults for every call (per-call ``config`` and keyword overrides win).
    catalog_dir : Path, optional
        Catalogue directory when the config has no ``catalog_path``
        (default ``./catalogs``).
    """

    def __init__(self, products_db_path: Path | str, data_registry_db_path: Path | str | None = None,
                 default_config: PhotometryConfig | None = None, *, catalog_dir: Path | str | None = None):
        self.products_db_path = products_db_path
        self.data_registry_db_path = data_registry_db_path
        self.default_config = default_config or PhotometryConfig()
        self.catalog_dir = Path(catalog_dir) if catalog_dir is not None else None
        self.products: Database = (open_products_db(products_db_path)
                                   if products_db_path is not None else None)
        self.registry: Database | None = (open_registry_db(data_registry_db_path)
                                          if data_registry_db_path is not None else None)
        self.queue = JobQueue(self.products) if self.products is not None else None
        self._catalog_stores: dict[tuple, Any] = {}

    # -- public API ---------------------------------------------------------------
    def measure_for_fits(self, fits_path: Path | str, config: PhotometryConfig | None = None,
                         create_batch_job: bool = True, data_id: str | None = None,
                         group_id: str | None = None, dry_run: bool = False,
                         **overrides: Any) -> PhotometryResult:
        """Photometry of one image (kind ``image``; a mosaic header is detected).

        Parameters
        ----------
        fits_path : Path
            The primary-beam-corrected image.
        config : PhotometryConfig, optional
            Replaces the default config for this call.
        create_batch_job : bool
            True: record a batch job and return at once; False: run now.
        data_id : str, optional
            Data-registry id to link (async default: the FITS stem).
        group_id : str, optional
            Observation group, kept in the job parameters.
        dry_run : bool
            Query the catalogue and count sources only.
        **overrides
            Per-call changes to config fields, e.g. ``method="peak"``.
        """
        return self._measure(fits_path, "image", config, create_batch_job, data_id, group_id,
                             dry_run, overrides)

    def measure_for_mosaic(self, mosaic_path: Path | str, config: PhotometryConfig | None = None,
                           create_batch_job: bool = True, data_id: str | None = None,
                           group_id: str | None = None, dry_run: bool = False,
                           **overrides: Any) -> PhotometryResult:
        """Photometry of one mosaic.

        Same as :meth:`measure_for_fits`; without explicit radii and with
        ``auto_compute_extent`` off the search radius is 1.0 deg. A mosaic
        without a beam is measured with ``peak`` unless the config gives
        ``beam_arcsec`` (the result's ``notes`` say which).
        """
        return self._measure(mosaic_path, "mosaic", config, create_batch_job, data_id, group_id,
                             dry_run, overrides)

    # -- workflow -----------------------------------------------------------------
    def _config(self, config: PhotometryConfig | None, overrides: dict) -> PhotometryConfig:
        cfg = config or self.default_config
        return cfg.replace(**overrides) if overrides else cfg

    def _measure(self, path, kind, config, create_batch_job, data_id, group_id, dry_run, overrides):
        cfg = self._config(config, overrides)
        path = Path(fs_path(path))   # a database form (``fsb64:``) is accepted too
        if create_batch_job and not dry_run:
            return self._create_batch_job(path, kind, cfg, data_id or printable(path.stem), group_id)
        if dry_run:
            image, kind, _method, notes = self._open(path, kind, cfg)
            with image:
                cat = self._query_catalog(image, kind, cfg)
            return PhotometryResult(path, sources_queried=len(cat), kind=kind, notes=notes,
                                    data_id=data_id)
        if data_id is not None and self.registry is not None:
            self._link(data_id, path, kind, "running", None)
        try:
            result = self.run_image(path, kind, cfg, data_id=data_id)
        except PhotometryError as exc:
            if data_id is not None and self.registry is not None:
                self._link(data_id, path, kind, "failed", None, error=str(exc))
            raise
        if data_id is not None and self.registry is not None:
            self._link(data_id, path, kind, "completed", None)
        return result

    def _create_batch_job(self, path: Path, kind: str, cfg: PhotometryConfig, data_id: str,
                          group_id: str | None) -> PhotometryResult:
        """Record a batch job for one file and link it (registry: pending)."""
        notes: list[str] = []
        n_sources = 0
        try:
            image, kind, _method, notes = self._open(path, kind, cfg)
            with image:
                n_sources = len(self._query_catalog(image, kind, cfg))
        except PhotometryError as exc:
            # The job still goes in: the worker will fail it with this reason on record.
            notes.append(f"pre-check failed (the job will record it): {exc}")
        params = {"config": cfg.to_dict(), "group_id": group_id}
        job_id, _ = self.queue.enqueue(params, [(db_path(path.resolve()), kind, data_id)], data_id=data_id)
        if self.registry is not None:
            self._link(data_id, path, kind, "pending", job_id)
        log.info("batch_job_created", job_id=job_id, path=printable(path), kind=kind, data_id=data_id,
                 sources=n_sources)
        return PhotometryResult(path, sources_queried=n_sources, batch_job_id=job_id, kind=kind,
                                notes=notes, data_id=data_id)

    def _link(self, data_id, path, kind, status, job_id, error=None):
        registry_store.link(self.registry, data_id, data_type=kind, path=db_path(path),
                            photometry_status=status, job_id=job_id, error=error)

    def _open(self, path: Path, kind: str, cfg: PhotometryConfig):
        """Open the image; decide the kind and the method actually used."""
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

    def catalog_store(self, cfg: PhotometryConfig):
        """The catalogue store for ``cfg`` (cached per directory)."""
        from dsa110_contimg.store.catalogs import CatalogStore

        directory = cfg.catalog_path or self.catalog_dir or DEFAULT_CATALOG_DIR
        key = (str(directory), cfg.allow_online)
        if key not in self._catalog_stores:
            self._catalog_stores[key] = CatalogStore(directory, allow_online=cfg.allow_online)
        return self._catalog_stores[key]

    def _query_catalog(self, image, kind: str, cfg: PhotometryConfig):
        survey = self.catalog_store(cfg).survey(cfg.catalog)
        region, radii = cfg.search_region(kind)
        limits = {"min_flux_mjy": cfg.min_flux_mjy, "max_sources": cfg.max_sources}
        if region == "footprint":
            return survey.in_footprint(image, **limits)
        ra0, dec0 = image.center()
        if region == "ellipse":
            return survey.ellipse(ra0, dec0, radii[0], radii[1], **limits)
        return survey.cone(ra0, dec0, radii[0], **limits)

    def run_image(self, path: Path | str, kind: str, cfg: PhotometryConfig, *,
                  data_id: str | None = None, fence=None) -> PhotometryResult:
        """Run the whole synchronous workflow for one file and return its result.

        This is what a batch job runs per item; it does not touch the registry. It is
        :meth:`measure_image` (pure: no database) followed by :meth:`store_measured`.
        ``fence(conn)``, when given, is called first inside the result transactions
        (the job runtime's lease check: it raises to roll the transaction back).
        ``path`` may be the filesystem form of a name or its database form
        (:func:`dsa110_contimg.core.paths.db_path`, ``fsb64:`` for a name that is not
        valid UTF-8); the ``images`` row and the registry hold the database form.
        """
        return self.store_measured(self.measure_image(path, kind, cfg), cfg, data_id=data_id,
                                   fence=fence)

    def measure_image(self, path: Path | str, kind: str, cfg: PhotometryConfig) -> "MeasuredImage":
        """The database-free part of the workflow: open, catalogue, measure, image statistics.

        Returns a picklable :class:`MeasuredImage` (what ``reprocess`` ships back from
        Dask workers); :meth:`store_measured` does the rest. Raises the typed errors of
        :meth:`run_image`.
        """
        from dsa110_contimg.science.forced import measure_positions

        path = Path(fs_path(path))   # opened by its filesystem form; stored by db_path()
        steps: dict[str, float] = {}
        t = time.perf_counter()
        image, kind, method, notes = self._open(path, kind, cfg)
        steps["open"] = time.perf_counter() - t
        with image:
            t = time.perf_counter()
            cat = self._query_catalog(image, kind, cfg)
            steps["catalog"] = time.perf_counter() - t
            if cat.meta.get("coverage") == "partial":
                notes.extend(f"catalogue: {n}" for n in cat.meta.get("notes", ["coverage is partial"]))

            t = time.perf_counter()
            if method in ("forced", "peak"):   # the noise map, cached on the image for the measurement
                from dsa110_contimg.science.noise import background_maps_for

                background_maps_for(image)
            steps["noise"] = time.perf_counter() - t

            t = time.perf_counter()
            options: dict[str, Any] = {}
            if method in ("forced", "adaptive"):
                options.update(nbeam=cfg.nbeam, cluster_threshold=cfg.cluster_threshold)
            if method == "forced" and cfg.condon_errors:
                options["condon"] = True
            table = measure_positions(image, np.asarray(cat["ra_deg"], float),
                                      np.asarray(cat["dec_deg"], float), method=method, **options)
            steps["measure"] = time.perf_counter() - t
            notes.extend(str(n) for n in table.meta.get("notes", []))
            if table.meta.get("note"):
                notes.append(str(table.meta["note"]))
            t = time.perf_counter()
            detections, footprint = self._detect(image, method, cfg, notes)
            if detections is not None:
                steps["detect"] = time.perf_counter() - t
            t = time.perf_counter()
            summary = ImageSummary.of(image, qc_stats=cfg.qc)
            steps["image_stats"] = time.perf_counter() - t
        return MeasuredImage(path=path, kind=kind, method=method, notes=notes, cat=cat, table=table,
                             image=summary, content_id=product_store.content_id(path), steps=steps,
                             detections=detections, footprint=footprint)

    @staticmethod
    def _detect(image, method: str, cfg: PhotometryConfig, notes: list):
        """Blind detections and the noise footprint of an image (None, None when off)."""
        if not cfg.detect:
            return None, None
        if image.beam is None:
            notes.append("no beam: blind detection skipped")
            return None, None
        from dsa110_contimg.science.detect import DetectionOptions, detect_sources
        from dsa110_contimg.science.footprint import footprint_of
        from dsa110_contimg.science.noise import background_maps_for

        maps = background_maps_for(image)      # the maps the forced measurement used (cached)
        detections = detect_sources(image, maps, options=DetectionOptions.from_config(cfg))
        return detections, footprint_of(image, maps).to_bytes()

    def store_measured(self, measured: "MeasuredImage", cfg: PhotometryConfig, *,
                       data_id: str | None = None, fence=None) -> PhotometryResult:
        """Store a :class:`MeasuredImage`: QC, one write transaction (measurements,
        normalisation, variability), then ESE candidates. Returns the result."""
        path, image, kind, method = measured.path, measured.image, measured.kind, measured.method
        cat, table, notes = measured.cat, measured.table, list(measured.notes)
        steps = dict(measured.steps)
        t0 = time.perf_counter()
        result = PhotometryResult(
            path, sources_queried=len(cat), measurements_successful=table.n_success,
            measurements_total=len(table), results=table, kind=kind, method=method, notes=notes,
            data_id=data_id)
        ctx = self._store(path, image, kind, method, cfg, cat, table, data_id, notes, result, steps,
                          content_id=measured.content_id, fence=fence)
        steps["store"] = time.perf_counter() - t0 - sum(
            steps.get(k, 0.0) for k in ("qc", "normalise", "variability"))
        if cfg.detect_ese:
            from dsa110_contimg.pipeline import lightcurves

            from dsa110_contimg.store.engine import read_connection

            t = time.perf_counter()
            # evaluated on a read connection (the shape search needs no lock), written in a
            # short transaction that re-evaluates only if the inputs changed meanwhile
            with read_connection(self.products.engine) as conn:
                signature = lightcurves.ese_inputs_signature(conn, ctx)
                evaluated = lightcurves.ese_rows(conn, ctx, cfg, signature)
            t_lock = time.perf_counter()
            with self.products.engine.begin() as conn:
                serialise_writes(conn)
                if fence is not None:
                    fence(conn)
                result.ese_candidates = lightcurves.store_ese(conn, ctx, cfg, evaluated, signature)
            steps["ese_lock"] = time.perf_counter() - t_lock
            steps["ese"] = time.perf_counter() - t
        result.image_id = ctx.image_id
        result.step_seconds = steps
        log.info("image_measured", path=printable(path), kind=kind, method=method, image_id=ctx.image_id,
                 sources=len(cat), successful=table.n_success, qc=result.qc_status,
                 normalization=(result.normalization or {}).get("status"),
                 ese_candidates=result.ese_candidates,
                 steps={k: round(v, 4) for k, v in steps.items()})
        return result

    def _store(self, path, image, kind, method, cfg, cat, table, data_id, notes, result, steps, *,
               content_id=None, fence=None):
        """One transaction: sources, image row, measurements, QC, normalisation, variability."""
        from dsa110_contimg.pipeline import lightcurves

        beam = image.beam
        rms = table["local_rms_jyb"]
        median_rms = float(np.nanmedian(rms)) if np.isfinite(rms).any() else None
        ra_c, dec_c = image.center()
        radius = image.footprint_radius_deg()
        abs_path = db_path(path.resolve())   # the database form, as in files and batch_job_items
        row = {
            "path": abs_path, "content_id": content_id or product_store.content_id(path), "kind": kind,
            "data_id": data_id, "mjd": image.mjd, "freq_hz": image.freq_hz,
            "beam_major_arcsec": beam.major_arcsec if beam else None,
            "beam_minor_arcsec": beam.minor_arcsec if beam else None,
            "beam_pa_deg": beam.pa_deg if beam else None, "beam_source": image.beam_source,
            "ra_center_deg": ra_c, "dec_center_deg": dec_c, "radius_deg": radius,
            "median_rms_jyb": median_rms, "method": method, "catalog": cfg.catalog,
            "n_sources": len(table), "n_success": table.n_success, "notes": json.dumps(notes),
            "measured_at": time.time(),
        }
        ref_ok = np.asarray(cat["reference_ok"], bool) if "reference_ok" in cat.colnames else None
        t = time.perf_counter()
        history = None
        catalog_ids = [str(s) for s in cat["source_id"]]
        # Reads that need no write lock, on a deferred (read-only) transaction: the QC
        # history and the ids of sources already stored (source rows never change).
        from dsa110_contimg.store.engine import read_connection

        with read_connection(self.products.engine) as conn:
            known_ids = product_store.existing_source_ids(conn, cfg.catalog, catalog_ids)
            if cfg.qc:
                history = lightcurves.qc_field_history(conn, path=abs_path, ra_deg=ra_c,
                                                       dec_deg=dec_c, radius_deg=radius,
                                                       mjd=image.mjd)
        norm_inputs = (lightcurves.normalisation_inputs(image, cat)
                       if cfg.normalize and (method == cfg.method) else None)
        qc = lightcurves.quality_control(None, path=abs_path, ra_deg=ra_c, dec_deg=dec_c,
                                         radius_deg=radius, mjd=image.mjd, kind=kind, image=image,
                                         table=table, cat=cat, cfg=cfg, history=history)
        steps["qc"] = time.perf_counter() - t
        t_lock = time.perf_counter()
        with self.products.engine.begin() as conn:
            serialise_writes(conn)   # SQLite: BEGIN IMMEDIATE already; PostgreSQL: advisory lock
            if fence is not None:
                fence(conn)
            remeasured = product_store.image_by_path(conn, abs_path) is not None
            source_ids = product_store.upsert_sources(
                conn, cfg.catalog, catalog_ids, cat["ra_deg"], cat["dec_deg"],
                cat["flux_mjy"] if "flux_mjy" in cat.colnames else None, ref_ok, known=known_ids)
            image_id = product_store.store_image_measurements(conn, row, source_ids, table.columns)
            ctx = lightcurves.ImageContext(
                image_id=image_id, path=abs_path, mjd=image.mjd, ra_deg=ra_c, dec_deg=dec_c,
                radius_deg=radius, kind=kind, remeasured=remeasured, source_ids=source_ids,
                method=method)
            lightcurves.record_qc(conn, ctx, qc)
            t = time.perf_counter()
            norm = lightcurves.normalise(conn, ctx, image, table, cat, cfg, qc, inputs=norm_inputs)
            steps["normalise"] = time.perf_counter() - t
            t = time.perf_counter()
            var = lightcurves.update_variability(conn, ctx, table, cfg, qc, norm)
            steps["variability"] = time.perf_counter() - t
        # time the write transaction held the database (SQLite: the write lock), commit included
        steps["write_lock"] = time.perf_counter() - t_lock
        table.columns["source_id"] = source_ids
        table.columns["catalog_id"] = np.asarray(catalog_ids, dtype=object)
        table.meta["image_id"] = image_id
        result.qc_status = None if qc is None else qc.status
        if qc is not None and qc.status != "passed":
            notes.extend(f"QC {qc.status}: {r}" for r in qc.reasons)
        result.normalization = {k: v for k, v in norm.items() if k != "renormalised"}
        if norm.get("renormalised"):
            notes.append(f"re-normalised {len(norm['renormalised'])} earlier image(s) as reference "
                         "baselines were established")
        if not var["used"]:
            why = norm.get("reason") or ("image failed quality control" if result.qc_status == "failed"
                                         else "not normalisable")
            notes.append(f"fluxes kept out of the light curves: {why}")
        return ctx
