"""variability_stats ranks the source pages by coarse keys: eta_key, v_key, weighted_mean_key,
n_key (the top 16 bits of each value's IEEE-754 double as a monotone integer, NULL for a
NULL value; see store/rank_keys.py), filled from the stored values, with the page indexes
on the keys instead of the values (an image's write then rewrites an index entry only for
the sources whose key moved).

Revision ID: 0027
Revises: 0026
"""
import numpy as np
import sqlalchemy as sa
from alembic import op


revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None

_METRICS = ('eta', 'v', 'weighted_mean', 'n')
_BATCH = 20000


def _keys(values) -> list:
    """Top 16 bits of each double as a monotone integer (None for NULL / non-finite)."""
    v = np.array([np.nan if x is None else x for x in values], float) + 0.0
    bits = v.view(np.int64)
    mono = np.where(bits < 0, bits ^ np.int64(0x7FFFFFFFFFFFFFFF), bits)
    out = (mono >> np.int64(48)).astype(object)
    out[~np.isfinite(v)] = None
    return [None if k is None else int(k) for k in out]


def upgrade() -> None:
    with op.batch_alter_table('variability_stats') as batch:
        for name in _METRICS:
            batch.add_column(sa.Column(f'{name}_key', sa.Integer(), nullable=True))
    conn = op.get_bind()
    update = sa.text('UPDATE variability_stats SET eta_key = :eta_key, v_key = :v_key, '
                     'weighted_mean_key = :weighted_mean_key, n_key = :n_key WHERE source_id = :sid')
    last = None
    while True:
        where = '' if last is None else f'WHERE source_id > {int(last)} '
        rows = conn.execute(sa.text(f'SELECT source_id, {", ".join(_METRICS)} FROM variability_stats '
                                    f'{where}ORDER BY source_id LIMIT {_BATCH}')).all()
        if not rows:
            break
        keys = {f'{name}_key': _keys([r[1 + j] for r in rows]) for j, name in enumerate(_METRICS)}
        conn.execute(update, [{'sid': int(r[0]), **{k: v[i] for k, v in keys.items()}}
                              for i, r in enumerate(rows)])
        last = rows[-1][0]
    for name in _METRICS:
        op.drop_index(f'ix_variability_stats_{name}', table_name='variability_stats')
        op.create_index(f'ix_variability_stats_{name}_key', 'variability_stats', [f'{name}_key'],
                        unique=False)


def downgrade() -> None:
    for name in _METRICS:
        op.drop_index(f'ix_variability_stats_{name}_key', table_name='variability_stats')
        op.create_index(f'ix_variability_stats_{name}', 'variability_stats', [name], unique=False)
    with op.batch_alter_table('variability_stats') as batch:
        for name in _METRICS:
            batch.drop_column(f'{name}_key')
