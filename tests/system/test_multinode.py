"""Several daemons on several hosts: two daemon processes with separate state folders
watching one shared image folder and sharing one PostgreSQL database.

Every image is measured exactly once (one job, one execution, one result row), both
daemons take work, and ``status`` lists both with their workers.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from harness import Service, drop

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def pg_service(tmp_path, postgres_cluster):
    made = []
    products = postgres_cluster.new_database("products")
    registry = postgres_cluster.new_database("registry")
    shared = tmp_path / "shared" / "images"
    shared.mkdir(parents=True)

    def make(name, **kw):
        s = Service(tmp_path / name, products_db=products, registry_db=registry, images=shared,
                    node=name, **kw)
        made.append(s)
        return s

    yield make, shared
    for s in made:
        s.stop_all()
    postgres_cluster.drop_database(products)
    postgres_cluster.drop_database(registry)


def test_two_daemons_two_state_folders_one_postgres_every_image_once(pg_service):
    make, shared = pg_service
    a, b = make("node-a", workers=2), make("node-b", workers=2)
    assert a.state != b.state and a.images == b.images == shared
    pa = a.start(CONTIMG_FAKE_SLEEP_S=0.1)
    pb = b.start(CONTIMG_FAKE_SLEEP_S=0.1)
    n = 60
    paths = [shared / f"n{i // 20}" / f"t{i:03d}.img-image-pb.fits" for i in range(n)]
    for i, p in enumerate(paths):
        p.parent.mkdir(exist_ok=True)
        drop(p, i, how="rename" if i % 2 else "inplace")
    # status while both run: both daemons and their workers are listed
    a.wait_for(lambda: len(a.sql("SELECT owner FROM heartbeats WHERE state = 'running'")) == 2, 30,
               "two live heartbeats")
    out = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "status", "--json",
                          "--config", str(b.config)], capture_output=True, text=True, env=b.env())
    st = json.loads(out.stdout)
    assert st["daemon"]["instances"] == 2
    nodes = st["daemon"]["nodes"]
    assert len(nodes) == 2 and {nd["pid"] for nd in nodes} == {pa.pid, pb.pid}
    assert {nd["node"] for nd in nodes} == {"node-a", "node-b"}
    assert all(nd["workers"] == 2 and nd["state"] == "running" for nd in nodes), nodes
    text = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "status", "--config",
                           str(a.config)], capture_output=True, text=True, env=a.env()).stdout
    assert "instances:     2 live" in text
    for pid in (pa.pid, pb.pid):
        assert re.search(rf"node-[ab]: running \(pid {pid} on [^,]+, heartbeat [0-9.]+ s ago, 2 workers", text), text
    assert "pw-For-Tests" not in out.stdout + out.stderr + text

    a.wait_for(a.idle_with(n), 120, "all images done")
    by_path = a.jobs_by_path()
    assert set(by_path) == {str(p) for p in paths}
    assert all(len(j) == 1 and j[0][1] == "done" for j in by_path.values()), by_path
    assert a.sql("SELECT count(*), count(DISTINCT path) FROM images") == [(n, n)]
    ex_a, ex_b = a.executions(), b.executions()
    assert ex_a and ex_b, "both daemons measured images"
    assert not set(ex_a) & set(ex_b) and set(ex_a) | set(ex_b) == {str(p) for p in paths}
    assert set(ex_a.values()) | set(ex_b.values()) == {1}          # exactly once
    for p in (pa, pb):
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    assert sorted(r[0] for r in a.sql("SELECT state FROM heartbeats")) == ["stopped", "stopped"]
    # both daemons recorded the same file versions at once without a failing tick
    for p in (pa, pb):
        assert "tick_failed" not in p.logfile.read_text(errors="replace")


def test_two_daemons_one_postgres_database_for_both_stores(tmp_path, postgres_cluster):
    """products_db = registry_db = one empty PostgreSQL database: the two daemons and their
    workers create both schemas at once (each in its own version table), every image is
    measured once and linked in the registry."""
    url = postgres_cluster.new_database("products", migrated=False)
    shared = tmp_path / "shared" / "images"
    shared.mkdir(parents=True)
    services = [Service(tmp_path / name, products_db=url, registry_db=url, images=shared, node=name,
                        workers=2) for name in ("node-a", "node-b")]
    try:
        procs = [s.start(wait=False, CONTIMG_FAKE_SLEEP_S=0.05, CONTIMG_FAKE_REGISTRY=1)
                 for s in services]
        for s, p in zip(services, procs):
            s.wait_ready(p)
        a = services[0]
        n = 30
        for i in range(n):
            drop(shared / f"s{i:03d}.img-image-pb.fits", i, how="rename")
        a.wait_for(a.idle_with(n), 120, "all images done")
        assert set(a.job_states()) == {"done"}, a.jobs_by_path()
        assert a.sql("SELECT count(*), count(DISTINCT data_id), min(photometry_status), "
                     "max(photometry_status) FROM data_products") == [(n, n, "completed", "completed")]
        from dsa110_contimg.store.migrate import head_revision

        for which in ("products", "registry"):
            assert a.sql(f"SELECT version_num FROM alembic_version_{which}") == [(head_revision(which),)]
        assert a.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = "
                     "'alembic_version'") == [(0,)]
        ex = [s.executions() for s in services]
        assert sum(len(e) for e in ex) == n and all(v == 1 for e in ex for v in e.values())
        for p in procs:
            p.send_signal(signal.SIGTERM)
            assert p.wait(30) == 0
            assert "tick_failed" not in p.logfile.read_text(errors="replace")
    finally:
        for s in services:
            s.stop_all()
        postgres_cluster.drop_database(url)
