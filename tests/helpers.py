"""What tests share that is not a fixture: synthetic data, tiny params, the CLI (project copies: benchmarks/checkout.py)."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import importlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise plus a bright 7x7 block whose position encodes the class: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 2 + row * 12 : 9 + row * 12, 1 + col * 5 : 8 + col * 5] = 230
    return images, labels


def default_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def tiny_params(data_path: Path, experiment: str = "tests") -> dict:
    """The default params shrunk so every stage takes about a second."""
    p = copy.deepcopy(default_params())
    p["data"].update(path=str(data_path), val_size=100, train_limit=None, test_limit=None)
    p["teacher"]["arch"].update(channels=[8, 16], hidden=[32])
    p["teacher"]["train"].update(epochs=2, batch_size=32)
    p["prune"].update(rounds=2, target_sparsity=0.5)
    p["prune"]["finetune"].update(epochs=1, batch_size=32)
    p["distill"]["student"] = {"name": "mlp", "channels": [], "hidden": [16], "batch_norm": False}
    p["distill"]["train"].update(epochs=2, batch_size=32)
    p["evaluate"].update(latency_batch_size=16, latency_warmup=1, latency_repeats=3)
    p["promote"].update(min_accuracy=0.3, max_accuracy_drop=0.5, max_param_ratio=1.0)
    p["tracking"]["experiment"] = experiment
    return p


def write_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def require_fashion_mnist() -> Path:
    """The real dataset: installed by `make test`; a CI run without it is a failure, not a skip."""
    if all((FASHION_DIR / f).is_file() for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")):
        return FASHION_DIR
    message = f"Fashion-MNIST not found in {FASHION_DIR} (make test installs Debian's dataset-fashion-mnist)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


BIN = Path(sys.executable).parent


def small_real_params(data_path: Path) -> dict:
    p = tiny_params(data_path, experiment="integration")
    p["data"].update(val_size=500, train_limit=2000, test_limit=1000)
    p["distill"]["student"] = {"name": "cnn", "channels": [4, 8], "hidden": [16], "batch_norm": True}
    p["promote"].update(min_accuracy=0.5, max_accuracy_drop=0.3, max_param_ratio=0.5)
    return p


SHARED_PREFECT_ENV = "SHRINKFLOW_TESTS_PREFECT_API_URL"
"""Set by conftest's session-wide Prefect server: CLI runs use it instead of each starting a temporary one."""


def cli_env() -> dict:
    """The environment of a CLI run in a test: Prefect's state inside the project, as for a user, and the session's
    shared Prefect server when there is one (a test about Prefect's own start-up passes PREFECT_API_URL="")."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for key in ("PREFECT_HOME", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "SHRINKFLOW_PROFILE", SHARED_PREFECT_ENV):
        env.pop(key, None)
    if os.environ.get(SHARED_PREFECT_ENV):
        env["PREFECT_API_URL"] = os.environ[SHARED_PREFECT_ENV]
    return env


def shrinkflow(root: Path, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "shrinkflow"), *args, "--root", str(root)], env={**cli_env(), **(extra_env or {})},
                          capture_output=True, text=True, timeout=600)


def stage_states(output: str) -> dict[str, str]:
    line = re.search(r"^stages: (.*)$", output, re.MULTILINE)
    assert line, output[-3000:]
    return dict(item.split("=") for item in line.group(1).split(", "))


def write_synthetic_idx(folder: Path, train: int = 600, test: int = 200) -> Path:
    """The four Fashion-MNIST file names in `folder`, holding synthetic data."""
    from steps.sources.idx import write_idx

    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_images(train, seed=1)
    test_x, test_y = synthetic_images(test, seed=2)
    write_idx(folder / "train-images-idx3-ubyte.gz", train_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_x)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_y)
    return folder


class Snapshots:
    """Projects after each stage, built once per session and restored fresh for every test that asks.

    Every snapshot is built in one working folder and restored into that same folder, so the
    absolute paths MLflow records (artifact locations) stay true; a test may change the project
    freely, the next one starts from the snapshot again. MLflow keeps its SQLite connections open
    for the whole process, so the database is restored in place (SQLite's backup API), never
    replaced by another file.
    """

    EMPTY = "_empty"
    DB = "mlflow.db"

    def __init__(self, base: Path, params) -> None:
        self.work, self.store, self.params = base / "project", base / "snapshots", params
        self.store.mkdir(parents=True, exist_ok=True)

    def restore(self, after: str | None) -> Path:
        """The working project after stage `after` has run (None: an empty project with an empty store)."""
        from steps.core.dag import STAGE_NAMES

        if not (self.store / self.EMPTY).is_dir():
            self._create_empty()
        wanted = STAGE_NAMES.index(after) + 1 if after is not None else 0
        built = max((i + 1 for i, name in enumerate(STAGE_NAMES[:wanted]) if (self.store / name).is_dir()),
                    default=0)
        self._reset(STAGE_NAMES[built - 1] if built else self.EMPTY)
        for name in STAGE_NAMES[built:wanted]:
            importlib.import_module(f"steps.{name}").run(self.params, self.work)
            shutil.copytree(self.work, self.store / name)
        return self.work

    def _create_empty(self) -> None:
        from steps import tracking

        self.work.mkdir(parents=True, exist_ok=True)
        tracking.use_store(self.work)
        tracking.aliases("none")  # creates and migrates the SQLite store once
        shutil.copytree(self.work, self.store / self.EMPTY)

    def _reset(self, snapshot: str) -> None:
        import sqlite3

        for child in self.work.iterdir():
            if child.name != self.DB:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        source = self.store / snapshot
        shutil.copytree(source, self.work, dirs_exist_ok=True, ignore=shutil.ignore_patterns(self.DB))
        src, dst = sqlite3.connect(source / self.DB), sqlite3.connect(self.work / self.DB)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name` that `build` fills, built once per test run and read-only after (copy it to change it).

    A session fixture is built once per pytest-xdist worker (`make test` runs two), so two modules on two workers
    would each build it; the folder lives instead in the run's temporary folder above the workers' own, and a file
    lock there makes the second worker wait for the first one's build rather than repeat it. A failed build leaves
    nothing behind: the next asker builds again (and fails with its own error)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # pytest-<n>: this run's, above popen-gw0, popen-gw1
    folder, done = shared / name, shared / f"{name}.built"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def moved_project(source: Path, dest: Path) -> Path:
    """A copy at `dest` of the project at `source` that records into and reads from its own folder.

    MLflow keeps absolute artifact locations (each experiment's, each run's) in mlflow.db: they are pointed at
    `dest`, or the copy's runs would write into `source` and read its files. Every text value under `source`'s path
    is rewritten, whichever table holds it; the rest of a project is relative to its root (git, DVC's remote)."""
    shutil.copytree(source, dest, symlinks=True)
    old, new = f"{source.resolve()}/", f"{dest.resolve()}/"
    with contextlib.closing(sqlite3.connect(dest / Snapshots.DB)) as db, db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in [f'"{row[1]}"' for row in db.execute(f'PRAGMA table_info("{table}")').fetchall()]:
                db.execute(f"""UPDATE "{table}" SET {column} = replace({column}, ?, ?)
                               WHERE typeof({column}) = 'text' AND instr({column}, ?) > 0""", (old, new, old))
    return dest


def variant(params, **sections):
    """`params` with some keys of some sections replaced, validated again."""
    from steps import config

    raw = params.model_dump(mode="json")
    for section, values in sections.items():
        raw[section] = {**raw[section], **values}
    return config.validate(raw)


@contextlib.contextmanager
def tampered(path: Path, change) -> Iterator[None]:
    """`path` with its bytes replaced by `change(bytes)` while the block runs, then the original back."""
    original = path.read_bytes()
    path.chmod(0o644)  # DVC's cache and remote objects are read-only
    path.write_bytes(change(original))
    try:
        yield
    finally:
        path.write_bytes(original)


def metric_history(run_id: str, metric: str) -> list[float]:
    """A metric's values of an MLflow run in the tracking store in use, by step (the rank tests compare curves)."""
    from mlflow.tracking import MlflowClient

    return [m.value for m in sorted(MlflowClient().get_metric_history(run_id, metric), key=lambda m: m.step)]


def the_one_ranks_run(root: Path, experiment: str, stage: str, run_id: str):
    """The one MLflow run of `experiment` in `root`'s store, checked to be `run_id`, the `stage`'s, finished, and
    logged with resources.processes 2 (what rank 0 alone records when two ranks train)."""
    from mlflow.tracking import MlflowClient

    from steps import tracking
    from steps.core.names import Tag

    tracking.use_store(root)
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].data.tags[Tag.STAGE] == stage and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["resources.processes"] == "2"
    return runs[0]
