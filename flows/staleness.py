"""Is anything stale? The stage keys both the flow and the no-change check use, and the record of the last run.

A stage's key is the content of its dependency files (its code: its imports and the plug-ins its
params choose; its data inputs), its params sections, the project root, and for promote the
registry it registers into: the same identity DVC uses. After a successful run the flow records
every stage's key and output hashes in `.shrinkflow/last_run.json`; a later run whose keys and
outputs all match, and whose registered version still exists, has nothing to do. This module imports no orchestrator,
tracker or torch, so asking costs a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from steps.core.dag import STAGES, Stage
from steps.core.files import write_json
from steps.core.hashing import content_hash
from steps.core.layout import STATE_DIR

RECORD = f"{STATE_DIR}/last_run.json"
REGISTRY_STAGE = "promote"
"""The stage with an output outside the project (the registry)."""


def stage_key(root: Path, st: Stage, params, registry_uri: str, hashes: dict[Path, str] | None = None) -> str:
    """The cache key of `st` under `params`; `hashes` memoises content hashes across stages of one check."""
    hashes = {} if hashes is None else hashes
    digest = hashlib.sha256(f"{st.name}|{root.resolve()}|{params.section_hash(*st.params)}".encode())
    for dep in st.resolved_deps(params):
        path = root / dep
        if path not in hashes:
            hashes[path] = content_hash(path)
        digest.update(f"|{dep}={hashes[path]}".encode())
    if st.name == REGISTRY_STAGE:  # another registry (e.g. the services profile) is another promotion
        digest.update(f"|registry={registry_uri}".encode())
    return digest.hexdigest()


def output_hashes(root: Path, st: Stage, params, hashes: dict[Path, str] | None = None) -> dict[str, str]:
    hashes = {} if hashes is None else hashes
    outs = (*st.outputs(params), *st.metrics, *st.plots)  # a model's checkpoint files follow its family
    for out in outs:
        if root / out not in hashes:
            hashes[root / out] = content_hash(root / out)
    return {out: hashes[root / out] for out in outs}


@dataclass(frozen=True)
class RunRecord:
    """What the last successful run produced: enough to tell, without running anything, that nothing changed."""

    flow_run: str
    finished: str
    registry_uri: str
    keys: dict[str, str]
    outputs: dict[str, dict[str, str]]
    model_name: str
    version: int


def write_record(root: Path, record: RunRecord) -> None:
    write_json(root / RECORD, asdict(record))


def read_record(root: Path) -> RunRecord | None:
    try:
        return RunRecord(**json.loads((root / RECORD).read_text()))
    except (FileNotFoundError, ValueError, TypeError):  # none yet, or from another version: just run
        return None


def stale_stages(root: Path, params, record: RunRecord | None, registry_uri: str,
                 version_exists: Callable[[str, int], bool]) -> list[str]:
    """The stages whose key or outputs differ from the last run's ([] when nothing is stale)."""
    if record is None or record.registry_uri != registry_uri:
        return [st.name for st in STAGES]
    hashes: dict[Path, str] = {}
    stale = [st.name for st in STAGES
             if record.keys.get(st.name) != stage_key(root, st, params, registry_uri, hashes)
             or record.outputs.get(st.name) != output_hashes(root, st, params, hashes)]
    if not stale and not version_exists(record.model_name, record.version):
        stale.append(REGISTRY_STAGE)  # the registered version was deleted: register again
    return stale
