"""SQLAlchemy Core schema of the products database and the data registry.

Two databases, two :class:`~sqlalchemy.MetaData` objects:

``products_metadata``
    images, catalogue sources, measurements (one row per image x source),
    batch jobs (the durable job queue) and their items, files seen by the
    watcher, daemon heartbeats, normalisation baselines, variability
    statistics (running sums), ESE candidates and their review log, and the alert outbox
    (alerts, their deliveries per destination and each destination's sending state).
``registry_metadata``
    data products and their photometry status.

Units: fluxes in Jy/beam unless the column name ends in ``_mjy``; angles in
degrees unless ``_arcsec``; epochs in MJD (UTC); wall-clock timestamps are
Unix seconds (``*_at`` columns, REAL).

The tables are created and changed only through the Alembic migrations in
:mod:`dsa110_contimg.store.migrations`; this module is their single source of
truth (a test checks that the migrated schema matches it).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger,
    Boolean, CheckConstraint, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table,
    Text, UniqueConstraint,
)

from dsa110_contimg.core.enums import QC_STATES  # noqa: F401 - image QC states, re-exported
from dsa110_contimg.store.sky import ra_zone

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

products_metadata = MetaData(naming_convention=NAMING)
registry_metadata = MetaData(naming_convention=NAMING)

#: Batch job states (the durable queue). ``dead``: retries exhausted.
JOB_STATES = ("pending", "running", "done", "failed", "dead", "cancelled")
#: Batch job item states.
ITEM_STATES = ("pending", "running", "done", "failed", "cancelled")
#: Per-image normalisation states.
NORM_STATES = ("not_requested", "ok", "failed")
#: ESE candidate lifecycle.
ESE_STATES = ("active", "investigated", "dismissed")
#: What a source is: from the deployment's catalogue, a monitor list, or found by blind
#: detection (``new``: passed the new-source test; ``blind``: in no catalogue but not new,
#: e.g. seen on its first visit).
SOURCE_KINDS = ("catalogue", "monitor", "new", "blind")
#: What became of a blind detection (docs/science.md §16, §18).
DETECTION_STATES = ("associated", "duplicate", "new_source", "blind_source", "rejected")
#: What a review-log entry records: the pipeline flagging a candidate, or a review action.
#: The stages of an ESE candidate while the event happens (science/ese_stage.py), most
#: actionable first; a candidate flagged by thresholds only has no stage (NULL).
ESE_STAGES = ("confirmed", "recovering", "dip_in_progress", "retired")
REVIEW_LOG_ACTIONS = ("flagged", "investigating", "dismissed", "reactivated")
#: Delivery states of an alert at one destination (``sent`` includes an alert sent inside a
#: rate-limit summary, whose key is then in ``summary_key``).
DELIVERY_STATES = ("pending", "sent", "failed")
#: Kinds of alert destination.
DESTINATION_KINDS = ("webhook", "voevent")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


images = Table(
    "images", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False, unique=True),
    Column("content_id", String(80), nullable=False, doc="size:mtime_ns:sha1(header) of the measured file"),
    Column("kind", String(16), nullable=False),
    Column("data_id", Text),
    Column("mjd", Float, doc="observation epoch, MJD (from MJD-OBS / DATE-OBS)"),
    Column("freq_hz", Float),
    Column("beam_major_arcsec", Float),
    Column("beam_minor_arcsec", Float),
    Column("beam_pa_deg", Float),
    Column("beam_source", String(16), doc="header | history | config | none"),
    Column("ra_center_deg", Float),
    Column("dec_center_deg", Float),
    Column("radius_deg", Float, doc="centre-to-corner radius of the pixel footprint"),
    Column("median_rms_jyb", Float),
    Column("method", String(16), nullable=False),
    Column("catalog", String(16), nullable=False),
    Column("n_sources", Integer, nullable=False, default=0),
    Column("n_success", Integer, nullable=False, default=0),
    Column("qc_status", String(16), nullable=False, default="pending"),
    Column("qc_reasons", Text, doc="JSON list of strings"),
    Column("qc_metrics", Text, doc="JSON object"),
    Column("norm_status", String(16), nullable=False, default="not_requested"),
    Column("norm_factor", Float),
    Column("norm_factor_err", Float),
    Column("norm_scatter", Float),
    Column("norm_n_refs", Integer),
    Column("norm_reason", Text),
    Column("norm_ref_ids", Text, doc="JSON list of sources.id chosen as reference candidates"),
    Column("norm_used_ids", Text, doc="JSON list of sources.id whose ratio entered the correction"),
    Column("norm_method", String(16),
           doc="catalogue (compact catalogue references) | ensemble (self-observed steady sources)"),
    Column("notes", Text, doc="JSON list of workflow notes (beam fallbacks, method changes)"),
    Column("measured_at", Float, nullable=False),
    Column("rows_version", Integer, nullable=False, default=0, server_default="0",
           doc="bumped by every write that changes the image's measurement rows once stored "
               "(store/row_cache.py)"),
    Column("source_id_min", Integer,
           doc="smallest sources.id among the image's measurement rows, or NULL when not known "
               "(then the image may hold any source): with source_id_max, the light-curve reads "
               "of one source skip the images whose range leaves it out"),
    Column("source_id_max", Integer, doc="largest sources.id among its measurement rows, or NULL"),
    Column("data_digest", String(64),
           doc="size:sha1 of the header and sampled data blocks: the data, whatever its name"),
    Column("duplicate_of", Integer,
           doc="images.id holding the same data under another path; this row has no "
               "measurements and is no epoch"),
    Column("excluded", Boolean, nullable=False, default=False, server_default=sa.false(),
           doc="taken out of light curves, normalisation, variability and ESE by an operator"),
    Column("excluded_reason", Text),
    Column("excluded_at", Float),
    CheckConstraint(_in("kind", ("image", "mosaic")), name="kind"),
    CheckConstraint(_in("qc_status", QC_STATES), name="qc_status"),
    CheckConstraint(_in("norm_status", NORM_STATES), name="norm_status"),
    Index(None, "mjd"),
    Index(None, "ra_center_deg"),
    Index(None, "dec_center_deg"),
    Index(None, "radius_deg"),
    Index(None, "data_digest"),
    # the status counts (by QC verdict, the measurement total, by normalisation outcome) read
    # these narrow indexes, not the wide rows
    Index(None, "qc_status", "n_sources"),
    Index(None, "norm_status", "norm_method"),
    Index(None, "excluded", "excluded_at"),
    Index(None, "duplicate_of"),
    Index(None, "measured_at", "id"),   # images list: newest measured first, a page at a time
    Index(None, "qc_status", "measured_at"),   # the latest QC failures
)

sources = Table(
    "sources", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("survey", String(16), nullable=False),
    Column("catalog_id", Text, nullable=False, doc="the survey's own name, e.g. 'NVSS J123456+123456'"),
    Column("ra_deg", Float, nullable=False),
    Column("dec_deg", Float, nullable=False),
    Column("catalog_flux_mjy", Float),
    Column("reference_ok", Boolean, nullable=False, default=False,
           doc="master-list reference quality (compact, isolated, unconfused)"),
    Column("kind", String(16), nullable=False, default="catalogue", server_default="catalogue",
           doc="catalogue | monitor | new | blind (SOURCE_KINDS)"),
    UniqueConstraint("survey", "catalog_id"),
    CheckConstraint(_in("kind", SOURCE_KINDS), name="kind"),
    Index(None, "dec_deg", "ra_deg"),
    Index(None, "kind"),
    Index(None, "catalog_id"),
)

# positions are found through RA zone, Dec, RA (store/sky.py: a cone reads its own box); the
# images' index also holds their source-id range, so that one source's light curve leaves out
# the images of its cone that cannot hold it from the index alone (store/lightcurves.py)
Index("ix_images_ra_zone", ra_zone(images.c.ra_center_deg), images.c.dec_center_deg,
      images.c.ra_center_deg, images.c.source_id_min, images.c.source_id_max)
Index("ix_sources_ra_zone", ra_zone(sources.c.ra_deg), sources.c.dec_deg, sources.c.ra_deg)

#: Per source, its blind detections so far: running inverse-variance weighted-mean position
#: (docs/science.md §16; weights 1/sigma^2 in arcsec^-2) and detection counts.
source_detections = Table(
    "source_detections", products_metadata,
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("wm_ra_deg", Float, nullable=False),
    Column("wm_dec_deg", Float, nullable=False),
    Column("w_ra", Float, nullable=False, doc="sum of 1/sigma_ra^2, arcsec^-2"),
    Column("w_dec", Float, nullable=False, doc="sum of 1/sigma_dec^2, arcsec^-2"),
    Column("n_detections", Integer, nullable=False, default=0),
    Column("first_detected_mjd", Float),
    Column("last_detected_mjd", Float),
    Column("updated_at", Float, nullable=False),
)

#: Blind detections of each image and what became of them (every association is a row).
detections = Table(
    "detections", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="SET NULL"),
           doc="the source this detection feeds (associated, new_source, blind_source)"),
    Column("mjd", Float),
    Column("ra_deg", Float, nullable=False),
    Column("dec_deg", Float, nullable=False),
    Column("ra_err_arcsec", Float),
    Column("dec_err_arcsec", Float),
    Column("x_pix", Float),
    Column("y_pix", Float),
    Column("peak_jyb", Float),
    Column("peak_err_jyb", Float),
    Column("local_rms_jyb", Float),
    Column("snr", Float),
    Column("island_id", Integer),
    Column("n_components", Integer),
    Column("flags", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False, doc="DETECTION_STATES"),
    Column("de_ruiter_r", Float, doc="de Ruiter radius of the association (or of the duplicate)"),
    Column("n_candidates", Integer, nullable=False, default=0,
           doc="known sources within the de Ruiter limit"),
    Column("related_source_id", Integer, ForeignKey("sources.id", ondelete="SET NULL"),
           doc="duplicate: the source a closer detection took; artefact: the bright source"),
    Column("reason", Text),
    CheckConstraint(_in("status", DETECTION_STATES), name="status"),
    # read per image, and per source through the images near it (as measurements)
    Index(None, "image_id"),
)

#: Per image, its depth for later new-source tests (science/footprint.py), so no FITS file
#: is read again.
image_depths = Table(
    "image_depths", products_metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("rms_min_jyb", Float),
    Column("rms_max_jyb", Float),
    Column("footprint", sa.LargeBinary, nullable=False, doc="NoiseFootprint.to_bytes()"),
    Column("n_detections", Integer, nullable=False, default=0),
    Index(None, "rms_min_jyb"),
    Index(None, "n_detections"),   # the detection total, without reading the footprints
)

#: Sources that passed the new-source test: where a new source is recorded (in the
#: transaction of the image that found it).
new_sources = Table(
    "new_sources", products_metadata,
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False,
           doc="the image of its first detection"),
    Column("mjd", Float, doc="epoch of the first detection, MJD"),
    Column("peak_jyb", Float, nullable=False),
    Column("peak_err_jyb", Float),
    Column("new_high_sigma", Float, nullable=False,
           doc="largest peak / rms at the position over the earlier covering images"),
    Column("sigma_image_id", Integer, ForeignKey("images.id", ondelete="SET NULL"),
           doc="the earlier image new_high_sigma refers to"),
    Column("sigma_rms_min", Float, doc="peak / the lowest rms_min of the covering images"),
    Column("likely_transient", Boolean, nullable=False, default=False),
    Column("n_earlier_images", Integer, nullable=False, default=0),
    Column("backfill_job_id", Integer, ForeignKey("batch_jobs.id", ondelete="SET NULL")),
    Column("created_at", Float, nullable=False),
    Index(None, "new_high_sigma"),
)

#: One row per image x source, keyed by (image_id, source_id): on SQLite a WITHOUT ROWID table,
#: so the key is the table's own B-tree (no rowid, no second index). The epoch is the image's
#: (``images.mjd``) and the SNR is ``peak_jyb / peak_err_jyb`` (:func:`snr_column`): neither is
#: stored per row.
measurements = Table(
    "measurements", products_metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("ra_deg", Float, nullable=False),
    Column("dec_deg", Float, nullable=False),
    Column("x_pix", Float),
    Column("y_pix", Float),
    Column("peak_jyb", Float),
    Column("peak_err_jyb", Float),
    Column("local_rms_jyb", Float),
    Column("chi2", Float),
    Column("dof", Integer),
    Column("cluster_id", Integer),
    Column("flags", Integer, nullable=False, default=0),
    Column("success", Boolean, nullable=False),
    Column("norm_flux_jyb", Float),
    Column("norm_err_jyb", Float),
    # No index led by source_id: every image would touch ~one random B-tree leaf per source,
    # and the per-image store time would grow with the table (measured 2.1x at 0.6 M rows).
    # Light curves are read through the images near the source, then the primary key.
    sqlite_with_rowid=False,
)

#: The SNR of a measurement row as SQL (``peak_jyb / peak_err_jyb``; NULL where the error is
#: zero or NULL, as the measuring methods' NaN was stored).
SNR_SQL = "CASE WHEN peak_err_jyb <> 0 THEN peak_jyb / peak_err_jyb END"


def snr_column(table=None):
    """``peak_jyb / peak_err_jyb`` of ``table`` (default :data:`measurements`) as a column
    expression labelled ``snr`` (NULL where the error is zero or NULL)."""
    t = measurements if table is None else table
    return sa.case((t.c.peak_err_jyb != 0, t.c.peak_jyb / t.c.peak_err_jyb)).label("snr")


batch_jobs = Table(
    "batch_jobs", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(32), nullable=False, default="photometry"),
    Column("status", String(16), nullable=False, default="pending"),
    Column("origin", String(16), nullable=False, default="api", doc="api | daemon | cli"),
    Column("idempotency_key", Text, unique=True, doc="path:size:mtime_ns for daemon jobs"),
    Column("data_id", Text),
    Column("params", Text, nullable=False, doc="JSON: the PhotometryConfig and call options"),
    Column("total_items", Integer, nullable=False, default=0),
    Column("completed_items", Integer, nullable=False, default=0),
    Column("failed_items", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=3),
    Column("not_before", Float, nullable=False, default=0.0),
    Column("lease_owner", Text),
    Column("lease_until", Float),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("cancel_requested", Boolean, nullable=False, default=False, server_default=sa.false(),
           doc="an operator asked to cancel the job; it never runs again"),
    Column("interruptions", Integer, nullable=False, default=0, server_default="0",
           doc="attempts interrupted by the death of the daemon holding the lease (not counted)"),
    Column("acknowledged_at", Float,
           doc="when an operator acknowledged this failed/dead job (Unix s); NULL: not yet"),
    CheckConstraint(_in("status", JOB_STATES), name="status"),
    Index(None, "status", "not_before", "id"),
    Index(None, "status", "finished_at"),   # settled in the last hour, the latest success
    Index(None, "status", "acknowledged_at", "updated_at"),   # failures not acknowledged, latest first
)

#: Maintained counts (store/counters.py): database triggers on ``images``, ``batch_jobs``,
#: ``files`` and ``image_depths`` append one delta row per change of a counted row (insert
#: only: no writer waits for a shared counter row); compaction folds them into
#: ``status_counts``. ``status`` is the row's composite key, ``hour_bucket`` the hour
#: (Unix s / 3600) a done job finished in (0 otherwise), ``total`` the summed column
#: (``images.n_sources``, ``image_depths.n_detections``).
CountTotal = BigInteger().with_variant(Integer, "sqlite")
status_count_deltas = Table(
    "status_count_deltas", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tbl", String(16), nullable=False),
    Column("status", Text, nullable=False),
    Column("hour_bucket", Integer, nullable=False),
    Column("n", Integer, nullable=False, doc="+1 a row entered the key, -1 it left"),
    Column("total", CountTotal, nullable=False),
)
status_counts = Table(
    "status_counts", products_metadata,
    Column("tbl", String(16), primary_key=True),
    Column("status", Text, primary_key=True),
    Column("hour_bucket", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("total", CountTotal, nullable=False),
)

batch_job_items = Table(
    "batch_job_items", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", Integer, ForeignKey("batch_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("fits_path", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("data_id", Text),
    Column("status", String(16), nullable=False, default="pending"),
    Column("error", Text),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="SET NULL")),
    Column("n_measurements", Integer),
    Column("started_at", Float),
    Column("completed_at", Float),
    CheckConstraint(_in("status", ITEM_STATES), name="status"),
    CheckConstraint(_in("kind", ("image", "mosaic")), name="kind"),
    Index(None, "batch_id"),
)

#: 64-bit integers (file sizes, nanosecond mtimes): BIGINT on PostgreSQL, where INTEGER is
#: 32-bit; SQLite's INTEGER is already 64-bit (migration 0002).
FileInteger = BigInteger().with_variant(Integer, "sqlite")

files = Table(
    "files", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False),
    Column("size", FileInteger, nullable=False, doc="bytes (64-bit)"),
    Column("mtime_ns", FileInteger, nullable=False, doc="ns since the epoch (64-bit)"),
    Column("kind", String(16), doc="image | mosaic | NULL when skipped"),
    Column("decision", String(16), nullable=False, doc="queued | skipped | incomplete"),
    Column("reason", Text),
    Column("batch_id", Integer, ForeignKey("batch_jobs.id", ondelete="SET NULL")),
    Column("first_seen", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("path", "size", "mtime_ns"),
    CheckConstraint(_in("decision", ("queued", "skipped", "incomplete")), name="decision"),
    Index(None, "decision"),
    # deleting a job (db prune) sets its files' batch_id to NULL: found by this index
    # instead of a scan of the whole table per job
    Index(None, "batch_id"),
)

heartbeats = Table(
    "heartbeats", products_metadata,
    Column("owner", Text, primary_key=True, doc="host:pid:uuid of a daemon"),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("beat_at", Float, nullable=False),
    Column("workers", Integer, nullable=False, default=0),
    Column("state", String(16), nullable=False, default="running", doc="running | draining | stopped"),
    Column("status_text", Text),
    Column("node", Text, doc="[daemon] node name (default the host name)"),
)

#: Per image, every bright candidate reference and why it was chosen or rejected.
reference_choices = Table(
    "reference_choices", products_metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("chosen", Boolean, nullable=False),
    Column("compactness", String(16), nullable=False, doc="compact | unknown | resolved"),
    Column("snr", Float, doc="measured SNR on the image"),
    Column("reason", Text, nullable=False),
    Column("role", String(16), doc="used | clipped | rejected | not_chosen (NULL: stored before "
                                   "the roles were recorded)"),
    Column("ratio", Float, doc="flux / baseline on this image (used and clipped references)"),
)

reference_baselines = Table(
    "reference_baselines", products_metadata,
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("method", String(16), nullable=False),
    Column("baseline_jyb", Float),
    Column("baseline_rms_jyb", Float),
    Column("n_points", Integer, nullable=False, default=0),
    Column("through_mjd", Float, doc="MJD of the latest epoch the baseline includes"),
    Column("valid", Boolean, nullable=False, default=True),
    Column("invalid_reason", Text),
    Column("updated_at", Float, nullable=False),
)

#: Running sums and derived metrics per source (see photometry.variability.RunningStats).
RUNNING_SUM_COLUMNS = (
    "sum_w", "sum_wf", "sum_wf2", "sum_f", "sum_f2", "sum_var", "min_flux", "max_flux",
    "first_mjd", "last_mjd", "last_flux", "last_err", "vs_max", "m_at_vs_max",
)
METRIC_COLUMNS = (
    "mean", "weighted_mean", "v", "eta", "chi2_nu", "p_value", "m", "m_debiased", "sigma_deviation",
)

variability_stats = Table(
    "variability_stats", products_metadata,
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("flux_kind", String(16), nullable=False, doc="normalized | raw"),
    Column("n", Integer, nullable=False, default=0),
    *[Column(name, Float) for name in RUNNING_SUM_COLUMNS],
    *[Column(name, Float) for name in METRIC_COLUMNS],
    Column("updated_at", Float, nullable=False),
    # coarse order-preserving keys of the ranked metrics (store/rank_keys.py), one index per
    # ranking of the source pages (store/sources.py METRIC_ORDERS): a key changes far less
    # often than its value, so an image's write rewrites few index entries
    *[Column(key, Integer) for key in ("eta_key", "v_key", "weighted_mean_key", "n_key")],
    Index(None, "eta_key"),
    Index(None, "v_key"),
    Index(None, "weighted_mean_key"),
    Index(None, "n_key"),
)

ese_candidates = Table(
    "ese_candidates", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("status", String(16), nullable=False, default="active"),
    Column("flagged_by", String(16), nullable=False, default="auto"),
    Column("criteria", Text, nullable=False, doc="JSON list: sigma, eta_v, shape"),
    Column("preset", String(16)),
    Column("score", Float, nullable=False, doc="composite 0-10"),
    Column("confidence", String(8), nullable=False),
    Column("sigma_deviation", Float),
    Column("chi2_nu", Float),
    Column("eta", Float),
    Column("v", Float),
    Column("shape_significance", Float),
    Column("depth", Float, doc="fractional depth of the fitted ESE dip"),
    Column("duration_days", Float),
    Column("t_min_mjd", Float),
    Column("template", Text),
    Column("baseline_jyb", Float, doc="out-of-event flux density of the fitted ESE template (Jy/beam, "
                                      "on the flux the search ran on: normalised when normalisation is on)"),
    Column("caustic_amp", Float, doc="fractional height of the fitted template's caustic brightenings"),
    Column("n_epochs", Integer),
    Column("first_flagged_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("investigated_at", Float),
    Column("dismissed_at", Float),
    Column("notes", Text),
    Column("stage", String(16), doc="dip_in_progress, recovering, confirmed, retired; NULL when "
                                    "flagged by thresholds only"),
    Column("stage_reason", Text, doc="why the stage (the reason a candidate was retired)"),
    Column("stage_changed_at", Float, doc="when the stage last changed (Unix time)"),
    Column("sparkline", Text, doc="JSON {mjd: [...], flux: [...]} (MJD, Jy/beam): the light curve the "
                                  "ESE step last evaluated, summarised to at most 60 points "
                                  "(science/sparkline.py); NULL until evaluated with its light curve"),
    CheckConstraint(_in("status", ESE_STATES), name="status"),
    CheckConstraint(_in("stage", ESE_STAGES), name="stage"),
    Index(None, "status", "score"),
)

#: Rank of an ESE candidate in every listing (``store/lightcurves.candidate_order``): by stage
#: (confirmed 0, recovering 1, dip in progress 2, retired 5), then a passed shape search (3),
#: else 4. Literal SQL, the same text in the index below and in the queries' ORDER BY, so that
#: both backends read a page of candidates from the index in order; written as PostgreSQL
#: prints it back (line breaks, ``<>``, ``replace()`` rather than ``LIKE``), so that the
#: comparison of a migrated database with this schema finds the same index.
CANDIDATE_RANK_SQL = ("CASE\nWHEN stage = 'confirmed' THEN 0\nWHEN stage = 'recovering' THEN 1\n"
                      "WHEN stage = 'dip_in_progress' THEN 2\nWHEN stage = 'retired' THEN 5\n"
                      "WHEN replace(criteria, '\"shape\"', '') <> criteria THEN 3\nELSE 4\nEND")
Index("ix_ese_candidates_rank", sa.text(f"(\n{CANDIDATE_RANK_SQL})"), ese_candidates.c.score.desc(),
      ese_candidates.c.id)

#: Append-only: one row per stage change of an ESE candidate.
ese_stage_history = Table(
    "ese_stage_history", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("candidate_id", Integer, ForeignKey("ese_candidates.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("stage", String(16), doc="the stage entered (NULL: no stage any more)"),
    Column("previous_stage", String(16)),
    Column("reason", Text),
    Column("significance", Float, doc="sigma of the fit behind the stage"),
    Column("mjd", Float, doc="latest epoch of the light curve evaluated (MJD)"),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="SET NULL")),
    CheckConstraint(_in("stage", ESE_STAGES), name="stage"),
    Index(None, "candidate_id", "created_at"),
)

review_log = Table(
    "review_log", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("candidate_id", Integer, ForeignKey("ese_candidates.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("reviewer", Text, nullable=False,
           doc="who: a reviewer's name, 'anonymous' (a single shared token), 'pipeline' (its own flagging) "
               "or the account that ran the CLI"),
    Column("action", String(16), nullable=False),
    Column("status", String(16), nullable=False, doc="the candidate's status after the action"),
    Column("note", Text),
    CheckConstraint(_in("action", REVIEW_LOG_ACTIONS), name="action"),
    CheckConstraint(_in("status", ESE_STATES), name="status"),
    Index(None, "candidate_id", "created_at"),
)

#: The alert outbox: one row per event, written in the event's own transaction.
alerts = Table(
    "alerts", products_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(80), nullable=False, unique=True,
           doc="idempotency key sent with every delivery: EVENT-<32 hex digits>"),
    Column("dedupe_key", Text, nullable=False, unique=True,
           doc="EVENT:SOURCE_ID:DEDUPE: one alert per producer event however often it is recorded"),
    Column("event", String(32), nullable=False),
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="SET NULL")),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="SET NULL")),
    Column("significance", Float, doc="sigma of the event (what kind: payload significance_kind)"),
    Column("payload", Text, nullable=False, doc="JSON object: the event's facts at recording time"),
    Column("created_at", Float, nullable=False),
    Column("fanned_out_at", Float, doc="when deliveries were made for the configured destinations"),
    Column("note", Text, doc="why an alert has no delivery (event filtered, below threshold)"),
    Index(None, "fanned_out_at"),
    Index(None, "created_at"),
    Index(None, "event"),   # alerts by event (status, metrics)
)

alert_deliveries = Table(
    "alert_deliveries", products_metadata,
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
    Column("destination", Text, primary_key=True, doc="alert_destinations.destination"),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("sent_at", Float),
    Column("summary_key", String(80), doc="key of the rate-limit summary that carried it"),
    Column("updated_at", Float, nullable=False),
    CheckConstraint(_in("state", DELIVERY_STATES), name="state"),
    CheckConstraint(_in("kind", DESTINATION_KINDS), name="kind"),
    Index(None, "destination", "state", "alert_id"),
    Index(None, "state", "kind"),
)

alert_destinations = Table(
    "alert_destinations", products_metadata,
    Column("destination", Text, primary_key=True,
           doc="webhook:HOST:HASH (the URL itself, which may hold a secret, is not stored) or "
               "voevent:DIRECTORY"),
    Column("kind", String(16), nullable=False),
    Column("failures", Integer, nullable=False, default=0, doc="consecutive failed attempts"),
    Column("next_attempt_at", Float, nullable=False, default=0.0, doc="back-off: not before"),
    Column("last_error", Text),
    Column("last_attempt_at", Float),
    Column("last_success_at", Float),
    Column("window_start", Float, nullable=False, default=0.0, doc="rate-limit window start"),
    Column("window_sent", Integer, nullable=False, default=0, doc="messages sent in the window"),
    Column("lease_owner", Text, doc="the process sending to it now"),
    Column("lease_until", Float),
    CheckConstraint(_in("kind", DESTINATION_KINDS), name="kind"),
)

data_products = Table(
    "data_products", registry_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("data_id", Text, nullable=False, unique=True),
    Column("data_type", String(32), nullable=False),
    Column("path", Text),
    Column("status", String(32), nullable=False, default="registered"),
    Column("photometry_status", String(16)),
    Column("photometry_job_id", Text),
    Column("photometry_error", Text),
    Column("metadata_json", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    CheckConstraint(
        "photometry_status IS NULL OR " + _in("photometry_status", ("pending", "running", "completed", "failed")),
        name="photometry_status"),
)
