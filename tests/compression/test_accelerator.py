"""steps/compression/accelerator.py: ONNX Runtime's provider from the device and the providers onnxruntime lists,
the clock that times eager PyTorch, cuDNN settings and tags only on CUDA (a CPU run untouched)."""

from __future__ import annotations

import os

import pytest
import torch

from steps.compression import accelerator
from steps.compression.accelerator import CPU_PROVIDER, CUDA_PROVIDER

WITH_GPU = [CUDA_PROVIDER, CPU_PROVIDER]


def test_cuda_provider_only_when_the_device_is_cuda_and_onnxruntime_has_it():
    assert accelerator.onnx_provider(torch.device("cuda"), WITH_GPU) == (CUDA_PROVIDER, CUDA_PROVIDER)
    assert accelerator.onnx_provider("cpu", WITH_GPU) == (CPU_PROVIDER, CPU_PROVIDER)
    assert accelerator.onnx_provider("cpu", [CPU_PROVIDER]) == (CPU_PROVIDER, CPU_PROVIDER)


def test_cuda_asked_without_onnxruntime_gpu_runs_the_cpu_provider_and_says_why():
    provider, said = accelerator.onnx_provider(torch.device("cuda", 0), ["AzureExecutionProvider", CPU_PROVIDER])
    assert provider == CPU_PROVIDER and said == "CPUExecutionProvider (onnxruntime-gpu not installed)"


def test_a_cuda_session_falls_back_to_the_cpu_for_nodes_cuda_cannot_run():
    assert accelerator.session_providers(CUDA_PROVIDER) == [CUDA_PROVIDER, CPU_PROVIDER]
    assert accelerator.session_providers(CPU_PROVIDER) == [CPU_PROVIDER]


def test_eager_latency_clock_by_device_type():
    assert accelerator.eager_clock(torch.device("cuda", 1)) == "cuda_events"
    assert accelerator.eager_clock("cpu") == "perf_counter"


def test_on_cpu_configure_changes_nothing_and_records_nothing(monkeypatch):
    monkeypatch.delenv(accelerator.CUBLAS_WORKSPACE[0], raising=False)
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    accelerator.configure(torch.device("cpu"))
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == before
    assert accelerator.CUBLAS_WORKSPACE[0] not in os.environ
    assert accelerator.record(torch.device("cpu"), "bf16") == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: cuDNN's settings are set on CUDA only")
def test_on_cuda_configure_sets_cudnn_deterministic_and_record_says_so():
    accelerator.configure(torch.device("cuda"))
    tags = accelerator.record(torch.device("cuda"), "bf16")
    assert tags["cuda.cudnn_benchmark"] == "false" and tags["cuda.cudnn_deterministic"] == "true"
    assert tags["cuda.precision"] == "bf16" and tags["cuda.device_name"] and os.environ["CUBLAS_WORKSPACE_CONFIG"]
