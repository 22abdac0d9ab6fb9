"""The registered model as MLflow serves it: raw inputs in (steps/serving/inputs.py), named answers out.

It runs the deployable ONNX file, whose graph scales and standardises the raw input itself, in ONNX
Runtime: the served model and the deployable are one computation. Texts are tokenised before the graph
(steps/serving/texts.py), by the tokenizer.json logged with the version, as the data stage tokenised
them. Logged as MLflow "models from code" (serving_entry.py), so loading it unpickles nothing.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from .answers import OUTPUTS, answer
from .contract import Contract
from .inputs import InputError, to_batch

ONNX_ARTIFACT, CONTRACT_ARTIFACT = "onnx_model", "contract"
TOKENIZER_ARTIFACT = "tokenizer"
"""Texts: the data's tokenizer.json, whose sha256 the contract records."""
HF_ARTIFACT = "hf_model"
"""Texts from an hf model: its save_pretrained folder (model and tokenizer), for stock `from_pretrained`; not
read by the served classifier; the served language model (generator.py) runs it."""
ONNX_INPUT, ONNX_OUTPUT = "x", "logits"


class RawInputClassifier(mlflow.pyfunc.PythonModel):
    """A pyfunc model: `predict(raw batch, params={"output": "labels" | "logits"}) -> DataFrame`."""

    # The signature is given when logging (steps/tracking/models.py): MLflow's type-hint inference and its
    # warning about the missing hints do not apply (the switch MLflow's own ChatModel uses).
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        import onnxruntime as ort

        self.contract = Contract.read(context.artifacts[CONTRACT_ARTIFACT])
        self.feeds = self.raw_feeds
        if self.contract.texts:
            from .texts import TextEncoder

            self.feeds = TextEncoder(context.artifacts[TOKENIZER_ARTIFACT], self.contract)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(context.artifacts[ONNX_ARTIFACT], options,
                                            providers=["CPUExecutionProvider"])

    def predict(self, context, model_input, params=None):
        output = (params or {}).get("output", "labels")
        if output not in OUTPUTS:
            raise MlflowException.invalid_parameter_value(f"params.output {output!r}: expected one of {list(OUTPUTS)}")
        try:
            feeds = self.feeds(model_input)
        except InputError as err:
            raise MlflowException.invalid_parameter_value(f"{err} (the model takes {self.contract.describe()})")
        logits = self.session.run([ONNX_OUTPUT], feeds)[0]
        return answer(logits, self.contract.classes, output)

    def raw_feeds(self, model_input) -> dict[str, np.ndarray]:
        """Images and tables: the raw batch as the graph's one input."""
        return {ONNX_INPUT: np.ascontiguousarray(to_batch(model_input, self.contract))}
