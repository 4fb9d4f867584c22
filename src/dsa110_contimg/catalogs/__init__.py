"""Catalogue layer: readers of the reference surveys' real file layouts (NVSS, FIRST,
VLASS, RACS/Aegean, Selavy, generic tables), IAU naming, the compactness rule, the
master cross-match, user position tables, the sky regions of queries
(:mod:`~dsa110_contimg.catalogs.region`) and the opt-in online source.

The local catalogue store that holds them (SQL) is
:class:`dsa110_contimg.store.catalogs.CatalogStore`::

    from dsa110_contimg.store.catalogs import CatalogStore
    store = CatalogStore(catalog_dir, allow_online=False, online_timeout_s=30.0)
    store.ingest("nvss", ["NVSS.fits"])            # -> rows
    cat = store.survey("nvss")
    cat.cone(ra_deg, dec_deg, radius_deg, min_flux_mjy=None, max_sources=None)
    cat.query(Footprint(image), max_sources=None)   # any catalogs.region.Region
"""

from dsa110_contimg.catalogs.naming import iau_names
from dsa110_contimg.catalogs.readers import CORE_COLUMNS, normalise, read_table

__all__ = ["CORE_COLUMNS", "iau_names", "normalise", "read_table"]
