"""The thin `main()` behind every `python -m steps.<stage>` (the DVC runner)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from steps import config

USER_ERRORS = (config.ConfigError, ValueError, FileNotFoundError, ChildProcessError)
"""Failures reported as one line (exit 2): bad params or data, and a rank of a stage under torchrun that failed
(steps/core/launch.py's RankFailed)."""


def run_stage_main(name: str, run: Callable[..., object], argv: list[str],
                   read_spec: Callable[[Path, str], tuple] | None = None) -> None:
    """`read_spec` (a training stage's, steps/core/launch.py): a rank under torchrun takes `--launch-spec FILE`,
    the params snapshot and origin of the process that started torchrun, instead of reading params.yaml."""
    parser = argparse.ArgumentParser(prog=f"python -m steps.{name}", description=f"Run the {name} stage.")
    parser.add_argument("--root", type=Path, default=Path("."), help="project root (holds params.yaml)")
    if read_spec is not None:
        parser.add_argument("--launch-spec", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    show_logs()
    try:
        if getattr(args, "launch_spec", None) is None:
            run(config.load(root, stage=name), root)
        else:
            params, origin = read_spec(args.launch_spec, name)
            run(params, root, origin)
    except USER_ERRORS as err:
        print(f"{name} stage failed: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def show_logs() -> None:
    """Log lines on stderr, formatted as in Prefect's output: the stage's progress (steps/compression/progress.py
    sets its logger to INFO) and any library's warnings. Without a handler Python would show warnings only,
    so a stage run by DVC would be silent for minutes."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, datefmt="%H:%M:%S",
                        format="%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s")
