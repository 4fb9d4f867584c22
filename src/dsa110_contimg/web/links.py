"""Links out from a sky position to the services an astronomer checks a source with.

Every URL is built from the position (ICRS, deg) and a search radius (arcsec); nothing is
fetched by the site. The services and their query forms:

* SIMBAD and NED cone searches, VizieR (all catalogues around the position);
* Aladin Lite views on the NVSS, VLASS (quick look) and RACS-low HiPS surveys (the
  cutouts of those surveys around the position);
* the NVSS postage-stamp server (NRAO, a FITS cutout) and the CADC search of VLASS images.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from dsa110_contimg.web.formatting import dec_dms, ra_hms

SPACED = (" ", " ", "")
#: Aladin Lite HiPS surveys of the radio sky, by label.
ALADIN_SURVEYS = {"NVSS": "CDS/P/NVSS", "VLASS": "CDS/P/VLASS/QL", "RACS-low": "CSIRO/P/RACS/low/I"}


def links_out(ra_deg: float, dec_deg: float, radius_arcsec: float = 30.0) -> list[tuple[str, str]]:
    """(label, URL) pairs for the position ``ra_deg``, ``dec_deg`` (deg) and a search radius
    of ``radius_arcsec`` (arcsec; cutouts are 0.1 deg or 4 radii across, whichever is larger)."""
    ra, dec, r = float(ra_deg), float(dec_deg), float(radius_arcsec)
    pos = f"{ra:.6f} {dec:+.6f}"
    fov_deg = max(0.1, 4.0 * r / 3600.0)
    out = [
        ("SIMBAD", "https://simbad.cds.unistra.fr/simbad/sim-coo?" + urlencode(
            {"Coord": pos, "CooFrame": "ICRS", "Radius": f"{r:g}", "Radius.unit": "arcsec"})),
        ("NED", "https://ned.ipac.caltech.edu/conesearch?" + urlencode(
            {"search_type": "Near Position Search", "in_csys": "Equatorial", "in_equinox": "J2000",
             "coordinates": f"{ra:.6f}d {dec:+.6f}d", "radius": f"{r / 60.0:.4g}"})),
        ("VizieR", "https://vizier.cds.unistra.fr/viz-bin/VizieR?" + urlencode(
            {"-c": pos, "-c.rs": f"{r:g}", "-out.add": "_r"})),
    ]
    for label, hips in ALADIN_SURVEYS.items():
        out.append((f"Aladin Lite ({label})", "https://aladin.cds.unistra.fr/AladinLite/?" + urlencode(
            {"target": pos, "fov": f"{fov_deg:.3g}", "survey": hips}, quote_via=quote)))
    out += [
        ("NVSS cutout", "https://www.cv.nrao.edu/cgi-bin/postage.pl?" + urlencode(
            {"Equinox": "2000", "ObjName": "", "RA": ra_hms(ra, 2, SPACED), "Dec": dec_dms(dec, 1, SPACED),
             "Size": f"{fov_deg:.3g} {fov_deg:.3g}", "Cells": "15.0 15.0", "MAPROJ": "SIN",
             "rotate": "0.0", "Type": "image/x-fits"})),
        ("VLASS images (CADC)", "https://www.cadc-ccda.hia-iha.nrc-cnrc.gc.ca/en/search/?" + urlencode(
            {"collection": "VLASS", "Plane.position.bounds@Shape1Resolver.value": "ALL",
             "Plane.position.bounds": f"{ra:.6f} {dec:+.6f} {fov_deg / 2:.3g}"}) + "#resultTableTab"),
    ]
    return out
