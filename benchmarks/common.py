"""What every benchmark script shares: the command line, the params it starts from, a scratch folder."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def parser(doc: str) -> argparse.ArgumentParser:
    """--quick, --raw-dir and --out; a script adds its own options to the returned parser."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny settings, to check that it runs")
    p.add_argument("--raw-dir", help="override data.raw_dir")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def params(args: argparse.Namespace, quick: Callable[[dict], dict]) -> dict:
    """The project's params.yaml, shrunk by `quick` under --quick, logging to the `benchmark` experiment."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    if args.quick:
        raw = quick(raw)
    if args.raw_dir:
        raw["data"]["raw_dir"] = args.raw_dir
    raw["tracking"]["experiment"] = "benchmark"
    return raw


def in_scratch(prefix: str, benchmark: Callable[[Path, dict], Any], raw: dict) -> Any:
    """Run `benchmark(work_dir, raw)` in a temporary folder that is removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return benchmark(work, raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)
