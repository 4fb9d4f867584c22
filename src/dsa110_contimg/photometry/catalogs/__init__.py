"""Catalogue layer: a fast local store of the reference surveys, their readers,
the master reference list and an opt-in online source.

Public API::

    from dsa110_contimg.photometry.catalogs import CatalogStore, SURVEYS
    store = CatalogStore(catalog_dir, allow_online=False, online_timeout_s=30.0)
    store.ingest("nvss", ["NVSS.fits"])            # -> rows
    store.build_master(match_radius_arcsec=7.5)     # -> rows
    cat = store.survey("nvss")                      # UnknownCatalog for a bad name
    cat.cone(ra_deg, dec_deg, radius_deg, min_flux_mjy=None, max_sources=None)
    cat.box(ra_min, ra_max, dec_min, dec_max, ...)
    cat.ellipse(ra_deg, dec_deg, ra_radius_deg, dec_radius_deg, ...)
    cat.in_footprint(image, ..., margin_pix=0.0)
    store.list()
"""

from dsa110_contimg.photometry.catalogs.naming import iau_names
from dsa110_contimg.photometry.catalogs.readers import CORE_COLUMNS, normalise, read_table
from dsa110_contimg.photometry.catalogs.store import (
    ALIASES,
    SURVEYS,
    CatalogStore,
    SurveyCatalog,
    canonical_survey,
)

__all__ = ["CatalogStore", "SurveyCatalog", "SURVEYS", "ALIASES", "CORE_COLUMNS",
           "canonical_survey", "iau_names", "normalise", "read_table"]
