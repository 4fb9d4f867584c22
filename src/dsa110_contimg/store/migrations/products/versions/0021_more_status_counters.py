"""maintained counts of the sources not from the catalogue, alerts and alert deliveries

Triggers as those of 0018, appending to ``status_count_deltas``:

- ``sources``: key ``kind``, only for the kinds not from the catalogue (``monitor``, ``new``,
  ``blind``: the trigger's WHEN clause leaves a catalogue ingest's rows alone);
- ``alerts``: key ``event``;
- ``alert_deliveries``: key ``kind|state``.

Backfilled here from the existing rows.

Revision ID: 0021
Revises: 0020
"""
from alembic import op


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

_OWN = "('monitor', 'new', 'blind')"
#: table -> (key SQL of row alias ``R``, the columns whose change moves a row, row filter SQL)
_TABLES = {
    "sources": ("R.kind", "kind", f"R.kind IN {_OWN}"),
    "alerts": ("R.event", "event", None),
    "alert_deliveries": ("R.kind || '|' || R.state", "kind, state", None),
}


def _row(sql: str | None, alias: str) -> str | None:
    return None if sql is None else sql.replace("R.", f"{alias}.")


def _delta(tbl: str, alias: str, sign: str) -> str:
    key, _, cond = _TABLES[tbl]
    where = f" WHERE {_row(cond, alias)}" if cond else ""
    return (f"INSERT INTO status_count_deltas (tbl, status, hour_bucket, n, total) "
            f"SELECT '{tbl}', {_row(key, alias)}, 0, {sign}1, 0{where}")


def _when(tbl: str, alias: str) -> str:
    cond = _TABLES[tbl][2]
    return f" WHEN ({_row(cond, alias)})" if cond else ""


def _update_when(tbl: str, distinct: str) -> str:
    key, _, cond = _TABLES[tbl]
    changed = f"({_row(key, 'OLD')}) {distinct} ({_row(key, 'NEW')})"
    if cond:
        changed += f" AND ({_row(cond, 'OLD')} OR {_row(cond, 'NEW')})"
    return changed


def _sqlite(tbl: str) -> list[str]:
    name, cols = f"status_count_{tbl}", _TABLES[tbl][1]
    return [
        f"CREATE TRIGGER {name}_ins AFTER INSERT ON {tbl}{_when(tbl, 'NEW')} BEGIN "
        f"{_delta(tbl, 'NEW', '')}; END",
        f"CREATE TRIGGER {name}_del AFTER DELETE ON {tbl}{_when(tbl, 'OLD')} BEGIN "
        f"{_delta(tbl, 'OLD', '-')}; END",
        f"CREATE TRIGGER {name}_upd AFTER UPDATE OF {cols} ON {tbl} WHEN {_update_when(tbl, 'IS NOT')} "
        f"BEGIN {_delta(tbl, 'OLD', '-')}; {_delta(tbl, 'NEW', '')}; END",
    ]


def _pg(tbl: str) -> list[str]:
    name, cols = f"status_count_{tbl}", _TABLES[tbl][1]
    return [
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    {_delta(tbl, 'OLD', '-')};
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    {_delta(tbl, 'NEW', '')};
  END IF;
  RETURN NULL;
END $$""",
        f"CREATE TRIGGER {name}_ins AFTER INSERT ON {tbl} FOR EACH ROW{_when(tbl, 'NEW')} "
        f"EXECUTE PROCEDURE {name}()",
        f"CREATE TRIGGER {name}_del AFTER DELETE ON {tbl} FOR EACH ROW{_when(tbl, 'OLD')} "
        f"EXECUTE PROCEDURE {name}()",
        f"CREATE TRIGGER {name}_upd AFTER UPDATE OF {cols} ON {tbl} FOR EACH ROW "
        f"WHEN ({_update_when(tbl, 'IS DISTINCT FROM')}) EXECUTE PROCEDURE {name}()",
    ]


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for tbl, (key, _, cond) in _TABLES.items():
        for sql in (_pg(tbl) if pg else _sqlite(tbl)):
            op.execute(sql)
        where = f" WHERE {_row(cond, tbl)}" if cond else ""
        op.execute(f"INSERT INTO status_counts (tbl, status, hour_bucket, n, total) "
                   f"SELECT '{tbl}', {_row(key, tbl)}, 0, count(*), 0 FROM {tbl}{where} "
                   f"GROUP BY {_row(key, tbl)}")


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for tbl in _TABLES:
        name = f"status_count_{tbl}"
        for suffix in ("ins", "del", "upd"):
            op.execute(f"DROP TRIGGER {name}_{suffix}" + (f" ON {tbl}" if pg else ""))
        if pg:
            op.execute(f"DROP FUNCTION {name}()")
