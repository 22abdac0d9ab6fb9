"""`shrinkflow sweep`: the command (Prefect is imported only after the environment is prepared)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows import runtime
from flows.cli.console import RootOption, console, fail
from flows.cli.signals import running_flow


def sweep(
    set_: Annotated[list[str], typer.Option("-S", "--set-param", help="a grid axis: -S prune.target_sparsity="
                                            "0.5,0.7,0.9 (one member per combination; params.yaml is not changed)")
                    ] = [],  # noqa: B006
    address: Annotated[str | None, typer.Option(help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                                                "(default: env DASK_SCHEDULER_ADDRESS, then sweep.scheduler_address, "
                                                "then a LocalCluster)")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="LocalCluster workers (default: sweep.workers, "
                                                "then CPU cores // threads)")] = None,
    root: RootOption = Path("."),
) -> None:
    """Train one compressed model per combination of a param grid on Dask; print the Pareto frontier."""
    from steps import config

    root = root.resolve()
    try:
        params = config.load(root)
        grid = config.parse_grid(set_) if set_ else params.sweep.grid
        if not grid:
            raise config.ConfigError("nothing to sweep: give -S KEY=V1,V2,... or set sweep.grid in params.yaml")
        members = config.sweep_members(params, grid, "-S" if set_ else f"{root / config.PARAMS_FILE}: sweep.grid")
    except config.ConfigError as err:
        fail(str(err))
    runtime.prepare(root)
    # Started before Prefect is imported, as by `shrinkflow run`; its Dask workers inherit PREFECT_API_URL and
    # report to it instead of each starting a server of its own.
    with runtime.temporary_api() as server:
        from flows.runlock import EX_TEMPFAIL, RunLocked
        from flows.sweep import run_sweep

        console.print(f"sweep: {len(members)} members over {', '.join(grid)}", highlight=False)
        with running_flow("sweep", server):
            try:
                result = run_sweep(root, grid, address, workers)
            except RunLocked as err:
                fail(str(err), code=EX_TEMPFAIL)
    import pandas as pd

    from steps.core import frontier

    data = pd.DataFrame(result["frontier"]).set_index("model")
    console.print(frontier.table(data, f"sweep {result['parent_run_id']}: Pareto frontier (test set)"))
    shared = ", ".join(f"{k}={v}" for k, v in result["shared"].items())
    console.print(f"shared stages: {shared}\nmembers: {len(result['members'])} in {result['workdir']}\n"
                  "nothing promoted (members are experiments): ship one with `shrinkflow run -S <its settings>`",
                  highlight=False)
