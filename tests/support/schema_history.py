"""Databases as every earlier release left them, for the schema upgrade tests.

:data:`SEEDS` holds, per history and revision, the rows that revision's code writes;
:func:`build` makes a database at a revision by migrating step by step from the first one
(:func:`build_each` yields at every revision, so one pass gives each revision's database),
writing each revision's rows with the schema as it was then, in the version table that
release used (:data:`LEGACY_UNTIL`). :data:`CHECKS` verify data a migration moves.

Adding a migration: add the rows its code writes to ``SEEDS`` (``tests/store/test_migrate.py``
fails while a revision has none) and, when it moves data, a check to ``CHECKS``.
"""

from __future__ import annotations

import sqlalchemy as sa

from dsa110_contimg.store.migrate import (
    LEGACY_VERSION_TABLE,
    VERSION_TABLES,
    _foreign_keys_deferred,
    alembic_config,
    revisions,
    upgrade,
)

#: The last revision of each history written by releases that kept it in ``alembic_version``.
LEGACY_UNTIL = {"products": "0007", "registry": "0001"}
T0 = 1_700_000_000.0


def put(conn, table: str, **values) -> None:
    """Insert one row into ``table`` as the schema is at the current revision."""
    reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
    conn.execute(reflected.insert().values(**values))


def _job(conn, job_id: int, status: str, **extra) -> None:
    put(conn, "batch_jobs", id=job_id, type="photometry", status=status, origin="daemon",
        idempotency_key=f"/img/{job_id}.fits:1:{job_id}", params="{}", total_items=1,
        completed_items=int(status == "done"), failed_items=int(status in ("failed", "dead")),
        attempts=1, max_attempts=3, not_before=0.0, created_at=T0, updated_at=T0,
        finished_at=None if status in ("pending", "running") else T0, **extra)
    put(conn, "batch_job_items", id=job_id, batch_id=job_id, fits_path=f"/img/{job_id}.fits",
        kind="image", status={"dead": "failed"}.get(status, status))


def _image(conn, image_id: int, **extra) -> None:
    put(conn, "images", id=image_id, path=f"/img/{image_id}.fits", content_id=f"1:{image_id}:abc",
        kind="image", mjd=60000.0 + image_id, ra_center_deg=150.0, dec_center_deg=37.0,
        radius_deg=1.0, method="forced", catalog="nvss", n_sources=2, n_success=2,
        qc_status="passed", norm_status="ok", norm_factor=1.01, measured_at=T0, **extra)


def _measure(conn, image_id: int, source_ids, *, copies: bool = True) -> None:
    """Measurements of ``source_ids`` on image ``image_id``; ``copies``: with the epoch and SNR
    columns the schema held up to 0022."""
    for sid in source_ids:
        extra = {"mjd": 60000.0 + image_id, "snr": 10.0 * sid} if copies else {}
        put(conn, "measurements", image_id=image_id, source_id=sid, ra_deg=150.0, dec_deg=37.0,
            x_pix=10.0 * sid, y_pix=20.0, peak_jyb=0.01 * sid, peak_err_jyb=1e-3,
            local_rms_jyb=9e-4, chi2=1.5, dof=8, cluster_id=sid, flags=0, success=True,
            norm_flux_jyb=0.0101 * sid, norm_err_jyb=1e-3, **extra)


def seed_products_0001(conn) -> None:
    for sid in (1, 2):
        put(conn, "sources", id=sid, survey="nvss", catalog_id=f"NVSS J1000{sid:02d}+370000",
            ra_deg=150.0 + sid * 0.01, dec_deg=37.0, catalog_flux_mjy=10.0 * sid, reference_ok=True)
    _image(conn, 1, field_key="150.0:37.0")
    _measure(conn, 1, (1, 2))
    _job(conn, 1, "done")
    _job(conn, 2, "running", error="cancel requested", lease_owner="h:1:a", lease_until=T0 + 60)
    put(conn, "files", path="/img/1.fits", size=1, mtime_ns=1, kind="image", decision="queued",
        batch_id=1, first_seen=T0, updated_at=T0)
    put(conn, "heartbeats", owner="h:1:a", host="h", pid=1, started_at=T0, beat_at=T0, workers=2,
        state="stopped")
    put(conn, "reference_baselines", source_id=1, method="catalogue", baseline_jyb=0.01, n_points=10,
        valid=True, updated_at=T0)
    put(conn, "variability_stats", source_id=1, flux_kind="normalized", n=1, sum_w=1.0,
        updated_at=T0)
    put(conn, "ese_candidates", source_id=2, status="active", flagged_by="auto", criteria="[]",
        score=3.0, confidence="low", first_flagged_at=T0, updated_at=T0)


def seed_products_0002(conn) -> None:
    _job(conn, 3, "cancelled", cancel_requested=True, interruptions=2)
    put(conn, "heartbeats", owner="h:2:b", host="h", pid=2, started_at=T0, beat_at=T0, workers=1,
        state="running", node="node-b")


def seed_products_0003(conn) -> None:
    _image(conn, 2, field_key="150.0:37.0", norm_method="ensemble")
    _measure(conn, 2, (1, 2))
    put(conn, "reference_choices", image_id=2, source_id=1, chosen=True, compactness="compact",
        snr=50.0, reason="compact, isolated")


def seed_products_0004(conn) -> None:
    put(conn, "files", path="/img/big.fits", size=5 * 2**32, mtime_ns=1_700_000_000_123_456_789,
        decision="skipped", reason="residual", first_seen=T0, updated_at=T0)


def seed_products_0005(conn) -> None:
    _image(conn, 3)
    _measure(conn, 3, (1,))
    _job(conn, 4, "failed", error="corrupt FITS")


def seed_products_0006(conn) -> None:
    put(conn, "ese_candidates", source_id=1, status="investigated", flagged_by="auto",
        criteria='["shape"]', score=6.5, confidence="medium", depth=0.4, duration_days=30.0,
        t_min_mjd=60002.0, template="gaussian", baseline_jyb=0.01, caustic_amp=0.02,
        first_flagged_at=T0, updated_at=T0)


def seed_products_0007(conn) -> None:
    put(conn, "sources", id=3, survey="blind", catalog_id="DSA J100012+370000", ra_deg=150.05,
        dec_deg=37.0, reference_ok=False, kind="new")
    put(conn, "source_detections", source_id=3, wm_ra_deg=150.05, wm_dec_deg=37.0, w_ra=1.0,
        w_dec=1.0, n_detections=1, first_detected_mjd=60003.0, last_detected_mjd=60003.0,
        updated_at=T0)
    put(conn, "detections", image_id=3, source_id=3, mjd=60003.0, ra_deg=150.05, dec_deg=37.0,
        peak_jyb=0.05, flags=0, status="new_source", n_candidates=0)
    put(conn, "image_depths", image_id=3, rms_min_jyb=1e-3, rms_max_jyb=2e-3, footprint=b"\x00\x01",
        n_detections=1)
    put(conn, "new_sources", source_id=3, image_id=3, mjd=60003.0, peak_jyb=0.05,
        new_high_sigma=12.0, likely_transient=True, n_earlier_images=2, backfill_job_id=4,
        created_at=T0)


def seed_products_0008(conn) -> None:
    _job(conn, 5, "dead", error="disk full", acknowledged_at=T0)


def seed_products_0009(conn) -> None:
    put(conn, "ese_candidates", id=10, source_id=3, status="investigated", flagged_by="auto",
        criteria='["shape"]', score=8.0, confidence="high", first_flagged_at=T0, updated_at=T0 + 1)
    put(conn, "review_log", candidate_id=10, created_at=T0, reviewer="pipeline", action="flagged",
        status="active", note="criteria: shape")
    put(conn, "review_log", candidate_id=10, created_at=T0 + 1, reviewer="alice", action="investigating",
        status="investigated", note="follow up")


def seed_products_0010(conn) -> None:
    put(conn, "variability_stats", source_id=2, flux_kind="normalized", n=4, v=0.05, eta=2.0,
        weighted_mean=0.02, updated_at=T0)


def seed_products_0011(conn) -> None:
    put(conn, "alerts", id=1, key="ese_candidate-" + "0" * 32, dedupe_key="ese_candidate:1:new",
        event="ese_candidate", source_id=1, image_id=3, significance=6.5,
        payload='{"event": "ese_candidate"}', created_at=T0, fanned_out_at=T0)
    put(conn, "alert_destinations", destination="voevent:/spool", kind="voevent", failures=0,
        next_attempt_at=0.0, window_start=0.0, window_sent=0)
    put(conn, "alert_deliveries", alert_id=1, destination="voevent:/spool", kind="voevent",
        state="sent", attempts=1, sent_at=T0, updated_at=T0)


def seed_products_0012(conn) -> None:
    _image(conn, 12, data_digest="100:" + "a" * 40, excluded=True, excluded_reason="bad gain",
           excluded_at=T0)
    put(conn, "images", id=13, path="/img/13-copy.fits", content_id="1:13:abc", kind="image",
        mjd=60012.0, ra_center_deg=150.0, dec_center_deg=37.0, radius_deg=1.0, method="forced",
        catalog="nvss", n_sources=0, n_success=0, qc_status="pending", norm_status="not_requested",
        measured_at=T0, data_digest="100:" + "a" * 40, duplicate_of=12, excluded=False)


def seed_products_0013(conn) -> None:
    put(conn, "reference_choices", image_id=3, source_id=2, chosen=False, compactness="compact",
        snr=80.0, reason="clipped: ratio 1.0800", role="clipped", ratio=1.08)


def seed_products_0014(conn) -> None:
    put(conn, "sources", id=4, survey="nvss", catalog_id="NVSS J100024+370000", ra_deg=150.1,
        dec_deg=37.0, reference_ok=False)
    put(conn, "ese_candidates", id=11, source_id=4, status="active", flagged_by="auto",
        criteria='["shape"]', score=7.0, confidence="high", first_flagged_at=T0, updated_at=T0,
        stage="dip_in_progress", stage_changed_at=T0)
    put(conn, "ese_stage_history", candidate_id=11, created_at=T0, stage="dip_in_progress",
        previous_stage=None, significance=9.5, mjd=60003.0, image_id=3)


def seed_products_0015(conn) -> None:
    _job(conn, 13, "done")
    _image(conn, 14, norm_method="ensemble")


def seed_products_0016(conn) -> None:
    _image(conn, 15)


def seed_products_0017(conn) -> None:
    put(conn, "sources", id=5, survey="nvss", catalog_id="NVSS J235948+300000", ra_deg=359.95,
        dec_deg=30.0, reference_ok=False)


def seed_products_0018(conn) -> None:
    # counted by the triggers: a job through its states, an image excluded after insert
    _job(conn, 14, "pending")
    conn.execute(sa.text("UPDATE batch_jobs SET status = 'failed', finished_at = :t WHERE id = 14"),
                 {"t": T0})
    conn.execute(sa.text("UPDATE batch_jobs SET acknowledged_at = :t WHERE id = 14"), {"t": T0})
    _image(conn, 16)
    conn.execute(sa.text("UPDATE images SET norm_status = 'failed', norm_reason = 'too few "
                         "references: 2 < 3', excluded = :x, excluded_reason = 'bad epoch' "
                         "WHERE id = 16"), {"x": True})


def seed_products_0019(conn) -> None:
    _job(conn, 15, "dead")       # a failure no operator acknowledged


def seed_products_0020(conn) -> None:
    put(conn, "sources", id=6, survey="nvss", catalog_id="NVSS J100036+370000", ra_deg=150.15,
        dec_deg=37.0, reference_ok=False)
    put(conn, "ese_candidates", id=12, source_id=6, status="active", flagged_by="auto",
        criteria='["shape"]', score=6.0, confidence="medium", first_flagged_at=T0, updated_at=T0,
        sparkline='{"mjd":[60001.0,60002.0,60003.0],"flux":[0.01,0.007,0.01]}')


def seed_products_0021(conn) -> None:
    put(conn, "sources", id=7, survey="dsa110", catalog_id="DSA J100000+370000", ra_deg=150.0,
        dec_deg=37.0, reference_ok=False, kind="blind")
    conn.execute(sa.text("UPDATE sources SET kind = 'new' WHERE id = 7"))
    put(conn, "alerts", id=3, key="new_source-" + "2" * 32, dedupe_key="new_source:7:x",
        event="new_source", source_id=7, payload="{}", created_at=T0)
    put(conn, "alert_deliveries", alert_id=3, destination="voevent:/spool", kind="voevent",
        state="pending", attempts=0, updated_at=T0)
    conn.execute(sa.text("UPDATE alert_deliveries SET state = 'failed' WHERE alert_id = 3"))


def seed_products_0022(conn) -> None:
    put(conn, "variability_stats", source_id=3, flux_kind="normalized", n=6, v=0.08, eta=3.0,
        weighted_mean=0.03, sigma_deviation=2.5, updated_at=T0)


def seed_products_0023(conn) -> None:
    _image(conn, 17)
    _measure(conn, 17, (1, 2), copies=False)
    put(conn, "measurements", image_id=17, source_id=3, ra_deg=150.0, dec_deg=37.0,
        peak_jyb=None, peak_err_jyb=None, flags=8, success=False)


def seed_products_0024(conn) -> None:
    _image(conn, 18, rows_version=3)
    _measure(conn, 18, (1, 2), copies=False)


def seed_products_0025(conn) -> None:
    _image(conn, 19, rows_version=1)
    _measure(conn, 19, (1, 2), copies=False)


def seed_products_0026(conn) -> None:
    _image(conn, 20, source_id_min=1, source_id_max=3, rows_version=1)
    _measure(conn, 20, (1, 3), copies=False)


def seed_products_0027(conn) -> None:
    put(conn, "sources", id=8, survey="nvss", catalog_id="NVSS J100048+370000", ra_deg=150.2,
        dec_deg=37.0, catalog_flux_mjy=40.0, reference_ok=True)
    put(conn, "variability_stats", source_id=8, flux_kind="normalized", n=7, v=0.09, eta=-0.0,
        weighted_mean=0.04, eta_key=0, v_key=16311, weighted_mean_key=16292, n_key=16412,
        updated_at=T0)


def seed_products_0028(conn) -> None:
    put(conn, "sources", id=9, survey="nvss", catalog_id="NVSS J100036+371000", ra_deg=150.15,
        dec_deg=37.17, reference_ok=False)
    put(conn, "ese_candidates", id=13, source_id=9, status="active", flagged_by="auto",
        criteria='["shape"]', score=4.0, confidence="high", first_flagged_at=T0, updated_at=T0,
        stage="confirmed", stage_changed_at=T0)


def seed_registry_0001(conn) -> None:
    put(conn, "data_products", data_id="img-1", data_type="image", path="/img/1.fits",
        status="registered", photometry_status="completed", photometry_job_id="1",
        created_at=T0, updated_at=T0)


#: The data each revision's code writes, by history and revision.
SEEDS = {
    "products": {"0001": seed_products_0001, "0002": seed_products_0002, "0003": seed_products_0003,
                 "0004": seed_products_0004, "0005": seed_products_0005, "0006": seed_products_0006,
                 "0007": seed_products_0007, "0008": seed_products_0008, "0009": seed_products_0009,
                 "0010": seed_products_0010, "0011": seed_products_0011,
                 "0012": seed_products_0012, "0013": seed_products_0013,
                 "0014": seed_products_0014, "0015": seed_products_0015,
                 "0016": seed_products_0016, "0017": seed_products_0017,
                 "0018": seed_products_0018, "0019": seed_products_0019,
                 "0020": seed_products_0020, "0021": seed_products_0021,
                 "0022": seed_products_0022, "0023": seed_products_0023,
                 "0024": seed_products_0024, "0025": seed_products_0025,
                 "0026": seed_products_0026, "0027": seed_products_0027,
                 "0028": seed_products_0028},
    "registry": {"0001": seed_registry_0001},
}


def check_cancel_carried_over(conn, start: str) -> None:
    """0002 turned the running job's ``error = 'cancel requested'`` into the flag."""
    flag = conn.execute(sa.text("SELECT cancel_requested FROM batch_jobs WHERE id = 2")).scalar()
    assert bool(flag) is True


def check_candidates_have_their_flagging(conn, start: str) -> None:
    """0009 started each candidate's review log with the pipeline's flagging; only the
    pipeline creates candidates, so ``flagged_by`` is ``auto`` again everywhere."""
    flagged = conn.execute(sa.text("SELECT c.id FROM ese_candidates c JOIN review_log r ON r.candidate_id = c.id "
                                   "AND r.action = 'flagged' AND r.reviewer = 'pipeline'")).scalars().all()
    everyone = conn.execute(sa.text("SELECT id FROM ese_candidates")).scalars().all()
    assert sorted(flagged) == sorted(everyone)
    assert {r[0] for r in conn.execute(sa.text("SELECT flagged_by FROM ese_candidates"))} <= {"auto"}


def check_cones_find_rows_written_before_the_zone_indexes(conn, start: str) -> None:
    """0017 indexed the positions by RA zone: every source and image written before it is
    found by a cone around its own position."""
    from dsa110_contimg.store.schema import images, sources
    from dsa110_contimg.store.sky import cone_box

    for table, ra, dec in ((sources, "ra_deg", "dec_deg"),
                           (images, "ra_center_deg", "dec_center_deg")):
        rows = conn.execute(sa.select(table.c.id, table.c[ra], table.c[dec])
                            .where(table.c[ra].is_not(None))).all()
        assert rows, table.name
        for r in rows:
            found = conn.execute(sa.select(table.c.id).where(*cone_box(
                table.c[ra], table.c[dec], r[1], r[2], 0.01))).scalars().all()
            assert r.id in found, (table.name, r)


def check_status_counters_backfilled(conn, start: str) -> None:
    """0018 counted the rows written before it: the maintained counters equal the GROUP BY
    counts of every table they count."""
    import time

    from status_truth import check_counters_match

    check_counters_match(conn, time.time())


def check_measurements_kept_their_values(conn, start: str) -> None:
    """0023 rebuilt the measurements without their copied epoch and SNR: every row keeps its
    values, its epoch is its image's and its SNR (computed on read) is the one stored before."""
    from dsa110_contimg.store.schema import images, measurements, snr_column

    m = measurements.c
    rows = conn.execute(sa.select(m.image_id, m.source_id, images.c.mjd, snr_column(), m.x_pix,
                                  m.peak_jyb, m.peak_err_jyb, m.local_rms_jyb, m.chi2, m.dof,
                                  m.cluster_id, m.flags, m.success, m.norm_flux_jyb,
                                  m.norm_err_jyb)
                        .join(images, images.c.id == m.image_id)).all()
    assert rows
    for r in rows:
        assert r.mjd == 60000.0 + r.image_id
        if r.peak_jyb is None:       # a failed measurement: no SNR
            assert r.snr is None and not r.success
            continue
        assert r.peak_jyb == 0.01 * r.source_id and r.snr == r.peak_jyb / r.peak_err_jyb
        assert (r.x_pix, r.peak_err_jyb, r.local_rms_jyb, r.chi2, r.dof, r.cluster_id, r.flags,
                bool(r.success), r.norm_flux_jyb, r.norm_err_jyb) == \
            (10.0 * r.source_id, 1e-3, 9e-4, 1.5, 8, r.source_id, 0, True,
             0.0101 * r.source_id, 1e-3)


def check_source_id_ranges_filled(conn, start: str) -> None:
    """0026 recorded each image's range of source ids: that of its measurement rows (NULL for
    an image without rows)."""
    rows = conn.execute(sa.text(
        "SELECT i.id, i.source_id_min, i.source_id_max, min(m.source_id), max(m.source_id) "
        "FROM images i LEFT JOIN measurements m ON m.image_id = i.id "
        "GROUP BY i.id, i.source_id_min, i.source_id_max")).all()
    assert rows and any(r[1] is not None for r in rows)
    for r in rows:
        assert (r[1], r[2]) == (r[3], r[4]), r


def check_rank_keys_filled(conn, start: str) -> None:
    """0027 keyed every row's ranked metrics: each key is that of its value (NULL for NULL)."""
    from dsa110_contimg.store.rank_keys import KEY_COLUMNS, key_of

    rows = conn.execute(sa.text("SELECT " + ", ".join(f"{m}, {k}" for m, k in KEY_COLUMNS.items())
                                + " FROM variability_stats")).all()
    assert rows
    for r in rows:
        assert [r[2 * j + 1] for j in range(len(KEY_COLUMNS))] == \
            [key_of(r[2 * j]) for j in range(len(KEY_COLUMNS))], r


#: Checks of data a migration moves, run when a database started before that revision.
CHECKS = {"products": {"0002": check_cancel_carried_over, "0009": check_candidates_have_their_flagging,
                       "0017": check_cones_find_rows_written_before_the_zone_indexes,
                       "0018": check_status_counters_backfilled,
                       "0021": check_status_counters_backfilled,
                       "0023": check_measurements_kept_their_values,
                       "0026": check_source_id_ranges_filled,
                       "0027": check_rank_keys_filled},
          "registry": {}}


def build_each(engine, which: str):
    """The database as the releases of each revision left it, revision after revision:
    every revision's data written by its own code, in the version table it used. Yields
    each revision once its data is written (the database is then what :func:`build` makes
    for that revision); the engine's pooled connections are closed at each yield, so the
    database can be copied."""
    from alembic import command

    legacy = list(revisions(which)).index(LEGACY_UNTIL[which])
    for i, rev in enumerate(revisions(which)):
        if i <= legacy:
            cfg = alembic_config(which)
            cfg.attributes["version_table"] = LEGACY_VERSION_TABLE
            # as those releases migrated: SQLite's foreign keys off, or a rebuilt parent
            # table (0007 rebuilds sources) would take its children's rows with it
            with engine.connect() as conn, _foreign_keys_deferred(conn), conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, rev)
        else:
            upgrade(engine, which, rev)
        with engine.begin() as conn:
            SEEDS[which][rev](conn)
        engine.dispose()
        yield rev


def build(engine, which: str, until: str) -> None:
    """The database as the releases of each revision up to ``until`` left it (see
    :func:`build_each`)."""
    for rev in build_each(engine, which):
        if rev == until:
            return


#: Tables keyed by other columns than their primary key in :func:`snapshot`: their natural key,
#: which a migration may have made the primary key.
NATURAL_KEYS = {"measurements": ("image_id", "source_id")}

#: Tables the database maintains itself (the status counters' base and deltas: a migration
#: that counts another table adds to them); checked against the rows by
#: :func:`check_status_counters_backfilled` instead.
DERIVED = ("status_counts", "status_count_deltas")


def snapshot(conn) -> dict[str, set]:
    """Every table's primary keys (version tables and :data:`DERIVED` tables left out)."""
    insp = sa.inspect(conn)
    out = {}
    for name in insp.get_table_names():
        if name in VERSION_TABLES.values() or name == LEGACY_VERSION_TABLE or name in DERIVED:
            continue
        pk = NATURAL_KEYS.get(name) or insp.get_pk_constraint(name)["constrained_columns"]
        cols = ", ".join(pk)
        out[name] = {tuple(r) for r in conn.execute(sa.text(f"SELECT {cols} FROM {name}"))}
    return out
