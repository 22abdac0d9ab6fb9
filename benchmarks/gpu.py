"""GPU checks (issue 28) in one short script, for a machine with a CUDA GPU: does the pipeline run there, and how fast.

    .venv/bin/python benchmarks/gpu.py                # about 3 minutes on one GPU (more with 2 GPUs: the NCCL run)
    .venv/bin/python benchmarks/gpu.py --out DIR      # the report elsewhere than benchmarks/results/

Without a CUDA device it says so and exits (status 2) before doing anything. Each check runs on its own: one that
fails is reported with its error and the others still run, so one lent GPU gives the whole table.

1. pipeline: a tiny causal-LM project written here (random documents of 18 words, a BPE of 200 tokens, blocks of
   32, a 2-layer Llama of hidden 32) through every stage (data, teacher, prune, distill, export, quantize,
   evaluate) with `device: cuda` and `resources.precision: bf16`, then the same params on `device: cpu` fp32:
   each stage's seconds both ways and the student's test perplexity both ways (bf16 training moves it a little).
   The stages that score on CPU (export, quantize, evaluate) take the same time on both.
2. nccl: teacher and distill of that project with `resources: {processes: 2, backend: nccl}` (each rank its own
   GPU) when torch sees 2 GPUs or more, else skipped saying how many it sees; its per-epoch train losses beside
   one GPU's.
3. training: tokens per second of a Llama of benchmarks/scale.py's teacher shape (hidden 128, 4 layers, vocab
   4000, blocks of 128, batch 16) trained by training.train_epochs on random tokens, fp32 against bf16 autocast,
   the GPU synchronised before the clock stops.
4. latency: one forward pass of that Llama at batch 1 and 16 (128 tokens): CUDA events after warm-up and a
   synchronize (measure.cuda_latency_ms), fp32 and bf16 weights, against PyTorch on every CPU core
   (measure.latency_ms, wall clock).
5. onnxruntime: the pipeline's student ONNX file (fp32) timed on ONNX Runtime's CUDA execution provider against
   its CPU provider, interleaved, at batch 1, when onnxruntime-gpu is installed (its providers list
   CUDAExecutionProvider); else the providers it has are named.

The report (benchmarks/results/gpu-<UTC>.{md,json}, common.report) names the GPU, its compute capability, CUDA,
cuDNN and its settings (benchmark, deterministic), and whether bf16 is supported.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import yaml

import common
from common import merge

NO_CUDA_EXIT = 2
WORDS = ("the river stone lantern north garden quiet ember harbour wolf ink runs over under a bright cold night "
         "field of grey rain old town sea").split()
TINY_LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
SCALE_LLAMA = {"model_type": "llama", "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
               "num_key_value_heads": 2, "intermediate_size": 352, "max_position_embeddings": 128,
               "tie_word_embeddings": False, "vocab_size": 4000}
BLOCK, TRAIN_BATCH, TRAIN_BLOCKS = 128, 16, 512
LATENCY_BATCHES, WARMUP, REPEATS = (1, 16), 5, 50
STAGES = ("data", "teacher", "prune", "distill", "export", "quantize", "evaluate")


def no_cuda_message(torch) -> str | None:
    """Why the checks cannot run here (no CUDA device, and what torch is), or None when they can."""
    if torch.cuda.is_available():
        return None
    build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return (f"benchmarks/gpu.py: no CUDA device here (torch {torch.__version__}, {build}; "
            f"torch.cuda.device_count() = {torch.cuda.device_count()}): nothing checked, no report written. "
            "Run it on a machine with an NVIDIA GPU and a CUDA build of torch.")


def documents(folder: Path, count: int = 40, words: int = 60) -> Path:
    """`count` seeded random documents of `words` words: the tiny project's corpus (no download on a GPU box)."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"d{i:02d}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(words)) + ".\n")
    return folder


def recipe(docs: Path, device: str, precision: str, processes: int = 1, backend: str = "gloo") -> dict:
    """params.yaml shrunk to the tiny causal-LM project, on `device` in `precision`."""
    base = yaml.safe_load((common.REPO / "params.yaml").read_text())
    raw = merge(base, {
        "threads": 2, "device": device,
        "resources": {"processes": processes, "backend": backend, "precision": precision},
        "teacher": {"arch": {"name": "hf", "config": dict(TINY_LLAMA)},
                    "train": {"epochs": 2, "batch_size": 8}},
        "prune": {"method": "transformer", "rounds": 1,
                  "transformer": {"heads": 0.5, "mlp": 0.5, "depth": 0.5, "depth_metric": "block_influence"},
                  "finetune": {"epochs": 1, "batch_size": 8}},
        "distill": {"student": {"name": "pruned"}, "teacher": "teacher",
                    "train": {"epochs": 2, "batch_size": 8, "lr": 0.001}},
        "quantize": {"methods": ["dynamic"], "deploy": "dynamic", "max_accuracy_drop": 0.5},
        "evaluate": {"latency_batch_size": 4, "latency_warmup": 1, "latency_repeats": 5},
    })
    raw["data"] = {"source": "text", "task": "causal_lm", "path": str(docs), "val_size": 4, "block_size": 32,
                   "tokenizer": {"train": {"kind": "bpe", "vocab_size": 200}}, "test_fraction": 0.2}
    raw["tracking"]["experiment"] = f"gpu-{device}-{precision}-{processes}"
    return raw


def run_stages(root: Path, raw: dict, stages: tuple[str, ...] = STAGES) -> dict[str, float]:
    """{stage: seconds} of `stages` run in `root` with `raw` (validated for each stage)."""
    import importlib

    from steps import config

    seconds = {}
    for name in stages:
        start = time.perf_counter()
        importlib.import_module(f"steps.{name}").run(config.validate(raw, stage=name), root)
        seconds[name] = time.perf_counter() - start
    return seconds


def student_perplexity(root: Path) -> float:
    from steps.core.layout import REPORT

    return json.loads((root / REPORT).read_text())["models"]["student"]["perplexity"]


def train_losses(root: Path, stage: str) -> list[float]:
    """The per-epoch train loss of the stage's MLflow run in `root`'s store."""
    from mlflow.tracking import MlflowClient

    from steps import tracking
    from steps.core.layout import metrics_path

    run_id = json.loads((root / metrics_path(stage)).read_text())["mlflow_run_id"]
    tracking.use_store(root)
    history = MlflowClient().get_metric_history(run_id, "train_loss")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


# --- the checks ----------------------------------------------------------------------------------------------


def low_precision() -> str:
    """bf16 where the GPU has it natively (compute capability 8 and above), else fp16: resources.precision bf16 is
    refused on a GPU that would only emulate it (steps/compression/precision.py)."""
    import torch

    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def check_pipeline(work: Path) -> dict:
    docs = documents(work / "docs")
    rows = {}
    low = low_precision()
    for name, device, precision in ((f"cuda {low}", "cuda", low), ("cpu fp32", "cpu", "fp32")):
        root = work / name.replace(" ", "-")
        seconds = run_stages(root, recipe(docs, device, precision))
        rows[name] = {"stage_s": seconds, "wall_s": sum(seconds.values()), "student_perplexity": student_perplexity(root),
                      "teacher_loss": train_losses(root, "teacher"), "distill_loss": train_losses(root, "distill")}
    return rows


def check_nccl(work: Path) -> dict:
    import torch

    gpus = torch.cuda.device_count()
    if gpus < 2:
        return {"skipped": f"{gpus} GPU(s): a 2-process NCCL run needs 2"}
    docs = documents(work / "docs")
    out = {}
    for processes in (1, 2):
        root = work / f"nccl-{processes}"
        raw = recipe(docs, "cuda", "fp32", processes, "nccl" if processes > 1 else "gloo")
        seconds = run_stages(root, raw, ("data", "teacher", "prune", "distill"))
        out[f"{processes} GPU(s)"] = {"stage_s": seconds, "teacher_loss": train_losses(root, "teacher"),
                                      "distill_loss": train_losses(root, "distill")}
    return out


def scale_llama(device):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**SCALE_LLAMA)).to(device)


def check_training() -> dict:
    """Tokens/s of train_epochs on random blocks, fp32 and bf16, after one untimed warm-up epoch each."""
    import torch

    from steps.compression.training import Split, adam, cross_entropy_loss, train_epochs

    device = torch.device("cuda")
    ids = torch.randint(0, SCALE_LLAMA["vocab_size"], (TRAIN_BLOCKS, BLOCK), generator=torch.Generator().manual_seed(0))
    split = Split(x={"input_ids": ids}, y=ids)
    out = {}
    low = low_precision()
    for precision in ("fp32", low):
        model = scale_llama(device)
        optimizer = adam(model.parameters(), 1e-3, 0.0)
        step_loss = cross_entropy_loss(split, device)
        for n, timed in ((TRAIN_BATCH * 4, False), (TRAIN_BLOCKS, True)):  # a warm-up epoch, then the timed one
            torch.cuda.synchronize()
            start = time.perf_counter()
            train_epochs(model, optimizer, n, TRAIN_BATCH, 1, step_loss, generator=torch.Generator().manual_seed(0),
                         description=f"gpu {precision}", precision=precision)
            torch.cuda.synchronize()
            if timed:
                seconds = time.perf_counter() - start
                out[precision] = {"tokens_per_s": TRAIN_BLOCKS * BLOCK / seconds, "seconds": seconds}
    out["low"] = low
    out["low_speedup"] = out[low]["tokens_per_s"] / out["fp32"]["tokens_per_s"]
    return out


def check_latency() -> dict:
    import torch

    from steps.compression import measure

    cores = len(os.sched_getaffinity(0))
    cpu_model = scale_llama("cpu")
    gpu_fp32 = scale_llama("cuda")
    low = low_precision()
    gpu_low = scale_llama("cuda").to(torch.bfloat16 if low == "bf16" else torch.float16)
    out = {}
    for size in LATENCY_BATCHES:
        batch = {"input_ids": torch.randint(0, SCALE_LLAMA["vocab_size"], (size, BLOCK))}
        cpu = measure.latency_ms({"cpu": cpu_model}, batch, WARMUP, REPEATS, cores)["cpu"]
        fp32 = measure.cuda_latency_ms(gpu_fp32, batch, WARMUP, REPEATS)
        half = measure.cuda_latency_ms(gpu_low, batch, WARMUP, REPEATS)
        out[f"batch {size}"] = {"cpu": cpu, "cuda fp32": fp32, f"cuda {low}": half, "cpu_threads": cores, "low": low,
                                "speedup_fp32": cpu["p50"] / fp32["p50"], "speedup_low": cpu["p50"] / half["p50"]}
    return out


def check_onnxruntime(work: Path) -> dict:
    import onnxruntime as ort

    from steps.compression import measure
    from steps.compression.onnx_export import session
    from steps.core import datasets
    from steps.core.layout import onnx_path
    from steps.core.names import ModelRole

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return {"skipped": f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
                           f"{', '.join(providers)}): install onnxruntime-gpu for this check"}
    root = work / f"cuda-{low_precision()}"
    path = root / onnx_path(ModelRole.STUDENT)
    if not path.is_file():
        return {"skipped": f"{path} missing: the pipeline check did not export the student"}
    ids = datasets.load_blocks(root, "test", datasets.read_manifest(root))["input_ids"][:1]
    cpu = session(path, len(os.sched_getaffinity(0)))
    gpu = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if gpu.get_providers()[0] != "CUDAExecutionProvider":
        return {"skipped": f"ONNX Runtime fell back to {gpu.get_providers()}: the CUDA provider did not load"}
    feed = {i.name: (ids if i.name == "input_ids" else ids * 0 + 1).astype("int64") for i in cpu.get_inputs()}
    runners = {"cpu": lambda: cpu.run(None, feed), "cuda": lambda: gpu.run(None, feed)}
    timed = measure.interleaved_ms(runners, WARMUP, REPEATS)
    return {**timed, "providers": providers, "speedup": timed["cpu"]["p50"] / timed["cuda"]["p50"]}


# --- report --------------------------------------------------------------------------------------------------


def attempt(check: Callable[[], dict]) -> dict:
    """The check's result with its seconds; a failure as its error and the last lines of its traceback."""
    start = time.perf_counter()
    try:
        out = {"status": "skipped" if "skipped" in (result := check()) else "ok", **result}
    except Exception as err:  # one check's failure is a result: the others still run
        out = {"status": "failed", "error": f"{type(err).__name__}: {err}",
               "traceback": traceback.format_exc().splitlines()[-12:]}
    out["seconds"] = time.perf_counter() - start
    return out


def environment() -> dict:
    import torch

    props = torch.cuda.get_device_properties(0)
    return {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "memory_gib": props.total_memory / 2**30, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "bf16_native": torch.cuda.is_bf16_supported(including_emulation=False), "onnxruntime": common.version("onnxruntime"),
            "onnxruntime_gpu": common.version("onnxruntime-gpu")}


def summary(name: str, r: dict) -> str:
    """One line of what a check found."""
    if r["status"] != "ok":
        return r.get("skipped") or r.get("error", "")
    if name == "pipeline":
        gpu = next(k for k in r if k.startswith("cuda "))
        g, c = r[gpu], r["cpu fp32"]
        return (f"wall {g['wall_s']:.1f} s on {gpu} vs {c['wall_s']:.1f} s on cpu fp32 (teacher "
                f"{g['stage_s']['teacher']:.1f} vs {c['stage_s']['teacher']:.1f} s, distill "
                f"{g['stage_s']['distill']:.1f} vs {c['stage_s']['distill']:.1f} s); student perplexity "
                f"{g['student_perplexity']:.3f} vs {c['student_perplexity']:.3f}")
    if name == "nccl":
        one, two = r["1 GPU(s)"], r["2 GPU(s)"]
        return (f"distill loss per epoch on 2 GPUs {', '.join(f'{x:.4f}' for x in two['distill_loss'])} vs 1 GPU "
                f"{', '.join(f'{x:.4f}' for x in one['distill_loss'])}; distill {two['stage_s']['distill']:.1f} "
                f"vs {one['stage_s']['distill']:.1f} s")
    if name == "training":
        return (f"{r['fp32']['tokens_per_s']:.0f} tokens/s fp32, {r[r['low']]['tokens_per_s']:.0f} {r['low']} "
                f"({r['low_speedup']:.2f}x)")
    if name == "latency":
        return "; ".join(f"{b}: cpu {v['cpu']['p50']:.2f} ms ({v['cpu_threads']} threads), cuda fp32 "
                         f"{v['cuda fp32']['p50']:.2f} ms ({v['speedup_fp32']:.1f}x), {v['low']} "
                         f"{v['cuda ' + v['low']]['p50']:.2f} ms ({v['speedup_low']:.1f}x)" for b, v in r.items() if b.startswith("batch"))
    if name == "onnxruntime":
        return (f"student at batch 1: CUDA provider {r['cuda']['p50']:.2f} ms, CPU {r['cpu']['p50']:.2f} ms "
                f"({r['speedup']:.1f}x)")
    return ""


def table(checks: dict[str, dict]) -> str:
    lines = ["| check | status | seconds | result |", "|---|---|---|---|"]
    lines += [f"| {name} | {r['status']} | {r['seconds']:.1f} | {summary(name, r)} |" for name, r in checks.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = common.parser(__doc__)
    args = parser.parse_args()
    import torch

    why = no_cuda_message(torch)
    if why:
        print(why, file=sys.stderr)
        sys.exit(NO_CUDA_EXIT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="shrinkflow-gpu-"))
    try:
        checks = {"pipeline": attempt(lambda: check_pipeline(work)),
                  "nccl": attempt(lambda: check_nccl(work)),
                  "training": attempt(check_training),
                  "latency": attempt(check_latency),
                  "onnxruntime": attempt(lambda: check_onnxruntime(work))}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    env = environment()
    result = {"environment": env, "checks": checks, "wall_s": time.perf_counter() - start}
    common.report(args, "gpu", f"GPU checks on {env['gpu']}", table(checks), result,
                  note=f"{env['gpus']} GPU(s), compute capability {env['capability']}, CUDA {env['cuda']}, cuDNN "
                       f"{env['cudnn']} (benchmark {env['cudnn_benchmark']}, deterministic "
                       f"{env['cudnn_deterministic']}), bf16 native: {env['bf16_native']}; onnxruntime "
                       f"{env['onnxruntime']}, onnxruntime-gpu {env['onnxruntime_gpu']}; "
                       f"{result['wall_s'] / 60:.1f} min wall.",
                  wall_s=result["wall_s"])


if __name__ == "__main__":
    main()
