"""Which data each model family reads, and which stages run on the hf family so far (issue 26).

Text data (data.source: text) are token ids and attention masks that only a family reading text (hf) takes,
and an hf model reads nothing else: the two go together, for every stage but the data stage alone (which
reads no model settings). The hf family trains a teacher today; pruning, distilling, exporting, quantizing,
evaluating and promoting an hf model are issue 26's next part, so those stages, and a whole run, are refused
here, naming the stage, before any work.
"""

from __future__ import annotations

TEXT_SOURCES = ("text",)
"""The data sources whose splits hold token ids (steps/sources/text.py)."""
HF_STAGES = ("data", "teacher", "prune")
"""The stages that run on an hf model so far."""
NEXT_PART = "issue 26's next part"


def check_teacher(source: str, arch, stage: str | None) -> None:
    """ValueError naming data.source and teacher.arch.name when they do not go together, or the stage that
    cannot run on an hf teacher yet. `stage`: the one stage about to run alone; None for a whole run."""
    if stage == "data":
        return
    text = source in TEXT_SOURCES
    if text != arch.reads_text:
        reads = "token ids (data.source: text)" if arch.reads_text else "images or feature vectors"
        raise ValueError(f"teacher.arch.name {arch.name!r} reads {reads}, but data.source {source!r} gives "
                         f"{'token ids' if text else 'no text'}: "
                         f"{'use name: hf for text' if text else 'use data.source: text for an hf model'}")
    if arch.reads_text and stage not in HF_STAGES:
        done = " and ".join(HF_STAGES)
        if stage is None:
            raise ValueError(f"teacher.arch.name {arch.name!r}: a whole run on an hf model is {NEXT_PART}; today the "
                             f"{done} stages run on it alone (python -m steps.data, then python -m steps.teacher)")
        raise ValueError(f"teacher.arch.name {arch.name!r}: the {stage} stage on an hf model is {NEXT_PART}; today "
                         f"only the {done} stages run on it")


def check_student(student, stage: str | None) -> None:
    """An hf student: distilling into a transformers model is issue 26's next part (the stages before distill
    do not read distill.student)."""
    if student.reads_text and stage not in HF_STAGES:
        raise ValueError(f"distill.student.name {student.name!r}: distilling into an hf model is {NEXT_PART}")
