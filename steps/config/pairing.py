"""Which data each model family reads: text (data.source: text) goes with the hf family, and only with it.

Text data are token ids and attention masks that only a family reading text (hf) takes, and an hf model
reads nothing else: the two go together, for the teacher and the student, for every stage but the data stage
alone (which reads no model settings). Refused here, naming both keys, before any work.
"""

from __future__ import annotations

from steps.config.distill import PRUNED_STUDENT

TEXT_SOURCES = ("text",)
"""The data sources whose splits hold token ids (steps/sources/text.py)."""


def check_teacher(source: str, arch, stage: str | None) -> None:
    """ValueError naming data.source and teacher.arch.name when they do not go together. `stage`: the one stage
    about to run alone; None for a whole run."""
    if stage == "data":
        return
    text = source in TEXT_SOURCES
    if text != arch.reads_text:
        reads = "token ids (data.source: text)" if arch.reads_text else "images or feature vectors"
        raise ValueError(f"teacher.arch.name {arch.name!r} reads {reads}, but data.source {source!r} gives "
                         f"{'token ids' if text else 'no text'}: "
                         f"{'use name: hf for text' if text else 'use data.source: text for an hf model'}")


def check_student(source: str, student, stage: str | None) -> None:
    """ValueError naming distill.student.name and data.source when the student's family does not read what the
    data give. The stages before distill do not read distill.student, and the pruned model (`{name: pruned}`) is
    the teacher's family."""
    if stage in ("data", "teacher", "prune") or student.name == PRUNED_STUDENT:
        return
    text = source in TEXT_SOURCES
    if text != student.reads_text:
        raise ValueError(f"distill.student.name {student.name!r} "
                         f"{'reads' if student.reads_text else 'cannot read'} token ids, and data.source "
                         f"{source!r} gives {'token ids' if text else 'no text'}: text goes with name: hf")
