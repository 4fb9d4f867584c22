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
    """

    name: str
    write: Callable[[Any, "ImageContext"], Any]
    prepare: Callable[[Any, "ImageContext"], None] = _nothing
    transaction: str = IMAGE_TRANSACTION
    enabled: Callable[[Any], bool] = _always

    def __post_init__(self):
        if self.transaction not in (IMAGE_TRANSACTION, OWN_TRANSACTION):
            raise ValueError(f"step {self.name!r}: transaction must be {IMAGE_TRANSACTION!r} or "
                             f"{OWN_TRANSACTION!r}, not {self.transaction!r}")


class FieldImages:
    """The images whose footprint can overlap this image's (its field), read once per image.

    The columns of :func:`dsa110_contimg.store.lightcurves.images_near` (QC-failed images
    left out), read inside the image's write transaction at the first step that needs
    them. A step that changes an image's normalisation records it here too
    (:meth:`record_normalisation`), so that later steps see what the database holds.
    """

    def __init__(self, columns: dict[str, np.ndarray]):
        self.columns = columns

    @classmethod
    def read(cls, conn, ra_deg: float, dec_deg: float, radius_deg: float) -> "FieldImages":
        """The field of a footprint of ``radius_deg`` centred on (ra, dec), deg."""
        radius = lc_store.neighbourhood_radius(conn, radius_deg)
        return cls(lc_store.images_near(conn, ra_deg, dec_deg, radius))

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
    #: Set by a prepare that read them (the associate step): ``{catalog_id: sources.id}`` of
    #: the measured rows of the configured catalogue that have a source row, read on the
    #: prepare phase's connection; the store step's prepare uses it instead of reading
    #: them again.
    catalogue_ids: dict[str, int] | None = None
    #: Set by the variability step: ``(running_stats_signature, stats)`` of the image's
    #: sources as its transaction wrote them, so that the ESE step need not read them
    #: again while the signature still matches.
    written_stats: tuple | None = None
    _field: FieldImages | None = None

    def field_images(self, conn) -> FieldImages:
        """The image's field, read on ``conn`` the first time a step asks for it."""
        if self._field is None:
            self._field = FieldImages.read(conn, self.ra_deg, self.dec_deg, self.radius_deg)
        return self._field

    def record_normalisation(self, image_id: int, status: str, ref_ids) -> None:
        """Keep the field, when already read, equal to what the database now holds after a
        step stored the normalisation of ``image_id`` (a field read later reads it)."""
        if self._field is not None:
            self._field.record_normalisation(image_id, status, ref_ids)

    def reread_field(self, conn) -> FieldImages:
        """The field read again on ``conn`` (after another worker may have changed it)."""
        self._field = None
        return self.field_images(conn)
