"""The registered model as MLflow serves it: raw inputs in (steps/serving/inputs.py), named answers out.

It runs the deployable ONNX file, whose graph scales and standardises the raw input itself, in ONNX
Runtime: the served model and the deployable are one computation. Logged as MLflow "models from
code" (serving_entry.py), so loading it unpickles nothing.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from .answers import OUTPUTS, answer
from .contract import Contract
from .inputs import InputError, to_batch

ONNX_ARTIFACT, CONTRACT_ARTIFACT = "onnx_model", "contract"
ONNX_INPUT, ONNX_OUTPUT = "x", "logits"


class RawInputClassifier(mlflow.pyfunc.PythonModel):
    """A pyfunc model: `predict(raw batch, params={"output": "labels" | "logits"}) -> DataFrame`."""

    # The signature is given when logging (steps/tracking/models.py): MLflow's type-hint inference and its
    # warning about the missing hints do not apply (the switch MLflow's own ChatModel uses).
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        import onnxruntime as ort

        self.contract = Contract.read(context.artifacts[CONTRACT_ARTIFACT])
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(context.artifacts[ONNX_ARTIFACT], options,
                                            providers=["CPUExecutionProvider"])

    def predict(self, context, model_input, params=None):
        output = (params or {}).get("output", "labels")
        if output not in OUTPUTS:
            raise MlflowException.invalid_parameter_value(f"params.output {output!r}: expected one of {list(OUTPUTS)}")
        try:
            batch = to_batch(model_input, self.contract)
        except InputError as err:
            raise MlflowException.invalid_parameter_value(f"{err} (the model takes {self.contract.describe()})")
        logits = self.session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(batch)})[0]
        return answer(logits, self.contract.classes, output)
