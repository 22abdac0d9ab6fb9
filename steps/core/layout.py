"""Where every file of a project lives, relative to its root: one place for the paths stages share."""

from __future__ import annotations

import json
from pathlib import Path

from steps.core.names import ModelRole

PARAMS_FILE = "params.yaml"
STATE_DIR = ".shrinkflow"
"""Per-checkout state that is not an output: the Prefect home, sweep members, the run lock."""
DATA_DIR = "data/processed"
MANIFEST = f"{DATA_DIR}/manifest.json"
MODELS_DIR = "models"
METRICS_DIR = "metrics"
PLOTS_DIR = "plots"
REPORT = f"{METRICS_DIR}/report.json"
PROMOTION = f"{METRICS_DIR}/promotion.json"
INT8_DIR = f"{MODELS_DIR}/int8"
"""The quantize stage's output folder: one file per int8 method (empty when quantization is off)."""
FP32 = "fp32"
"""The name of the student's unquantized ONNX file among its deployable variants."""


def model_path(role: ModelRole) -> str:
    """Weights of one model; its architecture spec sits beside it (.json)."""
    return f"{MODELS_DIR}/{role}.safetensors"


def spec_path(role: ModelRole) -> str:
    return f"{MODELS_DIR}/{role}.json"


def model_dir(role: ModelRole) -> str:
    """The checkpoint of a family that saves a folder (hf: a save_pretrained folder stock `from_pretrained` reloads)."""
    return f"{MODELS_DIR}/{role}"


def model_files(role: ModelRole, directory: bool = False) -> tuple[str, ...]:
    """A model's checkpoint: its weights and the spec beside them, or its folder (`directory`: the family's
    config says `saves_directory`)."""
    return (model_dir(role),) if directory else (model_path(role), spec_path(role))


FOLDER_WEIGHTS = "model.safetensors"
"""The weights inside a checkpoint folder (save_pretrained's name)."""


def weights_file(checkpoint: Path) -> Path:
    """The file whose sha256 stands for a checkpoint: itself (a .safetensors file), or the weights inside a
    checkpoint folder (hf)."""
    return checkpoint / FOLDER_WEIGHTS if checkpoint.is_dir() else checkpoint


def model_weights(root: Path, role: ModelRole) -> Path:
    """The weights of `role` whose sha256 a registered version's model tag records, in whichever form its family
    saved them (load_model reads the folder when there is one)."""
    folder = root / model_dir(role)
    return weights_file(folder) if folder.is_dir() else root / model_path(role)


def onnx_path(role: ModelRole) -> str:
    """The model exported to ONNX (fp32, dynamic batch axis)."""
    return f"{MODELS_DIR}/{role}.onnx"


def int8_path(role: ModelRole, method: str) -> str:
    return f"{INT8_DIR}/{role}.{method}.onnx"


def metrics_path(stage: str) -> str:
    return f"{METRICS_DIR}/{stage}.json"


def variant_path(method: str) -> str:
    """The student's ONNX file for `method` ("fp32" or an int8 method)."""
    return onnx_path(ModelRole.STUDENT) if method == FP32 else int8_path(ModelRole.STUDENT, method)


def deployable_files(root: Path) -> tuple[list[Path], Path]:
    """The ONNX files registered with the student, and which one is deployable (metrics/quantize.json).

    Always the fp32 file; the int8 one as well when params chose it.
    """
    result = json.loads((root / metrics_path("quantize")).read_text())
    fp32, deployable = root / variant_path(FP32), root / result["deployable"]
    return ([fp32] if deployable == fp32 else [fp32, deployable]), deployable
