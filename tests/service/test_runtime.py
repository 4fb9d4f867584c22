"""The job runtime (service/runtime.py, service/executors.py): executor loading and the
former config strings, error classification, fenced writes through the job context, and
hostile headers that fail at once (permanent, state ``failed``) with a readable reason."""

from __future__ import annotations

import errno

import pytest
from astropy.io import fits

from dsa110_contimg.core.errors import InvalidImage, StoreError
from dsa110_contimg.service.executors import PhotometryExecutor
from dsa110_contimg.service.runtime import (
    Executor, JobContext, JobSummary, LegacyFunctionExecutor, classify_error, load_executor,
    run_claimed, settle,
)
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.queue import JobQueue, LeaseLost


# -- loading executors ------------------------------------------------------------------
def test_load_executor_builtin_legacy_alias_class_function_and_errors():
    assert isinstance(load_executor("photometry"), PhotometryExecutor)
    # the former default config value keeps working
    assert isinstance(load_executor("dsa110_contimg.photometry.worker:execute_job"), PhotometryExecutor)
    fake = load_executor("fakes:FakePhotometryExecutor")
    assert isinstance(fake, Executor) and fake.name == "fake-photometry"
    legacy = load_executor("fakes:legacy_function")
    assert isinstance(legacy, LegacyFunctionExecutor)
    ctx = JobContext(7, "me", 1, {}, ({"id": 1},), "/nowhere.sqlite3")
    assert legacy.run(ctx).done == 1
    for bad, words in (("nope", "expected one of"), ("dsa110_contimg.nope:x", "cannot be imported"),
                       ("dsa110_contimg.service.runtime:BUILTIN_EXECUTORS", "not an executor")):
        with pytest.raises(ValueError, match=words):
            load_executor(bad)


# -- classification ---------------------------------------------------------------------
def _exc(kind):
    from astropy.io.fits.verify import VerifyError
    from sqlalchemy.exc import OperationalError

    return {
        "invalid": InvalidImage("bad pixels", "/a.fits"),
        "verify": VerifyError("Unparsable card (BMAJ)"),
        "overflow": OverflowError("math range error"),
        "memory": MemoryError(),
        "permission": PermissionError(errno.EACCES, "Permission denied", "/a.fits"),
        "missing": FileNotFoundError(errno.ENOENT, "No such file or directory", "/a.fits"),
        "value": ValueError("Set memmap=False"),
        "nospace": OSError(errno.ENOSPC, "No space left on device"),
        "eio": OSError(errno.EIO, "Input/output error"),
        "locked": OperationalError("UPDATE", {}, Exception("database is locked")),
        "store": StoreError("cannot write"),
        "lease": LeaseLost(1, "me"),
        "timeout": TimeoutError("network"),
    }[kind]


@pytest.mark.parametrize("kind, permanent, words", [
    ("invalid", True, "bad pixels"), ("verify", True, "verification"), ("overflow", True, "overflow"),
    ("memory", True, "worker limit of 512 MB"), ("permission", True, "permission denied"),
    ("missing", True, "cannot open"), ("value", True, "ValueError"),
    ("nospace", False, "No space"), ("eio", False, "Input/output"), ("locked", False, "locked"),
    ("store", False, "cannot write"), ("lease", False, "lease"), ("timeout", False, "network"),
])
def test_only_environmental_errors_are_retryable(kind, permanent, words):
    got_permanent, reason = classify_error(_exc(kind), memory_limit_mb=512)
    assert got_permanent is permanent
    assert words in reason


# -- hostile headers through the real executor ---------------------------------------------
def _patch_card(raw: bytes, key: str, value: str) -> bytes:
    end = raw.index(b"END" + b" " * 77)
    for i in range(0, end, 80):
        if raw[i:i + 8].decode().strip() == key:
            return raw[:i] + f"{key:<8}= {value:>20}".ljust(80).encode() + raw[i + 80:]
    raise KeyError(key)


HOSTILE = {
    "nan_bmaj": ({"BMAJ": "NaN"}, "BMAJ has an unparsable value 'NaN'"),
    "nan_bpa": ({"BPA": "NaN"}, "BPA has an unparsable value"),
    "nan_mjd": ({"MJD-OBS": "NaN"}, "MJD-OBS has an unparsable value"),
    "huge_bmaj": ({"BMAJ": "1E300"}, "restoring beam BMAJ=1e+300"),
    "tiny_pixels": ({"CDELT1": "-1E-9", "CDELT2": "1E-9"}, "pixel scale 1e-09 x 1e-09 deg"),
    "cdelt2": ({"CDELT2": "-1E-20"}, "pixel scale"),
    "huge_mjd": ({"MJD-OBS": "1E300"}, "MJD-OBS=1e+300 is not a plausible observation epoch"),
}


@pytest.fixture
def runtime_field(sim_field, tmp_path):
    from dsa110_contimg.photometry import PhotometryManager

    manager = PhotometryManager(tmp_path / "p.sqlite3", tmp_path / "r.sqlite3",
                                catalog_dir=tmp_path / "catalogs")
    return sim_field, manager, tmp_path


def _hostile_file(sim_field, tmp_path, name):
    good = tmp_path / "good.fits"
    sim_field.image(good, mjd=60676.0)
    raw = good.read_bytes()
    for key, value in HOSTILE[name][0].items():
        raw = _patch_card(raw, key, value)
    path = tmp_path / f"{name}.fits"
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_header_fails_at_once_with_its_reason(runtime_field, name):
    sim_field, manager, tmp_path = runtime_field
    path = _hostile_file(sim_field, tmp_path, name)
    res = manager.measure_for_fits(path, create_batch_job=True, data_id=name)
    queue = manager.queue
    job = queue.claim()
    state = run_claimed(queue, job, str(tmp_path / "p.sqlite3"), str(tmp_path / "r.sqlite3"),
                        str(tmp_path / "catalogs"))
    rec = queue.get(res.batch_job_id)
    assert state == "failed" and rec["status"] == "failed" and rec["attempts"] == 1
    item = rec["items"][0]
    assert item["status"] == "failed" and HOSTILE[name][1] in item["error"]
    assert path.name in item["error"]


def test_int16_image_with_blank_is_measured(runtime_field):
    """A valid scaled integer image (BITPIX 16, BSCALE, BLANK) is read (not memory-mapped):
    blanked pixels become NaN, the sources are measured."""
    import numpy as np

    from dsa110_contimg.science.image import RadioImage

    sim_field, manager, tmp_path = runtime_field
    good = tmp_path / "good.fits"
    sim_field.image(good)
    with fits.open(good) as hdul:
        data, header = hdul[0].data.astype(float), hdul[0].header.copy()
    scale = 1e-5
    ints = np.clip(np.round(data / scale), -32767, 32767).astype(np.int16)
    ints[..., 0, 0] = -32768
    hdu = fits.PrimaryHDU(ints, header)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = scale, 0.0, -32768
    path = tmp_path / "int16.fits"
    hdu.writeto(path)
    with RadioImage.open(path) as img:
        assert np.isnan(img.data[0, 0]) and np.isfinite(img.data[1:, 1:]).all()
    from dsa110_contimg.photometry import PhotometryConfig

    result = manager.measure_for_fits(path, PhotometryConfig(catalog="nvss", method="forced"),
                                      create_batch_job=False)
    assert result.measurements_successful >= 25


# -- fencing through the job context ---------------------------------------------------------
def test_executor_that_lost_its_lease_writes_nothing(runtime_field):
    """A worker whose lease was taken over: its result transaction rolls back, no item or
    registry write lands, and settling reports lease_lost."""
    import sqlite3

    sim_field, manager, tmp_path = runtime_field
    path = tmp_path / "img.fits"
    sim_field.image(path)
    res = manager.measure_for_fits(path, create_batch_job=True, data_id="img1")
    db = open_products_db(tmp_path / "p.sqlite3")
    clock = [1e9]
    qa = JobQueue(db, owner="A", lease_s=60, clock=lambda: clock[0])
    qb = JobQueue(db, owner="B", lease_s=60, clock=lambda: clock[0])
    job = qa.claim()
    clock[0] += 61
    qb.reap_expired()
    assert qb.claim().id == job.id
    ctx = JobContext.from_claim(job, products_db=str(tmp_path / "p.sqlite3"),
                                registry_db=str(tmp_path / "r.sqlite3"),
                                catalog_dir=str(tmp_path / "catalogs"))
    summary = PhotometryExecutor().run(ctx)
    assert summary.lease_lost and summary.done == 0
    with sqlite3.connect(tmp_path / "p.sqlite3") as conn:
        assert conn.execute("select count(*) from images").fetchone() == (0,)
        assert conn.execute("select status from batch_job_items").fetchone() == ("pending",)
    assert settle(qa, job.id, summary) == "lease_lost"
    rec = qb.get(res.batch_job_id)
    assert rec["status"] == "running" and rec["lease_owner"] == "B"
    # the real owner's fence passes and its run lands
    import dataclasses

    ctx_b = dataclasses.replace(ctx, owner="B")
    summary_b = PhotometryExecutor().run(ctx_b)
    assert summary_b.done == 1 and settle(qb, job.id, summary_b) == "done"
    db.dispose()


def test_summary_coerces_the_former_dict():
    s = JobSummary.coerce({"done": 2, "failed": 1, "permanent": False, "error": "x",
                           "cancelled": False, "durations": {}, "extra": 1})
    assert (s.done, s.failed, s.permanent, s.error) == (2, 1, False, "x")
    with pytest.raises(TypeError):
        JobSummary.coerce(42)
