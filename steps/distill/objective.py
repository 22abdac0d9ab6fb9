"""params -> the distillation objective: each term `distill:` names, with the module pairs it reads.

A term reading named layers ("layers": hints, attention transfer) gets the pairs params list. A term
reading per-block activations ("attention_maps", "hidden_states") asks each model's family for one
module per block (the `families.Family` hook of that name) and pairs the blocks by its layer map;
from a teacher without blocks, hidden states are the pooled features the two classifier heads read.
"""

from __future__ import annotations

from steps import config
from steps.compression import choices
from steps.compression.distillation.layer_maps import layer_map
from steps.compression.distillation.objective import NOT_FEATURES, LayerPair, TermSpec, WeightedSum, build
from steps.compression.families import family_of
from steps.compression.training import Inputs
from steps.config.distill import DistillTerm


def block_pairs(term: DistillTerm, reads: str, student, teacher, teacher_role: str) -> list[LayerPair]:
    """(student module, teacher module) per block pair of `term.layer_map`, named by the families' `reads`
    hook; a family without such blocks is refused, naming the params key and the family."""
    what = reads.replace("_", " ")
    s_family, t_family = family_of(student), family_of(teacher)
    s_blocks, t_blocks = getattr(s_family, reads)(student), getattr(t_family, reads)(teacher)
    if not s_blocks:
        raise ValueError(f"{term.source} needs a student whose family has {what}; the student is a {s_family.name}")
    if t_blocks:
        return [(s_blocks[i], t_blocks[j]) for i, j in layer_map(term.layer_map, len(s_blocks), len(t_blocks))]
    if reads == "hidden_states":  # TinyBERT's MSE on the features each classifier head reads
        return [(s_family.pooled_layer(student), t_family.pooled_layer(teacher))]
    raise ValueError(f"{term.source} needs a teacher whose family has {what}; the {teacher_role} model is a "
                     f"{t_family.name} (distill.hidden_states matches pooled features instead)")


def layer_pairs(term: DistillTerm, reads: str, student, teacher, teacher_role: str) -> list[LayerPair]:
    if reads in NOT_FEATURES:
        return []
    if reads == "layers":
        return [(p.student, p.teacher) for p in term.layers]
    return block_pairs(term, reads, student, teacher, teacher_role)


def build_objective(cfg: config.DistillConfig, student, teacher, teacher_role: str,
                    example: Inputs) -> WeightedSum:
    """The weighted sum of `cfg.terms`; `example` (a batch of inputs: a tensor, or a text's named tensors) is
    run once to size the terms that read features (no run when none does)."""
    specs = []
    for term in cfg.terms:
        reads = choices.DISTILL_TERMS.resolve(term.name).reads
        specs.append(TermSpec(term.name, term.weight, layer_pairs(term, reads, student, teacher, teacher_role),
                              term.options))
    return build(specs, student, teacher, example)
