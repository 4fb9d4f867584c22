"""Positions and radii as people write them (the ``/sources`` search and ``sources list
--near``): every written form of a position gives the same degrees, in any order of
magnitude; what is not a position or a radius is refused with the reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110_contimg.catalogs.positions import parse_position, parse_radius
from dsa110_contimg.web.formatting import dec_dms, ra_hms


@settings(max_examples=300, deadline=None)
@given(st.floats(0.0, 359.999), st.floats(-89.999, 89.999))
def test_every_written_form_gives_the_same_position(ra, dec):
    forms = [f"{ra:.7f} {dec:+.7f}", f"{ra:.7f}, {dec:.7f}", f"{ra:.7f}deg {dec:.7f}deg",
             f"{ra_hms(ra, 4, (':', ':', ''))} {dec_dms(dec, 3, (':', ':', ''))}",
             f"{ra_hms(ra, 4, (' ', ' ', ''))} {dec_dms(dec, 3, (' ', ' ', ''))}",
             f"{ra_hms(ra, 4)} {dec_dms(dec, 3)}",
             f"{ra_hms(ra, 4)} {dec_dms(dec, 3, ('d', 'm', 's'))}"]
    for text in forms:
        got_ra, got_dec = parse_position(text)
        # the sexagesimal forms carry 1.5 mas (RA) and 0.5 mas (Dec) of rounding
        assert abs((got_ra - ra + 180.0) % 360.0 - 180.0) * 3600 < 2e-3, text
        assert abs(got_dec - dec) * 3600 < 1e-3, text


@pytest.mark.parametrize("text, arcsec", [("10", 10.0), ('10"', 10.0), ("10 arcsec", 10.0), ("1.5'", 90.0),
                                          ("1.5 arcmin", 90.0), ("0.1 deg", 360.0), ("0.1d", 360.0),
                                          ("2e1 arcsec", 20.0), ("3″", 3.0)])
def test_radius_units(text, arcsec):
    assert parse_radius(text) * 3600 == pytest.approx(arcsec)


@pytest.mark.parametrize("text", ["NVSS J0957+3634", "149.48", "1 2 3", "100 +95", "400x 10", ""])
def test_not_a_position(text):
    with pytest.raises(ValueError, match="not a"):
        parse_position(text)


@pytest.mark.parametrize("text", ["-1", "0", "ten", "5 furlongs", "10 arcsec extra"])
def test_not_a_radius(text):
    with pytest.raises(ValueError, match="not a radius"):
        parse_radius(text)
