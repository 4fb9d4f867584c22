"""service/admission.py: what the daemon does with a path, on a real SQLite database and
real files, with an injected clock (no process, no thread, no observer)."""

from __future__ import annotations

import os
import shutil

import pytest

from dsa110_contimg.core.paths import FileKey
from dsa110_contimg.service import classify
from dsa110_contimg.service.admission import Admission
from dsa110_contimg.service.intake import Intake
from dsa110_contimg.store.engine import open_products_db
from dsa110_contimg.store.queue import JobQueue
from harness import fits_bytes

GOOD = fits_bytes(3)
MOSAIC = fits_bytes(4, mosaic=True)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A migrated, empty products database file, copied by each test (migrating costs ~1 s)."""
    path = tmp_path_factory.mktemp("template") / "products.sqlite3"
    open_products_db(path).dispose()
    return path


@pytest.fixture
def world(tmp_path, migrated):
    """Admission over ``tmp_path/images`` (and a ``mosaics`` root), its database and queue."""
    images, mosaics = tmp_path / "images", tmp_path / "mosaics"
    images.mkdir()
    mosaics.mkdir()
    for suffix in ("", "-wal"):
        if migrated.with_name(migrated.name + suffix).exists():
            shutil.copy(migrated.with_name(migrated.name + suffix), tmp_path / f"products.sqlite3{suffix}")
    db = open_products_db(tmp_path / "products.sqlite3")
    queue = JobQueue(db, owner="test:1:a")
    clock = Clock()
    claims = []
    adm = Admission(Intake([images, mosaics], settle_s=5.0, clock=clock, record_after_s=0.0), db, queue,
                    params={}, mosaic_roots=[mosaics], pbcor_wait_s=30.0, max_attempts=3,
                    on_queued=lambda: claims.append(clock()), clock=clock)
    adm.images, adm.mosaics, adm.clock_, adm.claims = images, mosaics, clock, claims
    yield adm
    db.dispose()


def rows(adm) -> dict[str, tuple]:
    """``{file name: (decision, kind, reason)}`` from the ``files`` table."""
    with adm.db.engine.connect() as conn:
        got = conn.exec_driver_sql("SELECT path, decision, kind, reason FROM files").all()
    return {os.path.basename(p): (d, k, r) for p, d, k, r in got}


def jobs(adm) -> dict[str, str]:
    """``{file name: kind}`` of the queued job items."""
    with adm.db.engine.connect() as conn:
        got = conn.exec_driver_sql("SELECT fits_path, kind FROM batch_job_items").all()
    return {os.path.basename(p): k for p, k in got}


def write(path, data=GOOD):
    path.write_bytes(data)
    return str(path)


def test_a_complete_image_is_queued_once_and_known_by_its_file_key(world):
    p = write(world.images / "a.img-image-pb.fits")
    world.consider(p, event="closed")
    world.consider(p, event="closed")                         # the same version again
    assert jobs(world) == {"a.img-image-pb.fits": "image"}
    assert rows(world)["a.img-image-pb.fits"][:2] == ("queued", "image")
    assert world.known == {FileKey.of(p)}
    assert world.queued == 1 and len(world.claims) == 1       # the daemon was told to claim
    assert world.owns(p, *(lambda s: (s.st_size, s.st_mtime_ns))(os.stat(p)))


def test_a_residual_is_skipped_by_its_name_without_being_read(world, monkeypatch):
    p = write(world.images / "a.img-residual.fits", b"not even FITS")
    calls = []
    monkeypatch.setattr(classify, "classify_name", lambda path, _f=classify.classify_name:
                        calls.append(path) or _f(path))
    world.consider(p, event="closed")
    assert rows(world)["a.img-residual.fits"][0] == "skipped"
    assert "residual" in rows(world)["a.img-residual.fits"][2]
    assert jobs(world) == {} and world.skipped == 1
    assert calls == [p]                                        # classified once


def test_each_path_is_classified_once_on_its_way_to_the_queue(world, monkeypatch):
    calls = []
    monkeypatch.setattr(classify, "classify_name", lambda path, _f=classify.classify_name:
                        calls.append(path) or _f(path))
    p = write(world.images / "b.img-image-pb.fits")
    world.consider(p, event="closed")
    assert jobs(world) == {"b.img-image-pb.fits": "image"} and calls == [p]


def test_mosaic_by_directory_and_by_header(world):
    under = write(world.mosaics / "m1.fits", GOOD)
    by_header = write(world.images / "m2.fits", MOSAIC)
    world.consider(under, event="closed")
    world.consider(by_header, event="closed")
    assert jobs(world) == {"m1.fits": "mosaic", "m2.fits": "mosaic"}


def test_a_file_still_being_written_waits_then_is_queued_when_complete(world):
    p = world.images / "c.img-image-pb.fits"
    write(p, GOOD[:2880 + 100])
    world.consider(str(p), event="modified")
    assert rows(world)["c.img-image-pb.fits"][0] == "incomplete" and world.waiting() == 1
    write(p, GOOD)
    world.consider(str(p), event="closed")
    assert jobs(world) == {"c.img-image-pb.fits": "image"} and world.waiting() == 0
    assert rows(world)["c.img-image-pb.fits"][0] == "queued"   # the incomplete row replaced


def test_a_restored_image_waits_for_its_partner_and_is_superseded_by_it(world):
    restored = write(world.images / "d.img-image.fits")
    world.consider(restored, event="closed")
    assert jobs(world) == {} and world.waiting() == 1
    assert "waiting 30 s" in rows(world)["d.img-image.fits"][2]
    partner = write(world.images / "d.img-image-pb.fits")
    world.consider(partner, event="closed")
    assert jobs(world) == {"d.img-image-pb.fits": "image"} and world.waiting() == 0
    decision, _, reason = rows(world)["d.img-image.fits"]
    assert decision == "skipped" and "superseded by the primary-beam-corrected d.img-image-pb.fits" in reason


def test_a_restored_image_without_a_partner_is_measured_after_the_wait(world):
    restored = write(world.images / "e.img-image.fits")
    world.consider(restored, event="closed")
    world.clock_.t += 29.0
    world.recheck()
    assert jobs(world) == {}
    world.clock_.t += 2.0
    world.recheck()
    assert jobs(world) == {"e.img-image.fits": "image"} and world.waiting() == 0


def test_a_restored_image_whose_partner_exists_is_skipped_at_once(world):
    write(world.images / "f.img-image-pb.fits")
    restored = write(world.images / "f.img-image.fits")
    world.consider(restored, event="closed")
    assert rows(world)["f.img-image.fits"][0] == "skipped" and world.waiting() == 0


def test_known_versions_come_back_from_the_database(world):
    p = write(world.images / "g.img-image-pb.fits")
    world.consider(p, event="closed")
    fresh = Admission(Intake([world.images]), world.db, world.queue, params={})
    fresh.load_known()
    assert fresh.known == {FileKey.of(p)}
    fresh.consider(p, event=None)                             # a rescan after a restart
    assert jobs(world) == {"g.img-image-pb.fits": "image"} and fresh.queued == 0


def test_hidden_and_non_fits_names_are_not_even_recorded(world):
    world.consider(write(world.images / ".h.fits.part"), event="closed")
    world.consider(write(world.images / "notes.txt", b"x"), event="closed")
    assert rows(world) == {} and jobs(world) == {}


def test_a_file_that_vanishes_while_waiting_is_forgotten(world):
    p = world.images / "i.img-image-pb.fits"
    write(p, GOOD[:2880 + 100])
    world.consider(str(p), event="modified")
    assert "i.img-image-pb.fits" in rows(world)
    p.unlink()
    world.recheck()
    assert "i.img-image-pb.fits" not in rows(world) and world.waiting() == 0
