"""benchmarks/scale.py's own functions: the cores shared out among the processes, the steady epoch from MLflow's
timestamps, the scaling efficiency against the one-process setting, the largest rank's peak memory, and params the
stages accept for every setting it runs (1 process, 2 with DDP, 2 with FSDP). The run itself
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
    measured = {"1-process": (1, 1000.0), "2-ddp": (2, 1500.0), "2-fsdp": (2, 1200.0)}
    assert scale.efficiency(measured) == {"1-process": 1.0, "2-ddp": pytest.approx(0.75),
                                          "2-fsdp": pytest.approx(0.6)}
    assert scale.efficiency({"a": (2, 2400.0), "b": (1, 1000.0)})["a"] == pytest.approx(1.2)  # shown, not capped


@pytest.mark.parametrize("measured", [{"2-ddp": (2, 1500.0)}, {"a": (1, 1000.0), "b": (1, 900.0)}])
def test_scaling_efficiency_needs_exactly_one_one_process_baseline(scale, measured):
    with pytest.raises(ValueError, match=f"{sum(p == 1 for p, _ in measured.values())} one-process settings"):
        scale.efficiency(measured)


def test_the_settings_are_one_process_then_ddp_and_fsdp_on_two_each_labelled_once(scale):
    assert [(s.processes, s.strategy) for s in scale.SETTINGS] == [(1, None), (2, "ddp"), (2, "fsdp")]
    assert len({s.label for s in scale.SETTINGS}) == len(scale.SETTINGS)


@pytest.mark.parametrize(("processes", "mib"), [(1, 300.0), (2, 500.0)])
def test_the_peak_memory_is_the_rank_itself_on_one_process_and_the_largest_child_on_two(scale, processes, mib,
                                                                                        monkeypatch):
    monkeypatch.setattr(scale.sys, "platform", "linux")  # ru_maxrss in KiB
    assert scale.peak_rank_mib(processes, self_maxrss=300 * 1024, children_maxrss=500 * 1024) == pytest.approx(mib)


@pytest.mark.parametrize("quick", [False, True])
def test_every_setting_is_params_the_stages_accept(scale, quick, tmp_path: Path):
    raw = scale.build_raw(_args(quick), tmp_path)
    for name in ("data", "teacher"):
        config.validate(raw, stage=name)
    for setting, threads in zip(scale.SETTINGS, (2, 1, 1), strict=True):
        own = scale.with_resources(raw, setting, 2)
        params = config.validate(own, stage="distill")
        assert (params.resources.processes, params.threads) == (setting.processes, threads)
        assert params.resources.strategy == (setting.strategy or "ddp")  # one process: the default, unused
        assert own["tracking"]["experiment"] == f"scale-{setting.label}"
        assert params.distill.train.epochs == 2 and params.distill.teacher == "teacher"
        assert params.data.train_limit == 120 and params.data.tokenizer.train.vocab_size == (500 if quick else 4000)
    assert raw["resources"]["processes"] == 1  # the shared recipe untouched: the teacher trains in one process
    assert "strategy" not in raw["resources"] or raw["resources"]["strategy"] == "ddp"


def test_the_table_has_a_row_per_label_with_its_strategy_throughput_efficiency_and_memory(scale):
    row = {"train_loss": [2.5, 2.0], "stage_wall_s": 30.0, "steady_epoch_s": 10.0, "val_perplexity": 80.5,
           "threads_per_process": 1, "processes": 2, "peak_rss_mib": 612.4}
    result = {"rows": {"1-process": {**row, "processes": 1, "strategy": None, "threads_per_process": 2,
                                     "tokens_per_s": 1000.0, "efficiency": 1.0},
                       "2-ddp": {**row, "strategy": "ddp", "tokens_per_s": 1500.0, "efficiency": 0.75},
                       "2-fsdp": {**row, "strategy": "fsdp", "tokens_per_s": 1200.0, "efficiency": 0.6,
                                  "peak_rss_mib": 598.6}},
              "protocol": {"train_blocks": 100, "block_size": 128, "teacher_s": 60.0, "cores": 2,
                           "teacher_val_perplexity": None, "student_parameters": 262_144}}
    lines = scale.table(result).splitlines()
    assert "| 1-process | 1 | none | 2 | 1000 | 1.00 | 10.0 | 30.0 | 612 | 2.5000, 2.0000 | 80.50 |" in lines
    assert "| 2-ddp | 2 | ddp | 1 | 1500 | 0.75 | 10.0 | 30.0 | 612 | 2.5000, 2.0000 | 80.50 |" in lines
    assert "| 2-fsdp | 2 | fsdp | 1 | 1200 | 0.60 | 10.0 | 30.0 | 599 | 2.5000, 2.0000 | 80.50 |" in lines
    assert any("262,144 parameters (1.0 MiB in fp32)" in line and "4.0 MiB with DDP, 3.0 MiB with FSDP" in line
               for line in lines)
