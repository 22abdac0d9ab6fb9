"""The distillation objective: a flat weighted sum of named terms, built from (name, weight, layer pairs).

    loss = sum_k  term_k.coefficient(w_k) * sum_{(i, j) in P_k}  term_k(student_k(i), teacher_k(j))

summed in the order the terms are given; P_k is one pair of logits (or logits and labels) for the terms
reading those, the named module pairs otherwise (one term instance per pair: FitNets regressors and
TinyBERT projections are learned per pair). The terms' parameters are this module's: optimise
`[*student.parameters(), *objective.parameters()]`. On text, the token mask (the inputs' attention mask)
goes to the terms that count tokens (`Term.masks_tokens`: hidden states, attention maps), so padding is
left out of them. Those terms are means over the batch's real tokens, the others over its rows: `token_mean` says
which part is which, so that ranks training on shards of a batch weigh each part by its share of the batch's
tokens or rows (training.TokenMean).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from steps.compression import choices
from steps.compression.distillation.features import FeatureTap
from steps.compression.training import Inputs, TokenMean, evaluating, forward

LayerPair = tuple[str, str]
"""(student module name, teacher module name), as in `dict(model.named_modules())`."""
NOT_FEATURES = ("logits", "labels")


@dataclass(frozen=True)
class TermSpec:
    """What params ask for: a registry name, its weight, the module pairs it reads, its constructor options."""

    name: str
    weight: float
    pairs: Sequence[LayerPair] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


class WeightedTerm(NamedTuple):
    name: str
    weight: float
    terms: list[nn.Module]  # one per pair; one alone for a term reading logits or labels
    pairs: Sequence[LayerPair] = ()


def reads_features(term: type | nn.Module) -> bool:
    return term.reads not in NOT_FEATURES


def _check_unique(names: Sequence[str], valid: Sequence[str]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"distillation terms {twice} given more than once; each of {sorted(valid)} may appear once")


class WeightedSum(nn.Module):
    """sum_k coefficient_k(w_k) * sum over its pairs of term_k: see the module docstring."""

    def __init__(self, entries: Sequence[WeightedTerm]) -> None:
        super().__init__()
        if not entries:
            raise ValueError("a distillation objective needs at least one term")
        _check_unique([e.name for e in entries], [e.name for e in entries])
        for e in entries:
            if e.weight < 0:
                raise ValueError(f"{e.name}: weight must be >= 0, got {e.weight}")
            wanted = len(e.pairs) if e.terms and reads_features(e.terms[0]) else 1
            if len(e.terms) != wanted or not e.terms:
                raise ValueError(f"{e.name}: {len(e.terms)} terms for {len(e.pairs)} pairs; a term reading features "
                                 "needs one per pair (at least one), one reading logits or labels exactly one")
        self.weights = {e.name: e.weight for e in entries}
        self.pairs = {e.name: list(e.pairs) for e in entries}
        self.terms = nn.ModuleDict({e.name: nn.ModuleList(e.terms) for e in entries})

    @property
    def student_layers(self) -> list[str]:
        return list(dict.fromkeys(s for pairs in self.pairs.values() for s, _ in pairs))

    @property
    def teacher_layers(self) -> list[str]:
        return list(dict.fromkeys(t for pairs in self.pairs.values() for _, t in pairs))

    def summands(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor,
        student_feats: Mapping[str, torch.Tensor] | None = None,
        teacher_feats: Mapping[str, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each term's weighted value by name, in order (features: `FeatureTap.outputs` of each model; `mask`:
        (B, N), 1 on the tokens the terms that count tokens count, None for all)."""
        s_feat, t_feat = _lookup(student_feats, "student"), _lookup(teacher_feats, "teacher")
        out = {}
        for name, terms in self.terms.items():
            first = terms[0]
            if first.reads == "logits":
                values = [first(student_logits, teacher_logits)]
            elif first.reads == "labels":
                values = [first(student_logits, labels)]
            else:
                masked = {"mask": mask} if first.masks_tokens and mask is not None else {}
                values = [term(s_feat(s), t_feat(t), **masked)
                          for term, (s, t) in zip(terms, self.pairs[name], strict=True)]
            out[name] = first.coefficient(self.weights[name]) * functools.reduce(operator.add, values)
        return out

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor,
        student_feats: Mapping[str, torch.Tensor] | None = None,
        teacher_feats: Mapping[str, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        summands = self.summands(student_logits, teacher_logits, labels, student_feats, teacher_feats, mask)
        return functools.reduce(operator.add, summands.values())

    def token_mean(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor,
        student_feats: Mapping[str, torch.Tensor] | None = None,
        teacher_feats: Mapping[str, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor | TokenMean:
        """forward's loss, summed alike; with a token mask that some term counts, a TokenMean: that loss, the sum of
        the terms that average over the mask's tokens, and how many tokens those are (what a rank's share of a
        batch's tokens is counted from). Without a mask every term averages over rows, or over a language model's
        positions, as many in every row: the loss alone."""
        summands = self.summands(student_logits, teacher_logits, labels, student_feats, teacher_feats, mask)
        loss = functools.reduce(operator.add, summands.values())
        per_token = [value for name, value in summands.items() if self.terms[name][0].masks_tokens]
        if mask is None or not per_token:
            return loss
        return TokenMean(loss, functools.reduce(operator.add, per_token), mask.sum())


def build(
    specs: Sequence[TermSpec],
    student: nn.Module,
    teacher: nn.Module,
    example_input: Inputs,
    registry: choices.Registry = choices.DISTILL_TERMS,
) -> WeightedSum:
    """Resolve each name in `registry`, probe both models once on `example_input` (a batch: one tensor, or named
    tensors such as a text's input_ids and attention_mask; eval mode, no grad) for
    the shapes of the pairs, and build each term, in order (the order of the terms' random initialisation).

    Raises ValueError for an unknown or repeated name (listing the valid ones), a layer that does not
    exist, or a pair whose shapes the term cannot compare (naming the term and the pair).
    """
    _check_unique([s.name for s in specs], list(registry))
    classes = [registry.resolve(s.name) for s in specs]
    pairs = [p for spec, cls in zip(specs, classes, strict=True) if reads_features(cls) for p in spec.pairs]
    s_shapes = probe(student, [s for s, _ in pairs], example_input) if pairs else {}
    t_shapes = probe(teacher, [t for _, t in pairs], example_input) if pairs else {}
    return WeightedSum([_entry(spec, cls, s_shapes, t_shapes) for spec, cls in zip(specs, classes, strict=True)])


def _entry(spec: TermSpec, cls, s_shapes: dict, t_shapes: dict) -> WeightedTerm:
    if not reads_features(cls):
        if spec.pairs:
            raise ValueError(f"{spec.name} reads {cls.reads}, not layer pairs; got {list(spec.pairs)}")
        return WeightedTerm(spec.name, spec.weight, [cls(**spec.options)])
    if not spec.pairs:
        raise ValueError(f"{spec.name} reads {cls.reads}: give it at least one (student, teacher) layer pair")
    terms = [cls.from_shapes(s_shapes[s], t_shapes[t], where=f"{spec.name} pair ({s!r}, {t!r})", **spec.options)
             for s, t in spec.pairs]
    return WeightedTerm(spec.name, spec.weight, terms, list(spec.pairs))


def _lookup(feats: Mapping[str, torch.Tensor] | None, who: str) -> Callable[[str], torch.Tensor]:
    """Look-up into one model's features that names a missing layer and lists the ones present."""
    feats = feats or {}

    def get(name: str) -> torch.Tensor:
        try:
            return feats[name]
        except KeyError:
            raise ValueError(f"no {who} feature {name!r}; got {sorted(feats)} (tap it with FeatureTap)") from None

    return get


def probe(model: nn.Module, names: Sequence[str], example_input: Inputs) -> dict[str, torch.Size]:
    """Output shape of each named module on one forward pass, without touching BatchNorm statistics."""
    with FeatureTap(model, names, clone=False) as tap, evaluating(model):
        forward(model, example_input)
    return {name: out.shape for name, out in tap.outputs.items()}
