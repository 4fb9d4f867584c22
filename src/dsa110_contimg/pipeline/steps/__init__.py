"""The per-image steps that turn a measured image into stored results, one module each.

:data:`STEPS` is the one ordered list :func:`dsa110_contimg.pipeline.runner.store_measured`
runs for every image (after the database-free measurement,
:func:`dsa110_contimg.pipeline.measure.measure_image`):

``duplicate`` (:mod:`.duplicate`)
    an image whose data is already stored under another path is recorded as a duplicate
    of it and goes no further (the runner skips every later step);
``associate`` (:mod:`.associate`)
    blind detections against the field's known sources, new and blind sources decided
    (when ``detect`` is on);
``store`` (:mod:`.measurements`)
    the image row, its catalogue sources and measurements;
``detections`` (:mod:`.detections`)
    detection rows, weighted-mean positions, new sources, the image's depth footprint;
``qc`` (:mod:`.qc`)
    the quality-control verdict;
``normalise`` (:mod:`.normalise`)
    references, baselines, the flux-scale correction, normalised fluxes;
``variability`` (:mod:`.variability`)
    running statistics of the image's sources;
``ese`` (:mod:`.ese`)
    ESE candidates, in a transaction of its own after the image's.

The protocol (:class:`~dsa110_contimg.pipeline.steps.base.Step`): a step module defines
``STEP = Step(name, write, prepare=..., transaction=..., enabled=...)``. ``prepare(conn,
ctx)`` reads what it can on a read connection before any write lock; ``write(conn, ctx)``
does the step's database work and returns its result (``ctx.results[name]``). Steps of
the ``image`` transaction write inside the image's one write transaction, in list order;
``own`` steps prepare after it committed and write in a short transaction of their own.
Both get the :class:`~dsa110_contimg.pipeline.steps.base.ImageContext`: the measured
image, the configuration, the ids the ``store`` step assigned, the results of earlier
steps, and the field's images read once (``ctx.field_images(conn)``). Science is pure
functions of :mod:`dsa110_contimg.science`; SQL lives in :mod:`dsa110_contimg.store`.

Adding a step is one module and one entry in :data:`STEPS` (and its name in
``service/metrics.py: STAGES`` for the stage histogram).
"""

from __future__ import annotations

from dsa110_contimg.pipeline.steps import (
    associate, detections, duplicate, ese, measurements, normalise, qc, variability)
from dsa110_contimg.pipeline.steps.base import IMAGE_TRANSACTION, OWN_TRANSACTION, ImageContext, Step

#: The steps every image goes through, in order.
STEPS: tuple[Step, ...] = (
    duplicate.STEP,
    associate.STEP,
    measurements.STEP,
    detections.STEP,
    qc.STEP,
    normalise.STEP,
    variability.STEP,
    ese.STEP,
)

__all__ = ["IMAGE_TRANSACTION", "OWN_TRANSACTION", "STEPS", "ImageContext", "Step"]
