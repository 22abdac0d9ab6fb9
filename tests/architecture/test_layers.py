"""The layering ARCHITECTURE.md describes, held against the code's imports (read with ast, nothing imported).

Each rule names a package and what it may not import; a forbidden import anywhere in the package,
at module level or inside a function, fails with the file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from steps.core.dag import STAGE_NAMES
from tests.helpers import REPO

STAGE_MODULES = {f"steps.{name}" for name in STAGE_NAMES}


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in a file; `from a import b` yields a and a.b."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def python_files(package: str) -> list[Path]:
    base = REPO.joinpath(*package.split("."))
    return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]


def violations(package: str, forbidden, allowed=lambda name: False) -> list[str]:
    """A package's files against its rule, but for the files FILE_RULES holds to a rule of their own."""
    held = [p for p in python_files(package) if p.relative_to(REPO).as_posix() not in FILE_RULES]
    return file_violations(held, forbidden, allowed)


def file_violations(paths: list[Path], forbidden, allowed=lambda name: False) -> list[str]:
    out = []
    for path in paths:
        for line, name in imported_names(path):
            top = name.split(".")[0]
            if (top in forbidden or any(name == f or name.startswith(f"{f}.") for f in forbidden)) \
                    and not allowed(name):
                out.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    return sorted(set(out))


CONFIG_MAY_IMPORT = ("steps.config", "steps.compression.choices", "steps.core.layout", "steps.core.files",
                     "steps.core.names", "steps.sources")
FAMILY_CONFIG = re.compile(r"steps\.compression\.families\.\w+\.config\b")  # a family's torch-free config class
OUTSIDE_SYSTEMS = ("mlflow", "prefect", "prefect_dask", "dvc", "dask", "distributed")
RULES = {
    # the torch library: no outside system, nothing of shrinkflow but itself and core.files
    "steps.compression": (OUTSIDE_SYSTEMS + ("steps", "flows"),
                          lambda n: n.startswith("steps.compression") or n.startswith("steps.core.files")),
    # the schema reads registry names without torch; loading needs only paths, files and names
    "steps.config": (OUTSIDE_SYSTEMS + ("torch", "flows", "steps"),
                     lambda n: n in ("steps", "steps.compression") or n.startswith(CONFIG_MAY_IMPORT)
                     or FAMILY_CONFIG.match(n)),
    # readers of raw data: numpy, Pillow, pandas; nothing of shrinkflow but themselves and the Registry class
    # readers; images converted by the one conversion the served model uses too (steps.serving.pixels)
    "steps.sources": (OUTSIDE_SYSTEMS + ("torch", "flows", "steps"),
                      lambda n: n.startswith(("steps.sources", "steps.compression.choices", "steps.serving.pixels"))),
    # batch scoring: readers and writer of raw inputs, given the model's predict; no outside system, no torch
    "steps.scoring": (OUTSIDE_SYSTEMS + ("torch", "flows", "steps"),
                      lambda n: n.startswith(("steps.scoring", "steps.serving", "steps.sources", "steps.core.files"))),
    # the served model: shipped inside every registered model (its code/ folder), so it imports nothing of the
    # project but itself (relative imports; serving_entry.py names it absolutely when MLflow runs it while logging)
    # and no torch; MLflow only for the pyfunc class it is
    "steps.serving": (("prefect", "prefect_dask", "dvc", "dask", "distributed", "torch", "flows", "steps"),
                      lambda n: n.startswith("steps.serving")),
    "steps.core": (OUTSIDE_SYSTEMS + ("flows", "steps.tracking", "steps.storage", "steps.registry",
                                      *STAGE_MODULES), lambda n: False),
    "steps.tracking": (("prefect", "dvc", "flows", "steps.storage", "steps.registry", *STAGE_MODULES),
                       lambda n: False),
    "steps.storage": (("mlflow", "prefect", "flows", "steps.tracking", "steps.registry", *STAGE_MODULES),
                      lambda n: False),
    "steps.registry": (("mlflow", "prefect", "dvc", "flows", *STAGE_MODULES), lambda n: False),
    # what the stages share above the doors: no outside system directly, no stage, no registry rules
    "steps.stagekit": (OUTSIDE_SYSTEMS + ("flows", "steps.registry", *STAGE_MODULES), lambda n: False),
}

FILE_RULES = {
    # the served language model: torch by nature (a causal LM decodes token by token with a KV cache, which no ONNX
    # graph here does; imported inside load_folder, so importing the module costs no torch), and the generation loop
    # carried beside serving/ in its code/ folder; no other served module imports it
    "steps/serving/generator.py": (("prefect", "prefect_dask", "dvc", "dask", "distributed", "flows", "steps"),
                                   lambda n: n.startswith(("steps.serving", "steps.compression.generation"))),
    # that loop runs alone inside a registered model (importable there as `generation`): nothing of shrinkflow
    "steps/compression/generation.py": (OUTSIDE_SYSTEMS + ("steps", "flows"), lambda n: False),
}


@pytest.mark.parametrize("path", sorted(FILE_RULES))
def test_a_file_with_a_rule_of_its_own_imports_only_what_it_may(path):
    forbidden, allowed = FILE_RULES[path]
    assert file_violations([REPO / path], forbidden, allowed) == []


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_only_what_its_layer_may(package):
    forbidden, allowed = RULES[package]
    assert violations(package, forbidden, allowed) == []


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_stage_imports_no_other_stage_and_no_orchestrator(stage):
    others = tuple(m for m in STAGE_MODULES if m != f"steps.{stage}")
    assert violations(f"steps.{stage}", ("mlflow", "prefect", "dvc", "flows", *others)) == []


def test_only_the_doors_import_mlflow_and_dvc():
    """mlflow only under steps/tracking (and the served model, an MLflow pyfunc class shipped with every registered
    version), dvc only under steps/storage, prefect only under flows/."""
    everything = [p for p in (REPO / "steps").rglob("*.py")]
    leaks = []
    for path in everything:
        rel = path.relative_to(REPO).as_posix()
        for line, name in imported_names(path):
            top = name.split(".")[0]
            doors = {"mlflow": ("steps/tracking/", "steps/serving/"), "dvc": ("steps/storage/",)}.get(top)
            if (doors and not rel.startswith(doors)) or top in ("prefect", "prefect_dask"):
                leaks.append(f"{rel}:{line} imports {name}")
    assert sorted(set(leaks)) == []


def test_steps_is_a_regular_package():
    """A namespace package would be shadowed by any other `steps` package on sys.path."""
    for package in ("steps", "steps/core", "steps/config", "steps/tracking", "steps/storage", "steps/registry",
                    "steps/compression", "steps/sources", "steps/scoring", "steps/serving", "steps/stagekit", "flows",
                    "flows/cli"):
        assert (REPO / package / "__init__.py").is_file(), package


LAYER_PACKAGES = {"compression", "config", "core", "registry", "scoring", "serving", "sources", "stagekit", "storage",
                  "tracking"}


def test_top_of_steps_holds_only_the_stages():
    """A stage is a module, or a folder holding its private code (a `__main__` for `python -m`); the rest
    of steps/ is the layers below the stages."""
    modules = {p.stem for p in (REPO / "steps").glob("*.py")} - {"__init__"}
    folders = {p.name for p in (REPO / "steps").iterdir() if (p / "__init__.py").is_file()} - LAYER_PACKAGES
    assert modules | folders == set(STAGE_NAMES)
    assert not modules & folders
    assert all((REPO / "steps" / name / "__main__.py").is_file() for name in folders)
