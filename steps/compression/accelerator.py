"""What a stage on a CUDA device sets and says: cuDNN's settings, the clock that times it, ONNX Runtime's provider.

Nothing here changes a CPU run: every function either returns the CPU's answer for a CPU device or is called
only when the device is CUDA.

Determinism on CUDA: seed_everything already asks torch.use_deterministic_algorithms(True, warn_only=True);
`configure` adds what that needs on a GPU: cuDNN's autotuner off (benchmark False: it picks kernels by timing
them, so by the machine's load) and cuDNN's deterministic kernels on, and cuBLAS's fixed workspace
(CUBLAS_WORKSPACE_CONFIG, read when torch first sizes it). Ops with no deterministic CUDA kernel then warn
rather than fail (warn_only), and those stay run-to-run variable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"
PERF_COUNTER, CUDA_EVENTS = "perf_counter", "cuda_events"
CUBLAS_WORKSPACE = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
"""cuBLAS's deterministic workspace setting (NVIDIA's cuBLAS docs, "Results reproducibility"); a value the user
set is kept."""


def is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def configure(device: torch.device) -> None:
    """On a CUDA device: cuDNN deterministic, its autotuner off, cuBLAS's deterministic workspace; nothing
    otherwise."""
    if not is_cuda(device):
        return
    os.environ.setdefault(*CUBLAS_WORKSPACE)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def record(device: torch.device, precision: str) -> dict[str, str]:
    """The MLflow tags of a stage that trained on a CUDA device: the GPU, CUDA and cuDNN versions, cuDNN's
    settings, the precision; {} on any other device."""
    if not is_cuda(device):
        return {}
    cudnn = torch.backends.cudnn
    return {"cuda.device_name": torch.cuda.get_device_name(device), "cuda.version": str(torch.version.cuda),
            "cuda.cudnn_version": str(cudnn.version()), "cuda.cudnn_enabled": str(cudnn.enabled).lower(),
            "cuda.cudnn_benchmark": str(cudnn.benchmark).lower(),
            "cuda.cudnn_deterministic": str(cudnn.deterministic).lower(),
            "cuda.deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()).lower(),
            "cuda.precision": precision}


def eager_clock(device: torch.device | str) -> str:
    """What times PyTorch eager on `device`: CUDA events (the GPU's own work) on CUDA, else the wall clock."""
    return CUDA_EVENTS if is_cuda(device) else PERF_COUNTER


def onnx_provider(device: torch.device | str, available: Sequence[str]) -> tuple[str, str]:
    """(the ONNX Runtime execution provider to run, what the report says of it) for a stage on `device`, given
    onnxruntime.get_available_providers(): CUDA's when the device is CUDA and the installed onnxruntime has it
    (the `gpu` extra: onnxruntime-gpu), else the CPU's, saying why when CUDA was asked for."""
    if not is_cuda(device):
        return CPU_PROVIDER, CPU_PROVIDER
    if CUDA_PROVIDER in available:
        return CUDA_PROVIDER, CUDA_PROVIDER
    return CPU_PROVIDER, f"{CPU_PROVIDER} (onnxruntime-gpu not installed)"


def session_providers(provider: str) -> list[str]:
    """The providers list of an ONNX Runtime session running on `provider`: CUDA falls back to the CPU for the
    nodes it has no kernel for (e.g. some int8 ops)."""
    return [provider] if provider == CPU_PROVIDER else [provider, CPU_PROVIDER]
