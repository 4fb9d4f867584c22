"""Query regions as values: exact membership against the definitions, candidate zone ranges
that hold every member, boundary samples on the edge, bounding cones that contain the region,
and image footprints (pixel positions, blanked pixels, margins, a pole inside)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110_contimg.catalogs import spatial
from dsa110_contimg.catalogs.region import Box, Cone, Ellipse, Footprint
from dsa110_contimg.core.errors import CatalogError

RNG = np.random.default_rng(3)
#: uniform on the sphere, plus a dense cap at each pole and a strip across RA 0/360
SKY_RA = np.r_[RNG.uniform(0, 360, 60_000), RNG.uniform(0, 360, 4000), RNG.uniform(0, 360, 4000),
               np.mod(RNG.uniform(-5, 5, 4000), 360)]
SKY_DEC = np.r_[np.degrees(np.arcsin(RNG.uniform(-1, 1, 60_000))), RNG.uniform(84, 90, 4000),
                RNG.uniform(-90, -84, 4000), RNG.uniform(-60, 60, 4000)]


def _in_zone_ranges(region, ra, dec) -> np.ndarray:
    """Whether each position lies in one of the region's (zone, RA interval) candidates."""
    zone = spatial.zone_of(dec)
    ok = np.zeros(ra.size, bool)
    for z, intervals in region.zone_ranges():
        for lo, hi in intervals:
            ok |= (zone == z) & (ra >= lo) & (ra <= hi)
    return ok


def _cap(ra0, dec0, radius, n, rng):
    """``n`` positions uniform within ``radius`` deg of (ra0, dec0)."""
    r = np.degrees(np.arccos(1 - rng.uniform(0, 1 - np.cos(np.radians(radius)), n)))
    return _offset(ra0, dec0, r, rng.uniform(0, 360, n))


def _offset(ra0, dec0, r_deg, pa_deg):
    """Positions at distances ``r_deg`` and position angles ``pa_deg`` from (ra0, dec0)."""
    d0, r, pa = np.radians(dec0), np.radians(r_deg), np.radians(pa_deg)
    sin_dec = np.sin(d0) * np.cos(r) + np.cos(d0) * np.sin(r) * np.cos(pa)
    dec = np.arcsin(np.clip(sin_dec, -1, 1))
    dra = np.arctan2(np.sin(pa) * np.sin(r) * np.cos(d0), np.cos(r) - np.sin(d0) * sin_dec)
    return np.mod(ra0 + np.degrees(dra), 360.0), np.degrees(dec)


def _check_region(region, ra=SKY_RA, dec=SKY_DEC) -> np.ndarray:
    """The invariants every region keeps, on a sky sample; returns its members."""
    inside = region.contains(ra, dec)
    # every member is read through the zone index, and lies in the bounding cone
    assert _in_zone_ranges(region, ra[inside], dec[inside]).all()
    bra, bdec, radius = region.bounding_cone
    assert np.all(spatial.angular_separation_deg(bra, bdec, ra[inside], dec[inside])
                  <= radius + 1e-9)
    pra, pdec = region.coverage_points()
    assert pra[0] == region.centre[0] and pdec[0] == region.centre[1] and pra.size > 8
    return inside


centres = st.tuples(st.one_of(st.floats(0, 360, exclude_max=True), st.sampled_from([0.0, 359.99])),
                    st.one_of(st.floats(-89, 89), st.floats(84, 90), st.floats(-90, -84)))


@settings(max_examples=60, deadline=None)
@given(c=centres, r=st.one_of(st.floats(0.05, 3.0), st.floats(3.0, 30.0)))
def test_cone_members_are_within_the_radius(c, r):
    cone = Cone(*c, r)
    inside = _check_region(cone)
    sep = spatial.angular_separation_deg(c[0], c[1], SKY_RA, SKY_DEC)
    np.testing.assert_array_equal(inside, sep <= r)
    # the boundary samples lie on the circle
    np.testing.assert_allclose(spatial.angular_separation_deg(c[0], c[1], *cone.boundary), r,
                               rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(ra0=st.floats(0, 360), width=st.floats(0.5, 60), dec0=st.floats(-90, 88),
       height=st.floats(0.5, 30))
def test_box_members_follow_the_ra_arc_and_dec_range(ra0, width, dec0, height):
    ra1, dec1 = (ra0 + width) % 360, min(90.0, dec0 + height)
    inside = _check_region(Box(ra0, ra1, dec0, dec1))
    in_arc = np.mod(SKY_RA - ra0 % 360, 360) <= width + 1e-9
    np.testing.assert_array_equal(inside, in_arc & (SKY_DEC >= dec0) & (SKY_DEC <= dec1))


@settings(max_examples=60, deadline=None)
@given(c=centres, rr=st.floats(0.2, 10), rd=st.floats(0.2, 10))
def test_ellipse_members_follow_the_definition(c, rr, rd):
    inside = _check_region(Ellipse(*c, rr, rd))
    dra = (np.mod(SKY_RA - c[0] + 180, 360) - 180) * np.cos(np.radians(c[1]))
    np.testing.assert_array_equal(inside, (dra / rr) ** 2 + ((SKY_DEC - c[1]) / rd) ** 2 <= 1)


def test_invalid_regions_are_refused():
    with pytest.raises(CatalogError, match="radius"):
        Cone(10, 10, 0)
    with pytest.raises(CatalogError, match="Dec"):
        Cone(10, 95, 1)
    with pytest.raises(CatalogError, match="finite"):
        Ellipse(np.nan, 10, 1, 1)
    with pytest.raises(CatalogError, match="Dec range"):
        Box(0, 10, 5, -5)
    with pytest.raises(CatalogError, match="ra_max"):
        Box(0, np.inf, -5, 5)


class _Image:
    """What a footprint reads of an image: a celestial WCS, the shape and the pixels."""

    def __init__(self, ra0, dec0, nx, ny, pix_deg, data=None):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
        w.wcs.crval = [ra0, dec0]
        w.wcs.crpix = [nx / 2 + 0.5, ny / 2 + 0.5]
        w.wcs.cdelt = [-pix_deg, pix_deg]
        self.wcs, self.shape = w, (ny, nx)
        self.data = np.ones((ny, nx), np.float32) if data is None else data


@pytest.mark.parametrize("ra0,dec0,nx,ny", [(0.3, 20.0, 400, 60), (150.0, -30.0, 300, 300),
                                            (40.0, 88.5, 400, 60), (10.0, -89.5, 300, 300)])
def test_footprint_keeps_the_pixels_of_the_image(ra0, dec0, nx, ny):
    image = _Image(ra0, dec0, nx, ny, 30 / 3600)
    image.data[:, :50] = np.nan                      # a blanked border
    ra, dec = _cap(ra0, dec0, 4.0, 20_000, np.random.default_rng(8))   # the image and around
    region = Footprint(image)
    inside = _check_region(region, ra, dec)
    mask, added = region.select(ra, dec)
    np.testing.assert_array_equal(mask, inside)
    x, y = image.wcs.world_to_pixel_values(ra, dec)
    np.testing.assert_array_equal(added["x_pix"], x)
    np.testing.assert_array_equal(added["y_pix"], y)
    on_image = (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
    expect = on_image & (np.round(np.where(on_image, x, 0)) >= 50)
    np.testing.assert_array_equal(inside, expect)
    assert inside.sum() > 20
    # a margin keeps members that far from the edges and from blanked pixels
    marged = Footprint(image, margin_pix=5).contains(ra, dec)
    assert marged.sum() < inside.sum() and not (marged & ~inside).any()
    assert np.all(x[marged] >= 54.5) and np.all(y[marged] <= ny - 5.5)
    if abs(dec0) > 89:                                 # the pole is on the image
        assert all(iv == [(0.0, 360.0)] for _, iv in region.zone_ranges())


def test_footprint_without_sky_coordinates_is_refused():
    image = _Image(10.0, 10.0, 300, 300, 2.0)     # the border lies beyond the SIN sphere
    with pytest.raises(CatalogError, match="no valid sky coordinates"):
        Footprint(image)
