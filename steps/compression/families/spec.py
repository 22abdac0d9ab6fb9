"""The JSON-able spec a model is rebuilt from: its family's params.yaml config plus the data's shape.

One flat record for every family, so the JSON beside every safetensors checkpoint keeps one format
(old spec files load, new ones are byte-identical): each family reads its own fields and leaves the
others at their defaults. Widths are explicit lists, so a structurally pruned model (fewer channels)
is described by the same spec with smaller numbers and can be rebuilt. A pruned ViT records its
per-block widths in its fields (its family's `spec_of`), because head counts and depth cannot be read
back from the weights alone. Torch-free: the config and the checkpoint reader share it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    name: str
    channels: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    batch_norm: bool = True
    # The data's shape. The pipeline always fills these from the manifest (torchkit.spec_from);
    # the defaults exist for library tests and old spec files, and every spec file records its own.
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    input_shape: list[int] = field(default_factory=list)
    """One sample's shape, [C, H, W] or [D] (features); empty = [in_channels, image_size, image_size]."""
    # custom only (families/custom): the user's factory "package.module:function" and its keyword arguments;
    # None for the other families (what their spec files have always recorded)
    factory: str | None = None
    kwargs: dict = field(default_factory=dict)
    # vit only (families/vit): empty block_heads/block_mlp = heads and round(embed_dim * mlp_ratio) in every
    # block; head_dim 0 = embed_dim // heads. Pruning fills them in.
    patch_size: int = 7
    embed_dim: int = 64
    depth: int = 4
    heads: int = 4
    head_dim: int = 0
    mlp_ratio: float = 2.0
    pool: str = "cls"
    block_heads: list[int] = field(default_factory=list)
    block_mlp: list[int] = field(default_factory=list)
    # hf only (families/hf): the transformers config keys of arch.config, or the save_pretrained folder of
    # arch.path; and the text data's vocabulary size, padding id and sequence length (the manifest's)
    hf_config: dict = field(default_factory=dict)
    hf_path: str | None = None
    vocab_size: int = 0
    pad_token_id: int = 0
    max_length: int = 0
    class_names: list[str] = field(default_factory=list)
    """The data's class names, for a text model's id2label (its checkpoint folder names its outputs)."""
    task: str = "classify"
    """The data's task: "classify" (a classifier's logits per sample) or "causal_lm" (a language model's logits per
    token; max_length is then the block size)."""
    eos_token_id: int | None = None
    """causal_lm: the data's end-of-document separator, a language model's end of text (generation stops there)."""
    hf_gguf_file: str | None = None
    """hf from a GGUF file in hf_path (arch.gguf_file): transformers dequantises it; checkpoints are safetensors."""

    def to_dict(self) -> dict:
        """Every field, but those added for text models left out at their defaults: the spec files of the other
        families stay byte-identical to what they were before text models existed."""
        return {key: value for key, value in asdict(self).items()
                if key not in TEXT_FIELDS or value != TEXT_FIELDS[key]}

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One input sample's shape: input_shape, or (in_channels, image_size, image_size) in older specs."""
        return tuple(self.input_shape) or (self.in_channels, self.image_size, self.image_size)

    @classmethod
    def from_dict(cls, raw: dict) -> ModelSpec:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"model spec has unknown keys {sorted(unknown)}")
        return cls(**raw)


TEXT_FIELDS = {"hf_config": {}, "hf_path": None, "vocab_size": 0, "pad_token_id": 0, "max_length": 0,
               "class_names": [], "task": "classify", "eos_token_id": None, "hf_gguf_file": None}
"""ModelSpec's fields for text models, with their defaults (left out of `to_dict` at those)."""
