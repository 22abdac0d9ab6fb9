"""A full disk or a read-only output folder fails the stage that writes, naming the file and the cause;
no partial file is left under a real name, nothing is registered, and a rerun on a healthy disk resumes.

The faults are real file systems: a one-page tmpfs (ENOSPC) and a read-only tmpfs (EROFS) mounted over
`models/`, since as root no permission bit stops a write. Mounting needs CAP_SYS_ADMIN; where it is
missing the tests skip and say so.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.checkout import copy_project
from steps.core.layout import model_path
from steps.core.names import ModelRole
from tests.helpers import shrinkflow, stage_states, tiny_params
from tests.reliability.registry_safety import assert_registry_safe, local_uri

pytestmark = pytest.mark.integration


def mount_tmpfs(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")


@pytest.fixture
def project(tmp_path: Path, idx_dir: Path) -> Iterator[Path]:
    root = copy_project(tmp_path / "project", tiny_params(idx_dir))
    yield root
    subprocess.run(["umount", str(root / "models")], capture_output=True)


@pytest.mark.parametrize(("options", "cause"), [("size=4k", "No space left on device"),
                                                 ("ro,size=1m", "Read-only file system")])
def test_unwritable_model_folder_fails_the_teacher_naming_file_and_cause(project: Path, options: str, cause: str):
    mount_tmpfs(project / "models", options)
    result = shrinkflow(project, "run")
    assert result.returncode == 1, result.stdout[-2000:]
    assert "stage 'teacher' failed" in result.stderr
    assert cause in result.stderr and "models/" in result.stderr, result.stderr[-2000:]
    assert list((project / "models").iterdir()) == []  # no partial file, not even a temp one
    assert not (project / "metrics" / "promotion.json").exists()
    assert assert_registry_safe(local_uri(project)) == 0  # nothing registered, no alias


def test_rerun_after_disk_full_resumes_and_registers(project: Path):
    mount_tmpfs(project / "models", "size=4k")
    assert shrinkflow(project, "run").returncode == 1
    subprocess.run(["umount", str(project / "models")], check=True)  # the disk is healthy again
    rerun = shrinkflow(project, "run")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert stage_states(rerun.stdout)["data"] == "Cached"
    assert (project / model_path(ModelRole.STUDENT)).is_file()
    assert assert_registry_safe(local_uri(project)) == 1  # @champion, with its artifacts and passed gates
