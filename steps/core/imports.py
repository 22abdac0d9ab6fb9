"""Which source files a module runs: the closure of its `steps.*` imports, read from the code (AST).

A stage's code dependencies (dvc.yaml `deps`, the Prefect cache key) are derived from this, so they
cannot drift from what the stage really imports, and a change to one reader reruns only the
stages that import it. Imports inside functions count (they run too). Registry entries
("module:attribute" strings in steps/compression/choices.py) count as imports of the library
modules that resolve them; the config schema only reads their names, so they are not its imports.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "steps"
SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the `steps` package (the project root)."""
CHOICES = "steps.compression.choices"
LIBRARY = "steps.compression"


def module_file(module: str) -> Path | None:
    """`steps.core.names` -> <root>/steps/core/names.py (or the package's __init__.py); None if no such file."""
    base = SOURCE_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _registry_modules() -> set[str]:
    tree = ast.parse(module_file(CHOICES).read_text())
    return {node.value.split(":")[0] for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(f"{PACKAGE}.")
            and ":" in node.value}


@functools.cache
def direct_imports(module: str) -> frozenset[str]:
    """The `steps.*` modules `module` imports.

    `from a import b` imports the module a.b when there is one, else the package a; a package
    imported as a whole (`from steps import tracking`) counts as all its modules, since its names
    may be served by any of them (steps.tracking resolves them lazily); the __init__ of every
    enclosing package runs too.
    """
    path = module_file(module)
    if path is None:
        return frozenset()
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                targets.add(sub if module_file(sub) is not None else node.module)
    targets = {m for m in targets if m.split(".")[0] == PACKAGE and module_file(m) is not None}
    found = set(targets)
    for name in targets:
        if module_file(name).name == "__init__.py" and name != PACKAGE:
            found |= _package_modules(name)
    for name in list(found):
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts))}
    if CHOICES in found and module.startswith(LIBRARY):
        found |= _registry_modules()
    found.discard(module)
    return frozenset(found)


def _package_modules(package: str) -> set[str]:
    base = module_file(package).parent
    return {".".join((package, *p.relative_to(base).with_suffix("").parts)).removesuffix(".__init__")
            for p in base.rglob("*.py") if "__pycache__" not in p.parts}


def closure(module: str) -> tuple[str, ...]:
    """`module` and every `steps.*` module it imports, directly or not, sorted."""
    seen, todo = {module}, [module]
    while todo:
        for dep in direct_imports(todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return tuple(sorted(seen))


def source_files(module: str) -> tuple[str, ...]:
    """Project-relative paths of the files `closure(module)` runs."""
    return tuple(sorted(module_file(m).relative_to(SOURCE_ROOT).as_posix() for m in closure(module)))
