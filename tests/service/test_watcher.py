"""Watcher: events -> bounded queue, guarded handler, overflow -> rescan flag, scan_tree."""

from __future__ import annotations

import logging
import os
import queue
import time

from watchdog.events import FileClosedEvent, FileCreatedEvent, FileModifiedEvent, FileMovedEvent

from dsa110_contimg.service.watcher import EnqueueHandler, RescanFlag, Watcher, scan_tree


def test_handler_filters_and_never_raises():
    q, flag = queue.Queue(maxsize=2), RescanFlag()
    boom = {"on": False}

    class Buggy(EnqueueHandler):   # a bug inside the handler's guard
        def _item(self, event):
            if boom["on"]:
                raise ValueError("bug")
            return EnqueueHandler._item(event)

    h = Buggy(q, flag)
    h.dispatch(FileModifiedEvent("/d/a.fits"))                # not a ready event
    h.dispatch(FileClosedEvent("/d/a.txt"))                   # not FITS
    h.dispatch(FileMovedEvent("/d/.a.part", "/d/a.fits"))
    h.dispatch(FileCreatedEvent("/d/sub/b.FITS"))
    assert [i[:3] for i in list(q.queue)] == [("file", "/d/a.fits", "moved"),
                                              ("file", "/d/sub/b.FITS", "created")]
    h.dispatch(FileClosedEvent("/d/c.fits"))                  # queue full: dropped, rescan
    assert flag.take() == "event queue full" and flag.take() is None
    boom["on"] = True
    h.dispatch(FileClosedEvent("/d/d.fits"))                  # exception swallowed, counted
    assert h.errors == 1 and flag.take() == "event handler error"


def test_overflow_warning_requests_a_rescan(tmp_path):
    w = Watcher([tmp_path])
    w.start()
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost")
        assert w.rescan.take() == "inotify queue overflow"
    finally:
        w.stop()


def test_real_inotify_events(tmp_path):
    w = Watcher([tmp_path])
    w.start()
    try:
        assert w.alive()
        (tmp_path / "a.fits").write_bytes(b"x")
        (tmp_path / ".b.part").write_bytes(b"y")
        os.rename(tmp_path / ".b.part", tmp_path / "b.fits")
        os.mkdir(tmp_path / "sub")
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not {"closed", "moved", "dir"} <= {e[2] if e[0] == "file" else "dir" for e in seen}:
            seen += w.drain()
            time.sleep(0.05)
        kinds = {(e[0], os.path.basename(e[1]), e[2]) for e in seen}
        assert ("file", "a.fits", "closed") in kinds
        assert ("file", "b.fits", "moved") in kinds
        assert any(k[0] == "dir" and k[1] == "sub" for k in kinds)
    finally:
        w.stop()
    assert not w.alive()


def test_scan_tree(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.fits").write_bytes(b"12")
    (tmp_path / "y.FITS").write_bytes(b"1")
    (tmp_path / "z.txt").write_bytes(b"1")
    os.symlink(tmp_path / "a", tmp_path / "link")
    found = {os.path.relpath(p, tmp_path): size for p, size, _ in scan_tree(tmp_path)}
    assert found == {"a/b/x.fits": 2, "y.FITS": 1}
