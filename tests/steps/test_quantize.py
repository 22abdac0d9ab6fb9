import pytest

from steps import quantize
from steps.compression import onnx_export
from steps.core.layout import int8_path, onnx_path
from steps.core.names import ModelRole


def test_quantize_writes_int8_variants_and_names_the_deployable(project_after, stage_params):
    root = project_after("export")
    result = quantize.run(stage_params, root)
    assert list(result.variants) == ["fp32", "dynamic", "static"]
    assert result.deployable == onnx_path(ModelRole.STUDENT)  # deploy: fp32 by default
    for method in ("dynamic", "static"):
        assert (root / int8_path(ModelRole.STUDENT, method)).is_file()
        assert result.variants[method]["file_bytes"] < result.variants["fp32"]["file_bytes"]
        # int8 files take raw pixels too and carry the fp32 file's contract
        assert onnx_export.metadata(root / int8_path(ModelRole.STUDENT, method)) == \
            onnx_export.metadata(root / onnx_path(ModelRole.STUDENT))
        assert result.variants[method]["accuracy"] > 0.5  # scored on raw pixels: normalised ones would be garbage


def test_quantize_stops_when_the_deployable_int8_loses_too_much():
    variants = {"fp32": {"file": "models/student.onnx", "accuracy": 0.90, "accuracy_drop": 0.0},
                "static": {"file": "models/int8/student.static.onnx", "accuracy": 0.88, "accuracy_drop": 0.02}}
    quantize.check_tolerance(variants, "static", 0.02, 100)
    quantize.check_tolerance(variants, "fp32", 0.0, 100)
    with pytest.raises(ValueError, match=r"student\.static\.onnx: the deployable static int8 model loses 0\.0200 "
                                         r"accuracy vs fp32 \(0\.8800 vs 0\.9000 on 100 test images\); "
                                         r"quantize\.max_accuracy_drop is 0\.01"):
        quantize.check_tolerance(variants, "static", 0.01, 100)
