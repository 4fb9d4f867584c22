"""The file-intake state machine (service/intake.py), without subprocesses: an injected
clock, real files in a temporary directory, injected I/O for the failure cases."""

from __future__ import annotations

import collections
import errno
import os
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dsa110_contimg.core.errors import CorruptImage, InvalidImage, TruncatedImage
from dsa110_contimg.service import intake
from dsa110_contimg.service.intake import (
    BoundedRunner, FileKey, Intake, Probe, check_fits_complete, db_path, fs_path, probe_file, scan_tree)
from harness import fits_bytes

GOOD = fits_bytes(3)          # 2880 header + 2880 data (16x16 float32)
HEADER = GOOD[:2880]


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += s


def make(tmp_path, **kw):
    clock = Clock()
    kw.setdefault("settle_s", 5.0)
    return Intake([tmp_path], clock=clock, **kw), clock


def actions(decisions):
    return [d.action for d in decisions]


def test_complete_file_is_queued_once_with_its_header(tmp_path):
    ik, _ = make(tmp_path)
    p = tmp_path / "a.fits"
    p.write_bytes(GOOD)
    out = ik.observe(str(p), "closed")
    assert actions(out) == ["queue"]
    st_ = os.stat(p)
    assert out[0].key == FileKey(str(p), st_.st_size, st_.st_mtime_ns)
    assert out[0].cards["BMAJ"] and "NAXIS1" in out[0].cards
    assert len(ik) == 0


def test_growth_during_the_check_is_not_queued(tmp_path):
    """The file grows while its headers are read: the key differs before/after (fstat)."""
    p = tmp_path / "grow.fits"
    p.write_bytes(GOOD[:4000])
    grown = threading.Event()

    def pread(fd, n, off):
        data = os.pread(fd, n, off)
        if not grown.is_set():
            grown.set()
            with open(p, "ab") as fh:
                fh.write(GOOD[4000:])
        return data

    clock = Clock()
    ik = Intake([tmp_path], settle_s=5.0, clock=clock,
                probe=lambda path: probe_file(path, roots=[tmp_path], pread=pread))
    assert ik.observe(str(p), "modified") == []
    assert ik.waiting(str(p)).state == "candidate"
    # the next look sees a complete, unchanged file
    out = ik.observe(str(p), "closed")
    assert actions(out) == ["queue"] and out[0].key.size == len(GOOD)


def test_header_then_truncate_writer_waits_for_the_data(tmp_path):
    """Header written, ftruncate to the final size, data filled later: complete by size
    but the final data block is zero-filled -> not queued until written (or stable)."""
    ik, clock = make(tmp_path)
    p = tmp_path / "trunc-writer.fits"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT)
    os.write(fd, HEADER)
    os.ftruncate(fd, len(GOOD))
    assert ik.observe(str(p), None) == []
    assert "all zero" in ik.waiting(str(p)).reason
    clock.advance(2.0)
    out = ik.observe(str(p), None)
    assert actions(out) == ["waiting"]                     # recorded as incomplete once
    os.pwrite(fd, GOOD[2880:3300], 2880)                  # the first part of the data
    clock.advance(1.0)
    assert ik.observe(str(p), None) == []
    os.pwrite(fd, GOOD[3300:], 3300)
    os.close(fd)
    out = ik.observe(str(p), "closed")
    assert actions(out) == ["queue"]
    assert check_fits_complete(p) == len(GOOD) and p.read_bytes() == GOOD


def test_complete_but_still_open_waits_for_close_or_quiescence(tmp_path):
    """A re-check (no event) of a candidate that became complete does not queue it while
    it may still be written; the close event does."""
    ik, clock = make(tmp_path)
    p = tmp_path / "open.fits"
    p.write_bytes(GOOD[:3000])
    assert ik.observe(str(p), "created") == []
    with open(p, "ab") as fh:
        fh.write(GOOD[3000:])
    clock.advance(0.5)
    assert ik.poll() == []
    assert "no close event" in ik.waiting(str(p)).reason
    assert actions(ik.observe(str(p), "closed")) == ["queue"]


def test_image_legitimately_ending_in_zeros_is_queued_once_stable(tmp_path):
    ik, clock = make(tmp_path)
    p = tmp_path / "zeros.fits"
    p.write_bytes(HEADER + bytes(2880))
    assert ik.observe(str(p), "closed") == []
    clock.advance(4.0)
    assert actions(ik.poll()) == ["waiting"]
    clock.advance(1.5)
    out = ik.poll()
    assert actions(out) == ["queue"] and "all zero" in out[0].reason


def test_truncated_file_waits_then_is_queued_with_the_reason(tmp_path):
    ik, clock = make(tmp_path)
    p = tmp_path / "cut.fits"
    p.write_bytes(GOOD[:4000])
    assert ik.observe(str(p), "closed") == []
    clock.advance(1.0)
    assert actions(ik.poll()) == ["waiting"]
    clock.advance(5.0)
    out = ik.poll()
    assert actions(out) == ["queue"] and "header implies" in out[0].reason
    # a file truncated after it was complete is a new version: candidate again
    p.write_bytes(GOOD)
    assert actions(ik.observe(str(p), "closed")) == ["queue"]
    with open(p, "r+b") as fh:
        fh.truncate(3000)
    assert ik.observe(str(p), "modified") == []
    assert "header implies" in ik.waiting(str(p)).reason


def test_replacement_under_the_same_size_and_mtime_is_seen_by_its_inode(tmp_path):
    ik, _ = make(tmp_path)
    p = tmp_path / "v.fits"
    p.write_bytes(GOOD)
    first = ik.observe(str(p), "closed")[0]
    st0 = os.stat(p)
    tmp = tmp_path / ".v.fits.part"
    tmp.write_bytes(fits_bytes(4))                       # same size, new content, new inode
    os.utime(tmp, ns=(st0.st_atime_ns, st0.st_mtime_ns))  # even the same mtime
    os.replace(tmp, p)
    second = ik.observe(str(p), "moved")[0]
    assert second.action == "queue" and second.key == first.key   # the files table's identity
    assert probe_file(str(p)).ino != st0.st_ino                     # the intake sees the new inode


def test_rename_into_place_is_queued_at_once(tmp_path):
    ik, _ = make(tmp_path)
    tmp = tmp_path / ".r.fits.part"
    tmp.write_bytes(GOOD)
    dest = tmp_path / "r.fits"
    os.rename(tmp, dest)
    assert actions(ik.observe(str(dest), "moved")) == ["queue"]


def test_non_utf8_names_are_kept_losslessly(tmp_path):
    ik, _ = make(tmp_path)
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff.fits"
    with open(raw, "wb") as fh:
        fh.write(GOOD)
    path = os.fsdecode(raw)
    out = ik.observe(path, "closed")
    assert actions(out) == ["queue"]
    stored = db_path(out[0].path)
    stored.encode("utf-8")                                 # storable in any database
    assert stored.startswith("fsb64:")
    assert os.fsencode(fs_path(stored)) == raw
    assert check_fits_complete(fs_path(stored)) == len(GOOD)
    assert db_path("/a/ok-é.fits") == "/a/ok-é.fits" == fs_path("/a/ok-é.fits")
    found = [p for p, _, _ in scan_tree(tmp_path)]
    assert found == [path]
    assert "\\xe9" in intake.printable(path)


def test_hostile_entries_are_skipped_with_reasons(tmp_path):
    ik, _ = make(tmp_path)
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    out = ik.observe(str(fifo), "created")
    assert time.monotonic() - t0 < 5                    # the open did not block
    assert actions(out) == ["skip"] and "FIFO" in out[0].reason
    zero = tmp_path / "zero.fits"
    zero.symlink_to("/dev/zero")
    out = ik.observe(str(zero), "created")
    assert actions(out) == ["skip"] and "outside the watched" in out[0].reason
    follow = Intake([tmp_path], symlinks="follow", clock=Clock())
    out = follow.observe(str(zero), "created")
    assert actions(out) == ["skip"] and "character device" in out[0].reason
    d = tmp_path / "dir.fits"
    d.mkdir()
    out = ik.observe(str(d), "created")
    assert actions(out) == ["skip"] and "directory" in out[0].reason
    sock_path = tmp_path / "s.fits"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        out = ik.observe(str(sock_path), "created")
        assert actions(out) == ["skip"] and "socket" in out[0].reason
    finally:
        s.close()


def test_symlinks_same_rule_inside_outside_and_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "o.fits").write_bytes(GOOD)
    (root / "i.fits").write_bytes(GOOD)
    (root / "link-in.fits").symlink_to(root / "i.fits")
    (root / "link-out.fits").symlink_to(outside / "o.fits")
    ik = Intake([root], clock=Clock())
    assert actions(ik.observe(str(root / "link-in.fits"), None)) == ["queue"]
    out = ik.observe(str(root / "link-out.fits"), None)
    assert actions(out) == ["skip"] and "outside" in out[0].reason
    refuse = Intake([root], symlinks="refuse", clock=Clock())
    out = refuse.observe(str(root / "link-in.fits"), None)
    assert actions(out) == ["skip"] and "refused" in out[0].reason
    # scans yield the symlinks, so events and scans reach the same rule
    assert sorted(os.path.basename(p) for p, _, _ in scan_tree(root)) == \
        ["i.fits", "link-in.fits", "link-out.fits"]
    with pytest.raises(ValueError, match="symlinks"):
        Intake([root], symlinks="sometimes")


def test_permission_denied_file_is_queued_once_stable_with_the_reason(tmp_path):
    """A regular *.fits we may not open (EACCES, simulated: tests run as root) is a failure
    the operator must see: queued once stable with the reason (its job then fails with
    "permission denied"), never skipped. A writer that fixes the permissions in time
    (simulated: open allowed again before the file is stable) is measured normally."""
    p = tmp_path / "secret.fits"
    p.write_bytes(GOOD)
    denied = {"on": True}

    def open_fn(path, flags):
        if denied["on"]:
            raise PermissionError(13, "Permission denied")
        return os.open(path, flags)

    clock = Clock()
    ik = Intake([tmp_path], clock=clock, settle_s=5.0,
                probe=lambda path: probe_file(path, roots=[tmp_path], open_fn=open_fn))
    assert ik.observe(str(p), "closed") == []            # not skipped, not queued at once
    assert "permission denied" in ik.waiting(str(p)).reason
    clock.advance(1.0)
    out = ik.poll()
    assert actions(out) == ["waiting"] and "permission denied" in out[0].reason
    clock.advance(5.0)
    out = ik.poll()
    assert actions(out) == ["queue"] and "permission denied" in out[0].reason
    st_ = os.stat(p)
    assert out[0].key == FileKey(str(p), st_.st_size, st_.st_mtime_ns) and out[0].cards is None
    # the same file made readable before it is stable: a normal, checked decision
    q = tmp_path / "fixed.fits"
    q.write_bytes(GOOD)
    assert ik.observe(str(q), "closed") == []
    denied["on"] = False
    out = ik.observe(str(q), "modified")                  # chmod: IN_ATTRIB
    assert actions(out) == ["queue"] and out[0].reason == "" and out[0].cards["BMAJ"]



def test_io_errors_never_skip_a_file(tmp_path):
    """EIO / a stale NFS handle on open or read, or on stat, is not the file's fault: the
    file is never recorded as skipped. A transient error is followed by a normal decision;
    a lasting one queues the file once stable with the reason (its job retries, then
    fails for the operator to see)."""
    p = tmp_path / "lustre.fits"
    p.write_bytes(GOOD)
    fail = {"open": True, "read": False, "stat": False}

    def open_fn(path, flags):
        if fail["open"]:
            raise OSError(errno.EIO, "Input/output error")
        return os.open(path, flags)

    def pread(fd, n, off):
        if fail["read"]:
            raise OSError(errno.ESTALE, "Stale file handle")
        return os.pread(fd, n, off)

    def lstat(path):
        if fail["stat"]:
            raise OSError(errno.EIO, "Input/output error")
        return os.lstat(path)

    clock = Clock()
    ik = Intake([tmp_path], clock=clock, settle_s=5.0,
                probe=lambda path: probe_file(path, roots=[tmp_path], open_fn=open_fn,
                                              pread=pread, lstat=lstat))
    assert ik.observe(str(p), "closed") == []
    assert "cannot open: Input/output error" in ik.waiting(str(p)).reason
    fail.update(open=False, read=True)
    clock.advance(1.0)
    out = ik.poll()
    assert actions(out) == ["waiting"] and "cannot read: Stale file handle" in out[0].reason
    fail.update(read=False, stat=True)
    clock.advance(1.0)
    assert "skip" not in actions(ik.poll()) and "cannot stat" in ik.waiting(str(p)).reason
    fail.update(stat=False)                               # the filesystem recovered
    out = ik.observe(str(p), "closed")
    assert actions(out) == ["queue"] and out[0].reason == "" and out[0].cards["BMAJ"]
    # a lasting error: queued once stable with the reason, never skipped
    q = tmp_path / "bad-sector.fits"
    q.write_bytes(GOOD)
    fail.update(open=True)
    assert ik.observe(str(q), "closed") == []
    clock.advance(6.0)
    out = ik.poll()
    assert actions(out) == ["queue"] and "Input/output error" in out[0].reason


def test_vanished_candidate_is_forgotten(tmp_path):
    ik, clock = make(tmp_path)
    p = tmp_path / "gone.fits"
    p.write_bytes(GOOD[:3000])
    ik.observe(str(p), None)
    clock.advance(2)
    assert actions(ik.poll()) == ["waiting"]
    p.unlink()
    assert actions(ik.poll()) == ["forget"] and len(ik) == 0


def test_polling_mode_waits_for_quiescence(tmp_path):
    ik, clock = make(tmp_path, polling=True)
    p = tmp_path / "p.fits"
    p.write_bytes(GOOD)
    assert ik.observe(str(p), None) == []
    clock.advance(5.1)
    assert actions(ik.poll()) == ["queue"]


def test_huge_header_without_end_is_bounded(tmp_path):
    """A 1 GiB sparse file starting with SIMPLE and no END card: read at most
    max_header_bytes, decided as invalid in well under a second."""
    p = tmp_path / "huge.fits"
    with open(p, "wb") as fh:
        fh.write(b"SIMPLE  =                    T" + b" " * 50)
        fh.truncate(1 << 30)
    reads = []

    def pread(fd, n, off):
        reads.append(n)
        return os.pread(fd, n, off)

    pr = probe_file(str(p), roots=[tmp_path], max_header_bytes=1 << 20, pread=pread)
    assert pr.status == "invalid" and "no END card" in pr.reason
    assert sum(reads) <= (1 << 20) + 2880
    with pytest.raises(CorruptImage, match="no END card"):
        check_fits_complete(p)


def test_bounded_runner_abandons_a_hung_call():
    release = threading.Event()
    runner = BoundedRunner(0.2)
    with pytest.raises(TimeoutError):
        runner.call(release.wait, 30)
    assert runner.hung == 1
    assert runner.call(lambda: 42) == 42                 # a fresh thread serves the next call
    release.set()
    deadline = time.monotonic() + 10
    while runner.hung and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.hung == 0
    runner.close()
    # the intake treats a timed-out probe as "changing": candidate, never decided
    ik = Intake([], clock=Clock(), probe=lambda p: (_ for _ in ()).throw(TimeoutError("slow")))
    assert ik.observe("/x/slow.fits", "closed") == []
    assert ik.waiting("/x/slow.fits").reason == "slow"


# -- the malformed corpus (hypothesis) ----------------------------------------------------
OUTCOMES: collections.Counter = collections.Counter()


def _mutate(data: bytes, kind: str, pos: int, value: bytes, number: int) -> bytes:
    hdr_cards = [data[i:i + 80] for i in range(0, 2880, 80)]
    if kind == "truncate":
        return data[:pos % (len(data) + 1)]
    if kind == "flip":
        b = bytearray(data)
        b[pos % len(b)] ^= 0xFF
        return bytes(b)
    if kind == "garbage":
        return value * (1 + number % 50)
    if kind == "card":   # replace a mandatory card's value with an absurd number
        keys = [c[:8].strip() for c in hdr_cards]
        target = [b"BITPIX", b"NAXIS", b"NAXIS1", b"NAXIS2"][pos % 4]
        idx = keys.index(target)
        hdr_cards[idx] = (target.ljust(8) + b"= " + str(number).encode().rjust(20)).ljust(80)[:80]
        return b"".join(hdr_cards) + data[2880:]
    if kind == "no_end":
        return b"".join(c for c in hdr_cards if not c.startswith(b"END")).ljust(2880) + data[2880:]
    if kind == "gzip":
        return b"\x1f\x8b" + value
    if kind == "extension":
        return data + value.ljust(2880)[:2880]
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["truncate", "flip", "garbage", "card", "no_end", "gzip", "extension", "same"]),
       pos=st.integers(0, 10_000), value=st.binary(min_size=1, max_size=200),
       number=st.integers(-(2 ** 70), 2 ** 70))
def test_malformed_corpus_never_escapes_or_blocks(tmp_path, kind, pos, value, number):
    """Every mutation of a good image is classified (complete, suspect, incomplete,
    invalid) with bounded reads; check_fits_complete raises only InvalidImage."""
    data = _mutate(GOOD, kind, pos, value, number)
    p = tmp_path / "m.fits"
    p.write_bytes(data)
    t0 = time.perf_counter()
    pr = probe_file(str(p), roots=[tmp_path], max_header_bytes=1 << 20)
    assert pr.status in ("complete", "suspect", "incomplete", "invalid"), pr
    if pr.status in ("incomplete", "invalid", "suspect"):
        assert pr.reason
    try:
        size = check_fits_complete(p)
        assert size <= len(data)
    except InvalidImage as exc:
        assert exc.reason and isinstance(exc, (CorruptImage, TruncatedImage))
    OUTCOMES[(kind, pr.status)] += 1
    OUTCOMES["_seconds"] += time.perf_counter() - t0


def test_zz_malformed_corpus_figures():
    """Prints the corpus figures (outcomes by class, total probe time)."""
    if not OUTCOMES:
        pytest.skip("corpus test not run in this session")
    by_class = collections.Counter()
    for k, v in OUTCOMES.items():
        if k != "_seconds":
            by_class[k[1]] += v
    print(f"\nmalformed corpus: {sum(by_class.values())} files, probe time "
          f"{OUTCOMES['_seconds']:.3f} s; outcomes {dict(by_class)}; "
          f"by mutation {sorted((k, v) for k, v in OUTCOMES.items() if k != '_seconds')}")
    assert by_class["invalid"] and by_class["incomplete"]


def test_probe_of_a_file_replaced_by_a_symlink_after_resolution(tmp_path):
    p = tmp_path / "swap.fits"

    def open_fn(path, flags):
        assert flags & os.O_NOFOLLOW and flags & os.O_NONBLOCK
        raise OSError(40, "Too many levels of symbolic links")

    pr = probe_file(str(p.parent / "nothing.fits"), roots=[tmp_path])
    assert pr.status == "gone"
    p.write_bytes(GOOD)
    pr = probe_file(str(p), roots=[tmp_path], open_fn=open_fn)
    assert pr.status == "changed"
    assert Probe("gone").key is None


def test_a_file_replaced_under_the_same_size_and_mtime_settles_again(tmp_path):
    ik, clock = make(tmp_path)
    p = tmp_path / "s.fits"
    p.write_bytes(GOOD[:3000])                                # truncated: waits to be stable
    assert actions(ik.observe(str(p), "modified")) == []
    clock.advance(4.0)
    st0 = os.stat(p)
    tmp = tmp_path / ".s.fits.part"
    tmp.write_bytes(fits_bytes(4)[:3000])                     # same size, another inode
    os.utime(tmp, ns=(st0.st_atime_ns, st0.st_mtime_ns))     # even the same mtime
    os.replace(tmp, p)
    assert actions(ik.poll()) == []                           # a new candidate: settling again
    clock.advance(2.0)                                        # 6 s after the first version
    assert actions(ik.poll()) == ["waiting"]                  # not stable yet
    clock.advance(4.0)
    out = ik.poll()
    assert actions(out) == ["queue"] and out[0].key == FileKey(str(p), st0.st_size, st0.st_mtime_ns)
