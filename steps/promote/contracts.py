"""One registered model, one contract: a candidate may join a model's line only when it takes the same input and
names the same classes as the champion; checked before anything is registered.
"""

from __future__ import annotations

from steps import tracking
from steps.core.names import Alias
from steps.serving.contract import Contract


class ContractMismatch(ValueError):
    """The candidate's input contract differs from the champion's under the same registered model name."""


def check_same_task(model_name: str, contract: Contract, replace: bool) -> bool:
    """Whether the champion (if any) is this candidate's task, so the two can be compared on today's test split.

    Another task is refused (ContractMismatch naming both contracts and the ways out), unless `replace`
    (promote.replace_contract) starts a new line on purpose: then False, and the candidate is judged as if
    there were no champion (another task's champion cannot be scored on this data)."""
    champion = tracking.alias_version(model_name, Alias.CHAMPION)
    if champion is None:
        return True
    version = int(champion.version)
    theirs = tracking.contract_of(model_name, version)
    differences = contract.differences(theirs) if theirs is not None else legacy_differences(model_name, version,
                                                                                             contract)
    if differences and not replace:
        raise ContractMismatch(
            f"{model_name}: this candidate is not the same task as the champion v{version}, so it cannot join the "
            f"model's line ({'; '.join(differences)}; this candidate's first). This run's model takes "
            f"{contract.describe()}. Register it under another name (promote.model_name), or start a new line on "
            "purpose with -S promote.replace_contract=true. Nothing was registered.")
    return not differences


def legacy_differences(model_name: str, version: int, contract: Contract) -> list[str]:
    """A champion registered before the contract: its signature's input shape against this candidate's."""
    shape, ours = tracking.signature_input_shape(model_name, version), list(contract.input_shape)
    return [] if shape is None or shape == ours else [f"input_shape: {ours} vs {shape}"]
