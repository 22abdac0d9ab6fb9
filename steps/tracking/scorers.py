"""A registered model loaded for batch scoring: its pyfunc `predict`, its MLmodel metadata, and its refusals of
bad input as BadInput, so callers need not import MLflow to tell a bad row from a broken model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from steps.tracking.models import load_pyfunc

_BAD_INPUT = "INVALID_PARAMETER_VALUE"  # the code MLflow's schema checks and the serving wrapper answer bad input with


class BadInput(ValueError):
    """The model refused its input (wrong shape, dtype, columns, a NaN...); the message is the model's."""


@dataclass(frozen=True)
class Scorer:
    name: str
    version: int
    metadata: dict
    model: Any  # mlflow.pyfunc.PyFuncModel

    def predict(self, batch):
        """The model's answers to `batch`; BadInput when it refuses the input, any other failure as it is."""
        try:
            return self.model.predict(batch)
        except MlflowException as err:
            if err.error_code == _BAD_INPUT:
                raise BadInput(err.message) from None
            raise


def load_scorer(name: str, version: int) -> Scorer:
    """Registered model `name` version `version` as MLflow serves it (pyfunc), with its MLmodel `metadata`."""
    model = load_pyfunc(f"models:/{name}/{version}")
    return Scorer(name, version, dict(model.metadata.metadata or {}), model)
