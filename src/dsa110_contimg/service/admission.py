"""Admission: what the daemon does with a path it heard of (an event or a scan).

One path walks through, in order:

1. its name is classified once (:func:`~dsa110_contimg.service.classify.classify_name`):
   a residual, PSF, weight map, ... is recorded as ``skipped`` with the reason, without
   reading the file;
2. the intake (:class:`~dsa110_contimg.service.intake.Intake`) examines it and decides:
   ``waiting`` (recorded as ``incomplete``: still being written or settling), ``skip``,
   ``forget`` (vanished) or ``queue``;
3. a file to queue that is a restored image (no primary-beam correction) is skipped when
   its primary-beam-corrected partner exists, else waits up to ``pbcor_wait_s`` for it
   (recorded as ``incomplete``); a primary-beam-corrected image arriving ends the wait
   of its restored partner (skipped, superseded);
4. otherwise one job is queued (idempotent per file version), of kind ``mosaic`` or
   ``image`` (:func:`~dsa110_contimg.service.classify.file_kind`).

Every decision is recorded in the ``files`` table first; :attr:`Admission.known` (the
versions already queued or skipped, one :class:`~dsa110_contimg.core.paths.FileKey`
each) is only a cache of that table, loaded at start-up. No process or thread is
started here: the unit tests drive it with a database file and an injected clock.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import structlog

from dsa110_contimg.core.paths import FileKey, db_path, printable
from dsa110_contimg.service import classify
from dsa110_contimg.service.intake import Decision, Intake, is_fits_name
from dsa110_contimg.store import files as filestore
from dsa110_contimg.store.engine import Database
from dsa110_contimg.store.queue import JobQueue

log = structlog.get_logger("dsa110_contimg.service.admission")


@dataclass
class PBWait:
    """A restored image waiting (until ``until``, monotonic s) for its primary-beam-corrected partner."""

    key: FileKey
    until: float
    cards: dict | None
    name: classify.NameClass


class Admission:
    """The admission policy over the intake, the ``files`` table and the job queue.

    Parameters
    ----------
    intake : Intake
        The candidate -> stable -> complete state machine (probes files).
    db : Database
        The products database (``files`` rows).
    queue : JobQueue
        Where accepted files become jobs.
    params : dict
        Photometry parameters of the jobs.
    mosaic_roots : list of path
        Directories whose files are mosaics.
    pbcor_wait_s : float
        Seconds a restored image waits for its primary-beam-corrected partner (0: none).
    max_attempts : int
        Attempts of each queued job.
    on_queued : callable, optional
        Called after a job was created (the daemon claims at once).
    clock : callable
        Monotonic seconds (injectable).
    """

    def __init__(self, intake: Intake, db: Database, queue: JobQueue, *, params: dict,
                 mosaic_roots=(), pbcor_wait_s: float = 0.0, max_attempts: int = 3,
                 on_queued: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic):
        self.intake = intake
        self.db = db
        self.queue = queue
        self.params = params
        self.mosaic_roots = [Path(p) for p in mosaic_roots]
        self.pbcor_wait_s = float(pbcor_wait_s)
        self.max_attempts = max_attempts
        self.on_queued = on_queued
        self.clock = clock
        self.known: set[FileKey] = set()
        self.pb_waits: dict[str, PBWait] = {}
        self.queued = 0    # jobs created since start
        self.skipped = 0   # versions recorded as skipped since start

    def load_known(self) -> None:
        """The versions already decided, from the ``files`` table."""
        self.known = filestore.decided_keys(self.db)

    def waiting(self) -> int:
        """Files seen but not queued or skipped yet (settling, being written, or waiting
        for a primary-beam-corrected partner)."""
        return len(self.intake) + len(self.pb_waits)

    def owns(self, path: str, size: int, mtime_ns: int) -> bool:
        """True when a scan need not hand this version over again: already decided, or
        undecided and unchanged (the re-check owns it), or waiting for its partner."""
        if FileKey(db_path(path), size, mtime_ns) in self.known or path in self.pb_waits:
            return True
        entry = self.intake.waiting(path)
        return entry is not None and entry.key is not None and \
            (entry.key.size, entry.key.mtime_ns) == (size, mtime_ns)

    def consider(self, path: str, *, event: str | None) -> None:
        """A candidate path (an event, or a scan when ``event`` is None)."""
        path = os.path.abspath(path)
        if not is_fits_name(path) or os.path.basename(path).startswith("."):
            return  # not a FITS name, or a hidden temporary/canary file (not even recorded)
        name = classify.classify_name(path)
        if name.role == "skip":
            try:
                st = os.lstat(path)
            except OSError:
                return
            key = FileKey.of_stat(path, st)
            if key not in self.known:
                self._decide(key, "skipped", reason=name.reason)
            return
        for dec in self.intake.observe(path, event):   # decisions about this path only
            self._apply(dec, name)

    def recheck(self) -> None:
        """Re-examine undecided files; end the primary-beam waits that ran out."""
        for dec in self.intake.poll():
            self._apply(dec, classify.classify_name(dec.path))
        now = self.clock()
        for path, wait in list(self.pb_waits.items()):
            if now >= wait.until:
                del self.pb_waits[path]
                self._accept(path, wait.key, wait.name, wait.cards, pb_waited=True)

    def _apply(self, dec: Decision, name: classify.NameClass) -> None:
        if dec.action == "forget":
            filestore.forget_incomplete(self.db, db_path(dec.path))
            return
        if dec.key in self.known:
            return
        if dec.action == "skip":
            self._decide(dec.key, "skipped", reason=dec.reason)
        elif dec.action == "waiting":
            filestore.record_file(self.db, dec.key, "incomplete", reason=dec.reason)
        elif dec.action == "queue":
            if dec.reason:
                log.warning("file_queued_unchecked", path=printable(dec.path), reason=dec.reason,
                            settle_s=self.intake.settle_s)
            self._accept(dec.path, dec.key, name, dec.cards, reason=dec.reason or None)

    def _accept(self, path: str, key: FileKey, name: classify.NameClass, cards: dict | None, *,
                pb_waited: bool = False, reason: str | None = None) -> None:
        """Queue a file, or skip or hold a restored image for its primary-beam-corrected
        partner. ``reason``: why it was queued unchecked (kept on its ``files`` row)."""
        if name.role == "restored":
            partner = classify.pb_sibling(path)
            if partner is not None:
                self._decide(key, "skipped", reason=f"{name.reason}; superseded by the primary-beam-"
                                                   f"corrected {partner.name}")
                return
            if self.pbcor_wait_s > 0 and not pb_waited:
                filestore.record_file(self.db, key, "incomplete", reason=(
                    f"{name.reason}: waiting {self.pbcor_wait_s:g} s for a primary-beam-corrected sibling"))
                self.pb_waits[path] = PBWait(key, self.clock() + self.pbcor_wait_s, cards, name)
                return
        kind = classify.file_kind(path, cards, self.mosaic_roots)
        job_id, created = self.queue.enqueue(
            self.params, [(key.path, kind, None)], origin="daemon", idempotency_key=key.idempotency_key,
            max_attempts=self.max_attempts)
        self._decide(key, "queued", kind=kind, batch_id=job_id, reason=reason)
        if created:
            self.queued += 1
            self.on_queued()
            log.info("file_queued", path=printable(path), kind=kind, job_id=job_id, size=key.size)
        if name.role == "pbcor":
            for restored in classify.restored_counterparts(path):
                wait = self.pb_waits.pop(str(restored), None)
                if wait is not None:
                    self._decide(wait.key, "skipped",
                                 reason=f"superseded by the primary-beam-corrected {Path(path).name}")

    def _decide(self, key: FileKey, decision: str, *, kind=None, reason=None, batch_id=None) -> None:
        filestore.record_file(self.db, key, decision, kind=kind, reason=reason, batch_id=batch_id)
        self.known.add(key)
        if decision == "skipped":
            self.skipped += 1
            log.info("file_skipped", path=key.path, reason=reason)


__all__ = ["Admission", "PBWait"]
