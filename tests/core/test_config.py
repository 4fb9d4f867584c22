"""PhotometryConfig: validation, round trip, overrides and the search-region rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from dsa110_contimg.photometry import PhotometryConfig
from dsa110_contimg.core.errors import ConfigError


def test_defaults_and_alias():
    cfg = PhotometryConfig(catalog="racs")
    assert cfg.catalog == "rax"
    assert cfg.method == "forced" and cfg.normalize is True and cfg.detect_ese is True


@pytest.mark.parametrize("field,value,needle", [
    ("catalog", "sdss", "nvss, first, rax, vlass, master"),
    ("method", "psf", "forced, peak, adaptive, aegean"),
    ("radius_deg", -1.0, "> 0"),
    ("max_sources", 0, "positive integer"),
    ("normalize", "yes", "true or false"),
    ("ese_preset", "wild", "conservative, moderate, sensitive"),
    ("beam_arcsec", (10.0, 20.0, 0.0), "BMIN <= BMAJ"),
    ("norm_min_refs", 2, ">= 3"),
])
def test_validation_names_field_and_allowed_values(field, value, needle):
    with pytest.raises(ConfigError) as err:
        PhotometryConfig(**{field: value})
    assert err.value.field.startswith(field)
    assert needle in str(err.value)
    assert repr(value) in str(err.value)


def test_half_ellipse_is_an_error():
    with pytest.raises(ConfigError, match="both set or both unset"):
        PhotometryConfig(ra_radius_deg=1.0)


def test_from_dict_rejects_unknown_key():
    with pytest.raises(ConfigError, match="radius"):
        PhotometryConfig.from_dict({"radius": 0.5})


@given(
    catalog=st.sampled_from(["nvss", "first", "rax", "vlass", "master"]),
    method=st.sampled_from(["forced", "peak", "adaptive", "aegean"]),
    radius=st.none() | st.floats(0.01, 5.0),
    max_sources=st.none() | st.integers(1, 10_000),
    normalize=st.booleans(), detect_ese=st.booleans(),
    beam=st.none() | st.tuples(st.floats(10, 60), st.floats(1, 10), st.floats(-90, 90)),
)
def test_round_trip(catalog, method, radius, max_sources, normalize, detect_ese, beam):
    cfg = PhotometryConfig(catalog=catalog, method=method, radius_deg=radius, max_sources=max_sources,
                           normalize=normalize, detect_ese=detect_ese, beam_arcsec=beam,
                           catalog_path=Path("/tmp/cats"))
    again = PhotometryConfig.from_dict(cfg.to_dict())
    assert again == cfg
    import json
    assert PhotometryConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_replace_validates_and_rejects_unknown():
    cfg = PhotometryConfig()
    assert cfg.replace(method="peak").method == "peak"
    with pytest.raises(ConfigError):
        cfg.replace(method="bogus")
    with pytest.raises(ConfigError, match="one of the keys"):
        cfg.replace(colour="red")


def test_search_region_rule():
    assert PhotometryConfig(ra_radius_deg=2.0, dec_radius_deg=0.5).search_region("mosaic") == \
        ("ellipse", (2.0, 0.5))
    assert PhotometryConfig(radius_deg=0.3).search_region("image") == ("cone", (0.3,))
    assert PhotometryConfig().search_region("image") == ("footprint", ())
    assert PhotometryConfig(auto_compute_extent=False).search_region("image") == ("cone", (0.5,))
    assert PhotometryConfig(auto_compute_extent=False).search_region("mosaic") == ("cone", (1.0,))


def test_immutable_hashable_and_errors_are_config_errors_on_one_line():
    import dataclasses

    cfg = PhotometryConfig(catalog="nvss", method="forced", normalize=True, detect_ese=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.method = "peak"
    assert hash(cfg) == hash(PhotometryConfig()) and cfg == PhotometryConfig()
    with pytest.raises(ConfigError) as err:
        PhotometryConfig.from_dict({"colour": "red"})
    assert err.value.field == "colour"
    assert str(err.value).startswith("unknown key 'colour' (= 'red'): expected one of the keys ")
    for kwargs, key, allowed in (({"nbeam": "3"}, "nbeam", "a number > 0 and <= 50.0"),
                                 ({"max_sources": 2.5}, "max_sources", "a positive integer")):
        with pytest.raises(ConfigError) as err:
            PhotometryConfig.from_dict(kwargs)
        text = str(err.value)
        assert err.value.field == key and allowed in text and "\n" not in text
        assert text.startswith(f"invalid value {kwargs[key]!r} for '{key}': expected ")
