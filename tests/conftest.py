"""Fixtures only (helpers live in tests/helpers.py): isolated Prefect/MLflow state, synthetic data, projects."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Under pytest-xdist (`make test` runs two workers on two cores) each worker's torch (GNU OpenMP) threads would
# spin while the other worker holds the cores; waiting passively costs nothing to a lone process. Set before torch
# is imported here or in any subprocess a test starts (they inherit it).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Prefect and MLflow read settings at import time: isolate them before anything imports them.
_STATE = Path(tempfile.mkdtemp(prefix="shrinkflow-tests-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
from flows import runtime  # noqa: E402

runtime.prepare(_STATE)
from tests.helpers import SHARED_PREFECT_ENV, Snapshots, tiny_params, write_synthetic_idx  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny ops gain nothing from 2 threads, and lose 100x when another process holds the cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory) -> Path:
    """A folder with the four Fashion-MNIST file names, holding synthetic data."""
    return write_synthetic_idx(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="session")
def stage_params(idx_dir):
    """The tiny params the stage tests run with (validated)."""
    from steps import config

    return config.validate(tiny_params(idx_dir, experiment="step-tests"))


@pytest.fixture(scope="session")
def _snapshots(tmp_path_factory, stage_params) -> Snapshots:
    return Snapshots(tmp_path_factory.mktemp("stages"), stage_params)


@pytest.fixture
def project_after(_snapshots):
    """`project_after("teacher")`: a fresh project in which every stage up to that one has run."""
    return _snapshots.restore


@pytest.fixture(scope="session", autouse=True)
def shared_prefect_server(request, tmp_path_factory):
    """One Prefect temporary server for the session when it runs integration tests, on the migrated template
    database: every CLI run uses it (through cli_env) instead of starting one of its own, which cost 3-11 s per
    run. Unit-test sessions (`make check`) start nothing. Tests that need Prefect's scheduler start
    tests.servers.prefect_server."""
    if not any(item.get_closest_marker("integration") for item in request.session.items):
        yield None
        return
    from flows.prefect_server import temporary

    home = tmp_path_factory.mktemp("shared-prefect")
    runtime.seed_home(home)
    server = temporary(home)
    try:
        server.wait_until_ready()
        os.environ[SHARED_PREFECT_ENV] = server.url
        yield server.url
    finally:
        os.environ.pop(SHARED_PREFECT_ENV, None)
        server.stop()


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`: `--dist loadscope`, one module at a time on a worker, so a module-scoped
    fixture such as a pipeline run or a server stack is built once): the slow tiers first (pipeline runs and
    servers, then the benchmark scripts, then unit tests), so the short modules fill in at the end and the two
    workers finish together. The order within a tier is the collection order; every worker sorts alike."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_tier)


def _tier(item) -> int:
    if item.get_closest_marker("integration"):
        return 0
    return 1 if "benchmarks" in item.path.parts else 2
