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
    watched roots, unreadable).

Rules:

* A complete file is queued at once when an event says the writer is done
  (close, rename, create) or a scan finds it; a re-check of a candidate (no
  event: still open for writing) queues it only once ``stable``. A file whose last data bytes are all zero
  (what a writer that writes the header and ``ftruncate``-s to the final size
  leaves before the data arrive; also a legitimate image ending in zeros) or
  that has holes (``st_blocks``) is queued only once ``stable``.
* A file that stays incomplete or is not FITS is queued once ``stable`` anyway,
  so its job fails with the reason (nothing is lost silently).
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

import base64
import concurrent.futures as cf
import errno
import math
import os
import stat as stat_mod
import time
from dataclasses import dataclass, field
from typing import Callable

from dsa110_contimg.photometry.errors import CorruptImage, TruncatedImage

FITS_BLOCK = 2880
_CARD = 80
#: Default bound of the bytes read while looking for END cards (8 MiB).
MAX_HEADER_BYTES = 8 * 1024 * 1024
#: Bytes at the end of the data checked for "still zero-filled".
TAIL_BYTES = 512
#: At most this many HDUs are followed.
MAX_HDUS = 1000
FITS_SUFFIXES = (".fits", ".fit", ".fts")
SYMLINK_POLICIES = ("within_roots", "refuse", "follow")
_FSB64 = "fsb64:"


# -- lossless names ------------------------------------------------------------------
def db_path(path: str | bytes | os.PathLike) -> str:
    """The form of a path stored in the database: itself when it is valid UTF-8,
    else ``fsb64:`` + URL-safe base64 of its bytes (absolute paths start with ``/``,
    so the two forms cannot collide)."""
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _FSB64 + base64.urlsafe_b64encode(raw).decode("ascii")


def fs_path(stored: str) -> str:
    """Inverse of :func:`db_path`: a ``str`` usable with ``open`` (surrogate-escaped)."""
    if stored.startswith(_FSB64):
        return os.fsdecode(base64.urlsafe_b64decode(stored[len(_FSB64):].encode("ascii")))
    return stored


def printable(path: str) -> str:
    """A log-safe rendering of a path (undecodable bytes as ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_fits_name(path: str) -> bool:
    return os.fsencode(path).lower().endswith(tuple(s.encode() for s in FITS_SUFFIXES))


# -- the FITS layout parser (bounded) ----------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """What the headers say about a file.

    Attributes
    ----------
    size : int
        Expected file size (bytes): header and data blocks of every HDU.
    cards : dict
        ``keyword -> raw value string`` of the primary header (first occurrence).
    data_tail : tuple of (int, int)
        ``(offset, length)`` of the last up-to-512 data bytes of the last HDU
        that has data (padding excluded), or None when no HDU has data.
    """

    size: int
    cards: dict
    data_tail: tuple[int, int] | None


def _parse_header(read_at, name, offset: int, size: int, budget: int) -> tuple[dict, int] | None:
    """One header starting at ``offset``: ``(cards, header_bytes)``; None when the bytes
    there are not an extension header (trailing bytes, ignored)."""
    cards: dict[str, str] = {}
    pos = offset
    first = True
    while True:
        if pos - offset >= budget:
            raise CorruptImage(f"no END card in the first {budget} header bytes at offset {offset} "
                               "(not a FITS header, or absurdly long)", name)
        block = read_at(pos, FITS_BLOCK)
        if first:
            if offset == 0:
                if block.startswith(b"\x1f\x8b"):
                    raise CorruptImage("gzip-compressed file: decompress it first (memory-mapped "
                                       "photometry needs a plain FITS file)", name)
                if len(block) == 0:
                    raise CorruptImage("empty file, not a FITS image", name)
                if not block.startswith(b"SIMPLE  ="):
                    raise CorruptImage("not a FITS file (first card is not SIMPLE)", name)
            elif not block.startswith(b"XTENSION="):
                return None
        if len(block) < FITS_BLOCK:
            raise TruncatedImage(f"file ends inside the header at byte {size} (no END card)", name)
        first = False
        try:
            text = block.decode("ascii")
        except UnicodeDecodeError:
            raise CorruptImage(f"non-ASCII bytes in the header block at byte {pos}", name) from None
        pos += FITS_BLOCK
        for i in range(0, FITS_BLOCK, _CARD):
            card = text[i:i + _CARD]
            key = card[:8].strip()
            if key == "END":
                return cards, pos - offset
            if card[8:10] == "= " and key not in cards:
                cards[key] = card[10:].split("/")[0].strip()


def _card_int(cards: dict, key: str, name, default=None) -> int:
    if key not in cards:
        if default is not None:
            return default
        raise CorruptImage(f"header lacks the mandatory keyword {key}", name)
    try:
        return int(cards[key])
    except ValueError:
        raise CorruptImage(f"header keyword {key}={cards[key]!r} is not an integer", name) from None


def fits_layout(read_at: Callable[[int, int], bytes], size: int, name, *,
                max_header_bytes: int = MAX_HEADER_BYTES) -> Layout:
    """Parse the headers of a FITS file of ``size`` bytes through ``read_at(offset, n)``.

    Reads at most ``max_header_bytes`` of headers in total and never reads data.

    Raises
    ------
    CorruptImage
        Not FITS, or headers beyond the bounds, or absurd values.
    TruncatedImage
        Shorter than its headers imply (partial write or damage).
    """
    offset = 0
    primary: dict | None = None
    tail = None
    budget = int(max_header_bytes)
    for _ in range(MAX_HDUS):
        parsed = _parse_header(read_at, name, offset, size, budget)
        if parsed is None:  # trailing bytes that are not an extension: ignored
            break
        cards, hbytes = parsed
        budget -= hbytes
        if primary is None:
            primary = cards
        bitpix = _card_int(cards, "BITPIX", name)
        if bitpix not in (8, 16, 32, 64, -32, -64):
            raise CorruptImage(f"invalid BITPIX {bitpix}", name)
        naxis = _card_int(cards, "NAXIS", name)
        if not 0 <= naxis <= 999:
            raise CorruptImage(f"invalid NAXIS {naxis}", name)
        dims = [_card_int(cards, f"NAXIS{i}", name) for i in range(1, naxis + 1)]
        if any(d < 0 for d in dims):
            raise CorruptImage(f"negative axis length in NAXISn {dims}", name)
        if offset > 0 or "GROUPS" in cards:
            pcount = _card_int(cards, "PCOUNT", name, 0)
            gcount = _card_int(cards, "GCOUNT", name, 1)
        else:
            pcount, gcount = 0, 1
        if pcount < 0 or gcount < 0:
            raise CorruptImage(f"negative PCOUNT/GCOUNT ({pcount}, {gcount})", name)
        if "GROUPS" in cards and dims and dims[0] == 0:
            dims = dims[1:]
        nelem = math.prod(dims) if dims else 0
        raw = abs(bitpix) // 8 * gcount * (pcount + nelem)
        dbytes = -(-raw // FITS_BLOCK) * FITS_BLOCK
        if raw:
            n = min(raw, TAIL_BYTES)
            tail = (offset + hbytes + raw - n, n)
        offset += hbytes + dbytes
        if size < offset:
            raise TruncatedImage(
                f"file is {size} bytes but its header implies at least {offset} bytes "
                "(truncated or still being written)", name)
        if size == offset:
            break
    else:
        raise CorruptImage(f"more than {MAX_HDUS} HDUs", name)
    return Layout(offset, primary or {}, tail)


def check_fits_complete(path: str | os.PathLike, *, max_header_bytes: int = MAX_HEADER_BYTES) -> int:
    """Check that a regular FITS file is as long as its headers say; return that size.

    Bounded: opened non-blocking, only a regular file is read, at most
    ``max_header_bytes`` of headers. Raises :class:`CorruptImage` /
    :class:`TruncatedImage` (with the file's name) otherwise.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise CorruptImage(f"cannot open the file: {exc.strerror or exc}", name) from None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise CorruptImage(f"not a regular file ({_kind_of(st.st_mode)})", name)
        return fits_layout(lambda off, n: os.pread(fd, n, off), st.st_size, name,
                           max_header_bytes=max_header_bytes).size
    except OSError as exc:
        raise CorruptImage(f"cannot read the file: {exc.strerror or exc}", name) from None
    finally:
        os.close(fd)


def _kind_of(mode: int) -> str:
    for test, what in ((stat_mod.S_ISFIFO, "FIFO"), (stat_mod.S_ISSOCK, "socket"),
                       (stat_mod.S_ISCHR, "character device"), (stat_mod.S_ISBLK, "block device"),
                       (stat_mod.S_ISDIR, "directory"), (stat_mod.S_ISLNK, "symlink")):
        if test(mode):
            return what
    return "special file"


# -- probing one path ------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    """One version of a file: size (bytes), mtime (ns) and inode, from ``fstat`` of the open file."""

    size: int
    mtime_ns: int
    ino: int = 0

    @classmethod
    def of_stat(cls, st) -> "Key":
        return cls(int(st.st_size), int(st.st_mtime_ns), int(st.st_ino))


@dataclass(frozen=True)
class Probe:
    """Result of examining one path.

    ``status``: ``complete``, ``suspect`` (complete by size but the final data
    block is zero-filled or the file has holes), ``incomplete`` (truncated),
    ``invalid`` (not FITS / absurd header), ``skip`` (not a regular file,
    symlink refused, unreadable), ``gone`` (vanished), ``changed`` (the key
    changed while it was read).
    """

    status: str
    key: Key | None = None
    reason: str = ""
    cards: dict | None = None
    target: str | None = None


def _inside(path: str, roots) -> bool:
    for root in roots:
        root = os.path.realpath(root)
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


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
        return Probe("skip", reason=f"cannot stat: {exc.strerror or exc}")
    target = path
    if stat_mod.S_ISLNK(lst.st_mode):
        if symlinks == "refuse":
            return Probe("skip", Key.of_stat(lst), "symlink (symlinks are refused: daemon.symlinks)")
        target = os.path.realpath(path)
        if symlinks == "within_roots" and not _inside(target, roots):
            return Probe("skip", Key.of_stat(lst),
                         f"symlink to {printable(target)}, outside the watched directories")
        try:
            lst = lstat(target)
        except FileNotFoundError:
            return Probe("skip", Key.of_stat(lst), f"dangling symlink to {printable(target)}")
        except OSError as exc:
            return Probe("skip", Key.of_stat(lst), f"cannot stat the symlink's target: {exc.strerror or exc}")
    if not stat_mod.S_ISREG(lst.st_mode):  # decided without opening (a socket cannot be opened)
        return Probe("skip", Key.of_stat(lst), f"not a regular file ({_kind_of(lst.st_mode)})")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = open_fn(target, flags)
    except FileNotFoundError:
        return Probe("gone")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Probe("changed", reason="replaced by a symlink while being examined")
        return Probe("skip", Key.of_stat(lst), f"cannot open: {exc.strerror or exc}")
    try:
        st = fstat(fd)
        key = Key.of_stat(st)
        if not stat_mod.S_ISREG(st.st_mode):
            return Probe("skip", key, f"not a regular file ({_kind_of(st.st_mode)})", target=target)

        def read_at(off: int, n: int) -> bytes:
            return pread(fd, n, off)

        try:
            layout = fits_layout(read_at, key.size, printable(path), max_header_bytes=max_header_bytes)
            status, reason = "complete", ""
            if layout.data_tail is not None:
                off, n = layout.data_tail
                if not any(read_at(off, n)):
                    status, reason = "suspect", "final data block is all zero (still being filled?)"
            if status == "complete" and hasattr(st, "st_blocks") and \
                    st.st_blocks * 512 + 2 * 4096 < key.size // 2:
                status, reason = "suspect", "file has holes (still being filled?)"
            cards = layout.cards
        except TruncatedImage as exc:
            status, reason, cards = "incomplete", exc.reason, None
        except CorruptImage as exc:
            status, reason, cards = "invalid", exc.reason, None
        except OSError as exc:
            return Probe("skip", key, f"cannot read: {exc.strerror or exc}", target=target)
        after = Key.of_stat(fstat(fd))
        if after != key:
            return Probe("changed", after, "changed while being examined", target=target)
        try:  # the name must still lead to the file we read (not replaced meanwhile)
            now_st = os.stat(target)
            if (now_st.st_ino, now_st.st_dev) != (st.st_ino, st.st_dev):
                return Probe("changed", None, "replaced while being examined", target=target)
        except OSError:
            return Probe("gone")
        return Probe(status, key, reason, cards, target)
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
    key: Key | None
    since: float
    reason: str = ""
    recorded: bool = False


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
    key: Key | None = None
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
            return [Decision("skip", path, pr.key or Key(0, 0), pr.reason)]
        if event == "recheck" and pr.status == "complete" and not (old and old.key == pr.key and
                                                                   self.clock() - old.since >= self.settle_s):
            pr = Probe("incomplete", pr.key, "complete, but still open for writing (no close event yet)",
                       pr.cards, pr.target)
        if pr.status == "changed" or pr.key is None:
            self._candidate(path, old, pr.key, now, pr.reason or "changing")
            return self._maybe_record(path)
        if old is None or old.key != pr.key:
            entry = self._candidate(path, old, pr.key, now, pr.reason or "waiting to be quiescent")
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

    def _candidate(self, path, old, key, now, reason) -> Entry:
        if old is not None and old.key == key and key is not None:
            old.reason = reason
            return old
        entry = Entry("candidate", key, now, reason, recorded=False)
        self.entries[path] = entry
        return entry

    def _maybe_record(self, path: str) -> list[Decision]:
        e = self.entries.get(path)
        if e is None or e.recorded or e.key is None or self.clock() - e.since < self.record_after_s:
            return []
        e.recorded = True
        return [Decision("waiting", path, e.key, e.reason)]


# -- scanning ----------------------------------------------------------------------------
def scan_tree(root: str | os.PathLike, *, stop: Callable[[], bool] = lambda: False):
    """Yield ``(path, size, mtime_ns)`` of every FITS-named entry under ``root``.

    ``os.scandir`` recursion without following directory symlinks; FIFOs, devices,
    symlinks and FITS-named directories are yielded too (the intake decides, with the same rule as for events);
    unreadable directories are skipped; ``stop()`` ends the scan early.
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
                    if is_fits_name(entry.name):
                        st = entry.stat(follow_symlinks=False)
                        yield entry.path, int(st.st_size), int(st.st_mtime_ns)
                except OSError:
                    continue


__all__ = ["BoundedRunner", "Decision", "Intake", "Key", "Layout", "Probe", "check_fits_complete",
           "db_path", "fits_layout", "fs_path", "is_fits_name", "printable", "probe_file", "scan_tree"]
