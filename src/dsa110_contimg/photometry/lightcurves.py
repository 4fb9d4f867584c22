"""After an image is stored: quality control, normalisation, variability, ESE.

(Being wired to the science modules; see ``after_store``.)
"""

from __future__ import annotations


def after_store(db, image, table, cfg, result, steps) -> None:
    """Run the post-store steps for one stored image (filled in below)."""
    return None
