"""benchmarks/scale.py's own functions: the cores shared out among the processes, the steady epoch from MLflow's
timestamps, the scaling efficiency, and params the stages accept for every setting it runs. The run itself
(Brown, torchrun) is the lead's to run on a quiet machine; tests/steps/test_distill_ranks.py checks that
2 ranks distil along 1 process's loss curve."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

from steps import config
from tests.helpers import REPO


@pytest.fixture(scope="module")
def scale():
    """benchmarks/scale.py imported as its script runs it (benchmarks/ on sys.path, for `import common`)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module("scale")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def _args(quick: bool, **given) -> argparse.Namespace:
    return argparse.Namespace(**{"documents": 120, "val_documents": 5, "epochs": 2, "recipe": None, "quick": quick,
                                 "overrides": [], **given})


@pytest.mark.parametrize(("cores", "processes", "threads"), [(2, 1, 2), (2, 2, 1), (4, 2, 2), (1, 1, 1)])
def test_the_cores_are_shared_out_so_the_total_stays_the_same(scale, cores, processes, threads):
    assert scale.threads_per_process(cores, processes) == threads


@pytest.mark.parametrize(("cores", "processes"), [(1, 2), (3, 2)])
def test_cores_that_cannot_be_shared_evenly_are_refused(scale, cores, processes):
    with pytest.raises(ValueError, match=rf"--cores {cores} cannot be shared evenly by {processes} processes"):
        scale.threads_per_process(cores, processes)


def test_the_steady_epoch_is_the_mean_gap_after_the_first_epoch(scale):
    # epoch 1 ends at 10 s (DDP's start inside it), epochs 2 and 3 take 3 s and 5 s
    assert scale.steady_epoch_seconds([10_000, 13_000, 18_000]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match=r"1 epoch\(s\) logged: the steady epoch needs at least 2"):
        scale.steady_epoch_seconds([10_000])
    with pytest.raises(ValueError, match="not increasing"):
        scale.steady_epoch_seconds([10_000, 10_000])


def test_scaling_efficiency_is_tokens_per_second_over_processes_times_one_process(scale):
    assert scale.efficiency({1: 1000.0, 2: 1500.0}) == {1: 1.0, 2: pytest.approx(0.75)}
    assert scale.efficiency({1: 1000.0, 2: 2400.0})[2] == pytest.approx(1.2)  # superlinear is shown, not capped


@pytest.mark.parametrize("quick", [False, True])
def test_every_setting_is_params_the_stages_accept(scale, quick, tmp_path: Path):
    raw = scale.build_raw(_args(quick), tmp_path)
    for name in ("data", "teacher"):
        config.validate(raw, stage=name)
    for processes, threads in ((1, 2), (2, 1)):
        params = config.validate(scale.with_resources(raw, processes, 2), stage="distill")
        assert (params.resources.processes, params.threads) == (processes, threads)
        assert params.distill.train.epochs == 2 and params.distill.teacher == "teacher"
        assert params.data.train_limit == 120 and params.data.tokenizer.train.vocab_size == (500 if quick else 4000)
    assert raw["resources"]["processes"] == 1  # the shared recipe untouched: the teacher trains in one process


def test_the_table_holds_each_rows_throughput_and_efficiency(scale):
    row = {"train_loss": [2.5, 2.0], "stage_wall_s": 30.0, "steady_epoch_s": 10.0, "val_perplexity": 80.5}
    result = {"rows": {"1": {**row, "processes": 1, "threads_per_process": 2, "tokens_per_s": 1000.0,
                             "efficiency": 1.0},
                       "2": {**row, "processes": 2, "threads_per_process": 1, "tokens_per_s": 1500.0,
                             "efficiency": 0.75}},
              "protocol": {"train_blocks": 100, "block_size": 128, "teacher_s": 60.0, "cores": 2,
                           "teacher_val_perplexity": None}}
    lines = scale.table(result).splitlines()
    assert "| 2 | 1 | 1500 | 0.75 | 10.0 | 30.0 | 2.5000, 2.0000 | 80.50 |" in lines
