"""benchmarks/gpu.py without a GPU: the clear exit where no CUDA device exists, params every check's stages accept,
and a failing check reported beside the others. The checks themselves run where a GPU is lent."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import pytest
import torch

from steps import config
from tests.helpers import REPO


@pytest.fixture(scope="module")
def gpu():
    """benchmarks/gpu.py imported as its script runs it (benchmarks/ on sys.path, for `import common`)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module("gpu")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def _torch(available: bool, cuda: str | None) -> SimpleNamespace:
    return SimpleNamespace(__version__="2.13.0", version=SimpleNamespace(cuda=cuda),
                           cuda=SimpleNamespace(is_available=lambda: available, device_count=lambda: int(available)))


def test_no_cuda_device_is_said_with_what_torch_is(gpu):
    assert "no CUDA device here (torch 2.13.0, a CPU-only build; torch.cuda.device_count() = 0)" in \
        gpu.no_cuda_message(_torch(False, None))
    assert "built with CUDA 12.8" in gpu.no_cuda_message(_torch(False, "12.8"))
    assert gpu.no_cuda_message(_torch(True, "12.8")) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the script would run its checks")
def test_the_script_exits_before_any_check_without_a_gpu(gpu, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        gpu.main()
    assert exited.value.code == gpu.NO_CUDA_EXIT
    assert "nothing checked, no report written" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("device", "precision", "processes", "backend"),
                         [("cuda", "bf16", 1, "gloo"), ("cpu", "fp32", 1, "gloo"), ("cuda", "fp32", 2, "nccl")])
def test_every_run_of_the_checks_is_params_the_stages_accept(gpu, tmp_path, device, precision, processes, backend):
    raw = gpu.recipe(tmp_path, device, precision, processes, backend)
    for name in gpu.STAGES:
        params = config.validate(raw, stage=name)
        assert (params.device, params.resources.precision) == (device, precision)
        assert (params.resources.processes, params.resources.backend) == (processes, backend)
        assert params.data.task == "causal_lm"


def test_a_failing_check_is_reported_with_its_error_and_a_skipped_one_with_its_reason(gpu):
    checks = {"training": gpu.attempt(lambda: {}["fp32"]), "nccl": gpu.attempt(lambda: {"skipped": "1 GPU(s)"}),
              "onnxruntime": gpu.attempt(lambda: {"skipped": "no CUDAExecutionProvider"})}
    assert checks["training"]["status"] == "failed" and checks["training"]["error"] == "KeyError: 'fp32'"
    lines = gpu.table(checks).splitlines()
    assert lines[2].startswith("| training | failed |") and lines[2].endswith("| KeyError: 'fp32' |")
    assert lines[3].startswith("| nccl | skipped |") and lines[3].endswith("| 1 GPU(s) |")
