"""Which source files a module runs: the closure of its `steps.*` imports, read from the code (AST).

The static half of a stage's code key (steps/core/dag.py adds the modules its params select), so
it cannot drift from what the stage really imports. Imports inside functions count (they run too).
A registry entry ("module:attribute" in a `choices.Registry`) is not an import: the module runs only
when params name that entry, and the key adds it then.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "steps"
SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the `steps` package (the project root)."""


def module_file(module: str) -> Path | None:
    """`steps.core.names` -> <root>/steps/core/names.py (or the package's __init__.py); None if no such file."""
    base = SOURCE_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def relative_file(module: str) -> str:
    """`steps.core.names` -> "steps/core/names.py", relative to the project root."""
    return module_file(module).relative_to(SOURCE_ROOT).as_posix()


@functools.cache
def direct_imports(module: str) -> frozenset[str]:
    """The `steps.*` modules `module` imports.

    `from a import b` imports the module a.b when there is one, else the package a; the __init__ of
    every enclosing package runs too. A package that serves its names lazily (a module-level
    `__getattr__`, as steps.tracking does) may run any of its modules, so importing it counts as all.
    """
    path = module_file(module)
    if path is None:
        return frozenset()
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.level or node.module):
            base = _absolute(module, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if module_file(sub) is not None else base)
    found = {m for m in targets if m.split(".")[0] == PACKAGE and module_file(m) is not None}
    for name in list(found):
        if _is_lazy_package(name):
            found |= _package_modules(name)
    for name in list(found):
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts))}
    found.discard(module)
    return frozenset(found)


def _absolute(module: str, path, node: ast.ImportFrom) -> str:
    """The module a `from ... import` names: `from .answers import x` in steps.serving.inputs is
    steps.serving.answers (steps/serving/ imports itself relatively: it is shipped inside registered models)."""
    if node.level == 0:
        return node.module
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_lazy_package(module: str) -> bool:
    path = module_file(module)
    if path.name != "__init__.py":
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
               for node in ast.parse(path.read_text()).body)


def _package_modules(package: str) -> set[str]:
    base = module_file(package).parent
    return {".".join((package, *p.relative_to(base).with_suffix("").parts)).removesuffix(".__init__")
            for p in base.rglob("*.py") if "__pycache__" not in p.parts}


def closure(*modules: str) -> tuple[str, ...]:
    """`modules` and every `steps.*` module they import, directly or not, sorted."""
    seen, todo = set(modules), list(modules)
    while todo:
        for dep in direct_imports(todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return tuple(sorted(seen))
