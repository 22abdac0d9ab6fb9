"""Causal language models from a GGUF file (llama.cpp's format: config, tokenizer and often quantised weights in
one file), dequantised once to a float32 transformers model; every checkpoint after is safetensors.

transformers' own `from_pretrained(gguf_file=)` also wants `accelerate` and may keep the weights packed in
quantised modules that nothing downstream (pruning, distillation, ONNX export) can cut or trace. Its reader,
`load_gguf_checkpoint`, needs only the `gguf` package: it dequantises every tensor, undoes llama.cpp's
permutation of the query and key rows, and names the tensors as the model built from the file's config names its
parameters. `gguf` is the pip extra `shrinkflow[gguf]`; nothing else in shrinkflow imports it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig
from transformers.utils import is_gguf_available

EXTRA = "shrinkflow[gguf]"
"""pyproject's optional extra that installs the `gguf` package (pinned there)."""


class GGUFError(ValueError):
    """A GGUF file cannot be read as a causal language model; names the file."""


def read_config(folder: Path, file: str) -> PretrainedConfig:
    """The transformers config held in `folder / file`'s metadata (no weights read), offline."""
    path = _checked(folder, file)
    try:
        return AutoConfig.from_pretrained(folder, gguf_file=file, local_files_only=True)
    except (OSError, ValueError, KeyError, ImportError) as err:
        raise GGUFError(f"{path}: transformers cannot read its config: {err}") from None


def dequantised(folder: Path, file: str, config: PretrainedConfig | None = None) -> nn.Module:
    """The float32 causal LM of `folder / file`, in eval mode, built from `config` (its `read_config` when None)
    and every weight the file holds; refused, naming the file, when a parameter has no tensor there (tied output
    embeddings aside) or a tensor no parameter."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path = _checked(folder, file)
    config = config if config is not None else read_config(folder, file)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    try:
        tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model,
                                       torch_dtype=torch.float32)["tensors"]
    except (OSError, ValueError, KeyError, NotImplementedError) as err:
        raise GGUFError(f"{path}: cannot read its weights: {err}") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = sorted(set(missing) - _tied(model))
    if missing or unexpected:
        raise GGUFError(f"{path}: weights missing {missing}, unexpected {sorted(unexpected)} "
                        f"(a {config.model_type} file transformers maps only in part)")
    model.tie_weights()
    return model.eval()


def _checked(folder: Path, file: str) -> Path:
    """`folder / file`, refused when it is not a file or the `gguf` package (transformers' reader) is missing."""
    path = Path(folder) / file
    if not path.is_file():
        raise GGUFError(f"{path}: no such GGUF file")
    if not is_gguf_available():
        raise GGUFError(f"{path}: reading a GGUF file needs the gguf package: pip install '{EXTRA}' "
                        "(only to read it: the safetensors checkpoints after load without it)")
    return path


def _tied(model: nn.Module) -> set[str]:
    """Parameters that share another's weights (a Llama's lm_head with the input embeddings when the config ties
    them; none when it does not): llama.cpp writes no tensor for them."""
    return set(model.get_expanded_tied_weights_keys(all_submodels=True))
