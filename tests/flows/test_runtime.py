"""A new Prefect home starts from the migrated template database that `make install` builds."""

import sqlite3
from contextlib import closing

import pytest

from flows import runtime


@pytest.fixture
def template(tmp_path, monkeypatch):
    path = tmp_path / "share" / "prefect-x.db"
    path.parent.mkdir()
    with closing(sqlite3.connect(path)) as db:
        db.execute("create table alembic_version (version_num text)")
        db.execute("insert into alembic_version values ('head')")
        db.commit()
    monkeypatch.setattr(runtime, "template_path", lambda: path)
    for key in runtime._DATABASE_URL_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    return path


def version(db) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("select version_num from alembic_version").fetchone()[0]


def test_a_home_without_a_database_gets_the_template(tmp_path, template):
    home = tmp_path / "home"
    home.mkdir()
    assert runtime.seed_home(home)
    assert version(home / runtime.DATABASE) == "head"
    assert [p.name for p in home.iterdir()] == [runtime.DATABASE]  # no temp file left behind


def test_an_existing_database_is_never_replaced(tmp_path, template):
    home = tmp_path / "home"
    home.mkdir()
    (home / runtime.DATABASE).write_bytes(b"the user's runs")
    assert not runtime.seed_home(home)
    assert (home / runtime.DATABASE).read_bytes() == b"the user's runs"


def test_a_configured_database_is_left_to_prefect(tmp_path, template, monkeypatch):
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://prefect@db/prefect")
    home = tmp_path / "home"
    home.mkdir()
    assert not runtime.seed_home(home)
    assert not (home / runtime.DATABASE).exists()
