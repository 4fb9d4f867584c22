"""[paths] database values: a value with a scheme is an SQLAlchemy URL (never a path),
credentials from the environment or a file, masked wherever they are shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110_contimg.core.errors import ConfigError
from dsa110_contimg.service.config import config_from_dict
from dsa110_contimg.store.urls import DatabaseURL, mask_url


def paths(base, **table):
    return config_from_dict({"paths": table}, base_dir=base).paths


def test_url_stays_a_url_and_a_path_stays_sqlite(tmp_path):
    p = paths(Path("/etc/contimg"), products_db="postgresql+psycopg://u:pw@dbhost/contimg",
              registry_db="state/reg.sqlite3")
    assert isinstance(p.products_db, DatabaseURL)
    assert str(p.products_db) == "postgresql+psycopg://u:pw@dbhost/contimg"
    assert p.registry_db == Path("/etc/contimg/state/reg.sqlite3")
    assert "pw" not in repr(p) and "u:***@dbhost" in repr(p)
    assert str(paths(tmp_path, products_db="sqlite:////abs/p.sqlite3").products_db) == "sqlite:////abs/p.sqlite3"


def test_credentials_from_environment_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DBUSER", "contimg")
    monkeypatch.setenv("DBPW", "s3cr@t/x")
    p = paths(tmp_path, products_db="postgresql+psycopg://${DBUSER}:${DBPW}@dbhost:5433/contimg")
    from sqlalchemy.engine import make_url

    url = make_url(str(p.products_db))
    assert (url.username, url.password, url.port) == ("contimg", "s3cr@t/x", 5433)
    (tmp_path / "secret").write_text("from-file\n")
    p = paths(tmp_path, products_db="postgresql+psycopg://contimg@dbhost/contimg",
              db_password_file="secret")
    assert make_url(str(p.products_db)).password == "from-file"
    assert "from-file" not in repr(p)
    # no user/password at all: libpq's PGPASSFILE / PGPASSWORD apply; nothing added
    p = paths(tmp_path, products_db="postgresql+psycopg:///contimg?host=/run/postgresql")
    assert make_url(str(p.products_db)).password is None


@pytest.mark.parametrize("value, needle", [
    ("postgresql+psycopg://u:${NOT_SET_ANYWHERE}@h/db", "NOT_SET_ANYWHERE"),
    ("postgresql+psycopg://u:hunter2@h:port/db", "SQLAlchemy URL"),
    ("mysql://u:hunter2@h/db", "unsupported database 'mysql'"),
    ("postgresql+psycopg://u:hunter2@h", "no database name"),
])
def test_bad_url_is_one_line_without_the_password(tmp_path, value, needle):
    with pytest.raises(ConfigError) as err:
        paths(tmp_path, products_db=value)
    text = str(err.value)
    assert needle in text and "paths.products_db" in text and "\n" not in text
    assert "hunter2" not in text


def test_missing_password_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the password file"):
        paths(tmp_path, products_db="postgresql+psycopg://u@h/db", db_password_file="nope")


def test_mask_url():
    assert mask_url("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"
    assert mask_url("/var/lib/contimg/products.sqlite3") == "/var/lib/contimg/products.sqlite3"
