"""`shrinkflow run`, `report`, `repro` and `dvc-yaml`: the pipeline and its results.

`run` takes the project run lock first (before writing `-S` overrides), then asks whether anything
is stale: when the last run's record shows every stage current, it prints the last results and
exits without importing Prefect, MLflow or torch, or taking DVC's lock.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer
import yaml

from flows import runtime
from flows.cli import doctor
from flows.cli.console import RootOption, console, err_console, fail
from flows.cli.signals import running_flow

LockTimeoutOption = Annotated[float | None, typer.Option(
    "--lock-timeout", min=0, help="seconds to wait for another run of this checkout (default: run.lock_timeout_s)")]


def run(
    set_: Annotated[list[str], typer.Option("-S", "--set-param", help="override a param: -S teacher.train.epochs=2 "
                                            "(written to params.yaml, as `dvc exp run -S` does)")] = [],  # noqa: B006
    profile: doctor.ProfileOption = None,
    force: Annotated[bool, typer.Option("--force", help="run the flow even when nothing is stale")] = False,
    lock_timeout: LockTimeoutOption = None,
    root: RootOption = Path("."),
) -> None:
    """Run the whole pipeline (data -> teacher -> prune -> distill -> export -> quantize -> evaluate -> promote)."""
    from flows.runlock import EX_TEMPFAIL, RunLocked, project_lock

    root = root.resolve()
    timeout = lock_timeout if lock_timeout is not None else _lock_timeout(root)
    try:
        with project_lock(root, timeout, on_wait=lambda holder: err_console.print(
                f"waiting up to {timeout:g} s for the project run lock, held by {holder}", highlight=False)):
            _run_locked(root, set_, profile, force)
    except RunLocked as err:
        fail(str(err), code=EX_TEMPFAIL)


def _lock_timeout(root: Path) -> float:
    return _load(root).run.lock_timeout_s


def _load(root: Path):
    from steps import config

    try:
        return config.load(root)
    except config.ConfigError as err:
        fail(str(err))


def _run_locked(root: Path, overrides: list[str], profile: str | None, force: bool) -> None:
    from steps import config
    from steps.core import profiles

    try:
        params = config.apply_overrides(root, overrides) if overrides else config.load(root)
    except config.ConfigError as err:
        fail(str(err))
    chosen, source = doctor.choose(root, profile)
    os.environ[profiles.PROFILE_ENV] = chosen.name  # the flow resolves the same profile
    os.environ["SHRINKFLOW_PROFILE_SOURCE"] = source
    _check_local_store(root)
    sync_dvc_yaml(root, params)
    if not force and _up_to_date(root, params, chosen):
        return
    runtime.prepare(root)
    doctor.preflight(root, chosen)
    _check_prefect_home()
    with runtime.temporary_api() as server:  # starts now, while this process imports the flow
        from flows.compress import compress  # imports Prefect: after the environment is prepared

        with running_flow("pipeline", server):
            result = compress(root=str(root), force=force)
    print_results(root)
    if result.get("up_to_date"):
        console.print("up to date: nothing changed since the last run", highlight=False)
    print_states(result["states"])


def _up_to_date(root: Path, params, profile) -> bool:
    """The no-change answer for the local profile: every stage's key and outputs as the last run left them,
    and its registered version still in `mlflow.db`; prints the results and says so. Imports no orchestrator."""
    from flows import staleness
    from steps.core.dag import STAGE_NAMES
    from steps.tracking import localstore

    if profile.uses_services or os.environ.get("PREFECT_API_URL") or os.environ.get("MLFLOW_TRACKING_URI"):
        return False  # against servers the flow runs (and records its flow run); it does the same check itself
    record = staleness.read_record(root)
    db = root / localstore.DB_FILE
    stale = staleness.stale_stages(root, params, record, localstore.local_uri(root),
                                   lambda name, version: localstore.version_exists(db, name, version))
    if stale:
        return False
    print_results(root)
    console.print(f"up to date (nothing changed since {record.finished}, run {record.flow_run})", highlight=False)
    print_states({name: "Cached" for name in STAGE_NAMES})
    return True


def _check_local_store(root: Path) -> None:
    """A damaged local MLflow store is refused by name before anything starts (it holds the registry)."""
    from steps.core.sqlite import CorruptDatabase
    from steps.tracking import localstore

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        try:
            localstore.check_store(root / localstore.DB_FILE)
        except CorruptDatabase as err:
            fail(str(err), code=1)


def _check_prefect_home() -> None:
    """A damaged Prefect database is refused by name, before Prefect fails on it with a raw SQL error."""
    from steps.core.sqlite import CorruptDatabase, check_database

    db = Path(os.environ["PREFECT_HOME"]) / "prefect.db"
    try:
        check_database(db, "only Prefect's records of this checkout's earlier flow runs (finished stages are "
                           "cached in files beside it)", f"Delete it (rm {db}) and run again: nothing else is lost.")
    except CorruptDatabase as err:
        fail(str(err), code=1)


def print_states(states: dict[str, str]) -> None:
    console.print("stages: " + ", ".join(f"{k}={v}" for k, v in states.items()), highlight=False)


def report(root: RootOption = Path(".")) -> None:
    """Print the results table of the last run."""
    print_results(root.resolve())


def print_results(root: Path) -> None:
    from steps.core.layout import PROMOTION, REPORT
    from steps.core.reports import table

    report_file = root / REPORT
    if not report_file.is_file():
        fail(f"{report_file}: no results yet; run `shrinkflow run` first")
    promotion_file = root / PROMOTION
    promotion = json.loads(promotion_file.read_text()) if promotion_file.is_file() else None
    console.print(table(json.loads(report_file.read_text()), promotion))


def repro(lock_timeout: LockTimeoutOption = None, root: RootOption = Path(".")) -> None:
    """`dvc repro` (the second runner) under the project run lock, so it never overlaps a flow run; dvc.yaml
    regenerated first when params.yaml now chooses other code."""
    from flows.runlock import EX_TEMPFAIL, RunLocked, project_lock

    root = root.resolve()
    timeout = lock_timeout if lock_timeout is not None else _lock_timeout(root)
    try:
        with project_lock(root, timeout, on_wait=lambda holder: err_console.print(
                f"waiting up to {timeout:g} s for the project run lock, held by {holder}", highlight=False)):
            sync_dvc_yaml(root, _load(root))
            done = subprocess.run(["dvc", "repro"], cwd=root)
    except RunLocked as err:
        fail(str(err), code=EX_TEMPFAIL)
    raise typer.Exit(done.returncode)


def dvc_yaml(
    root: RootOption = Path("."),
    check: Annotated[bool, typer.Option(help="exit 1 if dvc.yaml differs from the pipeline")] = False,
) -> None:
    """Write dvc.yaml from the pipeline definition (steps/core/dag.py) and params.yaml (which choose the code)."""
    root = root.resolve()
    path, text = root / "dvc.yaml", _dvc_yaml_text(_load(root))
    if check:
        if not path.is_file() or path.read_text() != text:
            fail(f"{path} is out of date; run `shrinkflow dvc-yaml`", code=1)
        return
    path.write_text(text)
    console.print(f"wrote {path}")


def sync_dvc_yaml(root: Path, params) -> None:
    """A stage's code deps follow params (the reader, the families, the terms they choose): dvc.yaml is
    rewritten, and that said once, when it differs from what these params give, so `dvc repro` and
    `dvc status` judge the same code the flow's keys do."""
    path, text = root / "dvc.yaml", _dvc_yaml_text(params)
    if path.is_file() and path.read_text() == text:
        return
    path.write_text(text)
    console.print(f"regenerated {path}: these params choose other code (or steps/ changed)", highlight=False)


def _dvc_yaml_text(params) -> str:
    from steps.core.dag import dvc_yaml as generate

    text = "# Generated by `shrinkflow dvc-yaml` from steps/core/dag.py and params.yaml; do not edit by hand.\n"
    return text + yaml.safe_dump(generate(params), sort_keys=False)
