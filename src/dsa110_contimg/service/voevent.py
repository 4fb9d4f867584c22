"""VOEvent 2.0 packets of alerts, written atomically into a spool directory.

Built with the standard library (:mod:`xml.etree.ElementTree`). One packet per alert
(docs/alerts.md lists every element):

``<voe:VOEvent ivorn="<ivorn_base>#<key>" role="test|observation" version="2.0">``
    ``Who``
        ``AuthorIVORN``, ``Date`` (creation, UTC), ``Author`` (``shortName``,
        ``contactEmail``).
    ``What``
        ``Param``\\ s ``event``, ``key``, ``source_name``, ``survey``; a ``Group``
        ``flux`` (``peak_flux`` and ``peak_flux_error`` in mJy/beam, ``flux_kind``,
        ``frequency`` in MHz), a ``Group`` ``baseline`` (``baseline_flux`` in mJy and
        ``baseline_catalog``), ``significance`` (sigma) and the event's own facts in a
        ``Group`` named after the event (ESE: ``depth``, ``duration`` in d, ``t_min`` in
        MJD, ``score``, ``confidence``, eta, V, chi2_nu, epochs).
    ``WhereWhen``
        ``ObservatoryLocation id="OVRO"``; ``AstroCoordSystem id="UTC-ICRS-TOPO"``; the
        epoch of the observation that raised the event (``ISOTime``, UTC) and the position
        (``Position2D unit="deg"``: RA, Dec, ``Error2Radius`` in deg).
    ``How``
        What measured it (DSA-110 forced photometry of catalogue positions).
    ``Why``
        ``importance`` and an ``Inference`` naming the source and the event's concept.

A packet is written to ``<dir>/<key>.xml`` through a temporary file in the same
directory, flushed and fsynced, then renamed: a broker watching the directory never sees
a partial file, and re-writing the same alert (at-least-once delivery) replaces it with
the same content.
"""

from __future__ import annotations

import math
import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from dsa110_contimg.service.alert_messages import OBSERVATORY, iso_utc, mjd_to_iso

VOEVENT_NS = "http://www.ivoa.net/xml/VOEvent/v2.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{VOEVENT_NS} http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd"
#: UCD of a flux density in DSA-110's band (1311-1499 MHz), as DSA-110's FRB VOEvents use.
FLUX_UCD = "phot.flux.density;em.radio.750-1500MHz"
#: Facts of each event's own ``Group``: payload key -> (Param name, unit, ucd, dataType).
EVENT_PARAMS = {
    "score": ("score", "", "stat.value", "float"),
    "confidence": ("confidence", "", "meta.code.qual", "string"),
    "previous_confidence": ("previous_confidence", "", "meta.code.qual", "string"),
    "depth": ("depth", "", "phot.flux.density;arith.ratio", "float"),
    "duration_days": ("duration", "d", "time.duration", "float"),
    "t_min_mjd": ("t_min", "d", "time.epoch;stat.min", "float"),
    "max_deviation": ("max_deviation", "", "stat.stdev;arith.ratio", "float"),
    "chi2_nu": ("chi2_nu", "", "stat.fit.chi2", "float"),
    "eta": ("eta", "", "stat.value", "float"),
    "v": ("v", "", "stat.variance;arith.ratio", "float"),
    "n_epochs": ("n_epochs", "", "meta.number", "int"),
    "sigma": ("sigma", "sigma", "stat.snr", "float"),
    "template": ("template", "", "meta.code", "string"),
    "stage": ("stage", "", "meta.code", "string"),
    "previous_stage": ("previous_stage", "", "meta.code", "string"),
    "candidate_id": ("candidate_id", "", "meta.id", "int"),
    "sigma_rms_min": ("sigma_rms_min", "sigma", "stat.snr", "float"),
    "likely_transient": ("likely_transient", "", "meta.code", "string"),
    "n_earlier_images": ("n_earlier_images", "", "meta.number", "int"),
}
#: The Why/Inference/Concept of each event.
CONCEPTS = {"ese_candidate": "process.variation;em.radio (extreme scattering event candidate)",
            "ese_confidence": "process.variation;em.radio (extreme scattering event candidate)",
            "ese_stage": "process.variation;em.radio (extreme scattering event stage)",
            "new_source": "src;em.radio (source not detected in earlier epochs)",
            "test": "meta.test"}
#: Why/@importance by confidence (a new source: its significance against 10 sigma).
IMPORTANCE = {"high": 0.9, "medium": 0.6, "low": 0.3, "none": 0.1}

ET.register_namespace("voe", VOEVENT_NS)
ET.register_namespace("xsi", XSI_NS)


def _num(value, digits: int = 8) -> str | None:
    """A Param value: floats to ``digits`` significant digits (8: an MJD to ~1 min, a flux
    density to 0.1 uJy/beam at 100 mJy/beam); None and non-finite values give None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else None
    return str(value)


def _param(parent, name: str, value, *, unit: str = "", ucd: str = "", data_type: str = "float"):
    text = _num(value)
    if text is None:
        return None
    attrs = {"name": name, "value": text, "dataType": data_type}
    if unit:
        attrs["unit"] = unit
    if ucd:
        attrs["ucd"] = ucd
    return ET.SubElement(parent, "Param", attrs)


def _sub(parent, tag: str, text=None, **attrs):
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def build_voevent(alert: dict, *, role: str, ivorn_base: str, author_ivorn: str, author: str,
                  contact_email: str = "", site_url: str = "", now: float | None = None) -> bytes:
    """The VOEvent 2.0 XML document (UTF-8 bytes) of one outbox alert."""
    import time

    p, event = alert["payload"], alert["event"]
    role = "test" if event == "test" else role
    root = ET.Element(f"{{{VOEVENT_NS}}}VOEvent", {
        "ivorn": f"{ivorn_base}#{alert['key']}", "role": role, "version": "2.0",
        f"{{{XSI_NS}}}schemaLocation": SCHEMA_LOCATION})
    who = _sub(root, "Who")
    _sub(who, "AuthorIVORN", author_ivorn)
    _sub(who, "Date", iso_utc(time.time() if now is None else now).rstrip("Z"))
    auth = _sub(who, "Author")
    _sub(auth, "shortName", author)
    if contact_email:
        _sub(auth, "contactEmail", contact_email)
    _what(root, alert, p, event)
    _where_when(root, p, alert["created_at"])
    how = _sub(root, "How")
    _sub(how, "Description", f"Forced photometry of catalogue positions in continuum images of the "
                             f"{OBSERVATORY}; light curves normalised by stable reference sources.")
    if site_url and p.get("source_id") is not None:
        _sub(how, "Reference", uri=f"{site_url.rstrip('/')}/sources/{int(p['source_id'])}",
             type="url")
    _why(root, p, event)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def _what(root, alert: dict, p: dict, event: str) -> None:
    what = _sub(root, "What")
    _param(what, "event", event, ucd="meta.code", data_type="string")
    _param(what, "key", alert["key"], ucd="meta.id", data_type="string")
    _param(what, "source_name", p.get("source_name"), ucd="meta.id;src", data_type="string")
    _param(what, "survey", p.get("survey"), ucd="meta.ref", data_type="string")
    if p.get("flux_mjy") is not None:
        flux = _sub(what, "Group", name="flux")
        _param(flux, "peak_flux", p["flux_mjy"], unit="mJy/beam", ucd=FLUX_UCD)
        _param(flux, "peak_flux_error", p.get("flux_err_mjy"), unit="mJy/beam",
               ucd=f"stat.error;{FLUX_UCD}")
        _param(flux, "flux_kind", p.get("flux_kind"), ucd="meta.code", data_type="string")
        _param(flux, "frequency", None if p.get("freq_hz") is None else p["freq_hz"] / 1e6,
               unit="MHz", ucd="em.freq")
    if p.get("baseline_flux_mjy") is not None:
        base = _sub(what, "Group", name="baseline")
        _param(base, "baseline_flux", p["baseline_flux_mjy"], unit="mJy", ucd=FLUX_UCD)
        _param(base, "baseline_catalog", p.get("baseline_catalog"), ucd="meta.ref",
               data_type="string")
    _param(what, "significance", p.get("significance"), unit="sigma", ucd="stat.snr")
    _param(what, "significance_kind", p.get("significance_kind"), ucd="meta.code",
           data_type="string")
    facts = [(k, spec) for k, spec in EVENT_PARAMS.items() if p.get(k) is not None]
    if facts:
        group = _sub(what, "Group", name=event)
        for key, (name, unit, ucd, data_type) in facts:
            _param(group, name, p[key], unit=unit, ucd=ucd, data_type=data_type)
    if p.get("criteria"):
        _param(what, "criteria", ",".join(p["criteria"]), ucd="meta.code", data_type="string")
    if event == "test" and p.get("message"):
        _sub(what, "Description", p["message"])


def _where_when(root, p: dict, created_at: float) -> None:
    ww = _sub(root, "WhereWhen")
    odl = _sub(ww, "ObsDataLocation")
    _sub(odl, "ObservatoryLocation", id="OVRO")
    obs = _sub(odl, "ObservationLocation")
    _sub(obs, "AstroCoordSystem", id="UTC-ICRS-TOPO")
    coords = _sub(obs, "AstroCoords", coord_system_id="UTC-ICRS-TOPO")
    when = mjd_to_iso(p.get("mjd")) or iso_utc(created_at)   # the observation, else the alert
    if when:
        _sub(_sub(_sub(coords, "Time", unit="s"), "TimeInstant"), "ISOTime", when.rstrip("Z"))
    if p.get("ra_deg") is not None and p.get("dec_deg") is not None:
        pos = _sub(coords, "Position2D", unit="deg")
        _sub(pos, "Name1", "RA")
        _sub(pos, "Name2", "Dec")
        value = _sub(pos, "Value2")
        _sub(value, "C1", _num(float(p["ra_deg"]), 12))      # 1e-9 deg: far below any error
        _sub(value, "C2", _num(float(p["dec_deg"]), 12))
        if p.get("position_error_arcsec") is not None:
            _sub(pos, "Error2Radius", _num(float(p["position_error_arcsec"]) / 3600.0, 6))


def _why(root, p: dict, event: str) -> None:
    if p.get("confidence") in IMPORTANCE:
        importance = IMPORTANCE[p["confidence"]]
    elif p.get("significance") is not None:
        importance = round(min(1.0, max(0.1, float(p["significance"]) / 10.0)), 2)
    else:
        importance = 0.1 if event == "test" else 0.5
    why = _sub(root, "Why", importance=importance)
    inference = _sub(why, "Inference", relation="associated")
    if p.get("source_name"):
        _sub(inference, "Name", p["source_name"])
    _sub(inference, "Concept", CONCEPTS.get(event, event))


def spool_file(directory: Path, key: str) -> Path:
    """Where the packet of ``key`` goes."""
    return Path(directory) / f"{key}.xml"


#: Suffix of the hidden temporary file a packet is written through.
TMP_SUFFIX = ".tmp"


def temporary_of(path: Path) -> Path:
    """The hidden temporary file of ``path`` written by this process:
    ``.<name>.<host>:<pid>:w.tmp`` (the writer named as a lease owner, ``host:pid:...``)."""
    return path.with_name(f".{path.name}.{socket.gethostname()}:{os.getpid()}:w{TMP_SUFFIX}")


def temporary_writer(tmp: Path, name_suffix: str = ".xml") -> str | None:
    """The ``host:pid:w`` writer named by a temporary file of :func:`temporary_of` whose
    target ends with ``name_suffix``; None for any other file."""
    name = tmp.name
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    head, sep, writer = name[1:-len(TMP_SUFFIX)].rpartition(name_suffix + ".")
    return writer if sep and head and writer.count(":") >= 2 else None


def write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a hidden temporary file in the same directory
    (:func:`temporary_of`; flushed, fsynced, renamed, the directory fsynced); raises
    OSError."""
    path = Path(path)
    tmp = temporary_of(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:   # some filesystems refuse fsync on a directory; the rename is done
        pass
    return path
