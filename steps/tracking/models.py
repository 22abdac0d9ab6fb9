"""The MLflow model registry: register a version, move aliases, tag it, serve its files back.

`ModelRef.parse` is the one reader of `models:/NAME@ALIAS` and `models:/NAME/VERSION`; not-found
answers from MLflow become None or `{}` in one place (`store.is_missing`), so callers test for absence
instead of catching MLflow's exceptions.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec

from steps.core.hashing import sha256, weights_sha256
from steps.core.names import Artifact, Tag
from steps.serving.classifier import CONTRACT_ARTIFACT, HF_ARTIFACT, ONNX_ARTIFACT, TOKENIZER_ARTIFACT
from steps.serving.contract import METADATA_KEY
from steps.serving.generator import TOKENIZER_FILE
from steps.serving.generator import signature as generator_signature
from steps.tracking.store import is_missing

SERVING = Path(__file__).resolve().parents[1] / "serving"
"""steps/serving/: the served model's code, stored with every registered version (its code/ folder)."""
SERVING_REQUIREMENTS = [f"{package}=={package_version(package)}"
                        for package in ("mlflow", "numpy", "pandas", "pillow", "onnxruntime")]
TEXT_REQUIREMENTS = [f"tokenizers=={package_version('tokenizers')}"]
"""Texts are tokenised by the served model: the tokenizers library (Rust, no torch or transformers)."""
GENERATION = Path(__file__).resolve().parents[1] / "compression" / "generation.py"
"""The generation loop a served language model runs (it imports nothing of shrinkflow): carried beside steps/serving/
in the version's code/ folder, importable there as `generation`."""
GENERATOR_REQUIREMENTS = [f"{package}=={package_version(package).split('+')[0]}"
                          for package in ("mlflow", "numpy", "pandas", "pillow", "tokenizers", "safetensors", "torch",
                                          "transformers")]
"""A served language model's: torch and transformers (stock from_pretrained), no ONNX Runtime; torch's local label
(+cpu) left off, which PyPI does not know."""
GENERATOR_TASK = {"shrinkflow_task": "causal_lm"}
"""A served language model's MLmodel metadata: it has no input contract (contract_of answers None for it)."""
_URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<alias>[\w.-]+)|/(?P<version>\d+))$")


class UnknownModel(LookupError):
    """The model, alias or version a request names does not exist; the message names it."""


@dataclass(frozen=True)
class ModelRef:
    """A registered version named by alias or number: `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""

    name: str
    alias: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        match = _URI.match(uri)
        if not match:
            raise ValueError(f"{uri!r} is not a model URI: expected models:/NAME/VERSION or models:/NAME@ALIAS")
        number = match["version"]
        return cls(match["name"], match["alias"], int(number) if number is not None else None)

    def resolve(self) -> int:
        """The version number; UnknownModel naming the model and its aliases when there is none."""
        if self.alias is None:
            model_version(self.name, self.version)
            return self.version
        found = aliases(self.name)
        if self.alias not in found:
            raise UnknownModel(f"models:/{self.name}@{self.alias}: model {self.name!r} has no alias @{self.alias} "
                               f"(aliases: {found or 'none'})")
        return found[self.alias]


def model_version(name: str, version: int):
    """The ModelVersion (tags, run id, source); UnknownModel naming it when absent."""
    try:
        return MlflowClient().get_model_version(name, str(version))
    except MlflowException as err:
        if is_missing(err, ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")):
            raise UnknownModel(f"{name} v{version}: {err.message}") from None
        raise


def version_exists(name: str, version: int) -> bool:
    try:
        model_version(name, version)
    except UnknownModel:
        return False
    return True


def aliases(name: str) -> dict[str, int]:
    """{alias: version} of a registered model; {} when it does not exist yet."""
    try:
        found = MlflowClient().get_registered_model(name).aliases
    except MlflowException as err:
        if is_missing(err):
            return {}
        raise
    return {alias: int(v) for alias, v in found.items()}


def alias_version(name: str, alias: str):
    """The ModelVersion behind `alias`, or None when the model or alias does not exist yet."""
    number = aliases(name).get(alias)
    return None if number is None else model_version(name, number)


def set_alias(name: str, alias: str, version: int) -> None:
    MlflowClient().set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str) -> None:
    MlflowClient().delete_registered_model_alias(name, alias)


def tag_version(name: str, version: int, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def register(onnx_file: Path, contract, example, name: str, text_files: tuple[Path, Path] | None = None) -> int:
    """Log the served model in the active run and register it as `name`; returns the version.

    The served model (steps/serving/) takes raw inputs and answers with class names: it runs
    `onnx_file` (whose graph scales and standardises the raw input) by the input `contract`
    (a steps.serving Contract), and carries the serving package in its code/ folder, so scoring
    needs neither this project nor PyTorch. `example`: raw test rows (an array of pixels, a
    DataFrame of named features, or a DataFrame of texts), stored as the model's input example.
    Texts: `text_files` = (the data's tokenizer.json, which the served model tokenises with, and the
    model's save_pretrained folder, logged beside it for stock `from_pretrained`).
    """
    if contract.texts != (text_files is not None):
        raise ValueError(f"{name}: a text contract registers with its tokenizer and model folder, and only it")
    extra, requirements = {}, SERVING_REQUIREMENTS
    if text_files is not None:
        extra = {TOKENIZER_ARTIFACT: str(text_files[0]), HF_ARTIFACT: str(text_files[1])}
        requirements = SERVING_REQUIREMENTS + TEXT_REQUIREMENTS
    with tempfile.TemporaryDirectory(prefix="shrinkflow-contract-") as scratch:
        contract_file = Path(scratch) / "contract.json"
        contract.write(contract_file)
        info = mlflow.pyfunc.log_model(
            name=Artifact.MODEL.value, python_model=str(SERVING / "serving_entry.py"), code_paths=[str(SERVING)],
            artifacts={ONNX_ARTIFACT: str(onnx_file), CONTRACT_ARTIFACT: str(contract_file), **extra},
            signature=signature(contract), input_example=example, pip_requirements=requirements,
            metadata={METADATA_KEY: contract.to_dict()}, registered_model_name=name)
    return int(info.registered_model_version)


def log_generator(hf_folder: Path, name: str, example: list[str] | None = None) -> int:
    """Log a causal language model's served pyfunc in the active run and register it as `name`; returns the version.

    The served model (steps/serving/generator.py) takes prompt strings and answers with their continuations,
    params max_new_tokens, temperature and seed; it loads `hf_folder` (save_pretrained: config.json,
    model.safetensors, tokenizer.json) with stock transformers and carries steps/serving/ and the generation loop in
    its code/ folder. `example`: prompts stored as the input example (MLflow runs the model on them while logging).
    """
    info = mlflow.pyfunc.log_model(name=Artifact.MODEL.value, registered_model_name=name,
                                   **generator_model(hf_folder, example))
    return int(info.registered_model_version)


def model_task(name: str, version: int) -> str | None:
    """What a registered version does, as its MLflow model's metadata says: "causal_lm" for a served language model
    (generator_model), None for the classifiers (which carry a contract instead) and for a version whose MLmodel
    cannot be read (whatever reads it next names the damage)."""
    try:
        info = mlflow.models.get_model_info(f"models:/{name}/{version}")
    except (MlflowException, OSError):
        return None
    return (info.metadata or {}).get(next(iter(GENERATOR_TASK)))


def serves_language_model(name: str, version: int) -> bool:
    """Whether the version is a served language model (generator_model's), not a classifier."""
    return model_task(name, version) == GENERATOR_TASK["shrinkflow_task"]


def generator_model(hf_folder: Path, example: list[str] | None = None) -> dict:
    """The keyword arguments of `mlflow.pyfunc.log_model` (or `save_model`) for a served language model: "models
    from code" (generator_entry.py), the folder as HF_ARTIFACT, the signature with its params."""
    folder = Path(hf_folder)
    missing = [f for f in ("config.json", TOKENIZER_FILE) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: no {', '.join(missing)}; a served language model is a save_pretrained "
                                "folder holding its tokenizer")
    return dict(python_model=str(SERVING / "generator_entry.py"), code_paths=[str(SERVING), str(GENERATION)],
                artifacts={HF_ARTIFACT: str(folder)}, signature=generator_signature(), input_example=example,
                pip_requirements=GENERATOR_REQUIREMENTS, metadata=dict(GENERATOR_TASK))


def signature(contract) -> ModelSignature:
    """Tables: one named column per feature. Images: an object tensor, because MLflow's tensor schema admits one
    shape and dtype and the served model takes three layouts, uint8 or float pixels, and encoded images; it
    checks the input against the contract itself (steps/serving/inputs.py). Out: label, class_index and a
    probability per class; params: output = labels | logits. Texts: one unnamed string column, the one schema under
    which MLflow takes a bare list of strings as well as a table (a named one refuses the list, whose column is 0);
    the served model checks the column's name itself (steps/serving/texts.py)."""
    if contract.images:
        inputs = Schema([TensorSpec(np.dtype(object), (-1,))])
    elif contract.texts:
        inputs = Schema([ColSpec(DataType.string)])
    else:
        inputs = Schema([ColSpec(DataType.double, feature) for feature in contract.feature_names])
    outputs = Schema([ColSpec(DataType.string, "label"), ColSpec(DataType.long, "class_index"),
                      *(ColSpec(DataType.double, name) for name in contract.classes)])
    return ModelSignature(inputs=inputs, outputs=outputs,
                          params=ParamSchema([ParamSpec("output", DataType.string, "labels")]))


def contract_of(name: str, version: int):
    """The input contract a registered version was logged with; None for versions registered before it existed
    (those take normalised tensors and answer with logits)."""
    from steps.serving.contract import Contract

    return Contract.from_metadata(mlflow.models.get_model_info(f"models:/{name}/{version}").metadata)


def signature_input_shape(name: str, version: int) -> list[int] | None:
    """One sample's shape in a registered version's tensor signature (versions from before the contract), or None."""
    inputs = mlflow.models.get_model_info(f"models:/{name}/{version}").signature.inputs
    return list(inputs.inputs[0].shape[1:]) if inputs is not None and inputs.is_tensor_spec() else None


def served_artifacts(name: str, version: int, dest: Path) -> dict[str, Path]:
    """The registered model of `name` `version` downloaded into `dest`: {artifact name: local path} of the files
    and folders its pyfunc was logged with (steps/serving/classifier.py names them)."""
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(dest)))
    logged = mlflow.models.Model.load(str(local / "MLmodel")).flavors["python_function"].get("artifacts") or {}
    return {key: local / entry["path"] for key, entry in logged.items()}


def mark_failed(name: str, version: int, reason: str) -> None:
    """Tag a version whose promotion failed after it was registered, so no version is left without a decision."""
    tag_version(name, version, {Tag.DECISION: "failed", Tag.REASON: reason[:5000]})


def load_predictor(name: str, version: int):
    """The registered model as MLflow serves it (pyfunc): `.predict(raw batch) -> DataFrame` (label, class_index,
    probabilities); versions registered before the contract take normalised float32 tensors -> logits."""
    return load_pyfunc(f"models:/{name}/{version}")


SERVED_CODE = ("serving", "generation")
"""The top-level modules of a registered model's code/ folder: steps/serving as `serving`, and a language model's
generation loop."""


def load_pyfunc(uri: str):
    """`mlflow.pyfunc.load_model(uri)`, importing the served code from this version's own code/ folder. Each
    version carries its copy; a process that loads several (promote: candidate and champion; the audit; tests)
    would otherwise reuse the first one imported (MLflow leaves it in sys.modules), which may sit in a temporary
    folder since removed."""
    for module in [m for m in sys.modules if m.split(".")[0] in SERVED_CODE]:
        del sys.modules[module]
    return mlflow.pyfunc.load_model(uri)


def log_deployable(name: str, version: int, files: list[Path], deployable: Path) -> dict[str, str]:
    """Log the ONNX `files` into the active run (beside the registered model) and tag `version` with their sha256.

    Returns the tags: `shrinkflow.onnx_sha256.<file name>` per file and `shrinkflow.deployable` naming
    the one to deploy. `shrinkflow export` and audits re-check the files against these hashes.
    """
    tags = {Tag.DEPLOYABLE.value: Path(deployable).name}
    for path in files:
        mlflow.log_artifact(str(path), artifact_path=Artifact.DEPLOY)
        tags[f"{Tag.ONNX_SHA256}.{Path(path).name}"] = sha256(Path(path))
    tag_version(name, version, tags)
    return tags


def log_reference(name: str, version: int, path: Path) -> None:
    """Log the file a budgeted version's latency was timed beside (the teacher's ONNX file) into the active run and
    tag the version with its sha256, so the audit re-times the version on the same terms."""
    mlflow.log_artifact(str(path), artifact_path=Artifact.REFERENCE)
    tag_version(name, version, {Tag.REFERENCE_SHA256.value: sha256(Path(path))})


def download_reference(mv, dest: Path) -> Path | None:
    """The reference file logged with model version `mv`, checked against its sha256 tag; None when the version
    has none (registered without a budget, or before issue 29)."""
    digest = mv.tags.get(Tag.REFERENCE_SHA256)
    if digest is None:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=Artifact.REFERENCE,
                                                     dst_path=str(dest)))
    (path,) = sorted(local.glob("*.onnx"))
    if sha256(path) != digest:
        raise ValueError(f"{mv.name} version {mv.version}: {Artifact.REFERENCE}/{path.name} has sha256 {sha256(path)}, "
                         f"but {digest} was recorded at registration")
    return path


def download_deployable(mv, dest: Path) -> dict[str, str]:
    """Download the ONNX files logged with model version `mv` into `dest`, each checked against its sha256 tag.

    Returns {file name: sha256}; ValueError when the version has none, or a downloaded file's hash
    differs from the one recorded at registration.
    """
    prefix = f"{Tag.ONNX_SHA256}."
    expected = {k.removeprefix(prefix): v for k, v in mv.tags.items() if k.startswith(prefix)}
    if not expected:
        raise ValueError(f"{mv.name} version {mv.version} has no ONNX files (registered before the export stage?)")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shrinkflow-export-") as scratch:
        local = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=Artifact.DEPLOY,
                                                         dst_path=scratch))
        for file, digest in expected.items():
            got = sha256(local / file) if (local / file).is_file() else "missing"
            if got != digest:
                raise ValueError(f"{mv.name} version {mv.version}: {Artifact.DEPLOY}/{file} has sha256 {got}, "
                                 f"but {digest} was recorded at registration")
        for file in expected:
            shutil.move(local / file, dest / file)
    return expected


def download_model_files(uri: str, dest: Path) -> tuple[int, Path]:
    """The checkpoint logged as `model_files/` with a registered version, into `dest`: a safetensors file with its
    JSON spec, or the save_pretrained folder of a family that saves one (hf).

    `uri` is models:/NAME@ALIAS or models:/NAME/VERSION. Returns (the version number it resolved to, the weights
    file (its spec is the .json of the same name) or the folder). The weights must have the sha256 that the
    version's model tag recorded at registration, or ValueError names both. Nothing is unpickled.
    """
    ref = ModelRef.parse(uri)
    version = ref.resolve()
    mv = model_version(ref.name, version)
    run_id = mv.tags.get(Tag.PROMOTE_RUN, mv.run_id)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shrinkflow-model-files-") as scratch:
        try:
            local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=Artifact.MODEL_FILES,
                                                             dst_path=scratch))
        except MlflowException as err:
            raise ValueError(f"{uri} (version {version}): no {Artifact.MODEL_FILES}/ artifacts "
                             f"({err.message})") from None
        checkpoint, moved = _checkpoint_in(local, f"{uri} (version {version})")
        expected, got = mv.tags.get(Tag.MODEL_SHA256), weights_sha256(checkpoint)
        if expected is not None and got != expected:
            raise ValueError(f"{uri} (version {version}): {checkpoint.name}'s weights have sha256 {got}, but "
                             f"{expected} was recorded at registration")
        for path in moved:
            shutil.move(path, dest / path.name)
    return version, dest / checkpoint.name


def _checkpoint_in(local: Path, what: str) -> tuple[Path, list[Path]]:
    """(the checkpoint, the paths it consists of) in a downloaded `model_files/`: one folder holding config.json
    (hf), or one .safetensors file and its .json spec."""
    folders = [p for p in local.iterdir() if p.is_dir()]
    if len(folders) == 1 and (folders[0] / "config.json").is_file():
        return folders[0], folders
    weights = sorted(local.glob("*.safetensors"))
    if len(weights) != 1 or not weights[0].with_suffix(".json").is_file():
        raise ValueError(f"{what}: {Artifact.MODEL_FILES}/ should hold one .safetensors file and its .json spec, or "
                         f"one save_pretrained folder; found {sorted(p.name for p in local.iterdir())}")
    return weights[0], [weights[0], weights[0].with_suffix(".json")]
