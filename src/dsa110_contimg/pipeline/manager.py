"""``PhotometryManager``: the photometry workflow for images and mosaics.

One call runs, for one FITS file::

    measure (pipeline/measure.py: catalogue query, noise, measurement; no database)
        -> the steps of pipeline/steps (one transaction: store, QC, normalise,
           variability; then ESE candidates in their own) -> link

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from dsa110_contimg.core.config import PhotometryConfig
from dsa110_contimg.core.errors import PhotometryError
from dsa110_contimg.core.paths import db_path, fs_path, printable
from dsa110_contimg.pipeline.measure import MeasuredImage, measure_image, open_image, query_catalog
from dsa110_contimg.pipeline.runner import store_measured
from dsa110_contimg.science.results import MeasurementTable
from dsa110_contimg.store import registry as registry_store
from dsa110_contimg.store.engine import Database, open_products_db, open_registry_db
from dsa110_contimg.store.queue import JobQueue
from dsa110_contimg.store.values import column_strings

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
        Wall time of each workflow step, seconds: the measurement's stages (``open``,
        ``catalog``, ``noise``, ``measure``, ``image_stats``), each step's reads and writes
        (``store``, ``qc``, ``normalise``, ``variability``, ``ese``), ``write_lock`` (how
        long the image's write transaction held the database, commit included) and
        ``ese_lock`` (the ESE step's own short transaction; its evaluation runs before it
        on a read connection).
    duplicate_of : int or None
        When the file's data was already stored under another path: that image's id (this
        image was recorded as its duplicate, measured nothing and is no epoch).
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
    duplicate_of: int | None = None

    @property
    def success_rate(self) -> float:
        """measurements_successful / measurements_total (0 when nothing was measured)."""
        return self.measurements_successful / self.measurements_total if self.measurements_total else 0.0


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

    def exclude_image(self, image_id: int, reason: str,
                      config: PhotometryConfig | None = None) -> dict:
        """Take image ``image_id`` out of light curves, normalisation (as a reference epoch
        too), variability and ESE, recomputed at once; ``reason`` is shown wherever the
        image is. Returns what was recomputed
        (:func:`dsa110_contimg.pipeline.exclusion.set_excluded`)."""
        from dsa110_contimg.pipeline.exclusion import set_excluded

        return set_excluded(self.products.engine, self._config(config, {}), int(image_id),
                            excluded=True, reason=reason)

    def include_image(self, image_id: int, config: PhotometryConfig | None = None) -> dict:
        """Put an excluded image back into everything it was taken out of (recomputed)."""
        from dsa110_contimg.pipeline.exclusion import set_excluded

        return set_excluded(self.products.engine, self._config(config, {}), int(image_id),
                            excluded=False)

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
            image, kind, _method, notes = open_image(path, kind, cfg)
            with image:
                cat = query_catalog(self.catalog_store(cfg), image, kind, cfg)
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
            image, kind, _method, notes = open_image(path, kind, cfg)
            with image:
                n_sources = len(query_catalog(self.catalog_store(cfg), image, kind, cfg))
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

    def catalog_store(self, cfg: PhotometryConfig):
        """The catalogue store for ``cfg`` (cached per directory)."""
        from dsa110_contimg.store.catalogs import CatalogStore

        directory = cfg.catalog_path or self.catalog_dir or DEFAULT_CATALOG_DIR
        key = (str(directory), cfg.allow_online)
        if key not in self._catalog_stores:
            self._catalog_stores[key] = CatalogStore(directory, allow_online=cfg.allow_online)
        return self._catalog_stores[key]

    def run_image(self, path: Path | str, kind: str, cfg: PhotometryConfig, *,
                  data_id: str | None = None, fence=None) -> PhotometryResult:
        """Run the whole synchronous workflow for one file and return its result.

        This is what a batch job runs per item; it does not touch the registry. It is
        :meth:`measure_image` (pure: no database) followed by :meth:`store_measured`; a
        file whose data is already stored under another path is recorded as a duplicate of
        that image without being measured (the result's ``duplicate_of``).
        ``fence(conn)``, when given, is called first inside the result transactions
        (the job runtime's lease check: it raises to roll the transaction back).
        ``path`` may be the filesystem form of a name or its database form
        (:func:`dsa110_contimg.core.paths.db_path`, ``fsb64:`` for a name that is not
        valid UTF-8); the ``images`` row and the registry hold the database form.
        """
        from dsa110_contimg.pipeline.runner import store_known_duplicate
        from dsa110_contimg.store.products import data_digest

        try:
            digest = data_digest(fs_path(path))
        except OSError:
            digest = None           # the measurement reports what is wrong with the file
        known = None if digest is None else store_known_duplicate(
            self.products.engine, path, kind, cfg, data_id=data_id, fence=fence, digest=digest)
        if known is not None:      # the same data is stored under another path: not measured
            log.info("image_duplicate", path=printable(path), image_id=known.image_id,
                     duplicate_of=known.duplicate_of)
            return PhotometryResult(Path(fs_path(path)), kind=kind, notes=known.notes,
                                    image_id=known.image_id, data_id=data_id,
                                    duplicate_of=known.duplicate_of)
        return self.store_measured(self.measure_image(path, kind, cfg, data_digest=digest), cfg,
                                   data_id=data_id, fence=fence,
                                   duplicate_checked=digest is not None)

    def measure_image(self, path: Path | str, kind: str, cfg: PhotometryConfig, *,
                      data_digest: str | None = None) -> MeasuredImage:
        """The database-free part of the workflow (:func:`dsa110_contimg.pipeline.measure.
        measure_image`): open, catalogue, measure, image statistics.

        Returns a picklable :class:`~dsa110_contimg.pipeline.measure.MeasuredImage` (what
        ``reprocess`` ships back from Dask workers); :meth:`store_measured` does the rest.
        Raises the typed errors of :meth:`run_image`. ``data_digest``: the file's
        :func:`~dsa110_contimg.store.products.data_digest` when the caller has it.
        """
        return measure_image(path, kind, cfg, self.catalog_store(cfg),
                             own_sources=self._own_sources if self.products is not None else None,
                             data_digest=data_digest)

    def _own_sources(self, ra_deg: float, dec_deg: float, radius_deg: float) -> dict:
        """The service's own (new, blind) sources near a footprint, read from the products
        database, for their forward measurement; with the monitor rows, which are not
        measured from here but mark what the image saw (pipeline/inflight.py)."""
        from dsa110_contimg.pipeline.inflight import SEEN_KINDS
        from dsa110_contimg.store.detections import own_sources_near
        from dsa110_contimg.store.engine import read_connection

        with read_connection(self.products.engine) as conn:
            return own_sources_near(conn, ra_deg, dec_deg, radius_deg, kinds=SEEN_KINDS)

    def store_measured(self, measured: MeasuredImage, cfg: PhotometryConfig, *,
                       data_id: str | None = None, fence=None,
                       duplicate_checked: bool = False) -> PhotometryResult:
        """Store a measured image through the per-image steps
        (:func:`dsa110_contimg.pipeline.runner.store_measured`: one write transaction for
        the measurements, QC, normalisation and variability, then ESE candidates) and
        return its result. ``duplicate_checked``: see the runner's."""
        outcome = store_measured(self.products.engine, measured, cfg, data_id=data_id, fence=fence,
                                 duplicate_checked=duplicate_checked)
        measured = outcome.measured
        if outcome.duplicate_of is not None:
            log.info("image_duplicate", path=printable(measured.path), image_id=outcome.image_id,
                     duplicate_of=outcome.duplicate_of)
            return PhotometryResult(measured.path, sources_queried=len(measured.cat),
                                    kind=measured.kind, method=measured.method,
                                    notes=outcome.notes, image_id=outcome.image_id,
                                    data_id=data_id, duplicate_of=outcome.duplicate_of,
                                    step_seconds=outcome.step_seconds)
        table, cat = measured.table, measured.cat
        results = MeasurementTable(
            {**table.columns, "source_id": outcome.source_ids,
             "catalog_id": np.asarray(column_strings(cat["source_id"]), dtype=object)},
            {**table.meta, "image_id": outcome.image_id})
        result = PhotometryResult(
            measured.path, sources_queried=len(cat), measurements_successful=table.n_success,
            measurements_total=len(table), results=results, kind=measured.kind,
            method=measured.method, notes=outcome.notes, image_id=outcome.image_id,
            data_id=data_id, qc_status=outcome.qc_status, normalization=outcome.normalization,
            ese_candidates=outcome.ese_candidates, step_seconds=outcome.step_seconds)
        log.info("image_measured", path=printable(measured.path), kind=measured.kind,
                 method=measured.method, image_id=outcome.image_id, sources=len(cat),
                 successful=table.n_success, qc=result.qc_status,
                 normalization=result.normalization.get("status"),
                 ese_candidates=result.ese_candidates,
                 steps={k: round(v, 4) for k, v in outcome.step_seconds.items()})
        return result
