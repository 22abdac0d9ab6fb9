"""One-shot unstructured and N:M pruning of a causal language model's decoder Linears: Wanda or magnitude.

Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models", arXiv 2306.11695)
scores each weight S_ij = |W_ij| * ||X_j||_2, where ||X_j|| is the L2 norm of input feature j over every
calibration token, and compares weights within each output row: a weight feeding a loud input survives even if
it is small. Magnitude scores |W_ij| and is compared the same way (per output row, not one threshold per layer as
the Wanda reference code's magnitude baseline does), so the two differ only in the score.

The norms all come from the dense model in one pass (the simple variant). The reference code prunes layer by
layer instead, feeding each decoder layer the outputs of the layers already pruned; that costs one pass per layer
and is not done here.

Pruned weights are zeroed in place and stay dense tensors: the model saves and reloads with stock
`from_pretrained`, and CPU matmuls still multiply the zeros, so there is no speedup and no smaller file without a
sparse format; the report's compressed sizes are estimates of such a format.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

DECODER_LAYERS = "model.layers"
NO_SPEEDUP = ("weights are zeroed in place and stored dense: the saved file is as large as before and CPU matmuls "
              "still multiply the zeros (no speedup); compressed sizes are estimates of a sparse format")
INDEX_BYTES = 4  # int32 column indices and row pointers, as scipy's CSR uses for matrices this size


def linears(model: nn.Module, layers: str = DECODER_LAYERS) -> dict[str, nn.Linear]:
    """Every nn.Linear inside the decoder layers at dotted path `layers`, by full module name: embeddings and
    lm_head sit outside them, so they are never scored or pruned."""
    try:
        blocks = model.get_submodule(layers)
    except AttributeError:
        raise ValueError(f"the model has no decoder layers at {layers!r}") from None
    found = {f"{layers}.{name}": m for name, m in blocks.named_modules() if isinstance(m, nn.Linear)}
    if not found:
        raise ValueError(f"no nn.Linear inside {layers!r} to prune")
    return found


def input_norms(model: nn.Module, calibration_ids: torch.Tensor, batch_size: int = 8,
                layers: str = DECODER_LAYERS) -> dict[str, torch.Tensor]:
    """The L2 norm over all calibration tokens of each input feature of every decoder nn.Linear: name -> 1-D
    float32 tensor (in_features,). Forward hooks add each batch's squared sums and drop the activations, so memory
    holds one batch; only the base model runs (no lm_head logits). Every token counts (no padding mask)."""
    if calibration_ids.dim() != 2 or calibration_ids.numel() == 0:
        raise ValueError(f"calibration_ids must be a non-empty (N, T) tensor, got shape {tuple(calibration_ids.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    targets = linears(model, layers)
    sums = {name: torch.zeros(m.in_features, dtype=torch.float32, device=m.weight.device)
            for name, m in targets.items()}

    def adder(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0].detach().float()
            sums[name] += x.pow(2).reshape(-1, x.shape[-1]).sum(dim=0)
        return hook

    handles = [m.register_forward_hook(adder(name)) for name, m in targets.items()]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.inference_mode():
            for batch in calibration_ids.split(batch_size):
                model.base_model(input_ids=batch.to(device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: total.sqrt() for name, total in sums.items()}


def wanda_scores(weight: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||: `norm` is the per-input-feature L2 norm (input_norms), broadcast over output rows."""
    if norm.shape != (weight.shape[1],):
        raise ValueError(f"norm must have shape ({weight.shape[1]},) to match the weight's inputs, "
                         f"got {tuple(norm.shape)}")
    return weight.detach().abs().float() * norm.float().to(weight.device)[None, :]


def magnitude_scores(weight: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """|W_ij|: the input norms are ignored."""
    return weight.detach().abs().float()


SCORES: dict[str, Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "wanda": wanda_scores, "magnitude": magnitude_scores}
NEEDS_CALIBRATION = {"wanda"}


def check_sparsity(sparsity: float | None, n_m: tuple[int, int] | None) -> None:
    """Exactly one of a fraction in (0, 1) or an n:m pattern with 0 < n < m."""
    if (sparsity is None) == (n_m is None):
        raise ValueError(f"give exactly one of sparsity or n_m, got sparsity={sparsity}, n_m={n_m}")
    if sparsity is not None and not 0 < sparsity < 1:
        raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")
    if n_m is not None:
        if len(n_m) != 2 or not all(isinstance(v, int) for v in n_m) or not 0 < n_m[0] < n_m[1]:
            raise ValueError(f"n_m must be two integers n:m with 0 < n < m (2:4 keeps 2 of every 4), got {n_m}")


def check_groups(n_m: tuple[int, int], in_features: int, name: str = "the weight") -> None:
    if in_features % n_m[1]:
        raise ValueError(f"n:m {n_m[0]}:{n_m[1]}: m={n_m[1]} does not divide {name}'s in_features={in_features}")


def masks(scores: torch.Tensor, sparsity: float | None = None, n_m: tuple[int, int] | None = None) -> torch.Tensor:
    """Which weights to keep (True) from 2-D scores (out_features, in_features), lowest scores removed. With
    `sparsity`, each row loses floor(sparsity * in_features) weights; with n_m=(n, m), every group of m consecutive
    inputs in a row keeps its n highest. Ties go to the lower index (stable sort), so the mask is deterministic."""
    check_sparsity(sparsity, n_m)
    rows, cols = scores.shape
    if sparsity is not None:
        groups, removed = scores.reshape(rows, 1, cols), math.floor(sparsity * cols)
    else:
        check_groups(n_m, cols)
        groups, removed = scores.reshape(rows, cols // n_m[1], n_m[1]), n_m[1] - n_m[0]
    lowest = groups.argsort(dim=-1, stable=True)[..., :removed]
    keep = torch.ones_like(groups, dtype=torch.bool).scatter_(-1, lowest, False)
    return keep.reshape(rows, cols)


def compressed_bytes(weight: torch.Tensor, n_m: tuple[int, int] | None) -> int:
    """An estimate of the bytes a sparse format would take. Unstructured: CSR, i.e. the non-zero values, one int32
    column index each and rows + 1 int32 row pointers (at 50% fp32 that is no smaller than dense). n:m: the kept
    values plus ceil(log2 m) bits of position per kept value, as NVIDIA's 2:4 format stores 2 bits each."""
    nonzeros = int(torch.count_nonzero(weight))
    values = nonzeros * weight.element_size()
    if n_m is None:
        return values + nonzeros * INDEX_BYTES + (weight.shape[0] + 1) * INDEX_BYTES
    kept = weight.numel() // n_m[1] * n_m[0]  # the format stores n per group even where a kept weight is zero
    return kept * weight.element_size() + math.ceil(kept * math.ceil(math.log2(n_m[1])) / 8)


def layer_report(weight: torch.Tensor, n_m: tuple[int, int] | None) -> dict:
    parameters, nonzeros = weight.numel(), int(torch.count_nonzero(weight))
    return {"parameters": parameters, "nonzeros": nonzeros, "sparsity": 1 - nonzeros / parameters,
            "dense_bytes": parameters * weight.element_size(), "compressed_bytes": compressed_bytes(weight, n_m)}


def sparsify(model: nn.Module, method: str, sparsity: float | None = None, n_m: tuple[int, int] | None = None,
             calibration_ids: torch.Tensor | None = None, batch_size: int = 8,
             layers: str = DECODER_LAYERS) -> dict:
    """Zero the lowest-scoring weights of every decoder nn.Linear in place (biases untouched) and report per layer
    and in total: parameters, non-zeros, sparsity achieved, dense bytes and a compressed estimate. Every argument
    is checked before any weight changes, so a refused call leaves the model as it was."""
    kept = decoder_masks(model, method, sparsity, n_m, calibration_ids, batch_size, layers)
    targets = linears(model, layers)
    with torch.no_grad():
        for name, keep in kept.items():
            targets[name].weight.masked_fill_(~keep.to(targets[name].weight.device), 0)
    return report(model, method, sparsity, n_m, layers)


def decoder_masks(model: nn.Module, method: str, sparsity: float | None = None, n_m: tuple[int, int] | None = None,
                  calibration_ids: torch.Tensor | None = None, batch_size: int = 8,
                  layers: str = DECODER_LAYERS) -> dict[str, torch.Tensor]:
    """Which weights of every decoder nn.Linear to keep (True), by full module name, without changing the model:
    `sparsify` zeroes the rest, the prune stage holds them at zero through fine-tuning (sparse_method.py)."""
    if method not in SCORES:
        raise ValueError(f"unknown sparsity method {method!r}; choose one of {sorted(SCORES)}")
    check_sparsity(sparsity, n_m)
    targets = linears(model, layers)
    if n_m is not None:
        for name, m in targets.items():
            check_groups(n_m, m.in_features, name)
    norms: dict[str, torch.Tensor | None] = dict.fromkeys(targets)
    if method in NEEDS_CALIBRATION:
        if calibration_ids is None:
            raise ValueError(f"method {method!r} needs calibration_ids (N, T) to measure input norms")
        norms = input_norms(model, calibration_ids, batch_size, layers)
    with torch.no_grad():
        return {name: masks(SCORES[method](m.weight, norms[name]), sparsity, n_m) for name, m in targets.items()}


def report(model: nn.Module, method: str, sparsity: float | None, n_m: tuple[int, int] | None,
           layers: str = DECODER_LAYERS) -> dict:
    """What the decoder Linears hold now: per layer and in total, parameters, non-zeros, sparsity, dense bytes and a
    compressed estimate, with the note that zeros stored dense cost as much as any weight."""
    targets = linears(model, layers)
    per_layer = {name: layer_report(m.weight, n_m) for name, m in targets.items()}
    return {"method": method, "sparsity_target": sparsity, "n_m": n_m,
            "format": "csr" if n_m is None else f"{n_m[0]}:{n_m[1]}",
            "dtype": str(next(iter(targets.values())).weight.dtype), "layers": per_layer,
            "total": totals(per_layer), "note": NO_SPEEDUP}


def totals(report: dict[str, dict]) -> dict:
    """The layers' counts and bytes summed; sparsity over all their weights."""
    keys = ("parameters", "nonzeros", "dense_bytes", "compressed_bytes")
    total = {key: sum(layer[key] for layer in report.values()) for key in keys}
    total["sparsity"] = 1 - total["nonzeros"] / total["parameters"]
    return total
