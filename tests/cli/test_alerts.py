"""`alerts list|test|replay`: JSON fields, a test alert written to the VOEvent spool, re-sends,
a webhook that does not answer, and the documented exit codes."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET

import pytest

from dsa110_contimg.cli.main import main
from dsa110_contimg.store.alerts import AlertEvent, record_alerts
from dsa110_contimg.store.engine import open_products_db


def write_config(root, **alerts) -> str:
    from dsa110_contimg.service.config import render_config

    root.mkdir(parents=True, exist_ok=True)
    path = root / "photometry.toml"
    path.write_text(render_config(root, alerts=alerts or None))
    return str(path)


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def spooled(tmp_path):
    """A service with a VOEvent spool and one ESE alert recorded."""
    cfg = write_config(tmp_path / "svc", voevent_dir=str(tmp_path / "spool"))
    db = open_products_db(tmp_path / "svc" / "state" / "products.sqlite3")
    with db.engine.begin() as c:
        c.exec_driver_sql("INSERT INTO sources (survey, catalog_id, ra_deg, dec_deg, reference_ok) "
                          "VALUES ('nvss', 'NVSS J100000+370000', 150.0, 37.0, 0)")
        (key,) = record_alerts(c, [AlertEvent("ese_candidate", 1, "new", significance=5.5)])
    yield cfg, db, key
    db.dispose()


def test_test_list_and_replay(spooled, tmp_path, capsys):
    cfg, db, key = spooled
    rc, out, err = run(capsys, "alerts", "test", "--config", cfg, "--message", "hello")
    assert rc == 0, err
    test_key = out.split()[2]
    assert test_key.startswith("test-") and f"{test_key} -> voevent:" in out and "sent" in out
    spool = tmp_path / "spool"
    assert sorted(p.name for p in spool.iterdir()) == sorted([f"{key}.xml", f"{test_key}.xml"])
    root = ET.parse(spool / f"{test_key}.xml").getroot()
    assert root.get("role") == "test" and root.findtext("What/Description") == "hello"

    rc, out, _ = run(capsys, "alerts", "list", "--config", cfg, "--json")
    assert rc == 0
    doc = json.loads(out)
    test, ese = doc["alerts"]
    assert (ese["key"], ese["event"], ese["source"]) == (key, "ese_candidate", "NVSS J100000+370000")
    assert ese["created_at"].endswith("Z") and test["event"] == "test" and test["source"] is None
    (d,) = ese["deliveries"]
    assert (d["kind"], d["state"], d["attempts"]) == ("voevent", "sent", 1)
    assert doc["destinations"][0]["deliveries"] == {"sent": 2}

    (spool / f"{key}.xml").unlink()
    rc, out, _ = run(capsys, "alerts", "replay", str(ese["id"]), "--config", cfg)
    assert rc == 0 and "1 alert(s), 1 deliveries" in out and (spool / f"{key}.xml").exists()
    rc, out, _ = run(capsys, "alerts", "replay", "--since", "1h", "--config", cfg)
    assert rc == 0 and "2 alert(s)" in out
    rc, out, _ = run(capsys, "alerts", "list", "--config", cfg, "--event", "ese_candidate", "--json")
    (ese,) = json.loads(out)["alerts"]
    assert ese["deliveries"][0]["attempts"] == 3
    rc, out, _ = run(capsys, "alerts", "list", "--config", cfg)
    assert rc == 0 and "NVSS J100000+370000" in out and "sent (3)" in out


def test_unanswered_webhook_is_reported_pending(tmp_path, capsys):
    with socket.socket() as s:             # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_config(tmp_path / "svc", webhooks=[f"http://127.0.0.1:{port}/hook"])
    assert main(["db", "upgrade", "--config", cfg]) == 0
    rc, out, _ = run(capsys, "alerts", "test", "--config", cfg, "--wait", "1")
    assert rc == 1 and "pending after 1 attempt(s)" in out and "refused" in out.lower()
    rc, out, _ = run(capsys, "alerts", "list", "--config", cfg)
    assert f"webhook:127.0.0.1:" in out and "1 pending" in out and "next in" in out


def test_errors_and_exit_codes(spooled, tmp_path, capsys):
    cfg, _db, _key = spooled
    bare = write_config(tmp_path / "bare")
    rc, _, err = run(capsys, "alerts", "list", "--config", bare)
    assert rc == 4 and "does not exist" in err        # no database yet
    rc, _, err = run(capsys, "alerts", "test", "--config", bare)
    assert rc == 2 and "no alert destination configured" in err and err.count("\n") == 1
    rc, _, err = run(capsys, "alerts", "replay", "99", "--config", cfg)
    assert rc == 2 and "no alert with id or key '99'" in err
    rc, _, err = run(capsys, "alerts", "replay", "--config", cfg)
    assert rc == 2
    rc, _, err = run(capsys, "alerts", "list", "--since", "yesterday", "--config", cfg)
    assert rc == 2 and "--since 'yesterday'" in err
