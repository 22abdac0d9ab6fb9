"""The input contract batch scoring reads from a registered model: its MLmodel metadata `shrinkflow_contract`,
the served model's own contract (steps/serving/contract.py)."""

from __future__ import annotations

from steps.serving.contract import METADATA_KEY, Contract, ContractError


class ContractMissing(ValueError):
    """The model carries no usable input contract; the message names the model and what is wrong."""


def from_metadata(metadata: dict | None, model: str) -> Contract:
    """The contract in a pyfunc model's `metadata.metadata`; ContractMissing naming `model` when absent or bad."""
    try:
        contract = Contract.from_metadata(metadata)
    except ContractError as err:
        raise ContractMissing(f"{model}: {err}") from None
    if contract is None:
        raise ContractMissing(f"{model} carries no {METADATA_KEY!r} in its MLmodel metadata (registered before "
                              "raw-input serving existed?): retrain and promote it, then score with the new version")
    return contract
