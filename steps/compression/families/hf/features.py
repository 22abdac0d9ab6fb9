"""Where an hf model's per-layer hidden states and attention probabilities are, for distillation's FeatureTap.

Read from the model's own `can_record_outputs` (transformers 5): the modules whose outputs
`output_hidden_states` and `output_attentions` collect (BERT: "hidden_states" from each BertLayer,
"attentions" from each BertSelfAttention; RobertaLayer, DistilBertSelfAttention, ... elsewhere), so the
names hold for every encoder transformers defines, not BERT alone. The hidden states are the layers'
outputs (B, N, D), not the embeddings'; an attention module returns (output, probabilities (B, heads, N, N)),
tapped as `name[1]` (the recorder's index; see `distillation.features.FeatureTap`).

Only the eager attention computes the probabilities (SDPA returns None in their place), so asking for the
attention maps switches the model to `attn_implementation="eager"`: the same weights and, within float
rounding, the same outputs. The folder the model is saved to does not record the switch (transformers
drops `_attn_implementation` from config.json): whoever reloads it gets SDPA again. Eager attention returns
the probabilities after dropout, which would leave a training student's maps no longer distributions (a
dropped entry is 0, and log 0 is in the KL), so the dropout inside those attention modules is switched off
too (only there: the rest of the model keeps its dropout).
"""

from __future__ import annotations

from torch import nn
from transformers.utils.output_capturing import OutputRecorder


def hidden_states(model: nn.Module) -> list[str]:
    """One module name per layer, in order: its output is the layer's hidden state (B, N, D). A layer of
    transformers 5 returns the tensor itself (index 0 is transformers' "the output, or its first element")."""
    return [name if not index else f"{name}[{index}]" for name, _, index in _recorded(model, "hidden_states")]


def attention_maps(model: nn.Module) -> list[str]:
    """One `name[i]` per layer, in order: element i of that module's output is the layer's attention
    probabilities (B, heads, N, N). Switches `model` to eager attention without dropout on the
    probabilities (see the module docstring)."""
    recorded = _recorded(model, "attentions")
    if recorded:
        model.hf.set_attn_implementation("eager")
    for _, module, _ in recorded:
        for dropout in module.modules():
            if isinstance(dropout, nn.Dropout):
                dropout.p = 0.0
    return [f"{name}[{1 if index is None else index}]" for name, _, index in recorded]


def _recorded(model: nn.Module, key: str) -> list[tuple[str, nn.Module, int | None]]:
    """(name under `model`, module, the recorder's explicit index or None) of each module transformers records
    as `key`, matched as transformers' `recursively_install_hooks` matches them (class, class-name suffix,
    layer name)."""
    specs = model.hf.can_record_outputs.get(key) or []
    recorders = [spec if isinstance(spec, OutputRecorder) else
                 OutputRecorder(target_class=None if isinstance(spec, str) else spec, index=None,
                                class_name=spec if isinstance(spec, str) else None)
                 for spec in (specs if isinstance(specs, list) else [specs])]
    found = []
    for name, module in model.hf.named_modules():
        for recorder in recorders:
            if _matches(recorder, name, module):
                found.append((f"hf.{name}", module, recorder.index))
                break
    return found


def _matches(recorder: OutputRecorder, name: str, module: nn.Module) -> bool:
    by_class = recorder.target_class is not None and isinstance(module, recorder.target_class)
    by_name = recorder.class_name is not None and name.endswith(recorder.class_name)
    in_layer = recorder.layer_name is None or f".{recorder.layer_name.strip('.')}." in f".{name}."
    return (by_class or by_name) and in_layer
