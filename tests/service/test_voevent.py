"""VOEvent 2.0 packets: parsed back as XML, with the required elements in schema order, the
units of every number, the position and its error in deg, the epoch in UTC; atomic writes."""

from __future__ import annotations

import datetime as dt
import os
import xml.etree.ElementTree as ET

import pytest

from dsa110_contimg.service.voevent import VOEVENT_NS, build_voevent, spool_file, write_atomically

ALERT = {"key": "ese_candidate-0123456789abcdef0123456789abcdef", "event": "ese_candidate",
         "created_at": 1_790_000_000.0,
         "payload": {"source_id": 7, "source_name": "NVSS J100000+370000", "survey": "nvss",
                     "ra_deg": 150.0, "dec_deg": 37.0, "position_error_arcsec": 1.0,
                     "flux_mjy": 120.0, "flux_err_mjy": 1.5, "flux_kind": "normalised",
                     "mjd": 60075.5, "freq_hz": 1.405e9, "baseline_flux_mjy": 250.0,
                     "baseline_catalog": "NVSS", "significance": 6.2,
                     "significance_kind": "ese_template_sigma", "depth": 0.45, "duration_days": 40.0,
                     "t_min_mjd": 60075.0, "confidence": "high", "score": 7.8, "n_epochs": 30,
                     "criteria": ["shape", "preset"]}}
KW = dict(ivorn_base="ivo://dsa110.caltech/contimg", author_ivorn="ivo://dsa110.caltech/contact",
          author="DSA-110 continuum photometry", contact_email="ops@example.org",
          site_url="https://example.org/phot")


def params(el) -> dict[str, dict]:
    return {p.get("name"): dict(p.attrib) for p in el.iter("Param")}


def test_packet_has_every_required_element_and_unit():
    root = ET.fromstring(build_voevent(ALERT, role="observation", **KW))
    assert root.tag == f"{{{VOEVENT_NS}}}VOEvent"
    assert root.get("version") == "2.0" and root.get("role") == "observation"
    assert root.get("ivorn") == f"ivo://dsa110.caltech/contimg#{ALERT['key']}"
    assert [c.tag for c in root] == ["Who", "What", "WhereWhen", "How", "Why"]   # schema order
    who = root.find("Who")
    assert who.findtext("AuthorIVORN") == "ivo://dsa110.caltech/contact"
    dt.datetime.fromisoformat(who.findtext("Date"))
    assert who.findtext("Author/contactEmail") == "ops@example.org"

    what = params(root.find("What"))
    expect = {"peak_flux": (120.0, "mJy/beam"), "peak_flux_error": (1.5, "mJy/beam"),
              "baseline_flux": (250.0, "mJy"), "frequency": (1405.0, "MHz"),
              "significance": (6.2, "sigma"), "duration": (40.0, "d"), "t_min": (60075.0, "d")}
    for name, (value, unit) in expect.items():
        assert (float(what[name]["value"]), what[name]["unit"]) == (value, unit), name
    assert what["peak_flux"]["ucd"].startswith("phot.flux.density")
    assert what["baseline_catalog"]["value"] == "NVSS"
    assert what["source_name"]["value"] == "NVSS J100000+370000"
    assert float(what["depth"]["value"]) == 0.45 and what["key"]["value"] == ALERT["key"]
    assert what["confidence"]["value"] == "high" and what["criteria"]["value"] == "shape,preset"
    assert all(p.get("dataType") in ("float", "int", "string") for p in root.iter("Param"))

    ww = root.find("WhereWhen/ObsDataLocation")
    assert ww.find("ObservatoryLocation").get("id") == "OVRO"
    coords = ww.find("ObservationLocation/AstroCoords")
    assert coords.get("coord_system_id") == ww.find("ObservationLocation/AstroCoordSystem").get("id")
    assert coords.findtext("Time/TimeInstant/ISOTime") == "2023-05-11T12:00:00"   # MJD 60075.5
    pos = coords.find("Position2D")
    assert pos.get("unit") == "deg" and (pos.findtext("Name1"), pos.findtext("Name2")) == ("RA", "Dec")
    assert float(pos.findtext("Value2/C1")) == 150.0 and float(pos.findtext("Value2/C2")) == 37.0
    assert float(pos.findtext("Error2Radius")) == pytest.approx(1.0 / 3600.0)
    assert "DSA-110" in root.findtext("How/Description")
    assert root.find("How/Reference").get("uri") == "https://example.org/phot/sources/7"
    why = root.find("Why")
    assert 0.0 <= float(why.get("importance")) <= 1.0
    assert why.findtext("Inference/Name") == "NVSS J100000+370000" and why.findtext("Inference/Concept")


def test_a_test_alert_is_role_test_and_missing_facts_are_left_out():
    alert = {"key": "test-1", "event": "test", "created_at": 1_790_000_000.0,
             "payload": {"message": "delivery test"}}
    root = ET.fromstring(build_voevent(alert, role="observation", **KW))
    assert root.get("role") == "test"
    assert set(params(root)) == {"event", "key"}
    assert root.find("WhereWhen//Position2D") is None
    assert root.findtext("WhereWhen//ISOTime") == \
        dt.datetime.fromtimestamp(1_790_000_000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert root.findtext("What/Description") == "delivery test"


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = spool_file(tmp_path, ALERT["key"])
    write_atomically(path, b"<a/>")
    write_atomically(path, build_voevent(ALERT, role="test", **KW))
    assert os.listdir(tmp_path) == [path.name]
    ET.parse(path)
    with pytest.raises(OSError):
        write_atomically(tmp_path / "missing" / "x.xml", b"<a/>")
    assert os.listdir(tmp_path) == [path.name]


def test_a_killed_writers_temporary_is_removed_and_a_live_or_foreign_one_kept(tmp_path):
    import socket
    import subprocess
    import sys

    from dsa110_contimg.service.alerts import remove_dead_temporaries
    from dsa110_contimg.service.voevent import temporary_of, temporary_writer

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    dead = tmp_path / f".ese_candidate-1.xml.{host}:{gone.pid}:w.tmp"
    live = temporary_of(spool_file(tmp_path, "ese_candidate-2"))       # this process's
    foreign = tmp_path / f".ese_candidate-3.xml.other-host.example:{gone.pid}:w.tmp"
    packet = spool_file(tmp_path, "ese_candidate-4")
    other = tmp_path / ".notes.tmp"
    for p in (dead, live, foreign, packet, other):
        p.write_bytes(b"<a/>")
    assert temporary_writer(dead) == f"{host}:{gone.pid}:w"
    assert temporary_writer(packet) is None and temporary_writer(other) is None
    assert remove_dead_temporaries(tmp_path) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (live, foreign, packet, other))
