"""Knowledge-distillation losses: on logits (KD), on features (FitNets hints, attention transfer), combined."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from steps.compression.features import FeatureTap
from steps.compression.training import evaluating


class KDLoss(nn.Module):
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

    loss = alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, y)

    where p^T = softmax(logits / T). The T^2 factor keeps the soft-target
    gradients on the same scale as the hard-label ones when T changes.
    """

    def __init__(self, temperature: float, alpha: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.temperature = temperature
        self.alpha = alpha

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        soft = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                        reduction="batchmean", log_target=True)
        hard = F.cross_entropy(student, target)
        return self.alpha * t * t * soft + (1 - self.alpha) * hard


def _match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool the last two dims of both tensors to the smaller of each (no-op when equal)."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    return _pool_to(a, size), _pool_to(b, size)


def _pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == size else F.adaptive_avg_pool2d(x, size)


_REGRESSORS: dict[int, Callable[[int, int], nn.Module]] = {
    4: lambda s, t: nn.Conv2d(s, t, kernel_size=1),  # (B, C, H, W) feature maps
    2: nn.Linear,  # (B, C) feature vectors
}


class FeatureHintLoss(nn.Module):
    """FitNets hint loss, Romero et al. 2015, "FitNets: Hints for Thin Deep Nets".

    loss = MSE(r(pool(F_s)), pool(F_t).detach())

    r is a learned regressor from the student's width to the teacher's: a 1x1
    Conv2d for 4-D features (`ndim=4`), a Linear for 2-D ones (`ndim=2`),
    the identity when the widths are equal. Where spatial sizes differ, the
    larger map is adaptive-average-pooled to the smaller (FitNets instead
    sizes the regressor's kernel; pooling needs no extra weights).
    The regressor's parameters are trainable and belong to this module: add
    `loss.parameters()` to the student's optimizer (and move the loss to the
    student's device), or r stays at its random initialisation. Only the
    student receives gradients; the teacher's features are detached.
    """

    def __init__(self, student_channels: int, teacher_channels: int, ndim: int = 4) -> None:
        super().__init__()
        if ndim not in _REGRESSORS:
            raise ValueError(f"hint features must have ndim in {sorted(_REGRESSORS)}, got {ndim}")
        self.student_channels, self.teacher_channels, self.ndim = student_channels, teacher_channels, ndim
        same = student_channels == teacher_channels
        self.regressor = nn.Identity() if same else _REGRESSORS[ndim](student_channels, teacher_channels)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        for who, x, channels in (("student", student, self.student_channels),
                                 ("teacher", teacher, self.teacher_channels)):
            if x.ndim != self.ndim or x.shape[1] != channels:
                raise ValueError(f"{who} features have shape {tuple(x.shape)}; this hint expects "
                                 f"{self.ndim}-D with {channels} channels in dim 1")
        teacher = teacher.detach()
        if self.ndim == 4:
            student, teacher = _match_spatial(student, teacher)
        return F.mse_loss(self.regressor(student), teacher)


class AttentionTransferLoss(nn.Module):
    """Activation-based attention transfer, Zagoruyko & Komodakis 2017,
    "Paying More Attention to Attention".

    Q(A) = vec(sum_c |A_c|^p), a (B, H*W) spatial attention map per sample;
    loss = mean_b || Q_s / ||Q_s||_2 - Q_t / ||Q_t||_2 ||_2

    The norm of the difference is the plain (not squared) L2 norm: the paper's
    eq. 2 with its p-norm set to 2, as in its experiments, without the beta/2
    factor (give that as the objective's weight). Channels are summed away,
    so student and teacher widths may differ; where spatial sizes differ the
    larger map is adaptive-average-pooled to the smaller before normalising.
    The loss is invariant to positive scaling of either activation. Teacher
    activations are detached.
    """

    def __init__(self, p: float = 2) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"p must be > 0, got {p}")
        self.p = p

    def attention(self, a: torch.Tensor) -> torch.Tensor:
        """sum_c |A_c|^p: (B, C, H, W) -> (B, H, W), unnormalised."""
        if a.ndim != 4:
            raise ValueError(f"attention transfer needs 4-D (B, C, H, W) activations, got shape {tuple(a.shape)}")
        return a.abs().pow(self.p).sum(dim=1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        q_s, q_t = _match_spatial(self.attention(student), self.attention(teacher.detach()))
        q_s, q_t = F.normalize(q_s.flatten(1), dim=1), F.normalize(q_t.flatten(1), dim=1)
        return torch.linalg.vector_norm(q_s - q_t, ord=2, dim=1).mean()


LayerPair = tuple[str, str]
"""(student module name, teacher module name), as in `dict(model.named_modules())`."""


class DistillationObjective(nn.Module):
    """KD on logits plus optional FitNets hints and attention transfer on named features.

    loss = KD_{T,alpha}(z_s, z_t, y)
           + hint_weight * sum_{(i,j) in hint_layers} Hint(F_s[i], F_t[j])
           + attention_weight * sum_{(i,j) in attention_layers} AT(F_s[i], F_t[j])

    KD is Hinton et al. 2015 (`KDLoss`), Hint is FitNets (`FeatureHintLoss`),
    AT is Zagoruyko & Komodakis 2017 (`AttentionTransferLoss`). The features
    are dicts name -> Tensor, e.g. `FeatureTap(...).outputs` of each model;
    tap `student_layers` and `teacher_layers`. The hint regressors are
    parameters of this module: optimise `[*student.parameters(),
    *objective.parameters()]`. `hint_channels[k]` is the (student, teacher)
    width of `hint_layers[k]`, and `hint_ndims[k]` its ndim (default 4);
    `from_models` finds both by probing the models.
    """

    def __init__(
        self,
        temperature: float,
        alpha: float,
        *,
        hint_layers: Sequence[LayerPair] = (),
        hint_channels: Sequence[tuple[int, int]] = (),
        hint_ndims: Sequence[int] | None = None,
        attention_layers: Sequence[LayerPair] = (),
        hint_weight: float = 1.0,
        attention_weight: float = 1.0,
        attention_p: float = 2,
    ) -> None:
        super().__init__()
        hint_ndims = [4] * len(hint_layers) if hint_ndims is None else list(hint_ndims)
        if not len(hint_layers) == len(hint_channels) == len(hint_ndims):
            raise ValueError(f"need one (student, teacher) width and ndim per hint pair: {len(hint_layers)} pairs, "
                             f"{len(hint_channels)} widths, {len(hint_ndims)} ndims")
        for name, weight in (("hint_weight", hint_weight), ("attention_weight", attention_weight)):
            if weight < 0:
                raise ValueError(f"{name} must be >= 0, got {weight}")
        self.kd = KDLoss(temperature, alpha)
        self.hint_layers, self.attention_layers = list(hint_layers), list(attention_layers)
        widths = zip(hint_channels, hint_ndims, strict=True)
        self.hints = nn.ModuleList(FeatureHintLoss(s, t, ndim) for (s, t), ndim in widths)
        self.attention = AttentionTransferLoss(attention_p)
        self.hint_weight, self.attention_weight = hint_weight, attention_weight

    @property
    def student_layers(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.hint_layers + self.attention_layers))

    @property
    def teacher_layers(self) -> list[str]:
        return list(dict.fromkeys(t for _, t in self.hint_layers + self.attention_layers))

    @classmethod
    def from_models(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        example_input: torch.Tensor,
        temperature: float,
        alpha: float,
        hint_layers: Sequence[LayerPair] = (),
        attention_layers: Sequence[LayerPair] = (),
        hint_weight: float = 1.0,
        attention_weight: float = 1.0,
        **extra,
    ) -> DistillationObjective:
        """Probe both models once on `example_input` (eval mode, no grad) to learn the hint widths.

        Raises ValueError naming a layer that does not exist, gives a
        non-2-D/4-D hint feature, pairs a 2-D with a 4-D feature, or is not
        4-D for attention transfer. `extra` are a subclass's own layer pairs and
        weights (see _extra_pairs), probed in the same pass.
        """
        pairs = list(hint_layers) + list(attention_layers) + cls._extra_pairs(extra)
        s_shapes = _probe(student, [s for s, _ in pairs], example_input)
        t_shapes = _probe(teacher, [t for _, t in pairs], example_input)
        for s, t in hint_layers:
            if len(s_shapes[s]) != len(t_shapes[t]) or len(s_shapes[s]) not in _REGRESSORS:
                raise ValueError(f"hint pair ({s!r}, {t!r}): shapes {tuple(s_shapes[s])} and {tuple(t_shapes[t])} "
                                 f"must both have ndim in {sorted(_REGRESSORS)}")
        for s, t in attention_layers:
            if len(s_shapes[s]) != 4 or len(t_shapes[t]) != 4:
                raise ValueError(f"attention pair ({s!r}, {t!r}): shapes {tuple(s_shapes[s])} and "
                                 f"{tuple(t_shapes[t])} must both be 4-D (B, C, H, W)")
        return cls(temperature, alpha, hint_layers=hint_layers,
                   hint_channels=[(s_shapes[s][1], t_shapes[t][1]) for s, t in hint_layers],
                   hint_ndims=[len(s_shapes[s]) for s, _ in hint_layers], attention_layers=attention_layers,
                   hint_weight=hint_weight, attention_weight=attention_weight,
                   **cls._extra_arguments(s_shapes, t_shapes, extra))

    @classmethod
    def _extra_pairs(cls, extra: dict) -> list[LayerPair]:
        """The (student, teacher) layers a subclass's own terms read, to probe with the rest."""
        if extra:
            raise TypeError(f"{cls.__name__}.from_models got unexpected arguments: {', '.join(sorted(extra))}")
        return []

    @classmethod
    def _extra_arguments(cls, s_shapes: dict, t_shapes: dict, extra: dict) -> dict:
        """A subclass's constructor arguments from the probed shapes (checked); none here."""
        return {}

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        targets: torch.Tensor,
        student_feats: Mapping[str, torch.Tensor] | None = None,
        teacher_feats: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return sum(self.terms(student_logits, teacher_logits, targets, student_feats, teacher_feats).values())

    def terms(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        targets: torch.Tensor,
        student_feats: Mapping[str, torch.Tensor] | None = None,
        teacher_feats: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The weighted summands of `forward` by name ("kd", "hint", "attention"), e.g. for logging."""
        s_feats, t_feats = _features(student_feats, "student"), _features(teacher_feats, "teacher")
        zero = student_logits.new_zeros(())
        hint = sum((h(s_feats(s), t_feats(t)) for h, (s, t) in zip(self.hints, self.hint_layers, strict=True)), zero)
        at = sum((self.attention(s_feats(s), t_feats(t)) for s, t in self.attention_layers), zero)
        return {"kd": self.kd(student_logits, teacher_logits, targets),
                "hint": self.hint_weight * hint, "attention": self.attention_weight * at}


def _features(feats: Mapping[str, torch.Tensor] | None, who: str) -> Callable[[str], torch.Tensor]:
    """Look-up into one model's features that names a missing layer and lists the ones present."""
    feats = feats or {}

    def get(name: str) -> torch.Tensor:
        try:
            return feats[name]
        except KeyError:
            raise ValueError(f"no {who} feature {name!r}; got {sorted(feats)} (tap it with FeatureTap)") from None

    return get


def _probe(model: nn.Module, names: Sequence[str], example_input: torch.Tensor) -> dict[str, torch.Size]:
    """Output shape of each named module on one forward pass, without touching BatchNorm statistics."""
    with FeatureTap(model, names, clone=False) as tap, evaluating(model):
        model(example_input)
    return {name: out.shape for name, out in tap.outputs.items()}
