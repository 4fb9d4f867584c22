"""Repository functions for images, sources and measurements.

Everything for one image is written in one transaction: the catalogue
sources are upserted, the image row is created or updated in place (keyed by
path), its previous measurements are deleted and the new ones bulk-inserted.
Measuring an image again therefore replaces its rows atomically and never
duplicates them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsa110_contimg.store.row_cache import BUMP
from dsa110_contimg.store.schema import images, measurements

#: The stored columns of a measurement row (the MeasurementTable's core columns but ``snr``,
#: which is ``peak_jyb / peak_err_jyb`` and computed on read: ``schema.snr_column``).
MEASUREMENT_COLUMNS = (
    "ra_deg", "dec_deg", "x_pix", "y_pix", "peak_jyb", "peak_err_jyb", "local_rms_jyb",
    "chi2", "dof", "cluster_id", "flags", "success",
)


def content_id(path: str | Path) -> str:
    """Identity of a file's content: ``size:mtime_ns:sha1(first 8 header blocks)``."""
    st = os.stat(path)
    with open(path, "rb") as fh:
        digest = hashlib.sha1(fh.read(2880 * 8)).hexdigest()[:16]
    return f"{st.st_size}:{st.st_mtime_ns}:{digest}"


#: Blocks of 2880 bytes read evenly through the file for :func:`data_digest`.
DIGEST_SAMPLES = 32


def data_digest(path: str | Path) -> str:
    """Identity of a file's data whatever its name and modification time:
    ``size:sha1(first 8 header blocks + DIGEST_SAMPLES blocks spread over the file)``.

    Two files with the same digest hold the same observation (same header, same pixels
    wherever sampled); a copy (``cp``, ``rsync``) keeps it, a re-imaging changes it.
    """
    size = os.stat(path).st_size
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        h.update(fh.read(2880 * 8))
        if size > 2880 * 8:
            for k in range(DIGEST_SAMPLES):
                fh.seek(2880 * 8 + (size - 2880 * 9) * k // max(DIGEST_SAMPLES - 1, 1))
                h.update(fh.read(2880))
    return f"{size}:{h.hexdigest()}"


def original_image(conn: Connection, digest: str, path: str) -> dict | None:
    """The stored image holding the data of digest ``digest`` under a path other than
    ``path`` (the earliest stored; never a duplicate itself): ``{"id", "path"}`` or None."""
    from dsa110_contimg.store import bulk

    r = bulk.rows(conn, "SELECT id, path FROM images WHERE data_digest = ? AND path != ? AND "
                        "duplicate_of IS NULL ORDER BY id LIMIT 1", (digest, str(path)))
    return None if not r else {"id": int(r[0].id), "path": r[0].path}


#: Columns a duplicate row takes from its original (the same data: the same observation).
_COPIED_COLUMNS = ("mjd", "freq_hz", "beam_major_arcsec", "beam_minor_arcsec", "beam_pa_deg",
                   "beam_source", "ra_center_deg", "dec_center_deg", "radius_deg",
                   "median_rms_jyb", "method", "catalog")


def duplicate_row(conn: Connection, original_id: int, *, path: str, content_id: str,
                  digest: str, kind: str, data_id: str | None) -> dict:
    """The ``images`` row of a file holding the data of image ``original_id`` under
    ``path``, its observation columns copied from the original (for :func:`store_duplicate`
    without measuring the file again)."""
    r = conn.execute(sa.select(*(images.c[c] for c in _COPIED_COLUMNS)).where(
        images.c.id == int(original_id))).mappings().one()
    return {**dict(r), "path": str(path), "content_id": content_id, "data_digest": digest,
            "kind": kind, "data_id": data_id, "n_sources": 0, "n_success": 0,
            "measured_at": time.time()}


def store_duplicate(conn: Connection, image_row: Mapping[str, Any], original_id: int) -> tuple[int, set[int]]:
    """Record ``image_row`` (keyed by path) as a duplicate of image ``original_id``: the
    row without measurements or normalisation. Returns ``(images.id, source ids the path's
    earlier measurements held)`` (an earlier version of the file at this path was an epoch
    whose light curves must now be recomputed without it)."""
    row = dict(image_row, duplicate_of=int(original_id), n_sources=0, n_success=0)
    row.setdefault("measured_at", time.time())
    image_id = conn.execute(sa.select(images.c.id).where(images.c.path == row["path"])).scalar()
    held: set[int] = set()
    if image_id is None:
        image_id = conn.execute(images.insert().values(**row).returning(images.c.id)).scalar_one()
    else:
        held = image_source_ids(conn, [image_id])
        conn.execute(measurements.delete().where(measurements.c.image_id == image_id))
        reset = {"qc_status": "pending", "qc_reasons": None, "qc_metrics": None,
                 "norm_status": "not_requested", "norm_factor": None, "norm_factor_err": None,
                 "norm_scatter": None, "norm_n_refs": None, "norm_reason": None,
                 "norm_ref_ids": None, "norm_used_ids": None}
        conn.execute(images.update().where(images.c.id == image_id).values(**{**reset, **row}, **BUMP))
    return int(image_id), held


_SOURCE_IDS_SQL = "SELECT catalog_id, id FROM sources WHERE survey = ? AND catalog_id IN ({in})"


def existing_source_ids(conn: Connection, survey: str, catalog_ids: Sequence[str]) -> dict[str, int]:
    """``{catalog_id: sources.id}`` of the catalogue sources that already have a row.

    A read: source rows are never updated or deleted once written, so this may run on a
    read-only connection before the write transaction (see :func:`upsert_sources`).
    """
    from dsa110_contimg.store import bulk

    return dict(bulk.fetch_in(conn, _SOURCE_IDS_SQL, [str(c) for c in catalog_ids], (survey,)))


def upsert_sources(conn: Connection, survey: str, catalog_ids: Sequence[str], ra_deg, dec_deg,
                   flux_mjy=None, reference_ok=None, *, known: dict[str, int] | None = None,
                   kind: str = "catalogue") -> np.ndarray:
    """Make sure every catalogue source has a row; return their ``sources.id`` in input order.

    Existing rows are kept as they are (insert-if-absent); only the missing ones are
    inserted, with one driver-level ``executemany``. ``known`` (from
    :func:`existing_source_ids`, read before the write transaction) spares the lookup
    of the sources it holds.
    """
    from dsa110_contimg.store import bulk

    ids = [str(c) for c in catalog_ids]
    n = len(ids)
    sql = _SOURCE_IDS_SQL
    found: dict[str, int] = dict(known or {})
    unknown = [c for c in ids if c not in found]
    if unknown:
        found.update(bulk.fetch_in(conn, sql, unknown, (survey,)))
    missing = [i for i, c in enumerate(ids) if c not in found]
    if missing:
        m = np.asarray(missing, np.int64)
        ra = np.asarray(ra_deg, float)[m]
        dec = np.asarray(dec_deg, float)[m]
        flux = np.full(m.size, np.nan) if flux_mjy is None else np.asarray(flux_mjy, float)[m]
        ref = np.zeros(m.size, bool) if reference_ok is None else np.asarray(reference_ok, bool)[m]
        rows = list(zip([survey] * m.size, [ids[i] for i in missing], ra.tolist(), dec.tolist(),
                        bulk.nullable(flux), ref.tolist(), [kind] * m.size))
        bulk.executemany(conn, bulk.insert_sql("sources", (
            "survey", "catalog_id", "ra_deg", "dec_deg", "catalog_flux_mjy", "reference_ok",
            "kind")) + " ON CONFLICT (survey, catalog_id) DO NOTHING", rows)
        found.update(bulk.fetch_in(conn, sql, sorted({ids[i] for i in missing}), (survey,)))
    return np.array([found[c] for c in ids], dtype=np.int64) if n else np.zeros(0, np.int64)


def upsert_table_sources(conn: Connection, default_survey: str, cat, *,
                         known: dict[str, int] | None = None) -> np.ndarray:
    """:func:`upsert_sources` for a measured catalogue table whose rows may come from several
    surveys (columns ``survey`` and ``kind``: monitor lists, the service's own sources; a
    row without a survey is from ``default_survey``, kind ``catalogue``). Ids in row order;
    ``known`` holds ids already read for ``default_survey``."""
    from dsa110_contimg.store.values import column_labels, column_strings

    names = column_strings(cat["source_id"])
    ref_ok = np.asarray(cat["reference_ok"], bool) if "reference_ok" in cat.colnames else None
    flux = np.asarray(cat["flux_mjy"], float) if "flux_mjy" in cat.colnames else None
    if "survey" not in cat.colnames:
        return upsert_sources(conn, default_survey, names, cat["ra_deg"], cat["dec_deg"], flux,
                              ref_ok, known=known)
    surveys = np.array(column_labels(cat["survey"], default_survey), object)
    kinds = np.array(column_labels(cat["kind"], "catalogue"), object)
    out = np.zeros(len(names), np.int64)
    ra, dec = np.asarray(cat["ra_deg"], float), np.asarray(cat["dec_deg"], float)
    for survey, kind in sorted(set(zip(surveys.tolist(), kinds.tolist()))):
        sel = np.flatnonzero((surveys == survey) & (kinds == kind))
        out[sel] = upsert_sources(
            conn, survey, [names[i] for i in sel], ra[sel], dec[sel],
            None if flux is None else flux[sel], None if ref_ok is None else ref_ok[sel],
            known=known if survey == default_survey else None, kind=kind)
    return out


def store_image_measurements(conn: Connection, image_row: Mapping[str, Any], source_ids: np.ndarray,
                             columns: Mapping[str, np.ndarray]) -> int:
    """Create or update the image row (by path) and replace its measurements
    (:func:`store_image_row` then :func:`insert_measurements`).

    Parameters
    ----------
    conn : Connection
        Inside the caller's transaction.
    image_row : mapping
        Values for the ``images`` table (``path`` required).
    source_ids : ndarray of int
        ``sources.id`` per measurement row.
    columns : mapping of str to ndarray
        The :data:`MEASUREMENT_COLUMNS` (MeasurementTable columns).

    Returns
    -------
    int
        ``images.id``.
    """
    image_id = store_image_row(conn, image_row, len(source_ids), source_ids=source_ids)
    insert_measurements(conn, image_id, source_ids, columns)
    return image_id


def store_image_row(conn: Connection, image_row: Mapping[str, Any], n_sources: int, *,
                    source_ids: Sequence[int] | None = None) -> int:
    """Create or update the image row (by path) for ``n_sources`` measurement rows; an
    image stored before loses its measurements, QC and normalisation (its new rows follow
    with :func:`insert_measurements` in the same transaction). ``source_ids``: the sources of
    those rows, whose range the row records (``source_id_min``/``source_id_max``; without
    them the range is not known: NULL). Returns ``images.id``."""
    row = dict(image_row)
    row.setdefault("measured_at", time.time())
    # the image's row count is always the number of its measurement rows (status sums it)
    row["n_sources"] = int(n_sources)
    ids = np.asarray(source_ids if source_ids is not None else [], np.int64)
    row["source_id_min"] = int(ids.min()) if ids.size else None
    row["source_id_max"] = int(ids.max()) if ids.size else None
    image_id = image_id_by_path(conn, row["path"])
    if image_id is None:
        image_id = conn.execute(images.insert().values(**row).returning(images.c.id)).scalar_one()
    else:
        conn.execute(measurements.delete().where(measurements.c.image_id == image_id))
        reset = {"qc_status": "pending", "qc_reasons": None, "qc_metrics": None,
                 "norm_status": "not_requested", "norm_factor": None, "norm_factor_err": None,
                 "norm_scatter": None, "norm_n_refs": None, "norm_reason": None, "norm_ref_ids": None,
                 "norm_used_ids": None, "duplicate_of": None}
        conn.execute(images.update().where(images.c.id == image_id).values(**{**reset, **row}, **BUMP))
    return int(image_id)


def insert_measurements(conn: Connection, image_id: int, source_ids: np.ndarray,
                        columns: Mapping[str, np.ndarray], *, norm_flux=None, norm_err=None) -> None:
    """Insert one image's measurement rows (one executemany): the :data:`MEASUREMENT_COLUMNS`
    of ``columns`` per ``source_ids`` and, when given, their normalised flux and error
    (Jy/beam; NaN -> NULL), so that each row is written once."""
    n = len(source_ids)
    if not n:
        return
    from dsa110_contimg.store import bulk

    cols = {k: _to_db_list(np.asarray(columns[k])) for k in MEASUREMENT_COLUMNS}
    cols["success"] = [bool(v) for v in cols["success"]]
    names = ("image_id", "source_id") + MEASUREMENT_COLUMNS
    values = [[int(image_id)] * n, np.asarray(source_ids).tolist(),
              *(cols[k] for k in MEASUREMENT_COLUMNS)]
    if norm_flux is not None:
        names += ("norm_flux_jyb", "norm_err_jyb")
        values += [bulk.nullable(norm_flux), bulk.nullable(norm_err)]
    bulk.executemany(conn, bulk.insert_sql("measurements", names), list(zip(*values)))
    widen_source_id_range(conn, image_id, source_ids)


def source_id_range_values(source_ids) -> dict:
    """The ``images`` values that widen an image's recorded source-id range
    (``source_id_min``/``source_id_max``) to hold ``source_ids`` (a range not known, NULL,
    stays NULL); {} for no ids."""
    ids = np.asarray(source_ids, np.int64)
    if not ids.size:
        return {}
    lo, hi = int(ids.min()), int(ids.max())
    c = images.c
    return {"source_id_min": sa.case((c.source_id_min > lo, lo), else_=c.source_id_min),
            "source_id_max": sa.case((c.source_id_max < hi, hi), else_=c.source_id_max)}


def widen_source_id_range(conn: Connection, image_id: int, source_ids) -> None:
    """Record that image ``image_id`` holds measurement rows of ``source_ids`` (every writer
    of an image's rows calls it, or sets the range itself, in the same transaction)."""
    from dsa110_contimg.store import bulk

    ids = np.asarray(source_ids, np.int64)
    if ids.size:          # the terms of source_id_range_values, one driver-level statement
        lo, hi = int(ids.min()), int(ids.max())
        bulk.execute(conn, "UPDATE images SET source_id_min = CASE WHEN source_id_min > ? THEN ? "
                           "ELSE source_id_min END, source_id_max = CASE WHEN source_id_max < ? "
                           "THEN ? ELSE source_id_max END WHERE id = ?",
                     (lo, lo, hi, hi, int(image_id)))


def _to_db_list(arr: np.ndarray) -> list:
    """numpy -> python values with NaN as None (SQL NULL)."""
    if arr.dtype.kind == "f":
        from dsa110_contimg.store import bulk

        return bulk.nullable(arr)
    return arr.tolist()


def set_image_fields(conn: Connection, image_id: int, **values: Any) -> None:
    """Update columns of one image row (JSON-encoding lists and dicts)."""
    from dsa110_contimg.store import bulk

    unknown = set(values) - set(images.c.keys())
    if unknown:
        raise KeyError(f"images has no column {sorted(unknown)[0]!r}")
    enc = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in values.items()}
    bulk.execute(conn, f"UPDATE images SET {', '.join(f'{k} = ?' for k in enc)} WHERE id = ?",
                 (*enc.values(), int(image_id)))


def image_id_by_path(conn: Connection, path: str | Path) -> int | None:
    """``images.id`` of the image stored under ``path`` (its database form), or None."""
    from dsa110_contimg.store import bulk

    r = bulk.rows(conn, "SELECT id FROM images WHERE path = ?", (str(path),))
    return None if not r else int(r[0].id)


def image_by_path(conn: Connection, path: str | Path) -> dict | None:
    row = conn.execute(sa.select(images).where(images.c.path == str(path))).mappings().first()
    return None if row is None else dict(row)


def replace_source_measurements(conn: Connection, image_id: int, source_ids,
                                columns: Mapping[str, np.ndarray], norm_flux, norm_err) -> None:
    """Replace the measurements of some sources on one image (backward and on-request
    forced photometry), keeping the image's other rows and its row count in step."""
    from dsa110_contimg.store import bulk

    sid = [int(s) for s in source_ids]
    if not sid:
        return
    for start in range(0, len(sid), bulk.CHUNK):
        conn.execute(measurements.delete().where(measurements.c.image_id == int(image_id),
                                                 measurements.c.source_id.in_(sid[start:start + bulk.CHUNK])))
    cols = {k: _to_db_list(np.asarray(columns[k])) for k in MEASUREMENT_COLUMNS}
    cols["success"] = [bool(v) for v in cols["success"]]
    n = len(sid)
    rows = list(zip([int(image_id)] * n, sid, *(cols[k] for k in MEASUREMENT_COLUMNS),
                    bulk.nullable(norm_flux), bulk.nullable(norm_err)))
    bulk.executemany(conn, bulk.insert_sql("measurements", ("image_id", "source_id")
                                           + MEASUREMENT_COLUMNS
                                           + ("norm_flux_jyb", "norm_err_jyb")), rows)
    count = conn.execute(sa.select(sa.func.count()).select_from(measurements).where(
        measurements.c.image_id == int(image_id))).scalar()
    conn.execute(images.update().where(images.c.id == int(image_id)).values(
        n_sources=int(count), **source_id_range_values(sid), **BUMP))


def image_source_ids(conn: Connection, image_ids: Sequence[int]) -> set[int]:
    """``sources.id`` of every measurement of the images ``image_ids``."""
    from dsa110_contimg.store import bulk

    return {int(r[0]) for r in bulk.fetch_in(
        conn, "SELECT DISTINCT source_id FROM measurements WHERE image_id IN ({in})",
        [int(i) for i in image_ids])}
