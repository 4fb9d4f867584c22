"""`db backup` while the daemon writes: the copy passes `db check`, holds every image done
before the backup began, and restored in place of the database the daemon carries on
(the images measured after the backup are found again by its rescan)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import pytest

from harness import drop

from dsa110_contimg.cli.main import main

pytestmark = pytest.mark.timeout(300)


def test_backup_while_the_daemon_writes_restores_to_a_checked_database(service, tmp_path, capsys):
    svc = service(workers=2)
    proc = svc.start(CONTIMG_FAKE_SLEEP_S=0.05)
    n = 40
    paths = [svc.images / f"b{i:03d}.img-image-pb.fits" for i in range(n)]
    stop = threading.Event()

    def dropper():
        for i, p in enumerate(paths):
            if stop.is_set():
                return
            drop(p, i)
            time.sleep(0.1)

    t = threading.Thread(target=dropper, daemon=True)
    t.start()
    try:
        svc.wait_for(lambda: len(svc.sql("SELECT path FROM images")) >= 10, 120, "10 images done")
        done_before = {r[0] for r in svc.sql("SELECT path FROM images")}
        dest = tmp_path / "backup"
        assert main(["db", "backup", str(dest), "--config", str(svc.config)]) == 0
        t.join(60)
        svc.wait_for(svc.idle_with(n), 120, "every image done")
        done_after = {r[0] for r in svc.sql("SELECT path FROM images")}
    finally:
        stop.set()
    copy = dest / "products.sqlite3"
    capsys.readouterr()
    assert main(["db", "check", "--full", "--products-db", str(copy)]) == 0, capsys.readouterr()
    backed_up = {r[0] for r in _sql(copy, "SELECT path FROM images")}
    assert done_before <= backed_up <= done_after and len(done_after) == n
    print(f"\nbackup while writing: {len(done_before)} images done before it began, "
          f"{len(backed_up)} in the copy, {n} at the end")

    # restore: the copy in place of the database, then the daemon again
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{svc.db_path}{suffix}")
        except FileNotFoundError:
            pass
    shutil.copy2(copy, svc.db_path)
    svc.start()
    svc.wait_for(lambda: len(svc.sql("SELECT path FROM images")) == n, 120, "images after the backup again")
    svc.wait_for(svc.idle_with(len(svc.sql("SELECT id FROM batch_jobs"))), 60, "queue settled")
    assert sorted(r[0] for r in svc.sql("SELECT path FROM images")) == sorted(map(str, paths))
    capsys.readouterr()
    assert main(["status", "--config", str(svc.config)]) == 0, capsys.readouterr().out


def _sql(path, query):
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()
