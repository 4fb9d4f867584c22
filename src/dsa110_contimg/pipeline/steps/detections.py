"""Step ``detections``: what became of each blind detection, in the image's transaction.

After ``store`` (the sources have ids): every detection row with its association, the
sources' weighted-mean positions, the ``new_sources`` rows and the image's depth
footprint (:func:`dsa110_contimg.pipeline.transients.write`). Its result counts the
detections by outcome and lists the new sources' ids. Runs when ``detect`` is on.
"""

from __future__ import annotations

from dsa110_contimg.pipeline import transients
from dsa110_contimg.pipeline.steps.base import Step

STEP = Step("detections", transients.write, enabled=lambda cfg: cfg.detect, staged_rows=True)
