"""A clean checkout of this project in another folder: what the benchmarks run the CLI in and the tests run
the pipeline in. Standard library and yaml only, so the tests import it (as `benchmarks.checkout`) without
any benchmark's code, and the benchmarks (as `checkout`, their folder being on sys.path) without the tests'."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("steps", "flows", "params.yaml", "dvc.yaml", ".dvc/config", ".dvcignore", ".gitignore",
                 "pyproject.toml")
"""What a checkout of the project needs to run the pipeline."""


def copy_project(dest: Path, params: dict) -> Path:
    """The project's code and DVC files in `dest`, with `params` as its params.yaml, committed to a new git repo."""
    for rel in PROJECT_FILES:
        src, dst = REPO / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=shrinkflow", "-c", "user.email=shrinkflow@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "a copy of the project"], cwd=dest, check=True)
    return dest
