from steps import export
from steps.core.layout import metrics_path, onnx_path
from steps.core.names import ModelRole
from steps.core.results import ExportResult


def test_export_writes_checked_onnx_files_that_match_pytorch(project_after, stage_params):
    root = project_after("distill")
    result = export.run(stage_params, root)
    assert set(result.models) == {"teacher", "pruned", "student"}
    for role, m in result.models.items():
        assert (root / onnx_path(ModelRole(role))).is_file()
        assert m["argmax_mismatches"] == 0 and m["max_abs_diff"] <= stage_params.export.parity_atol
        assert m["images"] == 200  # the whole (synthetic) test split
    assert ExportResult.read(root / metrics_path("export")) == result
