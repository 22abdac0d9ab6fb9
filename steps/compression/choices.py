"""Every choice params.yaml makes by name, one registry each, readable without importing torch.

A registry maps a name to the object it selects, written as "module:attribute" and imported on
first use: the config schema takes its valid names from these keys (`shrinkflow run -S ...`
validates without loading torch), and the library resolves the same entries. A new model family,
schedule or criterion is one line here; tests/compression/test_choices.py resolves every entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class Registry(Mapping[str, Any]):
    """name -> "module:attribute", resolved lazily; unknown names raise ValueError listing the valid ones."""

    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> Any:
        module, _, attribute = self._entries[name].partition(":")
        return getattr(importlib.import_module(module), attribute)

    def __contains__(self, name: object) -> bool:  # Mapping's would resolve (import) the entry
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def resolve(self, name: str) -> Any:
        self._check(name)
        return self[name]

    def module_of(self, name: str) -> str:
        """The module that holds entry `name`, without importing it (code keys: what a params value runs)."""
        self._check(name)
        return self._entries[name].partition(":")[0]

    def _check(self, name: str) -> None:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {sorted(self._entries)}")

    def subset(self, kind: str, names: list[str]) -> Registry:
        """The entries `names` of this registry, as a registry of its own (what one params key accepts)."""
        return Registry(kind, {name: self._entries[name] for name in names})


FAMILIES = Registry("model family", {
    # name -> the family's hooks and builder (steps/compression/families/<name>/model.py: FAMILY)
    "mlp": "steps.compression.families.mlp.model:FAMILY",
    "cnn": "steps.compression.families.cnn.model:FAMILY",
    "resnet": "steps.compression.families.resnet.model:FAMILY",
    "vit": "steps.compression.families.vit.model:FAMILY",
    "custom": "steps.compression.families.custom.model:FAMILY",
    "hf": "steps.compression.families.hf.model:FAMILY",  # transformers, on text data
})
SCHEDULES = Registry("pruning schedule", {
    "one_shot": "steps.compression.schedules:one_shot",
    "linear": "steps.compression.schedules:linear",
    "geometric": "steps.compression.schedules:geometric",
    "cubic": "steps.compression.schedules:cubic",
})
CRITERIA = Registry("importance criterion", {
    # steps.compression.criteria: one Importance class each, __call__(group) -> 1-D scores
    "l1": "steps.compression.criteria.magnitude:L1",
    "l2": "steps.compression.criteria.magnitude:L2",
    "bn_scale": "steps.compression.criteria.magnitude:BNScale",
    "taylor": "steps.compression.criteria.taylor:Taylor",
    "output_norm": "steps.compression.criteria.activation:OutputNorm",
    "logit_kl": "steps.compression.criteria.blocks:LogitKL",
    "logit_cosine": "steps.compression.criteria.blocks:LogitCosine",
    "block_influence": "steps.compression.criteria.blocks:BlockInfluence",
    "perplexity": "steps.compression.criteria.blocks:LossOnRemoval",
    "last": "steps.compression.criteria.blocks:LastBlocks",
})
# What each params key accepts of CRITERIA: prune.importance (channels and neurons), prune.transformer.importance
# (heads, MLP neurons, embedding channels), prune.transformer.depth_metric (whole blocks).
IMPORTANCES = CRITERIA.subset("channel importance", ["l1", "l2", "taylor", "bn_scale"])
TRANSFORMER_IMPORTANCES = CRITERIA.subset("transformer importance", ["l1", "taylor", "output_norm"])
BLOCK_METRICS = CRITERIA.subset("block importance", ["logit_kl", "logit_cosine", "block_influence", "perplexity",
                                                       "last"])
PRUNE_METHODS = Registry("prune.method", {
    # steps.compression.prune_method.PruneMethod: what the prune stage's loop calls each round
    "magnitude": "steps.compression.pruning:MagnitudePruning",
    "structured": "steps.compression.structured:StructuredPruning",
    "transformer": "steps.compression.transformer_pruning:TransformerPruningMethod",
    "wanda": "steps.compression.families.hf.sparse_method:DecoderSparsity",  # a causal language model's decoder
})
L1_TARGETS = Registry("L1 target", {
    "weights": "steps.compression.regularization:weight_tensors",
    "bn_scale": "steps.compression.regularization:bn_scales",
})
LR_SCHEDULES = Registry("lr_schedule", {
    "constant": "steps.compression.training:constant_lr",
    "cosine": "steps.compression.training:cosine_lr",
    "warmup_cosine": "steps.compression.warmup:warmup_cosine_lr",
})
LAYER_MAPS = Registry("layer map", {
    "uniform": "steps.compression.distillation.layer_maps:uniform_layer_map",
    "last": "steps.compression.distillation.layer_maps:last_layer_map",
})
DISTILL_TERMS = Registry("distillation term", {
    # one module per term (steps/compression/distillation/), summed with weights by its objective
    "soft_targets": "steps.compression.distillation.soft_targets:SoftTargets",
    "hard_labels": "steps.compression.distillation.hard_labels:HardLabels",
    "hints": "steps.compression.distillation.hints:FitNetsHint",
    "attention_transfer": "steps.compression.distillation.attention_transfer:AttentionTransfer",
    "attention_maps": "steps.compression.distillation.attention_maps:AttentionMaps",
    "hidden_states": "steps.compression.distillation.hidden_states:HiddenStates",
})
STRATEGIES = Registry("resources.strategy", {
    # how several ranks train one model (steps/compression/training.py): (model, optimizer) -> what they train
    "ddp": "steps.compression.parallel:Replicas",  # every rank a whole replica, gradients all-reduced
    "fsdp": "steps.compression.sharded:Sharded",  # every rank 1/N of weights, gradients and optimizer state
})
