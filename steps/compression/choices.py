"""Every choice params.yaml makes by name, one registry each, readable without importing torch.

A registry maps a name to the object it selects, written as "module:attribute" and imported on
first use: the config schema takes its valid names from these keys (`shrinkflow run -S ...`
validates without loading torch), and the library resolves the same entries. A new architecture,
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


ARCHITECTURES = Registry("architecture", {
    "mlp": "steps.compression.models:MLP",
    "cnn": "steps.compression.models:CNN",
    "resnet": "steps.compression.models:ResNet",
    "vit": "steps.compression.vit:ViT",
    "custom": "steps.compression.custom:build_custom",
})
SCHEDULES = Registry("pruning schedule", {
    "one_shot": "steps.compression.schedules:one_shot",
    "linear": "steps.compression.schedules:linear",
    "geometric": "steps.compression.schedules:geometric",
    "cubic": "steps.compression.schedules:cubic",
})
IMPORTANCES = Registry("channel importance", {
    "l1": "steps.compression.structured:l1_importance",
    "l2": "steps.compression.structured:l2_importance",
    "taylor": "steps.compression.structured:taylor_importance",
    "bn_scale": "steps.compression.structured:BNScaleOrL1",
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
TRANSFORMER_IMPORTANCES = Registry("transformer importance", {
    # (model, calibration) -> torch-pruning Importance; scores are not normalised per group (global ranking)
    "l1": "steps.compression.transformer_pruning:l1_importance",
    "taylor": "steps.compression.transformer_pruning:taylor_importance",
    "output_norm": "steps.compression.transformer_pruning:OutputNormImportance",
})
BLOCK_METRICS = Registry("block importance", {
    # (model, x) -> (depth,) importance per block, higher = more important
    "logit_kl": "steps.compression.transformer_pruning:logit_kl",
    "logit_cosine": "steps.compression.transformer_pruning:logit_cosine",
    "block_influence": "steps.compression.transformer_pruning:block_influence",
})
LAYER_MAPS = Registry("layer map", {
    "uniform": "steps.compression.transformer_distillation:uniform_layer_map",
    "last": "steps.compression.transformer_distillation:last_layer_map",
})
