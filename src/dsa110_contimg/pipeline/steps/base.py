"""The step protocol and what every step is handed: :class:`Step`, :class:`ImageContext`,
:class:`FieldImages` (see :mod:`dsa110_contimg.pipeline.steps`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dsa110_contimg.store import lightcurves as lc_store

#: ``Step.transaction``: written inside the image's one write transaction.
IMAGE_TRANSACTION = "image"
#: ``Step.transaction``: prepared on a read connection after the image's transaction
#: committed, written in a short transaction of its own.
OWN_TRANSACTION = "own"


def _always(cfg) -> bool:
    return True


def _nothing(conn, ctx) -> None:
    return None


@dataclass(frozen=True)
class Step:
    """One per-image step of the workflow.

    Attributes
    ----------
    name : str
        Key of its result (``ctx.results[name]``), of its time (``step_seconds``) and of
        its stage histogram (``service/metrics.py: STAGES``).
    write : callable ``(conn, ctx) -> result``
        The step's database work on a write connection; its return value is stored in
        ``ctx.results[name]``. SQL only through :mod:`dsa110_contimg.store`.
    prepare : callable ``(conn, ctx) -> None``
        Reads and computations that need no write lock, on a read connection; it may
        leave what ``write`` needs in ``ctx.prepared[name]``. Default: nothing.
    transaction : str
        :data:`IMAGE_TRANSACTION` (default): ``prepare`` runs before the image's write
        transaction and ``write`` inside it, in list order. :data:`OWN_TRANSACTION`:
        both run after that transaction committed, ``write`` in a short transaction of
        its own (``ctx.timer`` records it as ``<name>_lock``).
    enabled : callable ``(cfg) -> bool``
        Whether the step runs under this configuration. Default: always.
    staged_rows : bool
        Whether the step works with the image's measurement rows while they are still
        staged (:meth:`ImageContext.stage_measurements`: not yet in the database, so that
        the ``normalise`` step inserts them once with their normalised fluxes). Default
        False: the runner writes staged rows before the step runs, so that it reads them.
    """

    name: str
    write: Callable[[Any, "ImageContext"], Any]
    prepare: Callable[[Any, "ImageContext"], None] = _nothing
    transaction: str = IMAGE_TRANSACTION
    enabled: Callable[[Any], bool] = _always
    staged_rows: bool = False

    def __post_init__(self):
        if self.transaction not in (IMAGE_TRANSACTION, OWN_TRANSACTION):
            raise ValueError(f"step {self.name!r}: transaction must be {IMAGE_TRANSACTION!r} or "
                             f"{OWN_TRANSACTION!r}, not {self.transaction!r}")


class FieldImages:
    """The images whose footprint can overlap this image's (its field), read once per image.

    The columns of :func:`dsa110_contimg.store.lightcurves.images_near` (QC-failed images
    left out), read inside the image's write transaction at the first step that needs
    them: the whole history (``since_mjd`` None) or the images of epoch ``>= since_mjd``
    (a window; images without an epoch are outside every window). A step that changes an
    image's normalisation records it here too (:meth:`record_normalisation`), so that
    later steps see what the database holds.
    """

    def __init__(self, columns: dict[str, np.ndarray], since_mjd: float | None = None,
                 where: tuple[float, float, float] | None = None):
        self.columns = columns
        self.since_mjd = since_mjd
        self._where = where

    @classmethod
    def read(cls, conn, ra_deg: float, dec_deg: float, radius_deg: float, *,
             since_mjd: float | None = None) -> "FieldImages":
        """The field of a footprint of ``radius_deg`` centred on (ra, dec), deg: every image,
        or those of epoch ``>= since_mjd`` (MJD)."""
        radius = lc_store.neighbourhood_radius(conn, radius_deg)
        return cls(lc_store.images_near(conn, ra_deg, dec_deg, radius, since_mjd=since_mjd),
                   since_mjd, (ra_deg, dec_deg, radius))

    def completed(self, conn) -> "FieldImages":
        """The whole field: this window and the images before it (or without an epoch), read
        on ``conn``; each image is read once."""
        if self.complete:
            return self
        ra, dec, radius = self._where
        older = lc_store.images_near(conn, ra, dec, radius, before_mjd=self.since_mjd)
        order = np.argsort(np.concatenate([older["id"], self.ids]), kind="stable")
        return FieldImages({k: np.concatenate([older[k], v])[order]
                            for k, v in self.columns.items()}, None, self._where)

    @property
    def complete(self) -> bool:
        """Whether the whole history was read (not a window)."""
        return self.since_mjd is None

    def since(self, mjd: float | None) -> "FieldImages":
        """The images of epoch ``>= mjd`` (MJD; None: all of these), as a new read-only view."""
        if mjd is None:
            return self
        with np.errstate(invalid="ignore"):
            keep = self.mjd >= mjd
        return FieldImages({k: v[keep] for k, v in self.columns.items()},
                           mjd if self.since_mjd is None else max(mjd, self.since_mjd))

    @property
    def ids(self) -> np.ndarray:
        return self.columns["id"]

    @property
    def mjd(self) -> np.ndarray:
        """Observation epoch of each image (MJD; NaN when the header had none)."""
        return self.columns["mjd"]

    @property
    def norm_status(self) -> np.ndarray:
        return self.columns["norm_status"]

    @property
    def norm_ref_ids(self) -> np.ndarray:
        """The JSON list of the reference source ids of each image (None when none)."""
        return self.columns["norm_ref_ids"]

    def normalised_ids(self) -> np.ndarray:
        """Ids of the images whose normalisation is ``ok``."""
        return self.ids[self.norm_status == "ok"]

    def record_normalisation(self, image_id: int, status: str, ref_ids) -> None:
        """Note a normalisation just written for ``image_id`` (no-op outside the field)."""
        at = np.flatnonzero(self.ids == int(image_id))
        for i in at:
            self.columns["norm_status"][i] = status
            self.columns["norm_ref_ids"][i] = (None if ref_ids is None else
                                               json.dumps([int(s) for s in ref_ids]))


@dataclass
class ImageContext:
    """One image on its way through the steps.

    Set before the steps run: where the image is (``path``, the database form of its
    absolute path; ``mjd``; centre ``ra_deg``/``dec_deg`` and ``radius_deg``, deg), its
    ``kind`` and the ``method`` actually used, the configuration ``cfg`` and the
    ``measured`` image (:class:`~dsa110_contimg.pipeline.measure.MeasuredImage`). The
    ``store`` step sets ``image_id``, ``source_ids`` (``sources.id`` per measurement row)
    and ``remeasured`` (the path had been measured before). Steps put their result in
    ``results[step.name]``, what their ``write`` needs from their ``prepare`` in
    ``prepared[step.name]``, and lines for the user in ``notes``.
    """

    image_id: int | None
    path: str
    mjd: float | None
    ra_deg: float
    dec_deg: float
    radius_deg: float
    kind: str
    remeasured: bool
    source_ids: np.ndarray | None
    method: str | None = None
    cfg: Any = None
    measured: Any = None
    data_id: str | None = None
    results: dict[str, Any] = field(default_factory=dict)
    prepared: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Set by the duplicate step: the ``images.id`` holding the same data under another
    #: path; the runner then skips every later step.
    duplicate_of: int | None = None
    #: Set by the runner when its caller found no original of the image's data on a read
    #: connection just before: the duplicate step's prepare does not look again (its
    #: write looks, under the write lock).
    duplicate_checked: bool = False
    #: Set by a prepare that read them (the associate step): ``{catalog_id: sources.id}`` of
    #: the measured rows of the configured catalogue that have a source row, read on the
    #: prepare phase's connection; the store step's prepare uses it instead of reading
    #: them again.
    catalogue_ids: dict[str, int] | None = None
    #: Set by the variability step: ``(running_stats_signature, stats)`` of the image's
    #: sources as its transaction wrote them, so that the ESE step need not read them
    #: again while the signature still matches.
    written_stats: tuple | None = None
    #: The field window (days before this image's epoch) the per-image steps read
    #: (``cfg.field_window_days``, set by the workflow; docs/science.md §7.6); None: the
    #: whole history (recomputations).
    field_window_days: float | None = None
    _field: FieldImages | None = None
    _staged: dict | None = None
    _compactness: tuple | None = None

    def compactness(self) -> tuple:
        """``(class, reason)`` per catalogue row of the measured image in its beam
        (:func:`dsa110_contimg.catalogs.compactness.compactness`), computed once for the
        steps that use it (``qc``, ``normalise``); read-only."""
        if self._compactness is None:
            from dsa110_contimg.catalogs.compactness import compactness

            image = self.measured.image
            self._compactness = compactness(
                self.measured.cat, image.beam.major_arcsec if image.beam is not None else None)
        return self._compactness

    def stage_measurements(self, columns) -> None:
        """Keep the image's measurement rows (``columns`` per ``source_ids``, for
        ``image_id``) to be inserted by :meth:`write_measurements`, once, with their
        normalised fluxes when the ``normalise`` step computes them."""
        flags = np.asarray(columns["flags"]).copy()
        self._staged = {"columns": {**columns, "flags": flags}}

    @property
    def measurements_staged(self) -> bool:
        """Whether the image's measurement rows are staged, not yet in the database."""
        return self._staged is not None

    def write_measurements(self, conn, norm_flux=None, norm_err=None) -> bool:
        """Insert the staged measurement rows of the image (with their normalised flux and
        error, Jy/beam, per ``source_ids`` when given); False when none were staged."""
        if self._staged is None:
            return False
        from dsa110_contimg.store.products import insert_measurements

        staged, self._staged = self._staged, None
        insert_measurements(conn, self.image_id, self.source_ids, staged["columns"],
                            norm_flux=norm_flux, norm_err=norm_err)
        return True

    def flag_measurements(self, conn, flag: int) -> None:
        """OR ``flag`` (a :class:`~dsa110_contimg.science.results.Flag` bit) into every
        measurement of the image, staged or stored."""
        if self._staged is not None:
            self._staged["columns"]["flags"] |= int(flag)
        else:
            lc_store.flag_image_measurements(conn, self.image_id, flag)

    def _needs_history(self) -> bool:
        """Whether this image's steps must see the field's whole history: no window, no
        epoch, a re-measured image, or earlier images normalised again in its transaction
        (their epochs changed: the ESE search reads the whole history)."""
        return (self.field_window_days is None or self.mjd is None
                or not np.isfinite(self.mjd) or bool(self.remeasured)
                or bool((self.results.get("normalise") or {}).get("renormalised")))

    def window_start(self) -> float | None:
        """First epoch (MJD) of the field window: ``field_window_days`` before this image,
        and never after the start of the reference-stability window; None when the steps
        see the whole history (:meth:`_needs_history`)."""
        if self._needs_history():
            return None
        days = max(float(self.field_window_days), float(self.cfg.norm_stability_days)
                   if self.cfg is not None else 0.0)
        return float(self.mjd) - days

    def field_images(self, conn, *, full: bool = False) -> FieldImages:
        """The image's field, read on ``conn`` the first time a step asks for it: the field
        window (:meth:`window_start`), or every image when ``full`` or when the steps need
        the whole history. A window that does not reach back to the ESE search window of
        its latest earlier epoch (:data:`~dsa110_contimg.science.ese.SEARCH_WINDOW_DAYS`
        before it; a gap longer than the window's margin) is replaced by the whole
        history."""
        start = None if full else self.window_start()
        if self._field is None:
            self._field = FieldImages.read(conn, self.ra_deg, self.dec_deg, self.radius_deg,
                                           since_mjd=start)
        if start is None or not self._window_covers_search(self._field, start):
            self._field = self._field.completed(conn)
        return self._field

    def recent_field(self, conn) -> FieldImages:
        """The images of the field window only (:meth:`window_start`; the whole field when
        there is none), whatever was read."""
        return self.field_images(conn).since(self.window_start())

    def _window_covers_search(self, field: FieldImages, start: float) -> bool:
        from dsa110_contimg.science.ese import SEARCH_WINDOW_DAYS

        with np.errstate(invalid="ignore"):
            before = field.mjd[field.mjd < float(self.mjd)]
        return before.size > 0 and float(before.max()) - SEARCH_WINDOW_DAYS >= start

    def record_normalisation(self, image_id: int, status: str, ref_ids) -> None:
        """Keep the field, when already read, equal to what the database now holds after a
        step stored the normalisation of ``image_id`` (a field read later reads it)."""
        if self._field is not None:
            self._field.record_normalisation(image_id, status, ref_ids)

    def reread_field(self, conn) -> FieldImages:
        """The field read again on ``conn`` (after another worker may have changed it), as
        much of it as was read before."""
        full = self._field is not None and self._field.complete
        self._field = None
        return self.field_images(conn, full=full)
