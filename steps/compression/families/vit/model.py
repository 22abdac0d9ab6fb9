"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"), sized for small images.

Patch embedding (Conv2d, kernel = stride = patch size), a class token or
mean pooling, a learned position embedding, pre-norm blocks
(x + Attention(LN(x)), then x + MLP(LN(x))), a final LayerNorm and a Linear
head. The attention is written out (no fused kernel) so its parts are
modules that pruning, distillation and ONNX export can see:

    blocks.{i}                      block i's output: the hidden state (B, N, D)
    blocks.{i}.attn.qkv             Linear D -> 3 * heads * head_dim (q, k, v stacked in that order)
    blocks.{i}.attn.attn_probs      Identity on the softmax attention (B, heads, N, N): tap it
    blocks.{i}.attn.proj            Linear heads * head_dim -> D
    blocks.{i}.mlp.fc1 / .fc2       Linear D -> hidden -> D
    pool                            the pooled (B, D) features the head sees

N is the number of patches, plus one with the class token. Each block keeps
its own `num_heads` (and `head_dim`) as attributes and its own MLP width, so
pruning can give blocks different widths; `current_spec` (the family's `spec_of`)
writes those widths into the spec, from which `build` rebuilds the pruned model exactly.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from steps.compression.families import Family
from steps.compression.families.layers import zeros_input
from steps.compression.families.spec import ModelSpec
from steps.compression.families.vit.config import ViTConfig

POOLING = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class Layout:
    """The widths a spec resolves to: residual width, head size, and heads and MLP width per block."""

    embed_dim: int
    head_dim: int
    heads: tuple[int, ...]
    mlp: tuple[int, ...]


def layout(spec: ModelSpec) -> Layout:
    """Resolve the defaults: empty `block_heads`/`block_mlp` mean `heads` and round(embed_dim * mlp_ratio)
    in every block; `head_dim` 0 means embed_dim // heads. Raises ValueError on an impossible spec."""
    if spec.pool not in POOLING:
        raise ValueError(f"vit pool must be one of {list(POOLING)}, got {spec.pool!r}")
    if spec.patch_size < 1 or spec.image_size % spec.patch_size:
        raise ValueError(f"vit patch_size {spec.patch_size} must divide image_size {spec.image_size}")
    if spec.depth < 1 or spec.embed_dim < 1 or spec.heads < 1 or spec.mlp_ratio <= 0:
        raise ValueError(f"vit needs depth, embed_dim, heads >= 1 and mlp_ratio > 0, got depth {spec.depth}, "
                         f"embed_dim {spec.embed_dim}, heads {spec.heads}, mlp_ratio {spec.mlp_ratio}")
    head_dim = spec.head_dim
    if head_dim == 0:
        if spec.embed_dim % spec.heads:
            raise ValueError(f"vit embed_dim {spec.embed_dim} is not divisible by heads {spec.heads} "
                             f"(or give head_dim explicitly)")
        head_dim = spec.embed_dim // spec.heads
    heads = tuple(spec.block_heads) or (spec.heads,) * spec.depth
    mlp = tuple(spec.block_mlp) or (round(spec.embed_dim * spec.mlp_ratio),) * spec.depth
    for field, widths in (("block_heads", heads), ("block_mlp", mlp)):
        if len(widths) != spec.depth or min(widths) < 1:
            raise ValueError(f"vit {field} must hold one width >= 1 per block (depth {spec.depth}), got {list(widths)}")
    if head_dim < 1:
        raise ValueError(f"vit head_dim must be >= 1, got {head_dim}")
    return Layout(spec.embed_dim, head_dim, heads, mlp)


class Attention(nn.Module):
    """Multi-head self-attention: softmax(q k^T / sqrt(head_dim)) v per head, heads concatenated, projected.

    `reshape(b, n, -1)` rather than the embed width: after head pruning the
    concatenated heads are narrower than the residual stream.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim)
        self.attn_probs = nn.Identity()
        self.proj = nn.Linear(num_heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.attn_probs(((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    """Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Pool(nn.Module):
    """Token sequence (B, N, D) -> (B, D): the class token (position 0) or the mean over tokens."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.mode == "cls" else x.mean(dim=1)


class ViT(nn.Module):
    """A Vision Transformer built from a `ModelSpec` (name "vit"); see the module docstring for the layer names."""

    shrinkflow_family = "vit"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        widths = layout(spec)
        dim, tokens = widths.embed_dim, (spec.image_size // spec.patch_size) ** 2
        self.patch_embed = nn.Conv2d(spec.in_channels, dim, spec.patch_size, stride=spec.patch_size)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02) if spec.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + (spec.pool == "cls"), dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, h, widths.head_dim, m) for h, m in zip(widths.heads, widths.mlp,
                                                                                          strict=True)))
        self.norm = nn.LayerNorm(dim)
        self.pool = Pool(spec.pool)
        self.head = nn.Linear(dim, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.blocks(x + self.pos_embed)
        return self.head(self.pool(self.norm(x)))


def model_layout(model: ViT) -> Layout:
    """The widths `model` has now (after any pruning)."""
    blocks = list(model.blocks)
    head_dims = {b.attn.head_dim for b in blocks}
    if len(head_dims) != 1:
        raise ValueError(f"vit blocks must share one head_dim, got {sorted(head_dims)}")
    return Layout(model.patch_embed.out_channels, head_dims.pop(), tuple(b.attn.num_heads for b in blocks),
                  tuple(b.mlp.fc1.out_features for b in blocks))


def current_spec(model: ViT, spec: ModelSpec) -> ModelSpec:
    """The spec that rebuilds `model` as it is now: `spec` itself when no width changed, else `spec` with
    explicit embed_dim, depth, head_dim and per-block heads and MLP widths."""
    now = model_layout(model)
    if now == layout(spec):
        return spec
    return dataclasses.replace(spec, embed_dim=now.embed_dim, depth=len(now.heads), head_dim=now.head_dim,
                               block_heads=list(now.heads), block_mlp=list(now.mlp))


def _widths_in_spec(model: ViT, state: dict[str, torch.Tensor]) -> bool:
    """Nothing to fit: a pruned ViT's spec already holds its widths (`current_spec`), since its head counts
    (qkv holds 3 * heads * head_dim rows, the split is not in the weights) and its depth (a count of
    blocks, not a tensor shape) cannot be read from the weights."""
    return False


def _refuse_channel_pruning(model: ViT) -> None:
    raise ValueError("a vit is not pruned by channel: use prune.method transformer (heads, MLP width, embedding, "
                     "depth) or magnitude")


FAMILY = Family("vit", frozenset({"magnitude", "transformer"}), False, lambda model: "pool",
                lambda model: [f"blocks.{i}.attn.attn_probs" for i in range(len(model.blocks))],
                lambda model: [f"blocks.{i}" for i in range(len(model.blocks))],
                config=ViTConfig, build=ViT, needs_images=True, spec_of=current_spec, fit_weights=_widths_in_spec,
                example_input=zeros_input, refuse_unprunable=_refuse_channel_pruning)
