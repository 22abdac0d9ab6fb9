"""What every benchmark script shares: the command line, the params it starts from, a scratch folder, and the
report each writes into benchmarks/results/."""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def parser(doc: str) -> argparse.ArgumentParser:
    """--quick, --data-path, --out, --recipe and -S; a script adds its own options to the returned parser."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny settings, to check that it runs")
    p.add_argument("--data-path", help="override data.path (the source's folder or file)")
    p.add_argument("--out", type=Path, help=f"where the report goes (default: {RESULTS.relative_to(REPO)}; a --quick "
                   "run writes one only where --out says, marked quick: its numbers mean nothing)")
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
    """`base` with `override`'s keys set, recursively; neither is changed. A section chosen by `name` (a model
    family's arch) that names another family replaces the base's whole, since one family's keys are not
    another's."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        same = isinstance(value, dict) and isinstance(out.get(key), dict) and \
            value.get("name", out[key].get("name")) == out[key].get("name")
        out[key] = merge(out[key], value) if same else value
    return out


def params(args: argparse.Namespace, quick: Callable[[dict], dict], recipe: dict | None = None,
           data: dict | None = None) -> dict:
    """The project's params.yaml with the script's `recipe` and then --recipe's, shrunk by `quick` under
    --quick, with the -S overrides, logging to the `benchmark` experiment. `data`: a whole data section in place
    of params.yaml's (another source's keys, which a merge would mix with the default's)."""
    raw = merge(yaml.safe_load((REPO / "params.yaml").read_text()), recipe or {})
    if data is not None:
        raw["data"] = data
    if args.recipe:
        raw = merge(raw, yaml.safe_load(args.recipe.read_text()) or {})
    if args.quick:
        raw = quick(raw)
    if getattr(args, "data_path", None):
        raw["data"]["path"] = args.data_path
    for item in args.overrides:
        _override(raw, item)
    raw["tracking"]["experiment"] = "benchmark"
    return raw


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


def cpu() -> tuple[str, list[str]]:
    """lscpu's model name and flags: machines of one kind differ (VNNI or not), so every result names its CPU."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True,
                               env={**os.environ, "LC_ALL": "C"}).stdout.splitlines()
    except OSError:
        lines = []
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return fields.get("Model name", platform.machine()).strip(), fields.get("Flags", "").split()


def report(args: argparse.Namespace, name: str, title: str, text: str, result: dict, note: str = "",
           figure: Callable[[Path], None] | None = None, **meta: Any) -> Path | None:
    """Print `text`; write `<name>-<time>.json` ({"meta": ..., **result}) and `.md` (`title`, how and where it was
    measured, `note`, `text`), and `figure(path)` as a PNG, into --out (default benchmarks/results/); a --quick
    run only where --out says. `meta`: the script's own settings, beside date, commit, command, CPU and versions."""
    print(text)
    out = args.out or (None if args.quick else RESULTS)
    if out is None:
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    model, flags = cpu()
    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    meta = {"date": stamp, "commit": commit(), "command": command, "quick": args.quick, "cpu": model,
            "cpu_flags": flags, "cores": len(os.sched_getaffinity(0)), "torch": version("torch"), **meta}
    stem = out / f"{name}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, **result}, indent=2, default=str) + "\n")
    if figure:
        figure(stem.with_suffix(".png"))
        note += f" ![figure]({stem.name}.png)"
    threads = f", {meta['threads']} threads" if "threads" in meta else ""
    heading = (f"# {title} {stamp}{' (quick: tiny settings, numbers mean nothing)' if args.quick else ''}\n\n"
               f"`{command}` at {meta['commit']} on {model} ({meta['cores']} cores), torch {meta['torch']}{threads}.")
    stem.with_suffix(".md").write_text(f"{heading} {note}".rstrip() + "\n\n" + text)
    return stem.with_suffix(".json")


def version(package: str) -> str | None:
    """An installed package's version, without importing it."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
