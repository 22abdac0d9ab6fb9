"""Which student block learns from which teacher block when the student is shallower (`choices.LAYER_MAPS`)."""

from __future__ import annotations

from collections.abc import Callable

from steps.compression import choices


def uniform_layer_map(student_depth: int, teacher_depth: int) -> list[tuple[int, int]]:
    """Student block i -> teacher block ceil((i + 1) * Lt / Ls) - 1 (0-based): TinyBERT's g(m) = m * Lt / Ls.

    The last blocks always pair, and every pair is in range whichever model is deeper. A ceiling
    rather than round(): Python's round() sends ties to the even integer, so 1.5 and 4.5 would
    round in different directions.
    """
    _check(student_depth, teacher_depth)
    return [(i, -(-(i + 1) * teacher_depth // student_depth) - 1) for i in range(student_depth)]


def last_layer_map(student_depth: int, teacher_depth: int) -> list[tuple[int, int]]:
    """Only the last blocks pair: MiniLM distils the last layer's attention, leaving the student free below."""
    _check(student_depth, teacher_depth)
    return [(student_depth - 1, teacher_depth - 1)]


def _check(student_depth: int, teacher_depth: int) -> None:
    if student_depth < 1 or teacher_depth < 1:
        raise ValueError(f"depths must be >= 1, got student {student_depth}, teacher {teacher_depth}")


def layer_map(name: str, student_depth: int, teacher_depth: int) -> list[tuple[int, int]]:
    """The (student block, teacher block) pairs of the layer map `name`; an unknown name lists the valid ones."""
    mapping: Callable[[int, int], list[tuple[int, int]]] = choices.LAYER_MAPS.resolve(name)
    return mapping(student_depth, teacher_depth)
