"""The hf family: a Hugging Face `transformers` AutoModelForSequenceClassification on the text data's token ids.

Built from `arch.config` (a transformers config: `model_type` and its sizes), sized by the data's manifest
(num_labels from its classes, vocab_size and pad_token_id from its tokenizer, max_position_embeddings at
least its max_length), or loaded from `arch.path`, a local `save_pretrained` folder. Loading is offline
(HF_HUB_OFFLINE=1, local_files_only), safetensors only (`pytorch_model.bin` is a pickle: refused, naming
it) and never runs code shipped with a model (a config.json with `auto_map` is refused, naming it; no
`trust_remote_code`). A folder without a classification head for the data's classes (a bare encoder such
as BertModel, or a head for another class count) gets a new head, said in the log.

The stages see `HFClassifier`: token ids and attention mask in, logits out, like every family's model. Its
checkpoint is a folder that stock `transformers` reloads with `from_pretrained` (config.json,
model.safetensors, the data's tokenizer.json beside them, and shrinkflow.json: the spec and the stage's
record), written atomically. `prune.method transformer` cuts it with its own class (families/hf/method.py,
through Family.prune_method_classes); distillation reads its layers' hidden states and attention
probabilities (features.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

# Read by huggingface_hub when it is imported (through transformers): a hub id then fails in seconds
# instead of retrying for about 50 s, and nothing here ever downloads.
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
from torch import nn  # noqa: E402
from transformers import AutoConfig, AutoModelForSequenceClassification  # noqa: E402

from steps.compression.families import CHECKPOINT_RECORD, Family  # noqa: E402
from steps.compression.families.hf import causal, features  # noqa: E402
from steps.compression.families.hf.config import REMOTE_CODE, HFConfig  # noqa: E402
from steps.compression.families.hf.decoder_method import DecoderPruning  # noqa: E402
from steps.compression.families.hf.method import HFTransformerPruning  # noqa: E402
from steps.compression.families.hf.sparse_method import DecoderSparsity  # noqa: E402
from steps.compression.families.spec import ModelSpec  # noqa: E402
from steps.core.files import atomic_write_dir  # noqa: E402

logger = logging.getLogger(__name__)

CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
"""The weights a folder must hold: one safetensors file, or the index of its shards."""
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")
META = CHECKPOINT_RECORD  # the spec and the stage's record, beside what from_pretrained reads (which ignores it)


class HFModelError(ValueError):
    """An hf model cannot be built or loaded as asked; names the folder, file or config key."""


class HFClassifier(nn.Module):
    """A transformers sequence classifier as the stages take any model: (input_ids, attention_mask) -> logits."""

    shrinkflow_family = "hf"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.hf = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits


def build(spec: ModelSpec) -> HFClassifier | causal.HFCausalLM:
    """From `spec.hf_path` (a save_pretrained folder) when set, else from `spec.hf_config`, sized by the data: a
    sequence classifier, or on documents (spec.task causal_lm) a causal language model (families/hf/causal.py)."""
    if spec.task == causal.TASK:
        if spec.hf_path:
            return causal.HFCausalLM(causal.load_pretrained(_checked_folder(Path(spec.hf_path), spec), spec,
                                                            HFModelError))
        return causal.HFCausalLM(causal.from_config(config_from(spec)))
    if spec.hf_path:
        return HFClassifier(load_pretrained(Path(spec.hf_path), spec))
    return HFClassifier(AutoModelForSequenceClassification.from_config(config_from(spec)))


def _checked_folder(folder: Path, spec: ModelSpec) -> Path:
    """`folder`, refused when its config.json names code to run or it holds pickled weights only (a GGUF file
    holds its own config and weights)."""
    if spec.hf_gguf_file:
        if not folder.is_dir():
            raise HFModelError(f"{folder}: not a folder (arch.path names the folder holding arch.gguf_file)")
        return folder
    _read_config(folder)
    _check_weights(folder)
    return folder


def config_from(spec: ModelSpec):
    """The transformers config of `spec.hf_config` with the data's class count, vocabulary and padding id."""
    keys = dict(spec.hf_config)
    ends = sorted(set(keys) & set(causal.FROM_DATA))
    if spec.task == causal.TASK and ends:
        raise HFModelError(f"teacher.arch.config keys {ends} come from the data (its end-of-document separator, "
                           "data.task causal_lm): remove them")
    model_type = keys.pop("model_type", None)
    try:
        config = AutoConfig.for_model(model_type, **keys)
    except (ValueError, KeyError, TypeError) as err:
        raise HFModelError(f"teacher.arch.config: model_type {model_type!r}: {err}") from None
    defaults = type(config)()
    unknown = sorted(key for key in keys if not hasattr(defaults, key))
    if unknown:
        raise HFModelError(f"teacher.arch.config: {type(config).__name__} has no {unknown} (model_type {model_type!r})")
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and positions < spec.max_length:
        if "max_position_embeddings" in keys:
            raise HFModelError(f"teacher.arch.config.max_position_embeddings {positions} is below the data's "
                               f"max_length {spec.max_length}: the model could not place every token")
        config.max_position_embeddings = spec.max_length + 2  # room for RoBERTa's offset of padding_idx + 1
    _size_to_data(config, spec)
    return config


def _size_to_data(config, spec: ModelSpec) -> None:
    if spec.task == causal.TASK:
        causal.size_to_data(config, spec)
        return
    config.num_labels = spec.num_classes  # also resets id2label / label2id to that many entries
    config.vocab_size = spec.vocab_size
    config.pad_token_id = spec.pad_token_id
    _name_labels(config, spec)


def _name_labels(config, spec: ModelSpec) -> None:
    """id2label and label2id from the data's class names, so the saved folder names its outputs for anyone
    who reloads it (a transformers pipeline answers "spam", not "LABEL_1")."""
    if len(spec.class_names) == spec.num_classes:
        config.id2label = dict(enumerate(spec.class_names))
        config.label2id = {name: i for i, name in enumerate(spec.class_names)}


def _read_config(folder: Path) -> dict:
    """config.json of a save_pretrained `folder`, refused when it is missing, not JSON or names code to run."""
    if not folder.is_dir():
        raise HFModelError(f"{folder}: not a folder (an hf arch.path names a folder written by save_pretrained)")
    path = folder / CONFIG
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise HFModelError(f"{path}: missing (a save_pretrained folder holds config.json)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise HFModelError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise HFModelError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    if REMOTE_CODE in raw:
        raise HFModelError(f"{path}: {REMOTE_CODE} {raw[REMOTE_CODE]!r} points at Python code shipped with the model; "
                           "shrinkflow never runs it (no trust_remote_code): use a model transformers defines")
    return raw


def _check_weights(folder: Path) -> None:
    if any((folder / name).is_file() for name in WEIGHTS):
        return
    pickled = [name for name in PICKLED if (folder / name).is_file()]
    if pickled:
        raise HFModelError(f"{folder / pickled[0]}: a pickle (torch.save), which shrinkflow never loads; save the "
                           "model with save_pretrained(safe_serialization=True) to get model.safetensors")
    raise HFModelError(f"{folder}: no {WEIGHTS[0]} (a save_pretrained folder holds its weights there)")


def load_pretrained(folder: Path, spec: ModelSpec) -> nn.Module:
    """The sequence classifier of a save_pretrained `folder`, offline and safetensors only, with a head for
    `spec.num_classes` (a new one, logged, when the folder has none for that many)."""
    raw = _read_config(folder)
    _check_weights(folder)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    vocabulary = getattr(config, "vocab_size", None)
    if vocabulary is not None and vocabulary < spec.vocab_size:
        raise HFModelError(f"{folder}: its vocabulary holds {vocabulary} tokens, the data's tokenizer "
                           f"{spec.vocab_size}: tokenize with this model's tokenizer (data.tokenizer.path)")
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and positions < spec.max_length:
        raise HFModelError(f"{folder}: max_position_embeddings {positions} is below data.max_length {spec.max_length}")
    heads = [a for a in raw.get("architectures") or [] if a.endswith("ForSequenceClassification")]
    keeps_head = bool(heads) and config.num_labels == spec.num_classes
    if not keeps_head:
        had = (f"a head for {config.num_labels} classes" if heads
               else f"no classification head ({raw.get('architectures')})")
        logger.warning("hf: %s has %s: a new head for the data's %d classes is trained from scratch", folder, had,
                       spec.num_classes)
        config.num_labels = spec.num_classes
    _name_labels(config, spec)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            folder, config=config, local_files_only=True, use_safetensors=True, ignore_mismatched_sizes=not keeps_head)
    except (OSError, ValueError) as err:
        raise HFModelError(f"{folder}: transformers cannot load it: {err}") from None


def save(model: HFClassifier, spec: ModelSpec, folder: Path, meta: dict, extra_files: dict[str, Path]) -> None:
    """A folder stock `from_pretrained` reloads (config.json, model.safetensors), with `extra_files` (the data's
    tokenizer.json) and shrinkflow.json beside them; written whole into a temporary folder, then swapped in."""
    record = {"spec": dataclasses.replace(spec_of(model, spec), hf_path=None, hf_gguf_file=None).to_dict(),
              "meta": meta}

    def write(tmp: Path) -> None:
        model.hf.save_pretrained(tmp)
        for name, source in extra_files.items():
            shutil.copyfile(source, tmp / name)
        (tmp / META).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    atomic_write_dir(folder, write)


def load(folder: Path) -> tuple[HFClassifier, ModelSpec]:
    """A checkpoint folder `save` wrote, and its spec (hf_path: the folder), in eval mode."""
    try:
        spec = ModelSpec.from_dict(json.loads((folder / META).read_text())["spec"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder / META}: model file missing (did the stage that writes it run?)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise HFModelError(f"{folder / META}: not a valid model spec: {err}") from None
    spec = dataclasses.replace(spec, hf_path=str(folder))
    model = build(spec)
    model.eval()
    return model, spec


def example_input(spec: ModelSpec) -> dict[str, torch.Tensor]:
    """One blank text: padding ids under a mask of ones, max_length long (a language model's: causal.py)."""
    if spec.task == causal.TASK:
        return causal.example_input(spec)
    ids = torch.full((1, spec.max_length), spec.pad_token_id, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _no_pooled_layer(model: nn.Module) -> str:
    """Distillation matches an hf model's per-layer hidden states (features.hidden_states); pooled features are
    only the fallback for a family without layers."""
    raise HFModelError("an hf model is matched layer by layer (distill.hidden_states), not by pooled features: "
                       "distill it into a model with layers (name: hf or vit)")


SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "num_key_value_heads", "head_dim")
"""The model type and the config keys pruning changes (families/hf/pruning.py)."""


def spec_of(model: HFClassifier, spec: ModelSpec) -> ModelSpec:
    """`spec` with the model's current sizes in hf_config (a pruned model's), so shrinkflow.json records the
    shape config.json holds; the folder's config.json is what rebuilds it."""
    current = {key: getattr(model.hf.config, key) for key in SHAPE_KEYS if hasattr(model.hf.config, key)}
    return dataclasses.replace(spec, hf_config={**spec.hf_config, **current})


def _refuse_channel_pruning(model: nn.Module) -> None:
    raise HFModelError("an hf model is not pruned by channel: use prune.method transformer (heads, FFN width, "
                       "hidden width, layers)")


def transformer_pruning(model: nn.Module, cfg) -> HFTransformerPruning | DecoderPruning:
    """prune.method transformer on an hf model: an encoder's (method.py) or a causal LM's (decoder_method.py)."""
    return (DecoderPruning if getattr(model, "task", None) == causal.TASK else HFTransformerPruning)(model, cfg)


FAMILY = Family("hf", frozenset({"transformer", "wanda", "magnitude"}), True, _no_pooled_layer, features.attention_maps,
                features.hidden_states, config=HFConfig, build=build, needs_images=False, spec_of=spec_of,
                fit_weights=lambda model, state: False, example_input=example_input,
                refuse_unprunable=_refuse_channel_pruning, save_checkpoint=save, load_checkpoint=load,
                prune_method_classes={"transformer": transformer_pruning, "wanda": DecoderSparsity,
                                      "magnitude": DecoderSparsity}, budget_search="uniform_encoder")
