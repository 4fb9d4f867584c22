"""Database locations given as SQLAlchemy URLs or SQLite file paths.

A value with a scheme (``postgresql+psycopg://user@dbhost/contimg``,
``sqlite:////abs/file.sqlite3``) is an SQLAlchemy URL and is never treated as a
path; anything else is an SQLite file path.

Credentials never appear in logs, ``status`` or error messages: every place that
shows a database uses :func:`mask_url` (SQLAlchemy's
``URL.render_as_string(hide_password=True)``). They can come from

* the environment: ``${VAR}`` in the configured value is expanded (an unset
  variable is an error), and libpq's own ``PGPASSWORD`` / ``PGPASSFILE``
  (``~/.pgpass``) / ``PGUSER`` ... apply when the URL has no password;
* a file: ``paths.db_password_file`` (first line, trailing newline stripped) is
  used as the password of every URL that has a user but no password.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: ``scheme://`` (RFC 3986 scheme; SQLAlchemy uses ``dialect+driver``).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class DatabaseURL(str):
    """An SQLAlchemy URL string (full, with any password) that shows itself masked.

    It *is* the URL (``str`` subclass: every API taking a path or URL accepts it and
    it pickles to worker processes), but ``repr`` and :attr:`masked` hide the password.
    """

    @property
    def masked(self) -> str:
        return mask_url(self)

    def __repr__(self) -> str:
        return f"DatabaseURL({self.masked!r})"


def is_url(value: str | os.PathLike) -> bool:
    """True when ``value`` has a URL scheme (``name://``)."""
    return bool(_SCHEME.match(str(value)))


def mask_url(value) -> str:
    """``value`` with any password replaced by ``***`` (paths are returned unchanged)."""
    text = str(value)
    if not is_url(text):
        return text
    try:
        from sqlalchemy.engine import make_url

        return make_url(text).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparsable: hide whatever sits between ':' and '@'
        return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", text)


def mask_passwords(text: str) -> str:
    """Free text (an error message) with the password of every URL in it replaced by ``***``."""
    return re.sub(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*:)[^@/\s]*@", r"\1***@", str(text))


def expand_env(text: str) -> str:
    """Expand ``${VAR}`` / ``$VAR``; raises KeyError(name) for an unset variable.

    In a URL, a variable in the ``user:password@`` part is percent-encoded, so a
    password holding ``@ / : %`` works; elsewhere (host, port, database) it is verbatim.
    """
    from urllib.parse import quote

    userinfo_end = -1
    if is_url(text):
        start = text.index("://") + 3
        slash = text.find("/", start)
        userinfo_end = text.rfind("@", start, slash if slash >= 0 else len(text))

    def sub(m):
        name = m.group(1) or m.group(2)
        if name not in os.environ:
            raise KeyError(name)
        value = os.environ[name]
        return quote(value, safe="") if m.start() < userinfo_end else value

    return _VAR.sub(sub, text)


def parse_database_url(text: str, *, password_file: Path | None = None) -> DatabaseURL:
    """Validate an SQLAlchemy URL and add the password from ``password_file``.

    Raises ValueError with a one-line reason (the password never appears in it).
    """
    from sqlalchemy.engine import make_url

    try:
        url = make_url(text)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy.exc.ArgumentError and friends
        raise ValueError(f"not an SQLAlchemy URL ({type(exc).__name__})") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database '{backend}' (sqlite or postgresql)")
    if backend == "postgresql" and not url.database:
        raise ValueError("no database name after the host (…/dbname)")
    if password_file is not None and url.password is None and backend != "sqlite":
        try:
            secret = Path(password_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read the password file {password_file}: "
                             f"{exc.strerror or exc}") from None
        url = url.set(password=secret[0] if secret else "")
    return DatabaseURL(url.render_as_string(hide_password=False))


def error_line(exc: BaseException, url=None) -> str:
    """A database error as one line: SQLAlchemy's background links and SQL echo dropped,
    the rest joined with '; ', ``url``'s password masked."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("(Background on this error", "[SQL:",
                                                             "[parameters:"))]
    text = "; ".join(lines) or type(exc).__name__
    if url is not None and is_url(url):
        text = text.replace(str(url), mask_url(url))
    return text


def same_database(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two configured values name one database: the same SQLite file (however
    the path is spelled), or URLs equal but for the password and the driver."""
    a, b = str(a), str(b)
    if is_url(a) != is_url(b):
        return False
    if not is_url(a):
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    from sqlalchemy.engine import make_url

    try:
        ua, ub = make_url(a), make_url(b)
    except Exception:  # noqa: BLE001 - unparsable: compare as written
        return a == b
    key = lambda u: (u.get_backend_name(), u.username, u.host, u.port, u.database)  # noqa: E731
    return key(ua) == key(ub)
