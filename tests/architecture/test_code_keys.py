"""A stage's code key is what it runs for these params: its imports (AST, registry entries not counted) and the
modules its params choose by name. Checked on the real tree and params, and on small synthetic ones; that the key
holds every module a stage really imports is checked by running them (tests/flows/test_code_keys_flow.py)."""


import subprocess
import sys
from typing import Literal

import pytest
from pydantic import Field

from steps import config
from steps.compression import choices
from steps.compression.choices import Registry
from steps.config.base import Section, choice
from steps.config.selected import selected_modules
from steps.core import imports
from steps.core.dag import STAGES, stage
from tests.helpers import REPO, variant

READERS = {"idx", "image_folder", "arrays", "table", "text"}
CUSTOM = {"name": "custom", "channels": [], "hidden": [], "factory": "mymodels:build", "kwargs": {}}


@pytest.fixture(scope="module")
def params():
    return config.load(REPO)


def readers_in(code: tuple[str, ...]) -> set[str]:
    return {name for name in READERS if f"steps/sources/{name}.py" in code}


def test_only_the_data_stage_runs_a_reader_and_only_the_one_params_name(params):
    assert readers_in(stage("data").code(params)) == {"idx"}
    table = variant(params, data={"source": "table", "label_column": "label", "class_names": None})
    assert readers_in(stage("data").code(table)) == {"table"}
    for st in STAGES[1:]:
        assert readers_in(st.code(params)) == set(), st.name
        assert "steps/sources/base.py" in st.code(params)  # DataError: the light contract module, not a reader


def test_text_data_add_the_text_reader_and_its_tokenizer_to_the_data_stage_alone(params):
    """tokens.py (and the tokenizers library behind it) is code of a text project's data stage only: the default
    IDX project's data stage holds neither it nor text.py."""
    raw = params.model_dump(mode="json")
    raw["data"] = {"source": "text", "path": "mail.csv", "val_size": 10, "text_column": "body",
                   "label_column": "kind", "max_length": 32, "tokenizer": {"train": {"kind": "wordpiece",
                                                                                      "vocab_size": 500}}}
    text = config.validate(raw, stage="data")  # the data stage alone: text goes with an hf teacher otherwise
    assert readers_in(stage("data").code(text)) == {"text"}
    assert "steps/sources/tokens.py" in stage("data").code(text)
    assert "steps/sources/tokens.py" not in stage("data").code(params)


def test_every_stage_runs_its_module_and_what_it_imports(params):
    for st in STAGES:
        code = st.code(params)
        assert imports.relative_file(st.module) in code
        main = imports.module_file(f"{st.module}.__main__")
        assert main is None or main.relative_to(REPO).as_posix() in code


def test_a_model_family_is_code_of_the_stages_that_load_that_model(params):
    """The custom family's model.py is none of these stages' imports: only teacher.arch (and distill.student) choosing it adds it."""
    custom = "steps/compression/families/custom/model.py"
    teacher_custom = variant(params, teacher={"arch": CUSTOM})
    student_custom = variant(params, distill={"student": CUSTOM})
    for name in ("teacher", "export", "evaluate", "promote"):
        assert custom not in stage(name).code(params), name
        assert custom in stage(name).code(teacher_custom), name
    assert custom not in stage("teacher").code(student_custom)
    assert custom in stage("distill").code(student_custom)


def test_knobs_the_params_switch_off_choose_nothing(params):
    """The budget search replaces prune.method, prune.schedule and the student (Params.unused); prune.transformer
    is off unless prune.method is transformer or an hf teacher's budget search ranks by it (Params.unused)."""
    student_custom = variant(params, distill={"student": CUSTOM})
    budget = variant(student_custom, target={"size_kb": 100.0})
    assert "steps/compression/families/custom/model.py" in stage("distill").code(student_custom)
    assert "steps/compression/families/custom/model.py" not in stage("distill").code(budget)
    assert "steps.compression.transformer_pruning" not in selected_modules(params, ["prune.transformer.importance"])
    assert "steps.compression.schedules" in selected_modules(params, ["prune"])
    assert "steps.compression.schedules" not in selected_modules(variant(params, target={"size_kb": 100.0}),
                                                                 ["prune"])


def test_a_stage_declares_paths_that_exist(params):
    for st in STAGES:
        selected_modules(params, st.plugins)  # raises on a path naming no field
    with pytest.raises(ValueError, match=r"no 'teacher.arc'"):
        selected_modules(params, ["teacher.arc"])


def test_computing_the_keys_imports_no_implementation():
    """The no-change `shrinkflow run` computes every key: registry names and params only, no reader, no torch."""
    script = ("import sys; from steps import config; from steps.core.dag import STAGES; p = config.load(sys.argv[1]); "
              "[st.code(p) for st in STAGES]; print(' '.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert not loaded & {"torch", "pandas", "PIL", "transformers"}
    implementations = {m for m in loaded if m.startswith(("steps.compression.", "steps.sources."))
                       and m != "steps.compression.choices" and not m.endswith(".config")
                       and m not in ("steps.compression.families", *(f"steps.compression.families.{n}" for n in
                                                                     choices.FAMILIES))}
    assert implementations == set()  # the families' torch-free configs and packages only


# Synthetic registries and sections: every place a choice can sit.
SHAPES = Registry("shape", {"round": "steps.shapes.round:make", "square": "steps.shapes.square:make"})
COLOURS = Registry("colour", {"red": "steps.colours.red:paint", "blue": "steps.colours.blue:paint"})


class Round(Section):
    kind: choice(SHAPES, "round")
    colour: choice(COLOURS) = "red"


class Square(Section):
    kind: choice(SHAPES, "square")


class Drawing(Section):
    main: Round | Square = Field(discriminator="kind")
    extras: list[Round | Square] = []
    palette: dict[str, choice(COLOURS)] = {}
    accent: choice(COLOURS) | None = None
    mode: Literal["fast", "slow"] = "fast"
    off: choice(COLOURS) = "blue"

    def unused(self) -> tuple[str, ...]:
        return ("off",) if self.mode == "fast" else ()


class Root(Section):
    drawing: Drawing
    spare: Drawing | None = None


def test_choices_are_found_through_unions_lists_dicts_and_optionals():
    drawing = Drawing(main={"kind": "square"}, extras=[{"kind": "round", "colour": "blue"}], palette={"x": "red"})
    root = Root(drawing=drawing)
    assert selected_modules(root, ["drawing"]) == {"steps.shapes.square", "steps.shapes.round", "steps.colours.blue",
                                                   "steps.colours.red"}
    assert selected_modules(root, ["drawing.main"]) == {"steps.shapes.square"}
    assert selected_modules(root, ["drawing.extras"]) == {"steps.shapes.round", "steps.colours.blue"}
    assert selected_modules(root, ["spare", "spare.main"]) == set()  # unset: chooses nothing
    accent = Root(drawing={"main": {"kind": "square"}, "accent": "blue"})
    assert selected_modules(accent, ["drawing.accent"]) == {"steps.colours.blue"}


def test_a_field_a_section_switches_off_chooses_nothing():
    fast = Root(drawing={"main": {"kind": "square"}})
    slow = Root(drawing={"main": {"kind": "square"}, "mode": "slow"})
    assert selected_modules(fast, ["drawing.off"]) == set()
    assert selected_modules(fast, ["drawing"]) == {"steps.shapes.square"}
    assert selected_modules(slow, ["drawing.off"]) == {"steps.colours.blue"}


@pytest.fixture
def fake_steps(tmp_path, monkeypatch):
    """`fake_steps({path under steps/: source})`: a `steps` package of these files is what `imports` reads
    (its cache cleared before and after)."""
    def write(tree: dict[str, str]) -> None:
        for rel, text in tree.items():
            (tmp_path / "steps" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "steps" / rel).write_text(text)
        monkeypatch.setattr(imports, "SOURCE_ROOT", tmp_path)
        imports.direct_imports.cache_clear()

    yield write
    imports.direct_imports.cache_clear()


def test_a_registry_entry_is_not_an_import(fake_steps):
    """The library module that reads a registry does not depend on every entry; a plain import still counts."""
    fake_steps({"__init__.py": "", "compression/__init__.py": "",
                "compression/choices.py": 'R = Registry("x", {"a": "steps.compression.impl:f"})\n',
                "compression/user.py": "from steps.compression import choices\nimport steps.compression.helper\n",
                "compression/impl.py": "", "compression/helper.py": ""})
    assert imports.closure("steps.compression.user") == (
        "steps", "steps.compression", "steps.compression.choices", "steps.compression.helper",
        "steps.compression.user")


def test_a_package_counts_as_all_its_modules_only_when_it_serves_names_lazily(fake_steps):
    fake_steps({"__init__.py": "", "a.py": "from steps import eager, lazy\n", "eager/__init__.py": "",
                "eager/reader.py": "", "lazy/__init__.py": "def __getattr__(name):\n    pass\n", "lazy/store.py": ""})
    assert imports.closure("steps.a") == ("steps", "steps.a", "steps.eager", "steps.lazy", "steps.lazy.store")


def test_a_new_import_becomes_a_dependency(fake_steps):
    """The derivation follows the code: a module that starts importing another gets it as a dependency."""
    fake_steps({"__init__.py": "", "a.py": "def f():\n    from steps import b\n", "b.py": "import steps.c\n",
                "c.py": ""})
    assert imports.closure("steps.a") == ("steps", "steps.a", "steps.b", "steps.c")


def test_relative_imports_count_like_absolute_ones(fake_steps):
    """steps/serving/ imports itself relatively (it is shipped inside registered models as `serving`)."""
    fake_steps({"__init__.py": "", "serving/__init__.py": "from .entry import x\n",
                "serving/entry.py": "from .inputs import y\nfrom . import answers\n", "serving/inputs.py": "",
                "serving/answers.py": ""})
    assert imports.closure("steps.serving.entry") == (
        "steps", "steps.serving", "steps.serving.answers", "steps.serving.entry", "steps.serving.inputs")
