"""The checks against what was recorded at registration: lineage tags, the data by its DVC hash, params,
the artifacts' sha256, the teacher's starting weights."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from steps import config, storage, tracking
from steps.core.dag import LINEAGE_SECTIONS
from steps.core.hashing import sha256, weights_sha256
from steps.core.layout import DATA_DIR, model_dir, model_files, model_weights
from steps.core.names import Artifact, ModelRole, Tag
from steps.core.results import flatten
from steps.registry import artifacts
from steps.registry.audit.report import Check

REQUIRED_TAGS = (Tag.GIT_COMMIT, Tag.DATA_HASH, Tag.PARAMS_HASH, Tag.MODEL_SHA256, Tag.PROMOTE_RUN,
                 Tag.EVALUATE_RUN, Tag.ARTIFACTS_SHA256)


def lineage_check(tags: dict[str, str]) -> Check:
    missing = [t for t in REQUIRED_TAGS if tags.get(t) in (None, "", "unknown", "unrecorded")]
    if missing:
        return Check("lineage", False, f"missing lineage tags: {', '.join(missing)}")
    dirty = " (uncommitted changes at registration)" if tags.get(Tag.GIT_DIRTY) == "true" else ""
    return Check("lineage", True, f"commit {tags[Tag.GIT_COMMIT][:12]}{dirty}, data {tags[Tag.DATA_HASH]}, "
                                  f"promote run {tags[Tag.PROMOTE_RUN]}")


def data_check(root: Path, tags: dict[str, str], work: Path) -> list[Check]:
    files = storage.fetch_dir(root, tags[Tag.DATA_HASH], work / DATA_DIR, rev=tags[Tag.GIT_COMMIT])
    return [Check("data", True, f"fetched {len(files)} files by hash and verified each md5",
                  recorded=tags[Tag.DATA_HASH], observed=tags[Tag.DATA_HASH])]


def params_check(root: Path, tags: dict[str, str]) -> tuple[list[Check], dict]:
    current = config.load(root)
    logged = logged_json(tags[Tag.PROMOTE_RUN], "params.json")
    now = current.model_dump(mode="json")
    flat_now, flat_logged = flatten(now), flatten(logged)
    differing = sorted(k for k in flat_now.keys() | flat_logged.keys()
                       if k.split(".")[0] in LINEAGE_SECTIONS and flat_now.get(k) != flat_logged.get(k))
    hash_now = current.section_hash(*LINEAGE_SECTIONS)
    logged_hash = config.validate(logged).section_hash(*LINEAGE_SECTIONS)
    rows = [Check("params.hash", hash_now == tags[Tag.PARAMS_HASH] == logged_hash,
                  "params.yaml (pipeline sections) vs the version's params hash and the logged params",
                  recorded=tags[Tag.PARAMS_HASH][:16], observed=hash_now[:16])]
    rows.append(Check("params.values", not differing,
                      "differs from the promote run's logged params: " + ", ".join(
                          f"{k} ({flat_logged.get(k)!r} logged, {flat_now.get(k)!r} now)" for k in differing)
                      if differing else "every pipeline param equals the logged value"))
    return rows, logged


def logged_json(run_id: str, path: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(tracking.download_artifacts(tracking.run_artifact_uri(run_id, path), Path(tmp)).read_text())


def artifacts_check(name: str, version: int, tags: dict[str, str], work: Path) -> list[Check]:
    recorded = logged_json(tags[Tag.PROMOTE_RUN], "artifacts.json")
    rows = [Check("artifacts.record", artifacts.digest_of(recorded) == tags[Tag.ARTIFACTS_SHA256],
                  "artifacts.json in the promote run vs the version's digest tag",
                  recorded=tags[Tag.ARTIFACTS_SHA256][:16], observed=artifacts.digest_of(recorded)[:16])]
    now = artifacts.artifact_digests(name, version, tags[Tag.PROMOTE_RUN])
    changed = sorted(p for p in recorded.keys() | now.keys() if recorded.get(p) != now.get(p))
    rows.append(Check("artifacts.sha256", not changed,
                      ("changed: " + ", ".join(f"{p} (recorded {str(recorded.get(p))[:12]}, now {str(now.get(p))[:12]})"
                                               for p in changed)) if changed else f"{len(now)} files match",
                      recorded=f"{len(recorded)} files", observed=f"{len(now)} files"))
    # The verified weights and spec (or the hf student's checkpoint folder), where the evaluate code expects them.
    files = tracking.download_artifacts(tracking.run_artifact_uri(tags[Tag.PROMOTE_RUN], Artifact.MODEL_FILES),
                                        work / "downloads")
    folder = (files / Path(model_dir(ModelRole.STUDENT)).name).is_dir()
    for rel in model_files(ModelRole.STUDENT, folder):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if folder else shutil.copy2
        copy(files / Path(rel).name, work / rel)
    weights = sha256(model_weights(work, ModelRole.STUDENT))
    rows.append(Check("artifacts.weights", weights == tags[Tag.MODEL_SHA256], "student safetensors vs the model tag",
                      recorded=tags[Tag.MODEL_SHA256][:16], observed=weights[:16]))
    return rows


def teacher_init_check(root: Path, tags: dict[str, str], work: Path) -> list[Check]:
    """The model the teacher started from (teacher.init) still has the sha256 recorded at promotion."""
    source, recorded = tags[Tag.TEACHER_INIT], tags.get(Tag.TEACHER_INIT_SHA256, "unrecorded")
    if source.startswith("models:/"):
        _, checkpoint = tracking.download_model_files(source, work / "teacher-init")
    else:  # a safetensors file, or an hf teacher's save_pretrained folder (teacher.arch.path)
        checkpoint = Path(source) if Path(source).is_absolute() else root / source
    try:
        now = weights_sha256(checkpoint)
    except FileNotFoundError:
        now = "missing"
    return [Check("teacher_init.sha256", now == recorded, f"{source} vs the version's teacher-init tag",
                  recorded=recorded[:16], observed=now[:16])]



def tokenizer_check(name: str, version: int, tags: dict[str, str], work: Path) -> list[Check]:
    """A text model's tokenizer, recorded at promotion (the version's tag), is the one it serves with (its
    tokenizer artifact and its contract), the one beside its weights (its save_pretrained folder) and the
    one the fetched data were tokenised with (their manifest): a token id means the same word everywhere."""
    from steps.core.datasets import read_manifest
    from steps.serving.classifier import HF_ARTIFACT, TOKENIZER_ARTIFACT
    from steps.sources.tokens import FILE

    recorded = tags.get(Tag.TOKENIZER_SHA256)
    if recorded is None:
        return [Check("tokenizer.sha256", False, f"a text model without its {Tag.TOKENIZER_SHA256} tag: nothing "
                      "says which tokenizer it was trained with", recorded="missing")]
    served = tracking.served_artifacts(name, version, work / "served-model")
    found = {"served tokenizer": served.get(TOKENIZER_ARTIFACT),
             "model folder": served[HF_ARTIFACT] / FILE if HF_ARTIFACT in served else None}
    now = {what: sha256(path) if path is not None and path.is_file() else "missing" for what, path in found.items()}
    contract = tracking.contract_of(name, version)
    now["contract"] = contract.tokenizer_sha256 if contract is not None else "missing"
    now["fetched data"] = (read_manifest(work).get("tokenizer") or {}).get("sha256", "missing")
    differing = [f"{what} {digest[:12]}" for what, digest in now.items() if digest != recorded]
    return [Check("tokenizer.sha256", not differing,
                  ("differs from the tag: " + ", ".join(differing)) if differing else
                  f"the version's tag equals the sha256 of its {', '.join(now)}", recorded=recorded[:16],
                  observed=differing[0] if differing else recorded[:16])]
