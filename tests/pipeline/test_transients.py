"""pipeline/transients.py: the known sources a detection is associated with."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from astropy.table import Table

from dsa110_contimg.pipeline.measure import append_rows
from dsa110_contimg.pipeline.transients import _rows_catalog_ids


def test_catalogue_rows_keep_their_survey_once_own_rows_are_appended():
    """With monitor or own rows appended the table has a ``survey`` column, empty for the
    catalogue rows: those are still the catalogue's (else their stored weighted-mean
    positions and their catalogue errors are not found, and a detection off the catalogue
    position by its error is taken for a new source)."""
    cat = Table({"source_id": ["NVSS J1", "NVSS J2"], "ra_deg": [1.0, 2.0],
                 "dec_deg": [3.0, 4.0], "flux_mjy": [5.0, 6.0]})
    both = append_rows(cat, {"source_id": np.array(["DSA110 J3"]), "ra_deg": np.array([1.5]),
                             "dec_deg": np.array([3.5]), "survey": np.array(["dsa110"], object),
                             "kind": np.array(["blind"], object)})
    names, surveys = _rows_catalog_ids(SimpleNamespace(cat=both), "nvss")
    assert names.tolist() == ["NVSS J1", "NVSS J2", "DSA110 J3"]
    assert surveys.tolist() == ["nvss", "nvss", "dsa110"]
    _, surveys = _rows_catalog_ids(SimpleNamespace(cat=cat), "nvss")
    assert surveys.tolist() == ["nvss", "nvss"]
