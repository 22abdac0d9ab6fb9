"""The thin `main()` behind every `python -m steps.<stage>` (the DVC runner)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from steps import config

USER_ERRORS = (config.ConfigError, ValueError, FileNotFoundError)


def run_stage_main(name: str, run: Callable[[config.Params, Path], object], argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m steps.{name}", description=f"Run the {name} stage.")
    parser.add_argument("--root", type=Path, default=Path("."), help="project root (holds params.yaml)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    show_logs()
    try:
        params = config.load(root, stage=name)
        run(params, root)
    except USER_ERRORS as err:
        print(f"{name} stage failed: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def show_logs() -> None:
    """Log lines on stderr, formatted as in Prefect's output: the stage's progress (steps/compression/progress.py
    sets its logger to INFO) and any library's warnings. Without a handler Python would show warnings only,
    so a stage run by DVC would be silent for minutes."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, datefmt="%H:%M:%S",
                        format="%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s")
