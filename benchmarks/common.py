"""What every benchmark script shares: the command line, the params it starts from, a scratch folder."""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PROJECT_FILES = ("steps", "flows", "params.yaml", "dvc.yaml", ".dvc/config", ".dvcignore", ".gitignore",
                 "pyproject.toml")
"""What a checkout of the project needs to run the pipeline (tests/helpers.py copies the same for its projects)."""


def parser(doc: str) -> argparse.ArgumentParser:
    """--quick, --raw-dir and --out; a script adds its own options to the returned parser."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny settings, to check that it runs")
    p.add_argument("--raw-dir", help="override data.raw_dir")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--recipe", type=Path, help="a YAML file of param overrides (nested like params.yaml), "
                   "applied before -S; e.g. benchmarks/recipes/fashion-93.yaml")
    p.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param (YAML value), e.g. -S teacher.train.epochs=12; validated with the rest")
    return p


def _override(raw: dict, item: str) -> None:
    """Set one `a.b.c=value` in `raw`; the benchmark validates the whole result like params.yaml."""
    key, sep, value = item.partition("=")
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not sep or not isinstance(node, dict) or leaf not in node:
        raise SystemExit(f"-S {item}: expected KEY=VALUE where KEY is a param in params.yaml")
    node[leaf] = yaml.safe_load(value)


def merge(base: dict, override: dict) -> dict:
    """`base` with `override`'s keys set, recursively; neither is changed."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def params(args: argparse.Namespace, quick: Callable[[dict], dict], recipe: dict | None = None) -> dict:
    """The project's params.yaml with the script's `recipe` and then --recipe's, shrunk by `quick` under
    --quick, with the -S overrides, logging to the `benchmark` experiment."""
    raw = merge(yaml.safe_load((REPO / "params.yaml").read_text()), recipe or {})
    if args.recipe:
        raw = merge(raw, yaml.safe_load(args.recipe.read_text()) or {})
    if args.quick:
        raw = quick(raw)
    if args.raw_dir:
        raw["data"]["raw_dir"] = args.raw_dir
    for item in args.overrides:
        _override(raw, item)
    raw["tracking"]["experiment"] = "benchmark"
    return raw


def make_project(dest: Path, raw: dict) -> Path:
    """A clean checkout in `dest`: the project's code and DVC files, committed to a new git repo, with `raw` params."""
    for rel in PROJECT_FILES:
        src, dst = REPO / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    (dest / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "benchmark project"], cwd=dest, check=True)
    return dest


def in_scratch(prefix: str, benchmark: Callable[[Path, dict], Any], raw: dict) -> Any:
    """Run `benchmark(work_dir, raw)` in a temporary folder that is removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return benchmark(work, raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def commit() -> str:
    """The checkout's git commit, with "+dirty" when files differ from it: results name the code that made them."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
