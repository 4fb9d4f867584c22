"""``contimg-photometry alerts``: the alert outbox and its deliveries (docs/alerts.md).

* ``alerts list [--json]`` -- alerts, newest first, each with its state at every
  destination, and the destinations' sending state (back-off, last error);
* ``alerts test`` -- record a test alert and deliver it now to the configured destinations;
* ``alerts replay ID|KEY ... | --since WHEN`` -- send alerts again (deliveries become
  pending; destinations configured now that never had them get them).

``test`` and ``replay`` deliver in the foreground (the daemon's delivery thread may take
some of it: one sender per destination at a time) and exit 1 when a delivery is still
pending or failed after ``--wait`` seconds.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sys
import time

from dsa110_contimg.cli import common

_SINCE_HELP = ("an ISO 8601 date or time (UTC unless it has an offset), e.g. 2026-01-31 or "
               "2026-01-31T12:00, or a duration back from now such as 90m, 12h, 7d")


def register(sub) -> None:
    p = sub.add_parser("alerts", help="alerts: list the outbox, send a test alert, re-send alerts")
    asub = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    ls = asub.add_parser("list", help="alerts (newest first) and their state per destination")
    common.add_db_options(ls, registry=False)
    ls.add_argument("--since", metavar="WHEN", help=f"only alerts recorded since WHEN: {_SINCE_HELP}")
    ls.add_argument("--event", help="only alerts of this event (ese_candidate, ese_confidence, "
                                    "ese_stage, new_source, test)")
    ls.add_argument("--limit", type=int, default=50, metavar="N", help="at most N alerts (default 50)")
    ls.add_argument("--json", action="store_true", help="JSON output")
    ls.set_defaults(func=list_alerts)
    t = asub.add_parser("test", help="send a test alert (role test) to the configured destinations")
    common.add_db_options(t, registry=False)
    t.add_argument("--message", default="delivery test", help="text carried by the test alert")
    t.add_argument("--wait", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the deliveries (default 30)")
    t.set_defaults(func=send_test)
    r = asub.add_parser("replay", help="send alerts again")
    common.add_db_options(r, registry=False)
    r.add_argument("alerts", nargs="*", metavar="ID|KEY", help="alert ids (from 'alerts list') or keys")
    r.add_argument("--since", metavar="WHEN", help=f"every alert recorded since WHEN: {_SINCE_HELP}")
    r.add_argument("--wait", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the deliveries (default 30; 0 = leave them to the daemon)")
    r.set_defaults(func=replay)


def parse_since(text: str, now: float | None = None) -> float:
    """``WHEN`` (:data:`_SINCE_HELP`) as Unix seconds; raises UsageError."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        when = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise common.UsageError(f"--since {text!r}: expected {_SINCE_HELP}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp()


def _alert_json(a: dict) -> dict:
    from dsa110_contimg.service.alert_messages import alert_text, iso_utc

    return {"id": a["id"], "key": a["key"], "event": a["event"], "source": a["source_name"],
            "source_id": a["source_id"], "created_at": iso_utc(a["created_at"]),
            "created_at_unix": a["created_at"], "significance": a["significance"], "note": a["note"],
            "text": alert_text(a["event"], a["payload"], role="observation"),
            "deliveries": [{**d, "sent_at": iso_utc(d["sent_at"])} for d in a["deliveries"]]}


def _destination_json(d: dict, now: float) -> dict:
    from dsa110_contimg.service.alert_messages import iso_utc

    wait = max(0.0, float(d["next_attempt_at"]) - now)
    return {"destination": d["destination"], "kind": d["kind"], "deliveries": d["deliveries"],
            "failures": d["failures"], "last_error": d["last_error"],
            "retry_in_s": round(wait, 1) if d["failures"] else None,
            "last_success_at": iso_utc(d["last_success_at"])}


def list_alerts(args) -> int:
    from dsa110_contimg.store.alerts import destinations, find_alerts

    since = parse_since(args.since) if args.since else None
    if args.limit < 1:
        raise common.UsageError("--limit must be at least 1")
    db = common.open_products(args)
    now = time.time()
    with db.engine.connect() as conn:
        rows = [_alert_json(a) for a in find_alerts(conn, since=since, event=args.event, limit=args.limit)]
        dests = [_destination_json(d, now) for d in destinations(conn)]
        conn.rollback()
    if args.json:
        json.dump({"alerts": rows, "destinations": dests}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print("no alerts" + (" since " + args.since if args.since else ""))
    else:
        print(f"{'id':>5} {'created (UTC)':<20} {'event':<15} {'source':<26} deliveries")
        for r in rows:
            states = ", ".join(f"{d['destination']} {d['state']} ({d['attempts']})" for d in r["deliveries"])
            print(f"{r['id']:>5} {r['created_at']:<20} {r['event']:<15} {r['source'] or '-':<26} "
                  f"{states or r['note'] or '-'}")
    for d in dests:
        n = d["deliveries"]
        line = (f"destination {d['destination']}: {n.get('pending', 0)} pending, {n.get('sent', 0)} sent, "
                f"{n.get('failed', 0)} failed")
        if d["failures"]:
            line += f"; {d['failures']} failed attempts, next in {d['retry_in_s']:.0f} s: {d['last_error']}"
        print(line)
    return 0


def _delivery(args):
    from dsa110_contimg.service.alerts import AlertDelivery

    cfg = common.service_config(args)
    if cfg is None or not cfg.alerts.configured:
        raise common.UsageError("no alert destination configured: set [alerts] webhooks and/or "
                                "voevent_dir in the configuration (--config or "
                                "$CONTIMG_PHOTOMETRY_CONFIG)")
    db = common.open_products(args, write=True, migrate=True)
    return AlertDelivery(cfg.alerts, db), db


def _deliver(delivery, db, alert_ids: list[int], wait_s: float) -> list[dict]:
    """Deliver now (back-off of the configured destinations lifted) until the alerts have
    no pending delivery or ``wait_s`` passed; returns the alerts as stored."""
    from dsa110_contimg.store import alerts as outbox

    with db.engine.begin() as conn:
        for dest in delivery.destinations:
            outbox.set_destination(conn, dest.name, next_attempt_at=0.0)
    deadline = time.monotonic() + wait_s
    while True:
        if wait_s > 0:
            delivery.tick()
        with db.engine.connect() as conn:
            rows = [a for i in alert_ids for a in outbox.find_alerts(conn, ident=str(i), limit=1)]
            conn.rollback()
        pending = any(d["state"] == "pending" for a in rows for d in a["deliveries"])
        if not pending or time.monotonic() >= deadline:
            return rows
        time.sleep(0.5)


def _report(rows: list[dict]) -> int:
    ok = True
    for a in rows:
        for d in a["deliveries"]:
            how = d["state"]
            if d["summary_key"]:
                how += f" in summary {d['summary_key']}"
            if d["state"] != "sent":
                ok = False
                how += f" after {d['attempts']} attempt(s)" + (f": {d['last_error']}" if d["last_error"] else "")
            print(f"  {a['key']} -> {d['destination']}: {how}")
    return 0 if ok else common.EXIT_FAILURE


def send_test(args) -> int:
    from dsa110_contimg.store.alerts import AlertEvent, find_alerts, record_alerts

    delivery, db = _delivery(args)
    with db.engine.begin() as conn:
        keys = record_alerts(conn, [AlertEvent("test", None, f"test-{time.time_ns()}",
                                               fields={"message": args.message})])
        alert_id = find_alerts(conn, ident=keys[0], limit=1)[0]["id"]
    print(f"test alert {keys[0]} recorded; delivering to "
          + ", ".join(d.name for d in delivery.destinations))
    return _report(_deliver(delivery, db, [alert_id], args.wait))


def replay(args) -> int:
    from dsa110_contimg.store import alerts as outbox

    if not args.alerts and not args.since:
        raise common.UsageError("name alerts (ID or KEY) or give --since WHEN")
    since = parse_since(args.since) if args.since else None
    delivery, db = _delivery(args)
    with db.engine.connect() as conn:
        found = []
        for ident in args.alerts:
            rows = outbox.find_alerts(conn, ident=ident, limit=1)
            if not rows:
                raise common.UsageError(f"no alert with id or key {ident!r} (see 'alerts list')")
            found += rows
        if since is not None:
            found += outbox.find_alerts(conn, since=since, limit=None)
        conn.rollback()
    ids = sorted({a["id"] for a in found})
    if not ids:
        print(f"no alert recorded since {args.since}")
        return 0
    pairs = [(d.name, d.kind) for d in delivery.destinations]
    with db.engine.begin() as conn:
        n = outbox.replay(conn, ids, pairs)
    print(f"{len(ids)} alert(s), {n} deliveries to send again")
    if args.wait <= 0:
        print("the daemon delivers them")
        return 0
    return _report(_deliver(delivery, db, ids, args.wait))
