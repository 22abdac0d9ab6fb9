"""A new Prefect home starts from the migrated template database that `make install` builds; `shrinkflow run`
starts Prefect's temporary server itself, before importing Prefect, and it never outlives the run."""

import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from flows import prefect_server, runtime
from tests.helpers import REPO


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


# --- the temporary server `shrinkflow run` starts before it imports Prefect ------------------------------------------

def _served_home(tmp_path):
    home = tmp_path / "prefect-home"
    home.mkdir()
    runtime.seed_home(home)  # the migrated template `make install` built, as prepare() copies it
    return home


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_temporary_server_answers_and_stops(tmp_path):
    server = prefect_server.temporary(_served_home(tmp_path))
    try:
        server.wait_until_ready(120)
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
            assert response.status == 200
        # its own process group: a terminal's Ctrl-C reaches the command, which stops the server after the flow
        assert os.getpgid(server.process.pid) == server.process.pid != os.getpgid(0)
    finally:
        server.stop()
    assert server.process.returncode is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{server.url}/health", timeout=5)


def test_the_temporary_server_dies_with_the_run_that_started_it(tmp_path):
    """SIGKILL of `shrinkflow run` leaves no orphaned server (PR_SET_PDEATHSIG)."""
    script = ("import sys, time; from pathlib import Path; from flows import prefect_server; "
              "s = prefect_server.temporary(Path(sys.argv[1])); print(s.process.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", script, str(_served_home(tmp_path))], stdout=subprocess.PIPE,
                              text=True, cwd=REPO)
    server_pid = int(parent.stdout.readline())
    assert _alive(server_pid)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server_pid)


def test_a_server_that_cannot_start_is_named_with_its_log(tmp_path):
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / runtime.DATABASE).write_bytes(b"not a database" * 100)
    server = prefect_server.temporary(home)
    try:
        with pytest.raises(prefect_server.ServerStartFailed, match="exited with code"):
            server.wait_until_ready(120)
    finally:
        server.stop()


def test_a_configured_api_is_used_as_it_is(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    with runtime.temporary_api() as server:
        assert server is None
        assert os.environ["PREFECT_API_URL"] == "http://prefect.example:4200/api"
