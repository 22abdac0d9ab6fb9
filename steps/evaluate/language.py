"""Evaluate on language-model data (data.task causal_lm): teacher, pruned and student on the test documents.

Each model's perplexity, bits per byte (comparable across tokenizers) and next-token accuracy on the test blocks
(steps/compression/language.py); its parameters and non-zero weights (Wanda and magnitude zero weights without
removing them); its generation latency at batch 1 with the KV cache, prefill and decode apart
(steps/compression/generation.py); and the student's ONNX files as the quantize stage scored them. The student is
compared with the teacher by a paired bootstrap over test documents of the per-token log-likelihood difference
(stats/likelihood.py), and every model continues the same prompts greedily, logged beside the metrics so a person
can read what each one does. metrics/report.json's `accuracy` is the next-token accuracy, so what reads a model's
accuracy reads that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from steps import config, tracking
from steps.compression import generation, language, measure
from steps.compression.training import seed_everything
from steps.core import datasets, lineage
from steps.core.layout import PLOTS_DIR, REPORT, metrics_path
from steps.core.names import ModelRole
from steps.core.reports import close_figure
from steps.core.results import EvaluateReport, QuantizeResult
from steps.core.stats import likelihood
from steps.core.torchkit import load_model
from steps.evaluate import numeric_leaves, point_labels

PROMPT_TOKENS = 8
"""Tokens of each of the first test documents that open a default prompt."""
DEFAULT_PROMPTS = 3


def run(params: config.Params, root: Path, origin: lineage.Origin) -> EvaluateReport:
    seed_everything(params.seed, params.threads)
    cfg, manifest = params.evaluate, datasets.read_manifest(root)
    blocks = datasets.load_blocks(root, "test", manifest)
    tokenizer = Tokenizer.from_file(str(datasets.tokenizer_file(root, manifest)))
    prompts = cfg.prompts or default_prompts(tokenizer, blocks)
    models, documents, generations = {}, {}, {}
    for role in ModelRole:
        model = load_model(root, role)[0].hf.eval()
        scores = language.score_split(model, blocks)
        documents[role.value] = scores.document_ll.tolist()
        models[role.value] = {**scores.metrics, "accuracy": scores.metrics["next_token_accuracy"],
                              "parameters": measure.parameters(model), "nonzero_parameters": measure.nonzeros(model),
                              "latency": {"pytorch_kv_cache": latency(model, cfg, manifest["block_size"])}}
        generations[role.value] = generation.greedy_generations(model, tokenizer, prompts, cfg.generation_tokens,
                                                                eos_id=manifest["separator"]["id"])
        documents["tokens"] = scores.document_tokens.tolist()
    teacher = models[ModelRole.TEACHER.value]
    for m in models.values():
        m["perplexity_ratio"] = m["perplexity"] / teacher["perplexity"]
    quantized = QuantizeResult.read(root / metrics_path("quantize")).to_dict()
    compared = paired(documents, params.seed)
    report = {"models": models, "threads": params.threads, "latency_batch_size": 1, "latency_backend": "pytorch",
              "test_images": int(len(blocks["input_ids"])),
              "deploy": {"deployable": quantized["deploy"], "file": quantized["deployable"],
                         "variants": quantized["variants"]},
              "language": {"student_vs_teacher": compared, "documents": documents, "prompts": prompts,
                           "generations": generations}}
    figure = perplexity_figure(models, point_labels(params))
    (root / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    figure.savefig(root / PLOTS_DIR / "pareto.png", dpi=120)
    with tracking.open_run(root, **lineage.stage_run(root, params, "evaluate", origin)) as run_id:
        tracking.log_metrics(numeric_leaves(models) | {f"student_vs_teacher.{k}": v for k, v in compared.items()})
        tracking.log_dict({"prompts": prompts, "generations": generations}, "generations.json")
        tracking.log_figure(figure, "pareto.png")
    close_figure(figure)
    result = EvaluateReport(**report, mlflow_run_id=run_id)
    result.write(root / REPORT)
    return result


def default_prompts(tokenizer: Tokenizer, blocks: dict[str, np.ndarray]) -> list[str]:
    """The opening PROMPT_TOKENS tokens of the first test documents: prompts from the data, whatever its language."""
    starts, flat = blocks["document_starts"], blocks["input_ids"].reshape(-1)
    prompts = []
    for start, end in zip(starts[:DEFAULT_PROMPTS], starts[1:DEFAULT_PROMPTS + 1], strict=False):
        stop = min(start + PROMPT_TOKENS, end - 1, len(flat))  # within the document, its separator left out
        text = tokenizer.decode(flat[start:stop].tolist()).strip() if stop > start else ""
        if text:
            prompts.append(text)
    return prompts



def latency(model: torch.nn.Module, cfg, block_size: int) -> dict:
    """ms for the prefill of a prompt of half a block and per decoded token after it, with the KV cache."""
    prompt = max(1, block_size // 2)
    return generation.decode_latency(model, prompt, min(16, block_size - prompt), repeats=cfg.latency_repeats,
                                     warmup=cfg.latency_warmup)


def paired(documents: dict[str, list], seed: int) -> dict[str, float]:
    """Student minus teacher, nats per token, by a paired bootstrap over test documents; and the perplexity ratio."""
    tokens = np.asarray(documents["tokens"])
    difference = likelihood.paired_document_bootstrap(np.asarray(documents[ModelRole.TEACHER.value]),
                                                      np.asarray(documents[ModelRole.STUDENT.value]), tokens, seed=seed)
    ratio = likelihood.perplexity_ratio(difference)
    return {"nats_per_token": difference.estimate, "low": difference.low, "high": difference.high,
            "perplexity_ratio": ratio.estimate, "perplexity_ratio_low": ratio.low,
            "perplexity_ratio_high": ratio.high}


def perplexity_figure(models: dict[str, dict], labels: dict[str, str]):
    """The evaluate stage's plot for language models: test perplexity against ms per decoded token and against
    non-zero parameters; down and left is better on both panels."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    costs = (("ms per decoded token (PyTorch, KV cache, batch 1)",
              lambda m: m["latency"]["pytorch_kv_cache"]["decode_ms_per_token"]),
             ("non-zero parameters", lambda m: m["nonzero_parameters"]))
    for ax, (label, cost) in zip(axes, costs, strict=True):
        for role, m in models.items():
            ax.scatter(cost(m), m["perplexity"])
            ax.annotate(labels.get(role, role), (cost(m), m["perplexity"]), textcoords="offset points",
                        xytext=(6, -4), fontsize=8)
        ax.margins(x=0.25)
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test perplexity")
    fig.suptitle("shrinkflow: perplexity vs cost (down and left is better)")
    fig.tight_layout()
    return fig
