"""The scheduled job for real: `prefect server start` (with its scheduler), `shrinkflow serve` on a short interval,
the pipeline on tiny synthetic data, MLflow's local registry. Three phases, each judged on a run that started
after the change: a run registers and promotes; a run failing a gate completes with 'not promoted: <gate>';
a crashing run fails and leaves the champion where it was."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from benchmarks.checkout import copy_project
from steps import config, tracking
from steps.core.names import Alias, Tag
from steps.registry import history
from tests.helpers import BIN, REPO, cli_env, tiny_params, write_params
from tests.servers import prefect_server

pytestmark = pytest.mark.integration

RUN_WAIT_S = 420  # the bound on each phase; a first run takes about a minute on 2 busy cores


def test_prefect_yaml_deploys_the_flow_on_the_params_schedule():
    deployment = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"][0]
    schedule = config.load(REPO).schedule
    assert deployment["name"] == schedule.deployment
    assert deployment["schedules"] == [{"cron": schedule.cron, "timezone": schedule.timezone}]
    assert deployment["entrypoint"] == "flows/compress.py:compress" and deployment["concurrency_limit"] == 1
    assert (REPO / deployment["entrypoint"].split(":")[0]).is_file()


def test_serve_refuses_without_a_prefect_server(tmp_path, idx_dir):
    root = tmp_path / "p"
    root.mkdir()
    write_params(root, tiny_params(idx_dir))
    env = {**cli_env(), "PYTHONPATH": str(REPO), "PREFECT_API_URL": ""}  # no server: not even the tests' shared one
    out = subprocess.run([str(BIN / "shrinkflow"), "serve", "--root", str(root)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "prefect server start" in " ".join(out.stderr.split())


def flow_runs(api: str) -> list[dict]:
    body = json.dumps({"sort": "START_TIME_ASC", "limit": 200}).encode()
    request = urllib.request.Request(f"{api}/flow_runs/filter", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def finished_run_started_after(api: str, since: datetime, serve: subprocess.Popen, log: Path) -> dict:
    """The first flow run that started after `since` and reached a final state, within RUN_WAIT_S."""
    deadline = time.monotonic() + RUN_WAIT_S
    while time.monotonic() < deadline:
        assert serve.poll() is None, f"shrinkflow serve exited:\n{log.read_text()[-3000:]}"
        for run in flow_runs(api):
            started = run.get("start_time")
            if started and datetime.fromisoformat(started) > since and run["state"]["type"] in (
                    "COMPLETED", "FAILED", "CRASHED"):
                return run
        time.sleep(1)  # polling interval; the loop is bounded by the deadline
    pytest.fail(f"no flow run finished within {RUN_WAIT_S} s of {since}; serve log:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def ctrl_c_reaches_children():
    """Children started inside this block get SIGINT's default action, as in a terminal. A background job (CI's
    `make test` is one) starts with SIGINT ignored, which children inherit: `shrinkflow serve` then ignored the
    Ctrl-C below and every run of this test waited 30 s for the SIGKILL. A handler, unlike SIG_IGN, is reset to
    the default at exec."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def serving(root: Path, api: str, log: Path):
    env = {**cli_env(), "PREFECT_API_URL": api, "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONPATH": str(REPO)}
    with log.open("w") as out, ctrl_c_reaches_children():
        serve = subprocess.Popen([str(BIN / "shrinkflow"), "serve", "--root", str(root), "--interval", "3"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield serve
    finally:  # Ctrl-C for the runner (it cancels what it runs and pauses the schedule), then whatever remains
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)


def edit_params(root: Path, section: str, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section].update(values)
    write_params(root, params)


def test_scheduled_runs_promote_then_stop_at_a_gate_then_crash_without_touching_the_champion(
        tmp_path, idx_dir, monkeypatch):
    params = tiny_params(idx_dir, experiment="scheduled")
    root = copy_project(tmp_path / "project", params)
    name = params["promote"]["model_name"]
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "2")  # read by the server we start
    with prefect_server(tmp_path) as server, serving(root, server.url, tmp_path / "serve.log") as serve:
        log = tmp_path / "serve.log"
        first = finished_run_started_after(server.url, datetime.now(UTC), serve, log)
        assert first["state"]["type"] == "COMPLETED", first["state"]
        assert first["state"]["message"] == f"promoted: {name} v1 -> @champion"

        edit_params(root, "promote", min_accuracy=0.9999)
        refused = finished_run_started_after(server.url, datetime.now(UTC), serve, log)
        assert refused["state"]["type"] == "COMPLETED", refused["state"]
        assert refused["state"]["message"].startswith("not promoted: min_accuracy")

        edit_params(root, "data", path=str(tmp_path / "no-such-data"))
        crashed = finished_run_started_after(server.url, datetime.now(UTC), serve, log)
        assert crashed["state"]["type"] == "FAILED", crashed["state"]

    tracking.use_store(root)
    assert tracking.aliases(name)[Alias.CHAMPION] == 1
    champion = tracking.model_version(name, 1)
    assert "prefect deployment" in champion.tags[Tag.TRIGGER] and "schedule" in champion.tags[Tag.TRIGGER]
    events = history.events(name)
    assert [e["event"] for e in events] == ["promoted", "rejected"]  # the crash decided nothing
    assert "min_accuracy" in events[1]["reason"]
