"""Nothing from storage is ever unpickled."""

import re

from tests.helpers import REPO

SOURCES = [p for d in ("steps", "flows", "benchmarks") for p in (REPO / d).rglob("*.py")]


def test_no_unsafe_deserialisation_in_the_code_base():
    offenders = []
    for path in SOURCES:
        for no, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if re.search(r"\bpickle\.loads?\(|\bdill\.|\bjoblib\.load\(|allow_pickle\s*=\s*True", code):
                offenders.append(f"{path.relative_to(REPO)}:{no}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path.relative_to(REPO)}:{no}: {line.strip()}")
    assert SOURCES and not offenders, "\n".join(offenders)
