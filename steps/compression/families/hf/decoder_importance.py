"""Importance of a causal LM's KV groups, MLP neurons, hidden channels and layers, on calibration token ids.

Calibration is a LongTensor (N, T) of token ids (no padding: every position is read), run in batches of
`batch_size` so only per-channel sums are held, never the activations. Widths (higher = keep):
- `activation` (Minitron, Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge
  Distillation"; `output_norm` is the same, under prune.transformer.importance's name): the mean square over
  every token of a unit's activation. A KV group: its heads' attention outputs (o_proj's input), each head
  averaged over its channels, summed over the group's heads; an MLP neuron: down_proj's input; a hidden
  channel: every layer's input_layernorm and post_attention_layernorm outputs, summed over them.
- `l1`: sum |w| over every slice the unit spans (Li et al. 2017).
- `taylor`: sum |w * dL/dw| over those slices, L the LM loss on the calibration ids (Molchanov et al. 2019).
Layers (lower = less important, drop first):
- `block_importance`: Minitron's / ShortGPT's BI, 1 - cos(layer input, layer output) per token, mean over tokens;
- `perplexity`: the LM loss with the layer skipped (its output replaced by its input), mean over batches;
- `last`: the later the lower, so the last layers go: the naive baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from steps.compression.criteria.activation import channel_mean_square
from steps.compression.families.hf.decoder import decoder_layers, hidden_group, kv_groups, neuron_groups
from steps.compression.families.hf.pruning import Group, unit_sums
from steps.compression.training import evaluating

IMPORTANCES = ("activation", "output_norm", "l1", "taylor")
DEPTH_METRICS = ("block_importance", "perplexity", "last")


def batches(ids: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Rows of the (N, T) token ids, `batch_size` at a time, on the model's device by the caller."""
    if ids.dim() != 2 or ids.dtype != torch.long:
        raise ValueError(f"calibration ids must be a LongTensor (N, T), got {ids.dtype} {tuple(ids.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    yield from ids.split(batch_size)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of `model` on one batch of ids (the stock labels shift)."""
    ids = ids.to(_device(model))
    return model(input_ids=ids, labels=ids, use_cache=False).loss


@dataclass(frozen=True)
class WidthScores:
    """One score per unit, higher = keep: per layer per KV group, per layer per MLP neuron, per hidden channel."""

    kv_groups: list[torch.Tensor]
    neurons: list[torch.Tensor]
    hidden: torch.Tensor


def width_scores(model: nn.Module, ids: torch.Tensor, importance: str = "activation",
                 batch_size: int = 8) -> WidthScores:
    """Scores of every KV group, MLP neuron and hidden channel by criterion `importance` (IMPORTANCES)."""
    if importance not in IMPORTANCES:
        raise ValueError(f"prune.transformer.importance: {importance!r} is not one of {', '.join(IMPORTANCES)}")
    heads, neurons, hidden = kv_groups(model), neuron_groups(model), hidden_group(model)
    if importance in ("activation", "output_norm"):
        stats = _activations(model, ids, batch_size)
        return WidthScores([_group_activation(queries, stats, heads_of=model.config.num_attention_heads //
                                              model.config.num_key_value_heads) for queries, _ in heads],
                           [_probe_sum(g, stats) for g in neurons], _probe_sum(hidden, stats))
    if importance == "l1":
        return _by_weights(heads, neurons, hidden, lambda c: getattr(c.module, c.name).abs())
    _gradients(model, ids, batch_size)
    try:
        def taylor(c) -> torch.Tensor:
            w = getattr(c.module, c.name)
            return torch.zeros_like(w) if w.grad is None else (w * w.grad).abs()
        return _by_weights(heads, neurons, hidden, taylor)
    finally:
        model.zero_grad(set_to_none=True)  # calibration gradients are not training gradients


def _by_weights(heads: list[tuple[Group, Group]], neurons: list[Group], hidden: Group, tensor_of: Callable):
    return WidthScores([unit_sums(q, tensor_of) + unit_sums(k, tensor_of) for q, k in heads],
                       [unit_sums(g, tensor_of) for g in neurons], unit_sums(hidden, tensor_of))


def _activations(model: nn.Module, ids: torch.Tensor, batch_size: int) -> dict[tuple[int, str], torch.Tensor]:
    """Mean square per channel over every calibration token: o_proj and down_proj inputs, norm outputs."""
    sums: dict[tuple[int, str], torch.Tensor] = {}

    def add(key: tuple[int, str], x: torch.Tensor) -> None:
        total = channel_mean_square(x.float()).cpu() * x[..., 0].numel()
        sums[key] = sums[key] + total if key in sums else total

    hooks = []
    for layer in decoder_layers(model):
        for linear in (layer.self_attn.o_proj, layer.mlp.down_proj):
            hooks.append(linear.register_forward_pre_hook(lambda m, args: add((id(m), "input"), args[0])))
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            hooks.append(norm.register_forward_hook(lambda m, args, out: add((id(m), "output"), out)))
    with evaluating(model):
        tokens = _run_hooked(model, ids, batch_size, hooks)
    return {key: total / max(tokens, 1) for key, total in sums.items()}


def _group_activation(queries: Group, stats: dict, heads_of: int) -> torch.Tensor:
    """A KV group's score: each of its heads' mean square over the head's channels, summed over the heads."""
    (module, side), = queries.probes
    per_head = stats[(id(module), side)].reshape(queries.units * heads_of, -1).mean(1)
    return per_head.reshape(queries.units, heads_of).sum(1)


def _probe_sum(group: Group, stats: dict) -> torch.Tensor:
    total = torch.zeros(group.units)
    for module, side in group.probes:
        total += stats[(id(module), side)].reshape(group.units, group.size).mean(1)
    return total


def _gradients(model: nn.Module, ids: torch.Tensor, batch_size: int) -> None:
    """LM-loss gradients over all calibration rows (each batch weighted by its share of the rows), in eval mode
    (no dropout); left in .grad for the caller, which clears them."""
    was_training = model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            for batch in batches(ids, batch_size):
                (lm_loss(model, batch) * (len(batch) / len(ids))).backward()
    finally:
        model.train(was_training)


def layer_scores(model: nn.Module, ids: torch.Tensor | None, metric: str = "block_importance",
                 batch_size: int = 8) -> torch.Tensor:
    """One score per decoder layer by `metric` (DEPTH_METRICS), lower = drop first."""
    layers = decoder_layers(model)
    if metric == "last":
        return torch.arange(len(layers) - 1, -1, -1, dtype=torch.float32)
    if metric not in DEPTH_METRICS:
        raise ValueError(f"prune.transformer.depth_metric: {metric!r} is not one of {', '.join(DEPTH_METRICS)}")
    if ids is None:
        raise ValueError(f"prune.transformer.depth_metric {metric!r} is measured on data: pass calibration ids")
    with evaluating(model):
        if metric == "block_importance":
            return _block_importance(model, layers, ids, batch_size)
        return _skipped_losses(model, layers, ids, batch_size)


def _hidden(output) -> torch.Tensor:
    """A layer's output hidden states: the tensor itself (transformers 5), or the first of a tuple (4.x)."""
    return output[0] if isinstance(output, tuple) else output


def _layer_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _skip(module: nn.Module, args: tuple, kwargs: dict, output):
    """A forward hook that makes a layer the identity: its output is its input hidden states."""
    x = _layer_input(args, kwargs)
    return (x, *output[1:]) if isinstance(output, tuple) else x


def _block_importance(model: nn.Module, layers: nn.ModuleList, ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Sum over every calibration token of 1 - cos(input, output) per layer, divided by the token count."""
    totals = torch.zeros(len(layers), dtype=torch.float64)

    def hook(i: int):
        def record(module, args, kwargs, output) -> None:
            x, y = _layer_input(args, kwargs).float(), _hidden(output).float()
            totals[i] += (1 - F.cosine_similarity(x, y, dim=-1)).sum().double().cpu()
        return record

    hooks = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    tokens = _run_hooked(model, ids, batch_size, hooks)
    return (totals / max(tokens, 1)).float()


def _skipped_losses(model: nn.Module, layers: nn.ModuleList, ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per layer, the LM loss (mean over rows) with that layer's output replaced by its input: the model as it
    would be without the layer (the layer still runs; its module stays, so masks and caches are untouched)."""
    losses = []
    for layer in layers:
        handle = layer.register_forward_hook(_skip, with_kwargs=True)
        try:
            total = sum(lm_loss(model, batch).double() * len(batch) for batch in batches(ids, batch_size))
        finally:
            handle.remove()
        losses.append(total / len(ids))
    return torch.stack(losses).float().cpu()


def _run_hooked(model: nn.Module, ids: torch.Tensor, batch_size: int, hooks: list) -> int:
    """Run `model` over `ids` in batches, then remove `hooks` (also on failure); the tokens it saw."""
    tokens = 0
    try:
        for batch in batches(ids, batch_size):
            model(input_ids=batch.to(_device(model)), use_cache=False)
            tokens += batch.numel()
    finally:
        for hook in hooks:
            hook.remove()
    return tokens
