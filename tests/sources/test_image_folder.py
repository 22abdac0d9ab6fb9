"""The image-folder source: both layouts, gray/RGB by the data, resizing, and bad folders refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steps import sources
from steps.sources.base import DataError, SourceOptions


def _image(path: Path, mode: str = "RGB", size: tuple[int, int] = (8, 8), value: int = 0) -> Path:
    """A solid image whose value encodes something the test can check after reading."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color = (value, 255 - value, 7) if mode in ("RGB", "RGBA") else value
    if mode == "RGBA":
        color = (*color, 128)
    Image.new(mode, size, color).save(path)
    return path


def _flat(root: Path, classes=("cat", "dog", "emu"), per_class: int = 5, mode: str = "RGB", size=(8, 8)) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            _image(root / name / f"{i:02d}.png", mode, size, value=10 * c + i)
    return root


def test_flat_layout_rgb_png_and_jpeg_with_a_stratified_split(tmp_path: Path):
    root = _flat(tmp_path / "pets", per_class=5)
    _image(root / "dog" / "extra.JPEG", "RGB", value=200)
    data = sources.read("image_folder", root, SourceOptions(test_fraction=0.2, seed=3))
    assert data.kind == "image" and data.name == "pets" and data.class_names == ("cat", "dog", "emu")
    assert data.train[0].dtype == np.uint8 and data.train[0].shape[1:] == (3, 8, 8)
    assert len(data.train[1]) + len(data.test[1]) == 16
    assert np.bincount(data.test[1]).tolist() == [1, 1, 1]
    assert np.bincount(data.train[1]).tolist() == [4, 5, 4]
    assert len(data.raw_files) == 16 and list(data.raw_files) == sorted(data.raw_files)
    # PNG is lossless: every PNG of class c is solid (10c + i, 255 - 10c - i, 7); the JPEG is about 200.
    images = np.concatenate([data.train[0], data.test[0]])
    labels = np.concatenate([data.train[1], data.test[1]])
    is_jpeg = np.abs(images[:, 0, 0, 0].astype(int) - 200) <= 3
    assert is_jpeg.sum() == 1 and labels[is_jpeg].tolist() == [1]
    for image, label in zip(images[~is_jpeg], labels[~is_jpeg], strict=True):
        assert 10 * label <= image[0, 0, 0] < 10 * label + 5
        assert image[1, 0, 0] == 255 - image[0, 0, 0] and image[2, 0, 0] == 7


def test_split_is_deterministic_under_a_seed_and_changes_with_it(tmp_path: Path):
    root = _flat(tmp_path / "r", per_class=10, mode="L")
    first = sources.read("image_folder", root, SourceOptions(seed=1))
    again = sources.read("image_folder", root, SourceOptions(seed=1))
    other = sources.read("image_folder", root, SourceOptions(seed=2))
    np.testing.assert_array_equal(first.test[0], again.test[0])
    np.testing.assert_array_equal(first.test[1], again.test[1])
    assert not np.array_equal(first.test[0], other.test[0])


def test_all_grayscale_gives_one_channel_and_any_colour_gives_three(tmp_path: Path):
    gray = _flat(tmp_path / "gray", mode="L")
    assert sources.read("image_folder", gray).train[0].shape[1] == 1
    mixed = _flat(tmp_path / "mixed", mode="L")
    _image(mixed / "cat" / "colour.png", "RGBA", value=50)
    data = sources.read("image_folder", mixed)
    assert data.train[0].shape[1] == 3
    everything = np.concatenate([data.train[0], data.test[0]])
    assert any((img[0, 0, 0], img[1, 0, 0], img[2, 0, 0]) == (50, 205, 7) for img in everything)  # alpha dropped
    assert sources.read("image_folder", mixed, SourceOptions(channels="grayscale")).train[0].shape[1] == 1


def test_palette_images_count_as_colour(tmp_path: Path):
    root = _flat(tmp_path / "p", mode="L")
    _image(root / "emu" / "pal.png", "P", value=3)
    assert sources.read("image_folder", root).train[0].shape[1] == 3


def test_train_test_layout_keeps_the_given_split_and_resizes_12_classes(tmp_path: Path):
    root = tmp_path / "letters"
    names = [f"c{i:02d}" for i in range(12)]
    _flat(root / "train", names, per_class=2, mode="L", size=(20, 20))
    _flat(root / "test", names, per_class=1, mode="L", size=(20, 20))
    data = sources.read("image_folder", root, SourceOptions(image_size=16))
    assert data.class_names == tuple(names)
    assert data.train[0].shape == (24, 1, 16, 16) and data.test[0].shape == (12, 1, 16, 16)
    assert data.test[1].tolist() == list(range(12))
    # A solid image stays solid through the bilinear resize.
    assert data.test[0][5].min() == data.test[0][5].max() == 50


def test_hidden_files_and_other_extensions_are_ignored(tmp_path: Path):
    root = _flat(tmp_path / "r", per_class=3)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"junk")
    (root / ".git").mkdir()
    (root / "README.md").write_text("about")
    data = sources.read("image_folder", root)
    assert len(data.raw_files) == 9 and all(p.suffix == ".png" and not p.name.startswith(".") for p in data.raw_files)


def test_refuses_an_unreadable_image_by_name(tmp_path: Path):
    root = _flat(tmp_path / "r", per_class=3)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError, match=r"dog/broken.jpg: not a readable image"):
        sources.read("image_folder", root)


def test_refuses_a_truncated_image_by_name(tmp_path: Path):
    root = _flat(tmp_path / "r", per_class=3, size=(20, 20))
    path = _image(root / "dog" / "cut.png", "RGB", size=(20, 20))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"dog/cut.png: not a readable image"):
        sources.read("image_folder", root)


def test_refuses_mixed_sizes_without_image_size_naming_two_files(tmp_path: Path):
    root = _flat(tmp_path / "r", per_class=3)
    _image(root / "emu" / "big.png", size=(20, 12))
    with pytest.raises(DataError, match=r"cat/00.png is 8x8, .*emu/big.png is 20x12 .*data.image_size"):
        sources.read("image_folder", root)
    assert sources.read("image_folder", root, SourceOptions(image_size=8)).train[0].shape[2:] == (8, 8)


def test_refuses_an_empty_class_folder_by_name(tmp_path: Path):
    root = _flat(tmp_path / "r", per_class=3)
    (root / "fox").mkdir()
    (root / "fox" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"r/fox: class folder has no"):
        sources.read("image_folder", root)


def test_refuses_different_class_sets_in_train_and_test(tmp_path: Path):
    root = tmp_path / "r"
    _flat(root / "train", ("cat", "dog", "emu"), per_class=2)
    _flat(root / "test", ("cat", "dog", "owl"), per_class=1)
    with pytest.raises(DataError, match=r"only in train/ \['emu'\], only in test/ \['owl'\]"):
        sources.read("image_folder", root)


def test_refuses_half_a_split_layout_and_stray_images(tmp_path: Path):
    root = _flat(tmp_path / "r" / "train", per_class=2).parent
    with pytest.raises(DataError, match="has train/ but no test/"):
        sources.read("image_folder", root)
    flat = _flat(tmp_path / "flat", per_class=2)
    _image(flat / "loose.png")
    with pytest.raises(DataError, match=r"loose.png: images must be inside a class folder"):
        sources.read("image_folder", flat)


def test_refuses_a_class_too_small_for_the_split_by_name(tmp_path: Path):
    root = _flat(tmp_path / "r", per_class=4)
    _image(root / "yak" / "only.png")
    with pytest.raises(DataError, match=r"class 'yak' has 1 row\(s\); a stratified split of 20% needs at least 2"):
        sources.read("image_folder", root)


def test_refuses_16_bit_images_and_options_it_does_not_use(tmp_path: Path):
    root = _flat(tmp_path / "r", mode="L", per_class=2)
    _image(root / "cat" / "deep.png", "I;16")
    with pytest.raises(DataError, match=r"deep.png: unsupported image mode 'I;16'"):
        sources.read("image_folder", root)
    with pytest.raises(ValueError, match="does not use class_names"):
        sources.read("image_folder", root, SourceOptions(class_names=("a", "b", "c")))
