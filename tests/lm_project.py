"""A tiny Llama project (data.task causal_lm) run through every stage in a git checkout of the project: documents
the test writes, a Llama trained on them, pruned (Minitron's width and depth), distilled by its logits, exported,
quantized and evaluated.

The stages take 40-50 s here (the three ONNX exports most of it), and several test modules read such a project
(tests/steps/test_lm_stages.py, tests/registry/test_lm_audit.py): it is built once per test run (`built`, through
helpers.built_once) and each module works in its own copy (`fresh_copy`)."""

from __future__ import annotations

import random
from pathlib import Path

import torch
import yaml

from benchmarks.checkout import copy_project
from steps import config, data, distill, evaluate, export, prune, quantize, teacher
from tests.helpers import built_once, moved_project, tiny_params

WORDS = "the river stone lantern north garden quiet ember harbour wolf ink runs over under a bright cold night".split()
LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
STAGES = (("data", data), ("teacher", teacher), ("prune", prune), ("distill", distill), ("export", export),
          ("quantize", quantize), ("evaluate", evaluate))
DOCUMENTS = 16
"""The shared project's documents: 9 to train on, 4 to validate on, 3 to test on. Few, for a test that reruns the
stages (an audit's retraining) as much as for the build."""


def documents(folder: Path, count: int = 40) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"d{i:02d}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(60)) + ".\n")
    return folder


def lm_params(docs: Path, **prune_keys) -> dict:
    raw = tiny_params(docs)
    raw["data"] = {"source": "text", "task": "causal_lm", "path": str(docs), "val_size": 4, "block_size": 32,
                   "tokenizer": {"train": {"kind": "bpe", "vocab_size": 200}}, "test_fraction": 0.2}
    raw["teacher"]["arch"] = {"name": "hf", "config": LLAMA}
    raw["teacher"]["train"].update(epochs=2, batch_size=8)
    raw["prune"].update(method="transformer", rounds=1, transformer={"heads": 0.5, "mlp": 0.5, "depth": 0.5,
                                                               "depth_metric": "block_influence"},
                        **prune_keys)
    raw["prune"]["finetune"].update(epochs=1, batch_size=8)
    raw["distill"].update(student={"name": "pruned"}, teacher="teacher")
    raw["distill"]["train"].update(epochs=1, batch_size=8, lr=0.001)
    raw["quantize"].update(methods=["dynamic"], deploy="dynamic", max_accuracy_drop=0.5)
    return raw


def run_stages(raw: dict, root: Path, stages=STAGES) -> dict:
    return {name: module.run(config.validate(raw, stage=name), root) for name, module in stages}


def shared_params(docs: Path) -> dict:
    """lm_params on one thread (the other xdist worker has the other core), one teacher epoch, and evaluate's
    decode latency timed briefly: nothing the tests check needs more."""
    raw = lm_params(docs)
    raw.update(threads=1)
    raw["teacher"]["train"]["epochs"] = 1
    raw["evaluate"].update(latency_repeats=2, latency_warmup=0)
    return raw


def built(tmp_path_factory) -> Path:
    """The shared project after every stage (read-only: `fresh_copy` it); its documents lie beside it, outside it,
    where params.yaml's data.path names them."""
    return built_once(tmp_path_factory, "lm-project", _build) / "project"


def _build(folder: Path) -> None:
    """Every stage on one torch thread (evaluate's scores too: the audit re-proves them bit for bit on one)."""
    raw = shared_params(documents(folder / "docs", count=DOCUMENTS))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_stages(raw, copy_project(folder / "project", raw))
    finally:
        torch.set_num_threads(previous)


def fresh_copy(tmp_path_factory, name: str) -> tuple[Path, dict]:
    """(a copy of the shared project of one's own, the params it was built with)."""
    root = moved_project(built(tmp_path_factory), tmp_path_factory.mktemp(name) / "project")
    return root, yaml.safe_load((root / "params.yaml").read_text())
