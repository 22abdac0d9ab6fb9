"""A folder written atomically (an hf checkpoint): the whole new folder or the old one, never a mix of the two."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.files import OutputWriteError, atomic_write_dir


def fill(*names: str):
    def write(tmp: Path) -> None:
        for name in names:
            (tmp / name).write_text(name)

    return write


def test_a_folder_is_replaced_whole_and_nothing_temporary_stays(tmp_path: Path):
    target = tmp_path / "models" / "teacher"
    atomic_write_dir(target, fill("config.json", "stale.bin"))
    atomic_write_dir(target, fill("config.json", "model.safetensors"))
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in target.parent.iterdir()] == ["teacher"]


def test_a_failed_write_keeps_the_old_folder_and_names_the_target(tmp_path: Path):
    target = tmp_path / "teacher"
    atomic_write_dir(target, fill("config.json"))

    def half_then_full_disk(tmp: Path) -> None:
        (tmp / "model.safetensors").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputWriteError, match=r"cannot write .*teacher: No space left on device"):
        atomic_write_dir(target, half_then_full_disk)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]
    assert [p.name for p in target.iterdir()] == ["config.json"]
