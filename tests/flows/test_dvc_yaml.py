"""dvc.yaml follows params.yaml: a stage's code deps hold what its params choose (here the data stage's reader), so
`shrinkflow dvc-yaml` writes it for the project's params and `shrinkflow repro` rewrites it, saying so once, when
params now choose other code. (`shrinkflow run` does the same: tests/flows/test_code_keys_flow.py.)"""

import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.cli import run as run_command
from tests.helpers import default_params, write_params


def data_deps(root: Path) -> list[str]:
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["data"]["deps"]


def cli(root: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--root", str(root)])


def test_dvc_yaml_is_written_for_the_projects_params_and_repro_regenerates_it(tmp_path, monkeypatch):
    params = default_params()
    write_params(tmp_path, params)
    assert cli(tmp_path, "dvc-yaml").exit_code == 0
    assert "steps/sources/idx.py" in data_deps(tmp_path)
    assert "steps/sources/table.py" not in data_deps(tmp_path)

    params["data"].update(source="table", label_column="label", class_names=None)
    write_params(tmp_path, params)
    assert cli(tmp_path, "dvc-yaml", "--check").exit_code == 1
    ran = []
    monkeypatch.setattr(run_command.subprocess, "run",
                        lambda args, cwd: ran.append(args) or subprocess.CompletedProcess(args, 0))
    first = cli(tmp_path, "repro")
    assert first.exit_code == 0, first.output
    assert ran == [["dvc", "repro"]]
    assert first.output.count("regenerated") == 1
    assert "steps/sources/table.py" in data_deps(tmp_path)
    assert "steps/sources/idx.py" not in data_deps(tmp_path)
    again = cli(tmp_path, "repro")
    assert again.exit_code == 0 and "regenerated" not in again.output
    assert cli(tmp_path, "dvc-yaml", "--check").exit_code == 0
