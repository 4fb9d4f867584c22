"""ESE events for the alert outbox: a new candidate, and a candidate reaching a higher
confidence level.

Called by the ESE step inside its write transaction, with the rows it wrote and the
changes :func:`~dsa110_contimg.store.lightcurves.upsert_ese_candidates` reported:

* ``ese_candidate`` -- a source became a candidate (once per source);
* ``ese_confidence`` -- an existing candidate reached a higher confidence level
  (``low`` < ``medium`` < ``high``) than it had; once per source and level, so a score
  hovering at a threshold does not alert at every epoch;
* ``ese_stage`` -- a candidate entered the stage ``dip_in_progress`` (follow-up can start
  while the event happens) or ``confirmed`` (dip and recovery); once per stage and image.
  Other stage changes (recovering, retired) are kept in the stage history only.

A dismissed candidate does not alert (an operator judged it).

The significance is the candidate's detection significance, the ESE template fit's
(``sigma``, :func:`~dsa110_contimg.store.lightcurves.detection_sigma`), also in the payload
as ``sigma``; None for a candidate the template search did not detect. The other statistics
keep their shown names (:data:`~dsa110_contimg.store.lightcurves.CANDIDATE_NAMES`).
"""

from __future__ import annotations

import json

from dsa110_contimg.store.alerts import AlertEvent, record_alerts
from dsa110_contimg.store.lightcurves import CANDIDATE_NAMES, detection_sigma

#: Stages whose entry is an alert (the others are recorded in the stage history only).
ALERT_STAGES = ("dip_in_progress", "confirmed")
#: Candidate-row fields copied into the alert under their shown names (``CANDIDATE_NAMES``;
#: units: docs/alerts.md).
CANDIDATE_FIELDS = ("score", "confidence", "preset", "sigma_deviation", "chi2_nu", "eta", "v",
                    "n_epochs", "shape_significance", "depth", "duration_days", "t_min_mjd",
                    "template", "stage", "stage_reason")


def ese_alert_events(image_id: int | None, rows: list[dict], changes: list[dict]) -> list[AlertEvent]:
    """The outbox events of one ESE evaluation (``rows``: the candidate rows written,
    ``changes``: what their upsert reported)."""
    by_source = {int(r["source_id"]): r for r in rows}
    events = []
    for change in changes:
        row = by_source.get(int(change["source_id"]))
        if row is None or (change["change"] in ("raised", "stage") and change["status"] == "dismissed"):
            continue
        if change["change"] == "stage" and change["stage"] not in ALERT_STAGES:
            continue
        fields = {CANDIDATE_NAMES.get(k, k): row.get(k) for k in CANDIDATE_FIELDS}
        fields.update(candidate_id=change["candidate_id"], status=change["status"],
                      previous_confidence=change["previous_confidence"],
                      criteria=json.loads(row.get("criteria") or "[]"))
        significance, kind = _significance(row)
        fields["significance_kind"] = kind
        if change["change"] == "new":
            event, dedupe = "ese_candidate", "new"
        elif change["change"] == "stage":
            event, dedupe = "ese_stage", f"stage-{change['stage']}-image-{image_id}"
            fields.update(stage=change["stage"], previous_stage=change["previous_stage"],
                          stage_reason=row.get("stage_reason"))
        else:
            event, dedupe = "ese_confidence", f"confidence-{row['confidence']}"
        events.append(AlertEvent(event, int(change["source_id"]), dedupe, image_id=image_id,
                                 significance=significance, fields=fields))
    return events


def record_ese_alerts(conn, image_id: int | None, rows: list[dict], changes: list[dict]) -> list[str]:
    """Record the alerts of one ESE evaluation in ``conn``'s transaction; returns their keys."""
    return record_alerts(conn, ese_alert_events(image_id, rows, changes))


def _significance(row: dict) -> tuple[float | None, str]:
    return detection_sigma(row), "ese_template_sigma"

