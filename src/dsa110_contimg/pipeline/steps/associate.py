"""Step ``associate``: the image's blind detections against the field's known sources.

Prepare (read connection, before any lock): de Ruiter association, false-positive classes
and the new-source test of the unmatched detections; new and blind sources become rows of
the image's measurements (:func:`dsa110_contimg.pipeline.transients.prepare`). Write
(first in the image's transaction, before ``store``): planned sources that another worker
created meanwhile are joined instead (:func:`~dsa110_contimg.pipeline.transients.recheck`).
Runs when ``detect`` is on.
"""

from __future__ import annotations

from dsa110_contimg.pipeline import transients
from dsa110_contimg.pipeline.steps.base import Step


def write(conn, ctx) -> None:
    transients.recheck(conn, ctx)


STEP = Step("associate", write, transients.prepare, enabled=lambda cfg: cfg.detect)
