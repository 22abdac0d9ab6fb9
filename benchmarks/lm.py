"""Language-model benchmark, part 2: a real LLM (SmolLM2-135M-Instruct) pruned one-shot, scored on Brown.

    .venv/bin/python benchmarks/lm.py                   # the full run (about 10-15 minutes on 2 cores)
    .venv/bin/python benchmarks/lm.py --quick           # 2 test documents, 4 calibration blocks: does it run
    .venv/bin/python benchmarks/lm.py --test-documents 20 --threads 4

Protocol. Brown's 500 documents (benchmarks/lm_assets.py) are split by document with steps/sources/documents.py
`split(500, test_fraction=0.2, val_size=50, seed=0)` (100 test, 50 validation, 350 training documents). The test
set scored is --test-documents of the 100 test documents, evenly spaced in their sorted order (8 by default,
about 21k tokens). Text is tokenised by SmolLM2's own tokenizer (its tokenizer.json, no special tokens added);
documents are separated by its eos `<|im_end|>` (the token the pipeline's data stage picks from the folder's
tokenizer_config.json) and packed end to end into blocks of 128 (steps/sources/blocks.py), each block scored on
its own (127 predicted targets each, no context across blocks). Calibration: --calibration-blocks (64) blocks of
128 tokens drawn at random (seed 0) from the training documents packed the same way: 8,192 tokens, where Wanda's
paper uses 128 segments of 2048 tokens (262,144) from C4.

Rows: dense; magnitude and Wanda at 50% unstructured and at 2:4 (steps/compression/sparsity.py: scores compared
within each output row for both, so they differ only in the score; Wanda's norms from the dense model in one pass,
no layer-by-layer reconstruction); depth 30 -> 20 layers by Block Importance and by dropping the last 10
(steps/compression/families/hf/decoder_prune.py). Each row reloads the dense model fresh from its safetensors
folder. Columns: perplexity, bits per byte and next-token accuracy (steps/compression/language.py), perplexity
ratio to dense with a 95% paired bootstrap over the test documents (steps/core/stats/likelihood.py), non-zero
parameters, a compressed-size estimate (sparse formats: CSR for unstructured, values + 2-bit positions for 2:4;
the weights themselves stay dense in memory, so nothing is faster) and the seconds pruning took.

Goals: (a) Wanda's perplexity increase at 50% at most a third of magnitude's; (b) Block Importance's 20 layers
better than the naive cut of the last 10. Wanda's own numbers (LLaMA-2-7B on WikiText) are printed beside ours.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from steps.compression import language, sparsity
from steps.compression.families.hf.decoder_prune import prune_decoder
from steps.core.stats.likelihood import paired_document_bootstrap, perplexity_ratio
from steps.sources import blocks, documents
from steps.sources.base import SourceOptions

BLOCK_SIZE = 128
TEST_FRACTION, VAL_SIZE, SPLIT_SEED = 0.2, 50, 0
CALIBRATION_SEED = 0
DEPTH = 1 / 3  # 30 layers -> 20

Prune = Callable[[torch.nn.Module, torch.Tensor, int], dict | None]
ROWS: dict[str, Prune] = {
    "dense": lambda model, calibration, batch: None,
    "magnitude 50%": lambda model, calibration, batch: sparsity.sparsify(model, "magnitude", sparsity=0.5),
    "Wanda 50%": lambda model, calibration, batch: sparsity.sparsify(
        model, "wanda", sparsity=0.5, calibration_ids=calibration, batch_size=batch),
    "magnitude 2:4": lambda model, calibration, batch: sparsity.sparsify(model, "magnitude", n_m=(2, 4)),
    "Wanda 2:4": lambda model, calibration, batch: sparsity.sparsify(
        model, "wanda", n_m=(2, 4), calibration_ids=calibration, batch_size=batch),
    "depth 1/3, Block Importance": lambda model, calibration, batch: prune_decoder(
        model, calibration, layers=DEPTH, depth_metric="block_importance", batch_size=batch),
    "depth 1/3, last layers": lambda model, calibration, batch: prune_decoder(
        model, None, layers=DEPTH, depth_metric="last", batch_size=batch),
}

# Sun et al. 2023 (arXiv 2306.11695), Tables 2 and 3: LLaMA-2-7B, WikiText perplexity, 128 x 2048 C4 calibration.
WANDA_PAPER = {"dense": 5.12, "magnitude 50%": 14.89, "Wanda 50%": 6.42, "magnitude 2:4": 54.59, "Wanda 2:4": 11.02}


# --- data -------------------------------------------------------------------------------------------------------


def spaced(count: int, n: int) -> np.ndarray:
    """`n` positions evenly spaced over 0..count-1, first and last included: a fixed subset that samples the whole
    sorted list (Brown's ids run by genre, so the first n would be news alone)."""
    if not 1 <= n <= count:
        raise ValueError(f"--test-documents must be between 1 and the {count} test documents, got {n}")
    return np.unique(np.linspace(0, count - 1, n).round().astype(np.int64))


def calibration_blocks(train: dict[str, np.ndarray], n: int, seed: int = CALIBRATION_SEED) -> torch.Tensor:
    """(n, block_size) int64: `n` distinct blocks of the packed training documents, drawn at random (seeded) and
    kept in stream order."""
    ids = train["input_ids"]
    if not 1 <= n <= len(ids):
        raise ValueError(f"--calibration-blocks must be between 1 and the {len(ids)} training blocks, got {n}")
    chosen = np.sort(np.random.default_rng(seed).choice(len(ids), size=n, replace=False))
    return torch.from_numpy(ids[chosen].astype(np.int64))


def packed(tokenizer, texts: np.ndarray, separator_id: int, block_size: int) -> dict[str, np.ndarray]:
    """The documents as the data stage packs them (blocks.pack), with each one's UTF-8 bytes for bits per byte."""
    arrays = blocks.pack(blocks.tokenise(tokenizer, texts), separator_id, block_size)
    arrays["document_bytes"] = np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64)
    return arrays


def prepare(corpus: Path, model_folder: Path, test_documents: int, calibration: int, block_size: int = BLOCK_SIZE,
            val_size: int = VAL_SIZE) -> tuple[dict[str, np.ndarray], torch.Tensor, dict]:
    """(the test blocks, the calibration ids, what was chosen) from a folder of .txt documents and a model folder
    holding tokenizer.json (its separator chosen as the data stage chooses it)."""
    from tokenizers import Tokenizer

    every = documents.read(corpus, SourceOptions())
    parts = documents.split(len(every), TEST_FRACTION, val_size, SPLIT_SEED)
    tokenizer = Tokenizer.from_file(str(model_folder / "tokenizer.json"))
    sep = blocks.separator(tokenizer, model_folder, {}, str(model_folder))
    test_idx = parts["test"][spaced(len(parts["test"]), test_documents)]
    test = packed(tokenizer, every.texts[test_idx], sep["id"], block_size)
    train = packed(tokenizer, every.texts[parts["train"]], sep["id"], block_size)
    chosen = {"split": {name: len(idx) for name, idx in parts.items()}, "separator": sep, "block_size": block_size,
              "test_documents": [Path(every.where[i]).stem for i in test_idx],
              "test_blocks": len(test["input_ids"]), "test_dropped_tokens": int(test.pop("dropped")),
              "train_blocks": len(train["input_ids"]), "calibration_blocks": calibration,
              "calibration_seed": CALIBRATION_SEED}
    return test, calibration_blocks(train, calibration), chosen


# --- models -----------------------------------------------------------------------------------------------------


def fresh(folder: Path) -> torch.nn.Module:
    """The dense model as saved, float32, never from a hub."""
    from transformers import AutoModelForCausalLM

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()


def footprint(model: torch.nn.Module, report: dict | None) -> dict:
    """Parameters (tied embeddings once), non-zeros, dense bytes and the compressed estimate: the sparsity
    report's sparse-format bytes for the decoder Linears, dense bytes for everything else."""
    params = list(model.parameters())
    dense = sum(p.numel() * p.element_size() for p in params)
    compressed = dense
    if report is not None and "total" in report:
        compressed += report["total"]["compressed_bytes"] - report["total"]["dense_bytes"]
    return {"parameters": sum(p.numel() for p in params),
            "nonzeros": sum(int(torch.count_nonzero(p)) for p in params),
            "dense_bytes": dense, "compressed_bytes": compressed, "layers": model.config.num_hidden_layers}


def row(name: str, folder: Path, test: dict[str, np.ndarray], calibration: torch.Tensor, batch_size: int) -> dict:
    """One row: the dense model reloaded, pruned by ROWS[name] (timed), scored on the test blocks (timed)."""
    model = fresh(folder)
    start = time.perf_counter()
    report = ROWS[name](model, calibration, batch_size)
    prune_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = language.score_split(model, test, batch_size)
    score_s = time.perf_counter() - start
    kept = {"layers_removed": report["layers_removed"]} if report and "layers_removed" in report else {}
    return {"metrics": scores.metrics, "document_ll": scores.document_ll.tolist(),
            "document_tokens": scores.document_tokens.tolist(), **footprint(model, report), **kept,
            "prune_s": prune_s, "score_s": score_s}


def evaluate(folder: Path, test: dict[str, np.ndarray], calibration: torch.Tensor, batch_size: int,
             log: Callable[[str], None] = print) -> dict[str, dict]:
    rows = {}
    for name in ROWS:
        rows[name] = row(name, folder, test, calibration, batch_size)
        m = rows[name]["metrics"]
        log(f"{name}: perplexity {m['perplexity']:.3f}, {rows[name]['prune_s']:.1f} s pruning, "
            f"{rows[name]['score_s']:.1f} s scoring")
    return rows


# --- comparisons, goals, table ----------------------------------------------------------------------------------


def ratio(reference: dict, candidate: dict, seed: int = 0) -> dict:
    """ppl_candidate / ppl_reference with its 95% paired bootstrap interval over the documents."""
    tokens = np.asarray(reference["document_tokens"], dtype=np.int64)
    if tokens.tolist() != list(candidate["document_tokens"]):
        raise ValueError("the two rows scored different tokens per document: not the same test blocks")
    diff = paired_document_bootstrap(np.asarray(reference["document_ll"]), np.asarray(candidate["document_ll"]),
                                     tokens, seed=seed)
    r = perplexity_ratio(diff)
    return {"estimate": r.estimate, "low": r.low, "high": r.high, "confidence": r.confidence}


def increase_share(ppl: dict[str, float], method: str, baseline: str) -> float:
    """(ppl[method] - dense) / (ppl[baseline] - dense): the share of the baseline's perplexity increase that
    `method` keeps; inf when the baseline did not raise perplexity."""
    grown = ppl[baseline] - ppl["dense"]
    return (ppl[method] - ppl["dense"]) / grown if grown > 0 else math.inf


def goals(rows: dict[str, dict]) -> dict:
    """(a) Wanda 50%'s perplexity increase <= a third of magnitude 50%'s (2:4 and the paper's shares beside);
    (b) Block Importance's perplexity below the last-layers cut's, with the paired interval of their ratio."""
    ppl = {name: r["metrics"]["perplexity"] for name, r in rows.items()}
    share = increase_share(ppl, "Wanda 50%", "magnitude 50%")
    depth = ratio(rows["depth 1/3, last layers"], rows["depth 1/3, Block Importance"])
    return {"wanda_share_50": share, "wanda_met": share <= 1 / 3,
            "wanda_share_2_4": increase_share(ppl, "Wanda 2:4", "magnitude 2:4"),
            "paper_share_50": increase_share(WANDA_PAPER, "Wanda 50%", "magnitude 50%"),
            "paper_share_2_4": increase_share(WANDA_PAPER, "Wanda 2:4", "magnitude 2:4"),
            "block_importance_vs_last": depth, "block_importance_met": depth["estimate"] < 1,
            "block_importance_beyond_noise": depth["high"] < 1}


def with_ratios(rows: dict[str, dict]) -> dict[str, dict]:
    """Each row with its perplexity ratio to dense (dense's own is 1 on [1, 1])."""
    return {name: {**r, "ratio_vs_dense": ratio(rows["dense"], r)} for name, r in rows.items()}


def _num(x: float) -> str:
    """Three decimals, or three significant digits where that would hide the number (a collapsed model's
    perplexity in the billions, a ratio of 1e-8)."""
    return f"{x:.3f}" if 0.01 <= abs(x) < 1000 else f"{x:.3g}"


def _interval(q: dict) -> str:
    return f"{_num(q['estimate'])} [{_num(q['low'])}, {_num(q['high'])}]"


def _line(name: str, r: dict) -> str:
    m = r["metrics"]
    return (f"| {name} | {r['layers']} | {_num(m['perplexity'])} | {m['bits_per_byte']:.4f} | "
            f"{m['next_token_accuracy']:.2%} | {_interval(r['ratio_vs_dense'])} | "
            f"{r['nonzeros'] / 1e6:.1f} | {r['compressed_bytes'] / 2**20:.0f} | {r['prune_s']:.1f} | "
            f"{r['score_s']:.0f} |")


def table(result: dict) -> str:
    rows, g, ok = result["rows"], result["goals"], (lambda met: "met" if met else "NOT met")
    lines = ["| row | layers | perplexity | bits/byte | next-token acc. | ppl ratio vs dense [95% CI] | non-zero "
             "params M | size MB (est.) | pruning s | scoring s |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_line(name, r) for name, r in rows.items()]
    paper = " | ".join(f"{name} {ppl:.2f} ({ppl / WANDA_PAPER['dense']:.2f}x)" for name, ppl in WANDA_PAPER.items())
    d = g["block_importance_vs_last"]
    lines += ["", f"Reference, Wanda's paper (LLaMA-2-7B, WikiText perplexity): {paper}.", "",
              f"- (a) Wanda 50%'s perplexity increase over dense is {g['wanda_share_50']:.1%} of magnitude 50%'s "
              f"(goal <= 33.3%): {ok(g['wanda_met'])}. At 2:4: {g['wanda_share_2_4']:.1%}. The paper's: "
              f"{g['paper_share_50']:.1%} at 50%, {g['paper_share_2_4']:.1%} at 2:4.",
              f"- (b) Block Importance's perplexity / the last-layers cut's: {_interval(d)} (95% paired "
              f"bootstrap over the documents; below 1: Block Importance better): {ok(g['block_importance_met'])}"
              f"{', beyond noise' if g['block_importance_beyond_noise'] else ', within noise'}."]
    removed = {name: r["layers_removed"] for name, r in rows.items() if "layers_removed" in r}
    lines += [f"- {name}: layers removed {v}" for name, v in removed.items()]
    return "\n".join(lines) + "\n"


def protocol(chosen: dict, genres: dict[str, str]) -> str:
    docs = ", ".join(f"{d} ({genres.get(d, '?')})" for d in chosen["test_documents"])
    s, size = chosen["split"], chosen["block_size"]
    return (f"Brown split by document (documents.split(500, test_fraction={TEST_FRACTION}, val_size={VAL_SIZE}, "
            f"seed={SPLIT_SEED}): {s['train']} train, {s['val']} val, {s['test']} test). Scored: "
            f"{len(chosen['test_documents'])} test documents evenly spaced in sorted order: {docs}; "
            f"{chosen['test_blocks']} blocks of {size} ({chosen['test_blocks'] * (size - 1)} "
            f"predicted tokens, {chosen['test_dropped_tokens']} tail tokens dropped). SmolLM2's tokenizer, documents "
            f"separated by {chosen['separator']['token']} (id {chosen['separator']['id']}). Calibration: "
            f"{chosen['calibration_blocks']} random blocks (seed {chosen['calibration_seed']}) of the "
            f"{chosen['train_blocks']} packed from the training documents ({chosen['calibration_blocks'] * size:,} "
            "tokens; Wanda's paper: 128 x 2048 tokens of C4). Magnitude compares weights within each output row, as "
            "Wanda does (the paper's magnitude baseline uses one threshold per layer); Wanda's norms come from the "
            "dense model in one pass. Sizes: estimates of a sparse format (CSR for 50%, values + 2-bit positions for "
            "2:4) for the decoder Linears, dense float32 for the rest; the pruned weights are stored dense, so no "
            "row is faster. Pruning seconds include Wanda's and Block Importance's calibration passes.")


def main() -> None:
    import common
    import lm_assets  # benchmarks/ is on sys.path when this runs as a script, which is the only way main() runs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 test documents, 4 calibration blocks: does it run "
                        "(its report is written only where --out says)")
    parser.add_argument("--out", type=Path, help="where the report goes (default: benchmarks/results/)")
    parser.add_argument("--test-documents", type=int, help="test documents scored, evenly spaced (default 8; "
                        "--quick 2)")
    parser.add_argument("--calibration-blocks", type=int, help="training blocks for Wanda and Block Importance "
                        "(default 64; --quick 4)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=lm_assets.CACHE, help="where lm_assets keeps Brown and SmolLM2")
    args = parser.parse_args()
    test_docs = args.test_documents or (2 if args.quick else 8)
    calibration_n = args.calibration_blocks or (4 if args.quick else 64)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    corpus, genres = lm_assets.brown(args.cache)
    folder = lm_assets.smollm2_folder(args.cache)
    test, calibration, chosen = prepare(corpus, folder, test_docs, calibration_n)
    rows = with_ratios(evaluate(folder, test, calibration, args.batch_size))
    result = {"protocol": chosen, "rows": rows, "wanda_paper": WANDA_PAPER}
    result["goals"] = goals(rows)
    result["wall_s"] = time.perf_counter() - start
    common.report(args, "lm", "Language-model benchmark: SmolLM2-135M-Instruct pruned one-shot, Brown",
                  table(result), result,
                  note=f"{protocol(chosen, genres)} transformers {common.version('transformers')}, "
                       f"{result['wall_s'] / 60:.1f} min wall.",
                  threads=args.threads, batch_size=args.batch_size, wall_s=result["wall_s"])


if __name__ == "__main__":
    main()
