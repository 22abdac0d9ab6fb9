"""Minitron-style structured pruning of a Llama-style causal LM: fractions in, a smaller stock model out.

`prune_decoder` removes fractions of the layers, KV groups (heads), MLP neurons and hidden channels of the
ORIGINAL shape (decoder.target_shape: heads by whole KV group, the hidden width a size the config accepts),
scoring each axis on the model the previous cut left (decoder_importance) and keeping in each layer its
highest-scoring units, the same number in every layer. Layers go first: scoring the widths of a layer about
to be removed would be wasted. The result reloads with stock AutoModelForCausalLM.from_pretrained.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from steps.compression.criteria import lowest
from steps.compression.families.hf import decoder
from steps.compression.families.hf.decoder_importance import layer_scores, width_scores


def kept(scores: torch.Tensor, count: int) -> list[int]:
    """The `count` highest-scoring units in their original order (ties: the lower index goes first)."""
    drop = set(lowest(scores, len(scores) - count))
    return [i for i in range(len(scores)) if i not in drop]


def prune_decoder(model: nn.Module, calibration_ids: torch.Tensor | None, *, heads: float = 0.0, mlp: float = 0.0,
                  hidden: float = 0.0, layers: float = 0.0, importance: str = "activation",
                  depth_metric: str = "block_importance", batch_size: int = 8, round_to: int = 1) -> dict:
    """Remove these fractions of `model` (a transformers causal LM, in place) and return what was done:
    {"before": shape, "after": shape (dicts of decoder.DecoderShape), "layers_removed": original indices,
    "kv_groups_kept": per remaining layer, "neurons_kept": per remaining layer, "hidden_kept": channels}.
    Indices of widths are those of the model at that cut (after the layers went, before the next width).

    `heads` is the fraction of KV groups removed (each with its query heads), `importance` one of
    decoder_importance.IMPORTANCES, `depth_metric` one of DEPTH_METRICS. The whole plan is checked before
    any work. `calibration_ids` (N, T) may be None only when nothing needs data (l1 and `last`)."""
    before = decoder.shape_of(model)
    target = decoder.target_shape(model, heads=heads, mlp=mlp, hidden=hidden, layers=layers, round_to=round_to)
    done = {"before": asdict(before), "layers_removed": [], "kv_groups_kept": None, "neurons_kept": None,
            "hidden_kept": None}
    if target.layers < before.layers:
        scores = layer_scores(model, calibration_ids, depth_metric, batch_size)
        keep = kept(scores, target.layers)
        done["layers_removed"] = [i for i in range(before.layers) if i not in keep]
        decoder.drop_layers(model, done["layers_removed"])
    axes = (target.kv_heads < before.kv_heads, target.intermediate < before.intermediate, target.hidden < before.hidden)
    if any(axes) and importance != "l1" and calibration_ids is None:
        raise ValueError(f"prune.transformer.importance {importance!r} is measured on data: pass calibration ids")
    if axes[0]:
        scores = width_scores(model, calibration_ids, importance, batch_size)
        done["kv_groups_kept"] = [kept(s, target.kv_heads) for s in scores.kv_groups]
        decoder.keep_kv_groups(model, done["kv_groups_kept"])
    if axes[1]:
        scores = width_scores(model, calibration_ids, importance, batch_size)
        done["neurons_kept"] = [kept(s, target.intermediate) for s in scores.neurons]
        decoder.keep_mlp_neurons(model, done["neurons_kept"])
    if axes[2]:
        scores = width_scores(model, calibration_ids, importance, batch_size)
        done["hidden_kept"] = kept(scores.hidden, target.hidden)
        decoder.keep_hidden_channels(model, done["hidden_kept"])
    decoder.check_describable(model)
    done["after"] = asdict(decoder.shape_of(model))
    return done
