"""File names kept losslessly between the filesystem and the databases.

A POSIX file name is a byte string; Python gives a name that is not valid
UTF-8 as a ``str`` with surrogate escapes (``os.fsdecode``), which no database
driver can store. Two forms of one name are therefore kept apart:

* the **filesystem form** (:func:`fs_path`): a ``str``, possibly
  surrogate-escaped, to pass to ``open``/``os.stat``;
* the **database form** (:func:`db_path`): the name itself when it is valid
  UTF-8, else ``fsb64:`` + URL-safe base64 of its bytes. This is what every
  table holds (``files``, ``batch_job_items``, ``images``, the data registry),
  so the same image has the same path string everywhere.

:func:`printable` renders any of them for a human (undecodable bytes as ``\\xNN``;
lossy, for logs and error messages only).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

FSB64 = "fsb64:"


@dataclass(frozen=True)
class FileKey:
    """Identity of one version of a file: its name in the database form (:func:`db_path`),
    size (bytes) and mtime (ns). Never the inode (Lustre may change it). The ``files``
    table, the daemon's set of decided versions and the intake all use this one key."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> "FileKey":
        st = os.stat(path)
        return cls(str(path), int(st.st_size), int(st.st_mtime_ns))

    @classmethod
    def of_stat(cls, path: str | bytes | os.PathLike, st) -> "FileKey":
        """The key of ``path`` from a ``stat`` result already taken."""
        return cls(db_path(path), int(st.st_size), int(st.st_mtime_ns))

    @property
    def idempotency_key(self) -> str:
        return f"{self.path}:{self.size}:{self.mtime_ns}"


def db_path(path: str | bytes | os.PathLike) -> str:
    """The form of a path stored in a database: itself when it is valid UTF-8,
    else ``fsb64:`` + URL-safe base64 of its bytes (absolute paths start with ``/``,
    so the two forms cannot collide). Idempotent: a database form is returned as is."""
    if isinstance(path, str) and path.startswith(FSB64):
        return path
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return FSB64 + base64.urlsafe_b64encode(raw).decode("ascii")


def fs_path(stored: str | os.PathLike) -> str:
    """Inverse of :func:`db_path`: a ``str`` usable with ``open`` (surrogate-escaped).
    A filesystem form is returned as is."""
    stored = os.fspath(stored)
    if isinstance(stored, bytes):
        return os.fsdecode(stored)
    if stored.startswith(FSB64):
        return os.fsdecode(base64.urlsafe_b64decode(stored[len(FSB64):].encode("ascii")))
    return stored


def printable(text: str | os.PathLike) -> str:
    """A log- and database-safe rendering of a path or of a message naming one
    (undecodable bytes as ``\\xNN``; ``fsb64:`` names decoded first). Lossy: for people."""
    text = os.fspath(text)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    if text.startswith(FSB64):
        try:
            text = fs_path(text)
        except (ValueError, TypeError):
            pass
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:   # lone surrogates outside the escape range
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


__all__ = ["FSB64", "db_path", "fs_path", "printable"]
