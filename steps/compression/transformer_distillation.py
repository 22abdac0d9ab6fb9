"""Transformer distillation losses: attention distributions (MiniLM) and hidden states (TinyBERT).

Both read what `FeatureTap` captures from a `vit.ViT`: the softmax attention
of block i at `blocks.{i}.attn.attn_probs` (B, heads, N, N) and its hidden
state at `blocks.{i}` (B, N, D); `pool` gives the pooled (B, D) features,
which a CNN's penultimate features can be matched with. `TransformerObjective`
adds both to `distillation.DistillationObjective` (KD on logits, FitNets
hints, attention transfer), so one objective serves every student.

When the student is shallower than the teacher a layer map pairs its blocks
with the teacher's (`LAYER_MAPS`): "uniform" (TinyBERT) or "last" (MiniLM).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from steps.compression import choices
from steps.compression.distillation import DistillationObjective, LayerPair, _features, _probe


class AttentionMapLoss(nn.Module):
    """Self-attention distribution transfer, Wang et al. 2020, "MiniLM: Deep Self-Attention Distillation
    for Task-Agnostic Compression of Pre-Trained Transformers".

    loss = 1 / (B * H * N) * sum_{b, h, i} KL(A^t_{b,h,i,:} || A^s_{b,h,i,:})

    where A = softmax(q k^T / sqrt(d_k)) is a (B, H, N, N) attention map whose
    rows are distributions over the N keys. With different head counts both
    maps are first averaged over heads (H = 1 above): a row of the mean is
    still a distribution, and no head of one model corresponds to a head of
    the other (MiniLMv2 instead re-splits q, k, v into equal "relation heads";
    that needs the queries and keys, not the maps). Student and teacher must
    see the same tokens (N): same patch grid and pooling. Zero when the maps
    are equal; the teacher's maps are detached. `where` names the layer pair
    in errors.
    """

    def __init__(self, where: str = "attention maps") -> None:
        super().__init__()
        self.where = where

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        for who, a in (("student", student), ("teacher", teacher)):
            if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
                raise ValueError(f"{self.where}: {who} attention has shape {tuple(a.shape)}; expected "
                                 f"(batch, heads, tokens, tokens)")
        if student.shape[0] != teacher.shape[0] or student.shape[-1] != teacher.shape[-1]:
            raise ValueError(f"{self.where}: student attention {tuple(student.shape)} and teacher attention "
                             f"{tuple(teacher.shape)} differ in batch or tokens (same patch grid and pooling needed)")
        teacher = teacher.detach()
        if student.shape[1] != teacher.shape[1]:
            student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
        log_student = student.clamp_min(torch.finfo(student.dtype).tiny).log()  # a softmax can underflow to 0
        rows = student.shape[0] * student.shape[1] * student.shape[2]
        return F.kl_div(log_student, teacher, reduction="sum") / rows


class HiddenStateLoss(nn.Module):
    """Hidden-state distillation, Jiao et al. 2020, "TinyBERT: Distilling BERT for Natural Language
    Understanding".

    loss = MSE(H_s W, H_t)

    H_s (..., d_s) and H_t (..., d_t) are hidden states of paired layers, W a
    learned d_s x d_t matrix (a Linear without bias, as in the paper), the
    identity when the widths are equal. W belongs to this module: optimise
    it with the student. All dimensions but the last must match (batch and
    tokens). Zero when the states are equal and the widths too; the
    teacher's states are detached. `where` names the layer pair in errors.
    """

    def __init__(self, student_dim: int, teacher_dim: int, where: str = "hidden states") -> None:
        super().__init__()
        self.student_dim, self.teacher_dim, self.where = student_dim, teacher_dim, where
        self.project = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim, bias=False)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.shape[-1] != self.student_dim or teacher.shape[-1] != self.teacher_dim:
            raise ValueError(f"{self.where}: got widths {student.shape[-1]} (student) and {teacher.shape[-1]} "
                             f"(teacher) in the last dim; this loss was built for {self.student_dim} and "
                             f"{self.teacher_dim}")
        if student.shape[:-1] != teacher.shape[:-1]:
            raise ValueError(f"{self.where}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} "
                             f"must agree in every dim but the last (batch, tokens)")
        return F.mse_loss(self.project(student), teacher.detach())


def uniform_layer_map(student_depth: int, teacher_depth: int) -> list[tuple[int, int]]:
    """Student block i -> teacher block ceil((i + 1) * Lt / Ls) - 1 (0-based): TinyBERT's g(m) = m * Lt / Ls.

    The last blocks always pair, and every pair is in range whichever model
    is deeper. A ceiling rather than round(): Python's round() sends ties to
    the even integer, so 1.5 and 4.5 would round in different directions.
    """
    if student_depth < 1 or teacher_depth < 1:
        raise ValueError(f"depths must be >= 1, got student {student_depth}, teacher {teacher_depth}")
    return [(i, -(-(i + 1) * teacher_depth // student_depth) - 1) for i in range(student_depth)]


def last_layer_map(student_depth: int, teacher_depth: int) -> list[tuple[int, int]]:
    """Only the last blocks pair: MiniLM distils the last layer's attention, leaving the student free below."""
    if student_depth < 1 or teacher_depth < 1:
        raise ValueError(f"depths must be >= 1, got student {student_depth}, teacher {teacher_depth}")
    return [(student_depth - 1, teacher_depth - 1)]


LAYER_MAPS = choices.LAYER_MAPS  # name -> (student depth, teacher depth) -> pairs: uniform, last


def layer_map(name: str, student_depth: int, teacher_depth: int) -> list[tuple[int, int]]:
    mapping: Callable[[int, int], list[tuple[int, int]]] = LAYER_MAPS.resolve(name)
    return mapping(student_depth, teacher_depth)


def attention_pairs(blocks: Sequence[tuple[int, int]]) -> list[LayerPair]:
    """(student block, teacher block) -> the ViT module names of their attention maps."""
    return [(f"blocks.{s}.attn.attn_probs", f"blocks.{t}.attn.attn_probs") for s, t in blocks]


def hidden_pairs(blocks: Sequence[tuple[int, int]]) -> list[LayerPair]:
    """(student block, teacher block) -> the ViT module names of their hidden states (block outputs)."""
    return [(f"blocks.{s}", f"blocks.{t}") for s, t in blocks]


class TransformerObjective(DistillationObjective):
    """`DistillationObjective` plus MiniLM attention maps and TinyBERT hidden states on named features.

    loss = KD_{T,alpha}(z_s, z_t, y) + hint and attention-transfer terms (see DistillationObjective)
           + attention_map_weight * sum_{(i,j) in attention_map_layers} AttnKL(A_s[i], A_t[j])
           + hidden_weight * sum_{(i,j) in hidden_layers} HiddenMSE(H_s[i], H_t[j])

    AttnKL is `AttentionMapLoss`, HiddenMSE `HiddenStateLoss`; `hidden_dims[k]`
    is the (student, teacher) width of `hidden_layers[k]` (`from_models`
    finds them). The hidden projections are parameters of this module:
    optimise `[*student.parameters(), *objective.parameters()]`. Features are
    dicts name -> Tensor from `FeatureTap` on `student_layers` / `teacher_layers`.
    """

    def __init__(
        self,
        temperature: float,
        alpha: float,
        *,
        attention_map_layers: Sequence[LayerPair] = (),
        hidden_layers: Sequence[LayerPair] = (),
        hidden_dims: Sequence[tuple[int, int]] = (),
        attention_map_weight: float = 1.0,
        hidden_weight: float = 1.0,
        **base,
    ) -> None:
        super().__init__(temperature, alpha, **base)
        if len(hidden_layers) != len(hidden_dims):
            raise ValueError(f"need one (student, teacher) width per hidden pair: {len(hidden_layers)} pairs, "
                             f"{len(hidden_dims)} widths")
        for name, weight in (("attention_map_weight", attention_map_weight), ("hidden_weight", hidden_weight)):
            if weight < 0:
                raise ValueError(f"{name} must be >= 0, got {weight}")
        self.attention_map_layers, self.hidden_layers = list(attention_map_layers), list(hidden_layers)
        self.attention_maps = nn.ModuleList(AttentionMapLoss(f"attention map pair {p}")
                                            for p in self.attention_map_layers)
        self.hidden = nn.ModuleList(HiddenStateLoss(s, t, f"hidden pair {p}")
                                    for (s, t), p in zip(hidden_dims, self.hidden_layers, strict=True))
        self.attention_map_weight, self.hidden_weight = attention_map_weight, hidden_weight

    @property
    def student_layers(self) -> list[str]:
        extra = [s for s, _ in self.attention_map_layers + self.hidden_layers]
        return list(dict.fromkeys(super().student_layers + extra))

    @property
    def teacher_layers(self) -> list[str]:
        extra = [t for _, t in self.attention_map_layers + self.hidden_layers]
        return list(dict.fromkeys(super().teacher_layers + extra))

    @classmethod
    def _extra_pairs(cls, extra: dict) -> list[LayerPair]:
        """from_models also takes attention_map_layers, hidden_layers and their weights (keywords)."""
        unknown = set(extra) - {"attention_map_layers", "hidden_layers", "attention_map_weight", "hidden_weight"}
        if unknown:
            raise TypeError(f"{cls.__name__}.from_models got unexpected arguments: {', '.join(sorted(unknown))}")
        return [*extra.get("attention_map_layers", ()), *extra.get("hidden_layers", ())]

    @classmethod
    def _extra_arguments(cls, s_shapes: dict, t_shapes: dict, extra: dict) -> dict:
        """Raises ValueError naming a pair that cannot be compared: attention maps that are not (B, H, N, N)
        with equal N, hidden states that differ in any dim but the last."""
        maps, hidden = list(extra.get("attention_map_layers", ())), list(extra.get("hidden_layers", ()))
        for s, t in maps:
            ss, ts = s_shapes[s], t_shapes[t]
            if len(ss) != 4 or len(ts) != 4 or ss[-1] != ss[-2] or ss[-2:] != ts[-2:]:
                raise ValueError(f"attention map pair ({s!r}, {t!r}): shapes {tuple(ss)} and {tuple(ts)} must both "
                                 f"be (B, heads, N, N) with the same N (tap blocks.<i>.attn.attn_probs)")
        for s, t in hidden:
            ss, ts = s_shapes[s], t_shapes[t]
            if len(ss) < 2 or ss[:-1] != ts[:-1]:
                raise ValueError(f"hidden pair ({s!r}, {t!r}): shapes {tuple(ss)} and {tuple(ts)} must agree in "
                                 f"every dim but the last")
        return {"attention_map_layers": maps, "hidden_layers": hidden,
                "hidden_dims": [(s_shapes[s][-1], t_shapes[t][-1]) for s, t in hidden],
                "attention_map_weight": extra.get("attention_map_weight", 1.0),
                "hidden_weight": extra.get("hidden_weight", 1.0)}

    def terms(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        targets: torch.Tensor,
        student_feats: Mapping[str, torch.Tensor] | None = None,
        teacher_feats: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The weighted summands by name: the base's "kd", "hint", "attention", then "attention_map", "hidden"."""
        terms = super().terms(student_logits, teacher_logits, targets, student_feats, teacher_feats)
        s_feats, t_feats = _features(student_feats, "student"), _features(teacher_feats, "teacher")
        zero = student_logits.new_zeros(())
        maps = sum((loss(s_feats(s), t_feats(t))
                    for loss, (s, t) in zip(self.attention_maps, self.attention_map_layers, strict=True)), zero)
        hidden = sum((loss(s_feats(s), t_feats(t)) for loss, (s, t) in zip(self.hidden, self.hidden_layers,
                                                                            strict=True)), zero)
        return terms | {"attention_map": self.attention_map_weight * maps, "hidden": self.hidden_weight * hidden}
