"""The measured process of benchmarks/overhead.py: one measurement in a fresh process, its timings printed as JSON.

    python benchmarks/overhead_probe.py plain|cli ROOT STARTED [-- SHRINKFLOW RUN ARGS]

The timings come from wrappers around the pipeline's own doors (steps.tracking, steps.storage, each step's run(),
the flow's cache-key function) installed in this process; nothing is replaced.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

from steps.core.dag import STAGE_NAMES as STAGES


class Stopwatch:
    """Seconds per category; a call inside another call of the same category is not counted twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.events: dict[str, float] = {}
        self._depth: dict[str, int] = {}

    @contextlib.contextmanager
    def timing(self, category: str):
        outer = self._depth.get(category, 0) == 0
        self._depth[category] = self._depth.get(category, 0) + 1
        start = time.perf_counter()
        try:
            yield
        finally:
            self._depth[category] -= 1
            if outer:
                self.seconds[category] = self.seconds.get(category, 0.0) + time.perf_counter() - start

    def wrap(self, owner, name: str, category: str, first_event: str | None = None) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if first_event:
                self.events.setdefault(first_event, time.time())
            with self.timing(category):
                return original(*args, **kwargs)

        setattr(owner, name, timed)

    def wrap_context(self, owner, name: str, category: str) -> None:
        """A context manager whose enter and exit are timed, but not the body (the stage's own work)."""
        original = getattr(owner, name)
        watch = self

        @functools.wraps(original)
        @contextlib.contextmanager
        def timed(*args, **kwargs):
            manager = original(*args, **kwargs)
            with watch.timing(category):
                value = manager.__enter__()
            try:
                yield value
            except BaseException:
                with watch.timing(category):
                    if not manager.__exit__(*sys.exc_info()):
                        raise
            else:
                with watch.timing(category):
                    manager.__exit__(None, None, None)

        setattr(owner, name, timed)


TRACKING_CALLS = ("log_metrics", "log_dataset", "log_files", "log_table", "log_figure", "log_dict", "set_tags",
                  "register", "log_deployable", "alias_version", "set_alias", "tag_version", "version_exists",
                  "load_predictor")


def instrument(watch: Stopwatch) -> None:
    import importlib

    from steps import storage, tracking

    for name in TRACKING_CALLS:
        watch.wrap(tracking, name, "mlflow")
    watch.wrap_context(tracking, "open_run", "mlflow")
    watch.wrap(storage, "commit_stage", "dvc_commit")
    watch.wrap(storage, "push", "dvc_push")
    for i, name in enumerate(STAGES):
        watch.wrap(importlib.import_module(f"steps.{name}"), "run", f"stage.{name}",
                   first_event="first_step" if i == 0 else None)


def child(mode: str, root: Path, started: float, args: list[str]) -> None:
    """Run one measurement in this (fresh) process; print its timings as JSON on the last line."""
    watch = Stopwatch()
    t0 = time.perf_counter()
    result: dict = {}
    if mode == "plain":
        from steps import config

        watch.seconds["imports"] = time.perf_counter() - t0
        instrument(watch)
        import importlib

        params = config.load(root)
        for name in STAGES:
            importlib.import_module(f"steps.{name}").run(params, root)
    else:
        from flows import runtime

        runtime.prepare(root)
        # As `shrinkflow run` does: Prefect's temporary server starts first and comes up while this process
        # imports; what is left of its start-up after the imports is timed as "Prefect server start".
        with runtime.temporary_api() as server:
            import flows.compress  # noqa: F401  (imported here so its cost counts as imports)
            from flows.cli import app

            watch.seconds["imports"] = time.perf_counter() - t0
            instrument(watch)
            from flows import staleness

            watch.wrap(staleness, "stage_key", "cache_keys")
            watch.wrap(staleness, "output_hashes", "cache_keys")
            with watch.timing("prefect_server_start"):  # the server the CLI's flow then uses (PREFECT_API_URL)
                server.wait_until_ready()
            out = Path(tempfile.mkstemp(prefix="overhead-cli-")[1])
            with open(out, "w") as fh, contextlib.redirect_stdout(fh):
                try:
                    app(["run", *args, "--root", str(root)], standalone_mode=False)
                finally:
                    fh.flush()
        text = out.read_text()
        out.unlink()
        line = next((ln for ln in text.splitlines() if ln.startswith("stages: ")), "")
        result["states"] = dict(item.split("=") for item in line[len("stages: "):].split(", ")) if line else {}
    total = time.perf_counter() - t0
    first = watch.events.get("first_step")
    print(json.dumps({"mode": mode, "total_in_process": total, "seconds": watch.seconds,
                      "first_step_after_s": first - started if first else None, **result}))


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("mode", choices=("plain", "cli"))
    cli.add_argument("root", type=Path)
    cli.add_argument("started", type=float, help="time.time() when the driver started this process")
    cli.add_argument("rest", nargs="*", help="arguments for `shrinkflow run`")
    args = cli.parse_args()
    child(args.mode, args.root, args.started, args.rest)
