import importlib.util

from tests.helpers import PROJECT_FILES, REPO


def test_benchmark_projects_copy_what_test_projects_copy():
    """benchmarks/common.py keeps its own copy of the project list (benchmarks never import tests): the same files."""
    spec = importlib.util.spec_from_file_location("benchmarks_common", REPO / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    assert common.PROJECT_FILES == PROJECT_FILES
