"""File intake: which files become jobs, and when (candidate -> stable -> complete -> queued).

The daemon feeds every path it hears of (a filesystem event or a reconciliation
scan) to :meth:`Intake.observe` and calls :meth:`Intake.poll` periodically; both
return :class:`Decision` objects which the daemon records in the ``files`` table
and turns into jobs. This module does no database work and starts no process,
so the state machine is unit-tested with an injected clock and prober.

States of one path (in memory; the decisions are durable in the database):

``candidate``
    seen, not decided: its key changed recently, or it is not complete yet
    (truncated, no END card, final data block still zero-filled).
``stable``
    its key ``(size, mtime_ns, inode)`` has not changed for ``settle_s`` (s).
``complete``
    the FITS layout derived from its headers matches the size and the final
    data block was written (not a hole left by ``ftruncate``), read from the
    *open* file whose ``fstat`` key did not change during the check.
``queued`` / ``skipped``
    terminal for that key: a job exists, or the entry is recorded as skipped
    with the reason (FIFO, socket, device, directory, symlink leaving the
    watched roots, cannot be stat-ed).

Rules:

* A complete file is queued at once when an event says the writer is done
  (close, rename, create) or a scan finds it; a re-check of a candidate (no
  event: still open for writing) queues it only once ``stable``. A file whose last data bytes are all zero
  (what a writer that writes the header and ``ftruncate``-s to the final size
  leaves before the data arrive; also a legitimate image ending in zeros) or
  that has holes (``st_blocks``) is queued only once ``stable``.
* A file that stays incomplete or is not FITS is queued once ``stable`` anyway,
  so its job fails with the reason (nothing is lost silently). So is a regular
  file we may not read (permission denied, or an I/O error such as EIO or a stale
  NFS handle): the operator sees a failed job ("permission denied") in ``status``
  and ``jobs list``, not a silent skip; an I/O error in the job is retried with
  back-off; a writer that fixes the permissions within ``settle_s``, or a
  filesystem that recovers, is simply measured.
* In polling mode (no close events) every file must be ``stable`` first.
* Symlinks are resolved; the target must lie inside a watched root
  (``symlinks = "within_roots"``, the default), or symlinks are refused
  (``"refuse"``) or followed anywhere (``"follow"``). The same rule applies to
  events and scans (:func:`scan_tree` yields symlinks too).
* Every read is bounded: the file is opened ``O_RDONLY|O_NONBLOCK|O_NOFOLLOW``
  (a FIFO cannot block the open, a symlink swapped in after resolution is
  refused), only regular files are read, headers are read in 2880-byte blocks
  up to ``max_header_bytes``, plus one data block. The daemon runs the probe in
  a :class:`BoundedRunner` thread with a timeout so a hung filesystem cannot
  stall its loop.
* File names are kept losslessly: :func:`db_path` stores a name that is not
  valid UTF-8 as ``fsb64:`` + URL-safe base64 of its bytes; :func:`fs_path`
  gives the name back for ``open``.
"""

from __future__ import annotations

import concurrent.futures as cf
import errno
import os
import stat as stat_mod
import time
from dataclasses import dataclass, field
from typing import Callable

from dsa110_contimg.core.enums import FITS_SUFFIXES, is_fits_name  # noqa: F401 - re-exported
from dsa110_contimg.core.errors import CorruptImage, TruncatedImage
from dsa110_contimg.core.paths import FileKey, db_path, fs_path, printable  # noqa: F401 - re-exported
from dsa110_contimg.science.fitsfile import (  # noqa: F401 - re-exported for the intake's users
    FITS_BLOCK, MAX_HEADER_BYTES, TAIL_BYTES, Layout, check_fits_complete, file_type, fits_layout)

SYMLINK_POLICIES = ("within_roots", "refuse", "follow")


# -- lossless names: dsa110_contimg.core.paths (db_path, fs_path, printable) -----------


# -- probing one path ------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """Result of examining one path.

    ``status``: ``complete``, ``suspect`` (complete by size but the final data
    block is zero-filled or the file has holes), ``incomplete`` (truncated),
    ``invalid`` (not FITS / absurd header), ``unreadable`` (a regular file we
    may not open or read: EACCES/EPERM, EIO, ESTALE, ...), ``skip`` (not a regular
    file, symlink refused or outside the roots), ``gone`` (vanished), ``changed``
    (the key changed while it was read, or it cannot be stat-ed just now). ``key``
    (:class:`FileKey` of the watched name) of an ``unreadable`` file comes from
    ``lstat``/``stat`` (it may not be opened). ``ino``: the inode read, so that a file
    replaced under the same size and mtime starts settling again.
    """

    status: str
    key: FileKey | None = None
    reason: str = ""
    cards: dict | None = None
    target: str | None = None
    ino: int = 0


def _inside(path: str, roots) -> bool:
    for root in roots:
        root = os.path.realpath(root)
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


def _follow_symlink(path: str, lst, roots, symlinks: str, lstat):
    """(target path, its lstat) of ``path`` after the ``symlinks`` policy, or the Probe
    that ends the examination (a refused, outside, dangling or unreadable symlink)."""
    if not stat_mod.S_ISLNK(lst.st_mode):
        return path, lst
    if symlinks == "refuse":
        return Probe("skip", FileKey.of_stat(path, lst), "symlink (symlinks are refused: daemon.symlinks)")
    target = os.path.realpath(path)
    if symlinks == "within_roots" and not _inside(target, roots):
        return Probe("skip", FileKey.of_stat(path, lst),
                     f"symlink to {printable(target)}, outside the watched directories")
    try:
        return target, lstat(target)
    except FileNotFoundError:
        return Probe("skip", FileKey.of_stat(path, lst), f"dangling symlink to {printable(target)}")
    except OSError as exc:
        return Probe("skip", FileKey.of_stat(path, lst),
                     f"cannot stat the symlink's target: {exc.strerror or exc}")


def _open_failure(exc: OSError, path: str, lst, target: str) -> Probe:
    """The Probe of a regular file that could not be opened for reading."""
    if isinstance(exc, FileNotFoundError):
        return Probe("gone")
    if exc.errno == errno.ELOOP:
        return Probe("changed", reason="replaced by a symlink while being examined")
    if exc.errno in (errno.EACCES, errno.EPERM):
        # a regular file we may not read: a failure the operator must see, not a skip
        # (queued once stable, its job fails with the reason; a writer that fixes the
        # permissions before that is simply measured)
        return Probe("unreadable", FileKey.of_stat(path, lst),
                     f"permission denied: cannot open for reading ({exc.strerror or exc})",
                     target=target, ino=int(lst.st_ino))
    # EIO, ESTALE, ETIMEDOUT, EMFILE...: a regular file that may read fine later; never a
    # silent skip. Like a denied one it is queued once stable, and its job retries
    # (environmental errors) or fails with the reason for the operator to see
    return Probe("unreadable", FileKey.of_stat(path, lst), f"cannot open: {exc.strerror or exc}",
                 target=target, ino=int(lst.st_ino))


def _fits_status(read_at, st, key: FileKey, path: str, max_header_bytes: int):
    """(status, reason, header cards) of an open regular file from its FITS layout:
    ``complete``, ``suspect`` (last data block all zero, or holes), ``incomplete`` or
    ``invalid`` (cards None). An OSError while reading propagates."""
    try:
        layout = fits_layout(read_at, key.size, printable(path), max_header_bytes=max_header_bytes)
    except TruncatedImage as exc:
        return "incomplete", exc.reason, None
    except CorruptImage as exc:
        return "invalid", exc.reason, None
    status, reason = "complete", ""
    if layout.data_tail is not None:
        off, n = layout.data_tail
        if not any(read_at(off, n)):
            status, reason = "suspect", "final data block is all zero (still being filled?)"
    if status == "complete" and hasattr(st, "st_blocks") and \
            st.st_blocks * 512 + 2 * 4096 < key.size // 2:
        status, reason = "suspect", "file has holes (still being filled?)"
    return status, reason, layout.cards


def probe_file(path: str, *, roots=(), symlinks: str = "within_roots",
               max_header_bytes: int = MAX_HEADER_BYTES,
               lstat=os.lstat, open_fn=os.open, fstat=os.fstat, pread=os.pread) -> Probe:
    """Examine ``path`` with bounded reads (see the module docstring). I/O functions are
    injectable for tests."""
    try:
        lst = lstat(path)
    except FileNotFoundError:
        return Probe("gone")
    except OSError as exc:
        # EIO, ESTALE, a hung mount: nothing is known of the file yet; examined again later
        return Probe("changed", reason=f"cannot stat: {exc.strerror or exc} (will look again)")
    followed = _follow_symlink(path, lst, roots, symlinks, lstat)
    if isinstance(followed, Probe):
        return followed
    target, lst = followed
    if not stat_mod.S_ISREG(lst.st_mode):  # decided without opening (a socket cannot be opened)
        return Probe("skip", FileKey.of_stat(path, lst), f"not a regular file ({file_type(lst.st_mode)})")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = open_fn(target, flags)
    except OSError as exc:
        return _open_failure(exc, path, lst, target)
    try:
        st = fstat(fd)
        key, ino = FileKey.of_stat(path, st), int(st.st_ino)
        if not stat_mod.S_ISREG(st.st_mode):
            return Probe("skip", key, f"not a regular file ({file_type(st.st_mode)})", target=target)

        def read_at(off: int, n: int) -> bytes:
            return pread(fd, n, off)

        try:
            status, reason, cards = _fits_status(read_at, st, key, path, max_header_bytes)
        except OSError as exc:   # EIO in the middle of the file: as for an open error
            return Probe("unreadable", key, f"cannot read: {exc.strerror or exc}", target=target, ino=ino)
        after = FileKey.of_stat(path, fstat(fd))
        if after != key:
            return Probe("changed", after, "changed while being examined", target=target, ino=ino)
        try:  # the name must still lead to the file we read (not replaced meanwhile)
            now_st = os.stat(target)
            if (now_st.st_ino, now_st.st_dev) != (st.st_ino, st.st_dev):
                return Probe("changed", None, "replaced while being examined", target=target)
        except OSError:
            return Probe("gone")
        return Probe(status, key, reason, cards, target, ino)
    finally:
        os.close(fd)


class BoundedRunner:
    """Runs a call in a worker thread with a timeout.

    A call that does not return in time (hung NFS, a stuck device) is
    abandoned: its thread is left behind (daemon thread) and a fresh one is
    used next. ``hung`` counts abandoned calls still running.
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="intake-check")
        self._abandoned: list[cf.Future] = []

    def call(self, fn, *args, **kw):
        fut = self._pool.submit(fn, *args, **kw)
        try:
            return fut.result(self.timeout_s)
        except cf.TimeoutError:
            self._abandoned.append(fut)
            self._pool.shutdown(wait=False)
            self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="intake-check")
            raise TimeoutError(f"check took longer than {self.timeout_s:g} s") from None

    @property
    def hung(self) -> int:
        self._abandoned = [f for f in self._abandoned if not f.done()]
        return len(self._abandoned)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- the state machine -----------------------------------------------------------------
@dataclass
class Entry:
    """A path not decided yet."""

    state: str
    key: FileKey | None
    since: float
    reason: str = ""
    recorded: bool = False
    ino: int = 0


@dataclass(frozen=True)
class Decision:
    """What the daemon must do for one path.

    ``action``: ``queue`` (make a job; ``cards`` is the primary header or None),
    ``skip`` (record as skipped with ``reason``), ``waiting`` (record as
    incomplete with ``reason``, once), ``forget`` (vanished before a decision).
    ``path`` is the watched name (a ``str``, possibly surrogate-escaped).
    """

    action: str
    path: str
    key: FileKey | None = None
    reason: str = ""
    cards: dict | None = field(default=None, compare=False)


#: Events after which a writer is done with a file.
READY_EVENTS = ("closed", "moved", "created")


class Intake:
    """The candidate -> stable -> complete -> queued state machine.

    Parameters
    ----------
    roots : list of path
        Watched roots (for the symlink rule).
    settle_s : float
        Time (s) a key must stay unchanged to be ``stable``.
    polling : bool
        No close events: every file must be stable first.
    probe : callable, optional
        ``probe(path) -> Probe`` (default :func:`probe_file` with ``roots`` and ``symlinks``).
    clock : callable
        Monotonic seconds (injectable).
    record_after_s : float
        A candidate undecided this long is reported once as ``waiting``.
    """

    def __init__(self, roots=(), *, settle_s: float = 30.0, polling: bool = False,
                 symlinks: str = "within_roots", max_header_bytes: int = MAX_HEADER_BYTES,
                 probe: Callable[[str], Probe] | None = None,
                 clock: Callable[[], float] = time.monotonic, record_after_s: float = 1.0):
        if symlinks not in SYMLINK_POLICIES:
            raise ValueError(f"symlinks must be one of {SYMLINK_POLICIES}, not {symlinks!r}")
        self.roots = [str(r) for r in roots]
        self.settle_s = float(settle_s)
        self.polling = polling
        self.clock = clock
        self.record_after_s = record_after_s
        self.probe = probe or (lambda p: probe_file(p, roots=self.roots, symlinks=symlinks,
                                                    max_header_bytes=max_header_bytes))
        self.entries: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def waiting(self, path: str) -> Entry | None:
        return self.entries.get(path)

    def observe(self, path: str, event: str | None = None) -> list[Decision]:
        """A path was named by an event (``closed``, ``moved``, ``created``, ...) or a scan (None)."""
        return self._examine(path, event)

    def poll(self) -> list[Decision]:
        """Re-examine every undecided path."""
        out: list[Decision] = []
        for path in list(self.entries):
            out += self._examine(path, "recheck")
        return out

    def drop(self, path: str) -> None:
        self.entries.pop(path, None)

    def _examine(self, path: str, event: str | None) -> list[Decision]:
        now = self.clock()
        try:
            pr = self.probe(path)
        except TimeoutError as exc:
            pr = Probe("changed", None, str(exc))
        old = self.entries.get(path)
        if pr.status == "gone":
            self.entries.pop(path, None)
            return [Decision("forget", path)] if old is not None and old.recorded else []
        if pr.status == "skip":
            self.entries.pop(path, None)
            return [Decision("skip", path, pr.key or FileKey(db_path(path), 0, 0), pr.reason)]
        same = old is not None and (old.key, old.ino) == (pr.key, pr.ino)
        if event == "recheck" and pr.status == "complete" and not (same and
                                                                   self.clock() - old.since >= self.settle_s):
            pr = Probe("incomplete", pr.key, "complete, but still open for writing (no close event yet)",
                       pr.cards, pr.target, pr.ino)
        if pr.status == "changed" or pr.key is None:
            self._candidate(path, old, pr, now, pr.reason or "changing")
            return self._maybe_record(path)
        if not same:
            entry = self._candidate(path, old, pr, now, pr.reason or "waiting to be quiescent")
            stable = False
        else:
            entry = old
            stable = now - old.since >= self.settle_s
            if stable:
                entry.state = "stable"
        if self.polling and not stable:
            entry.reason = "waiting for the file to be quiescent"
            return self._maybe_record(path)
        if stable or (pr.status == "complete" and event != "recheck"):
            self.entries.pop(path, None)
            reason = "" if pr.status == "complete" else pr.reason
            return [Decision("queue", path, pr.key, reason, pr.cards)]
        entry.reason = pr.reason
        return self._maybe_record(path)

    def _candidate(self, path, old, pr: Probe, now, reason) -> Entry:
        if old is not None and (old.key, old.ino) == (pr.key, pr.ino) and pr.key is not None:
            old.reason = reason
            return old
        entry = Entry("candidate", pr.key, now, reason, recorded=False, ino=pr.ino)
        self.entries[path] = entry
        return entry

    def _maybe_record(self, path: str) -> list[Decision]:
        e = self.entries.get(path)
        if e is None or e.recorded or e.key is None or self.clock() - e.since < self.record_after_s:
            return []
        e.recorded = True
        return [Decision("waiting", path, e.key, e.reason)]


# -- scanning ----------------------------------------------------------------------------
def scan_tree(root: str | os.PathLike, *, stop: Callable[[], bool] = lambda: False,
              regular_only: bool = False):
    """Yield ``(path, size, mtime_ns)`` of every FITS-named entry under ``root``.

    ``os.scandir`` recursion without following directory symlinks; FIFOs, devices,
    symlinks and FITS-named directories are yielded too (the intake decides, with the same rule as for events)
    unless ``regular_only``; unreadable directories and entries that vanish during the
    scan are skipped; ``stop()`` ends the scan early.
    """
    stack = [os.fspath(root)]
    while stack and not stop():
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        if not is_fits_name(entry.name):
                            continue
                    if is_fits_name(entry.name) and (not regular_only
                                                     or entry.is_file(follow_symlinks=False)):
                        st = entry.stat(follow_symlinks=False)
                        yield entry.path, int(st.st_size), int(st.st_mtime_ns)
                except OSError:
                    continue


__all__ = ["BoundedRunner", "Decision", "FileKey", "Intake", "Layout", "Probe", "check_fits_complete",
           "db_path", "fits_layout", "fs_path", "is_fits_name", "printable", "probe_file", "scan_tree"]
