"""Opt-in online source: VizieR cone queries through astroquery.

Used only when a :class:`~dsa110_contimg.store.catalogs.CatalogStore`
is created with ``allow_online=True`` and a query region is not covered
locally. The store sees one small interface, an object with
``fetch(survey, cone) -> OnlineRegion`` (:class:`VizierSource` here): the rows of a
cone, normalised, with the key and the coverage under which the store caches them.

The VizieR tables (dsa110.md section 6): NVSS ``VIII/65/nvss``, FIRST
``VIII/92/first14``, VLASS ``J/ApJS/255/30/comp`` (Gordon et al. 2021), RACS-low
``J/other/PASA/38.58/gausscut`` (Hale et al. 2021; table name to confirm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from dsa110_contimg.catalogs.readers import CORE_COLUMNS, NormalisedTable, normalise
from dsa110_contimg.core.errors import CatalogMissing, OnlineCatalogError

VIZIER_CATALOGS = {
    "nvss": "VIII/65/nvss",
    "first": "VIII/92/first14",
    "vlass": "J/ApJS/255/30/comp",
    "rax": "J/other/PASA/38.58/gausscut",
}

#: Largest cone (deg) fetched online; a bigger region must be ingested from a file.
MAX_ONLINE_RADIUS_DEG = 10.0

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)


def _network_errors() -> tuple[type[BaseException], ...]:
    try:
        import requests

        return _NETWORK_ERRORS + (requests.exceptions.RequestException,)
    except ImportError:  # pragma: no cover - astroquery depends on requests
        return _NETWORK_ERRORS


def fetch_cone(survey: str, ra_deg: float, dec_deg: float, radius_deg: float, *,
               timeout_s: float = 30.0) -> Table:
    """All rows of ``survey`` within ``radius_deg`` of a position, from VizieR.

    Returns the VizieR table as served (``_RAJ2000``/``_DEJ2000`` computed
    positions included), ready for :func:`readers.normalise`. An empty region
    gives an empty table with those columns.

    Raises
    ------
    OnlineCatalogError
        Network unreachable, time-out, or a VizieR error.
    CatalogMissing
        ``survey`` has no online source (``master``).
    """
    if survey not in VIZIER_CATALOGS:
        raise CatalogMissing(f"{survey}: no online source (built locally)")
    catalog = VIZIER_CATALOGS[survey]
    if not radius_deg <= MAX_ONLINE_RADIUS_DEG:
        raise OnlineCatalogError(
            f"region of radius {radius_deg:.2f} deg around ({ra_deg:.4f}, {dec_deg:.4f}) is too "
            f"large for an online query (max {MAX_ONLINE_RADIUS_DEG} deg): download {catalog} "
            "and ingest it with `catalog ingest`")
    try:
        import astropy.units as u
        from astropy.coordinates import SkyCoord
        from astroquery.vizier import Vizier
    except ImportError as exc:
        raise OnlineCatalogError(f"astroquery is not installed ({exc}): pip install "
                                 "'dsa110-contimg-photometry[online]'") from exc
    try:
        vizier = Vizier(columns=["**", "_RAJ2000", "_DEJ2000"], row_limit=-1, timeout=timeout_s)
        result = vizier.query_region(SkyCoord(ra_deg, dec_deg, unit="deg", frame="icrs"),
                                     radius=radius_deg * u.deg, catalog=catalog)
    except _network_errors() as exc:
        raise OnlineCatalogError(
            f"VizieR query of {catalog} at ({ra_deg:.4f}, {dec_deg:.4f}) r={radius_deg:.4f} deg "
            f"failed ({type(exc).__name__}: {exc}); timeout {timeout_s} s") from exc
    except Exception as exc:  # astroquery raises its own types for server-side failures
        raise OnlineCatalogError(f"VizieR query of {catalog} failed: {type(exc).__name__}: {exc}") \
            from exc
    tables = list(result) if result is not None else []
    if not tables:
        return Table({"_RAJ2000": [], "_DEJ2000": []}, dtype=[float, float])
    return tables[0]


@dataclass(frozen=True)
class OnlineRegion:
    """Rows fetched online for one cone, ready to be cached by the store.

    Attributes
    ----------
    key : str
        The file key the store keeps them under (one per survey and cone).
    table : NormalisedTable
        The rows, normalised (possibly none: an empty region is a valid answer).
    cone : (float, float, float)
        RA, Dec, radius (deg) the rows cover exactly.
    """

    key: str
    table: NormalisedTable
    cone: tuple[float, float, float]


class VizierSource:
    """The online source of a catalogue store: VizieR cone queries (:func:`fetch_cone`).

    Parameters
    ----------
    timeout_s : float
        Time-out of one query, s.
    """

    def __init__(self, timeout_s: float = 30.0):
        self.timeout_s = float(timeout_s)

    def fetch(self, survey: str, cone: tuple[float, float, float]) -> OnlineRegion:
        """All rows of ``survey`` within the cone ``(ra, dec, radius)`` (deg), normalised.

        Raises ``OnlineCatalogError`` (network, time-out, VizieR, too large a cone) and
        ``CatalogMissing`` (a survey without an online source).
        """
        ra, dec, radius = cone
        table = fetch_cone(survey, ra, dec, radius, timeout_s=self.timeout_s)
        catalog = VIZIER_CATALOGS[survey]
        if len(table):
            norm = normalise(table, survey, path=f"vizier:{catalog}")
        else:
            core = {c: np.empty(0) for c in CORE_COLUMNS}
            core["source_id"] = np.empty(0, dtype=str)
            norm = NormalisedTable(core=core, extras={}, layout="vizier-empty")
        key = f"vizier:{catalog}:cone({ra:.6f},{dec:.6f},{radius:.6f})"
        return OnlineRegion(key, norm, (ra, dec, radius))

    def __repr__(self) -> str:
        return f"VizierSource(timeout_s={self.timeout_s})"


__all__ = ["MAX_ONLINE_RADIUS_DEG", "OnlineRegion", "VIZIER_CATALOGS", "VizierSource",
           "fetch_cone"]
