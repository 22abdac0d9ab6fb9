"""Model families: what a stage may ask of any model, answered by the family that built it.

A stage never checks a model's class (`isinstance(model, ViT)`); it asks `family_of(model)` for the hooks
below. A family is one folder here: `config.py` (its params.yaml config, torch-free, one member of
`steps.config.ArchConfig`), `model.py` (its builder, its hooks and its `FAMILY`), and one line in
`FAMILIES` (`steps.compression.choices`). This package's own modules import no torch at load time, so
the config schema can import a family's `config.py`.

Hooks:
    name              the registry name (`arch.name`)
    prune_methods     the `prune.method` values that can prune this family
    budget_searchable whether a budget search (params `target:`) can cut it: the per-layer channel one unless
                      budget_search names the family's own
    budget_search     None (the per-layer channel search, steps/prune/budget_search.py), or the name of the family's
                      own search in steps.prune.SEARCHES: hf's "uniform_encoder" (steps/prune/hf_search.py) tries the
                      uniform shapes a from_pretrained config describes, since its layers cannot differ
    pooled_layer(m)   the module whose output the classifier head reads (distillation's pooled features)
    attention_maps(m) one module name per transformer block whose output is that block's attention
                      probabilities (B, heads, N, N), or `name[i]` for element i of its tuple output
                      (`distillation.features`); [] for a family without attention. It makes `m` compute
                      them where it would not (hf: eager attention, no dropout on the probabilities)
    hidden_states(m)  one module name per transformer block whose output is its hidden state (B, N, D); []
                      for a family without blocks
    config            its params.yaml config class
    build(spec)       a new model of that spec (random initial weights)
    needs_images      whether it convolves or patches square images (a table's feature vectors cannot feed it)
    spec_of(m, spec)  the spec that rebuilds `m` as it is now (checkpoint.save writes it)
    fit_weights(m, state)  make the built `m` take the stored tensors' shapes (checkpoint.load); whether
                      anything changed
    example_input(spec)    a dummy batch of one sample (checkpoint.load's forward check, export)
    refuse_unprunable(m)   raise, naming the layer, if structured pruning cannot shrink `m` and reload it
    save_checkpoint   None (a .safetensors file and its .json spec: checkpoint.py), or save(m, spec, folder, meta,
                      extra_files) writing the family's own checkpoint folder atomically (hf: a save_pretrained folder)
    load_checkpoint   None, or load(folder) -> (model, spec): that folder read back
    prune_method_classes  None, or {prune.method name: the family's own PruneMethod class} for a method it
                      prunes in its own way; the prune stage asks it (`prune_method_class`) before
                      `choices.PRUNE_METHODS`. The hf family's "transformer" slices a transformers encoder
                      (families/hf/method.py) where the ViT's uses DepGraph on its own blocks. The class is
                      imported by the family's model.py, so the code key of every stage that loads the family
                      holds it: the prune stage's must (params name only the registry's class), the others'
                      hold it in excess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is loaded by the families' model.py only, never by the config schema
    from pathlib import Path

    import torch
    from torch import nn

    from steps.compression.families.spec import ModelSpec

TAG = "shrinkflow_family"
"""The class attribute naming a built-in model's family; a model without it is a user's (custom)."""
UNTAGGED = "custom"
CHECKPOINT_RECORD = "shrinkflow.json"
"""In a family's checkpoint folder (hf): {"spec": the ModelSpec, naming the family, "meta": the stage's record}."""


@dataclass(frozen=True)
class Family:
    name: str
    prune_methods: frozenset[str]
    budget_searchable: bool
    pooled_layer: Callable[[nn.Module], str]
    attention_maps: Callable[[nn.Module], list[str]]
    hidden_states: Callable[[nn.Module], list[str]]
    config: type
    build: Callable[[ModelSpec], nn.Module]
    needs_images: bool
    spec_of: Callable[[nn.Module, ModelSpec], ModelSpec]
    fit_weights: Callable[[nn.Module, dict[str, torch.Tensor]], bool]
    example_input: Callable[[ModelSpec], torch.Tensor]
    refuse_unprunable: Callable[[nn.Module], None]
    save_checkpoint: Callable[[nn.Module, ModelSpec, Path, dict, dict[str, Path]], None] | None = None
    load_checkpoint: Callable[[Path], tuple[nn.Module, ModelSpec]] | None = None
    prune_method_classes: Mapping[str, type] | None = None
    budget_search: str | None = None

    def prune_method_class(self, method: str) -> type:
        """The class that runs `prune.method` `method` on this family: its own, else the registry's."""
        from steps.compression.choices import PRUNE_METHODS

        own = self.prune_method_classes or {}
        return own[method] if method in own else PRUNE_METHODS.resolve(method)


def family(name: str) -> Family:
    """The family registered as `name`; ValueError listing the valid names otherwise."""
    from steps.compression.choices import FAMILIES

    return FAMILIES.resolve(name)


def family_of(model: nn.Module) -> Family:
    """The family that built `model`, pruned or not: its class's tag, or custom for any other module (the
    user's factory's). Only that family's module is imported."""
    return family(getattr(model, TAG, UNTAGGED))


def build(spec: ModelSpec) -> nn.Module:
    """A new model of `spec`, built by the family `spec.name` names."""
    return family(spec.name).build(spec)


def spec_of(model: nn.Module, spec: ModelSpec) -> ModelSpec:
    """The spec that rebuilds `model` as it is now (e.g. a pruned ViT's per-block widths); `spec` itself
    for the families whose checkpoint reads the narrower widths from the weights."""
    return family(spec.name).spec_of(model, spec)
