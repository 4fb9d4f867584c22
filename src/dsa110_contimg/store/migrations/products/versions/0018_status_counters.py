"""maintained status counts: a delta table filled by triggers, a base table of compacted totals

- ``status_count_deltas (id, tbl, status, hour_bucket, n, total)``: one row per change of a
  counted row, written by triggers on ``images``, ``batch_jobs``, ``files`` and
  ``image_depths`` (insert, delete, update of a counted column): ``n`` +1/-1 and ``total``
  the row's summed column (``images.n_sources``, ``image_depths.n_detections``) with that
  sign. Inserts only, so concurrent writers never wait for one shared counter row.
- ``status_counts (tbl, status, hour_bucket, n, total)``: the compacted totals
  (store/counters.py folds the deltas into it); backfilled here from the existing rows.
- ``images (qc_status, measured_at)``: the latest QC-failed images without reading every
  failed one.

The key of a row (``status``) is the composite the readers need: for images
``qc_status|norm_status|norm_method|dup|excl`` (plus the normalisation failure's reason
class), for jobs ``status|unack``; ``hour_bucket`` is ``floor(finished_at / 3600)`` for done
jobs (the hourly throughput), 0 otherwise. The key expressions here and in
store/counters.py are the same.

Revision ID: 0018
Revises: 0017
"""
import time

import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

#: Hours of done-job buckets kept apart (the rest folded into bucket 0), as store/counters.py.
KEEP_HOURS = 48
_TOTAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _reason_class(r: str, pg: bool) -> str:
    """SQL of the normalisation failure's reason class: the text before the first ':',
    spaces trimmed; 'unknown' when there is no reason (the reader strips other whitespace)."""
    head = (f"split_part({r}, ':', 1)" if pg else
            f"CASE WHEN instr({r}, ':') > 0 THEN substr({r}, 1, instr({r}, ':') - 1) ELSE {r} END")
    return f"CASE WHEN coalesce({r}, '') = '' THEN 'unknown' ELSE trim({head}) END"


def _keys(row: str, pg: bool) -> dict[str, tuple[str, str, str]]:
    """Per counted table: SQL of (status key, hour bucket, summed value) of row alias ``row``."""
    r = f"{row}." if row else ""
    excl = f"CASE WHEN {r}excluded THEN 'excl' ELSE '' END"
    bucket = (f"CAST(floor({r}finished_at / 3600.0) AS INTEGER)" if pg
              else f"CAST({r}finished_at / 3600.0 AS INTEGER)")
    image_key = (f"{r}qc_status || '|' || {r}norm_status || '|' || coalesce({r}norm_method, '') || '|' "
                 f"|| CASE WHEN {r}duplicate_of IS NULL THEN '' ELSE 'dup' END || '|' || {excl} || '|' "
                 f"|| CASE WHEN {r}norm_status = 'failed' THEN {_reason_class(r + 'norm_reason', pg)} "
                 "ELSE '' END")
    job_key = (f"{r}status || '|' || CASE WHEN {r}status IN ('failed', 'dead') AND {r}acknowledged_at IS NULL "
               "THEN 'unack' ELSE '' END")
    return {
        "images": (image_key, "0", f"coalesce({r}n_sources, 0)"),
        "batch_jobs": (job_key, f"CASE WHEN {r}status = 'done' AND {r}finished_at IS NOT NULL "
                                f"THEN {bucket} ELSE 0 END", "0"),
        "files": (f"{r}decision", "0", "0"),
        "image_depths": ("''", "0", f"coalesce({r}n_detections, 0)"),
    }


#: The columns whose change moves a row to another key.
_WATCHED = {"images": "qc_status, norm_status, norm_method, norm_reason, duplicate_of, excluded, n_sources",
            "batch_jobs": "status, finished_at, acknowledged_at",
            "files": "decision",
            "image_depths": "n_detections"}


def _delta_insert(tbl: str, row: str, sign: str, pg: bool) -> str:
    key, bucket, total = _keys(row, pg)[tbl]
    return (f"INSERT INTO status_count_deltas (tbl, status, hour_bucket, n, total) "
            f"VALUES ('{tbl}', {key}, {bucket}, {sign}1, {sign}({total}))")


def _sqlite_triggers(tbl: str) -> list[str]:
    old, new = _keys("OLD", False)[tbl], _keys("NEW", False)[tbl]
    changed = " OR ".join(f"({a}) IS NOT ({b})" for a, b in zip(old, new))
    name = f"status_count_{tbl}"
    return [
        f"CREATE TRIGGER {name}_ins AFTER INSERT ON {tbl} BEGIN {_delta_insert(tbl, 'NEW', '', False)}; END",
        f"CREATE TRIGGER {name}_del AFTER DELETE ON {tbl} BEGIN {_delta_insert(tbl, 'OLD', '-', False)}; END",
        f"CREATE TRIGGER {name}_upd AFTER UPDATE OF {_WATCHED[tbl]} ON {tbl} WHEN {changed} BEGIN "
        f"{_delta_insert(tbl, 'OLD', '-', False)}; {_delta_insert(tbl, 'NEW', '', False)}; END",
    ]


def _pg_triggers(tbl: str) -> list[str]:
    old, new = _keys("OLD", True)[tbl], _keys("NEW", True)[tbl]
    changed = " OR ".join(f"({a}) IS DISTINCT FROM ({b})" for a, b in zip(old, new))
    name = f"status_count_{tbl}"
    return [
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NOT ({changed}) THEN
      RETURN NULL;
    END IF;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    {_delta_insert(tbl, 'OLD', '-', True)};
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    {_delta_insert(tbl, 'NEW', '', True)};
  END IF;
  RETURN NULL;
END $$""",
        f"CREATE TRIGGER {name} AFTER INSERT OR DELETE OR UPDATE OF {_WATCHED[tbl]} ON {tbl} "
        f"FOR EACH ROW EXECUTE PROCEDURE {name}()",
    ]


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for name, pk in (("status_count_deltas", [sa.Column("id", sa.Integer(), primary_key=True,
                                                        autoincrement=True)]),
                     ("status_counts", [])):
        op.create_table(
            name, *pk,
            sa.Column("tbl", sa.String(16), nullable=False, primary_key=not pk),
            sa.Column("status", sa.Text(), nullable=False, primary_key=not pk),
            sa.Column("hour_bucket", sa.Integer(), nullable=False, primary_key=not pk),
            sa.Column("n", sa.Integer(), nullable=False),
            sa.Column("total", _TOTAL, nullable=False))
    op.create_index("ix_images_qc_status_measured_at", "images", ["qc_status", "measured_at"])
    for tbl in _WATCHED:
        for sql in (_pg_triggers(tbl) if pg else _sqlite_triggers(tbl)):
            op.execute(sql)
    cutoff = int(time.time() // 3600) - KEEP_HOURS
    for tbl, (key, bucket, total) in _keys("", pg).items():
        op.execute(f"INSERT INTO status_counts (tbl, status, hour_bucket, n, total) "
                   f"SELECT '{tbl}', k, CASE WHEN b >= {cutoff} THEN b ELSE 0 END, count(*), sum(v) "
                   f"FROM (SELECT {key} AS k, {bucket} AS b, {total} AS v FROM {tbl}) AS s "
                   f"GROUP BY k, CASE WHEN b >= {cutoff} THEN b ELSE 0 END")


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for tbl in _WATCHED:
        name = f"status_count_{tbl}"
        if pg:
            op.execute(f"DROP TRIGGER {name} ON {tbl}")
            op.execute(f"DROP FUNCTION {name}()")
        else:
            for suffix in ("ins", "del", "upd"):
                op.execute(f"DROP TRIGGER {name}_{suffix}")
    op.drop_index("ix_images_qc_status_measured_at", table_name="images")
    op.drop_table("status_counts")
    op.drop_table("status_count_deltas")
