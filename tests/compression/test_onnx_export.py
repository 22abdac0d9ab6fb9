"""ONNX export: every architecture family, dynamic batch, checker, parity, and clear failures."""

import numpy as np
import pytest
import torch
from torch import nn

from steps.compression import onnx_export
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from steps.compression.structured import prune_channels

X = torch.randn(7, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3, 4, 5, 6])


def tiny(name: str, structured: bool = False) -> nn.Module:
    specs = {"mlp": ModelSpec("mlp", hidden=[16, 12], batch_norm=False),
             "cnn": ModelSpec("cnn", channels=[8, 16], hidden=[16]),
             "resnet": ModelSpec("resnet", channels=[8, 16], hidden=[16])}
    torch.manual_seed(0)
    model = build(specs[name]).eval()
    if structured:
        prune_channels(model, X[:1], 0.5, "l1")
    for m in model.modules():  # non-trivial BN statistics, so folding BN into the conv is really tested
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize(("name", "structured"), [("mlp", False), ("cnn", False), ("cnn", True), ("resnet", False),
                                                  ("resnet", True)])
def test_export_matches_pytorch_at_any_batch_size(tmp_path, one_thread, name, structured):
    model = tiny(name, structured)
    path = tmp_path / f"{name}.onnx"
    onnx_export.export(model, X, path)
    proto = onnx_export.check(path)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic, not frozen to 2
    sess = onnx_export.session(path, threads=1)
    for n in (1, 7):  # the export example had batch 2
        result = onnx_export.parity(model, sess, X[:n], Y[:n])
        assert result.images == n and result.argmax_mismatches == 0
        assert result.max_abs_diff < 1e-4
        onnx_export.verify_parity(result, atol=1e-4, where=path)
    if structured:  # the narrower layers are what got exported
        widths = [int(np.prod(i.dims[:1])) for i in proto.graph.initializer if len(i.dims) == 4]
        assert widths and max(widths) <= 8


def test_dynamo_exporter_also_works(tmp_path, one_thread):
    model = tiny("cnn", structured=True)
    path = tmp_path / "dynamo.onnx"
    onnx_export.export(model, X, path, opset=18, exporter="dynamo")
    onnx_export.check(path)
    result = onnx_export.parity(model, onnx_export.session(path, 1), X, Y)
    assert result.argmax_mismatches == 0 and result.max_abs_diff < 1e-4


def test_parity_failure_reports_the_numbers(tmp_path, one_thread):
    model = tiny("mlp")
    path = tmp_path / "m.onnx"
    onnx_export.export(model, X, path)
    with torch.no_grad():  # PyTorch now computes something else than the exported file
        model[-1].bias += torch.arange(10, dtype=torch.float32)
    result = onnx_export.parity(model, onnx_export.session(path, 1), X, Y)
    assert result.max_abs_diff > 1
    with pytest.raises(onnx_export.ExportError, match=r"m\.onnx: ONNX Runtime disagrees with PyTorch on 7 test "
                                                      r"images: max \|logit difference\| \d"):
        onnx_export.verify_parity(result, atol=1e-4, where=path)


def test_checker_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "cnn.onnx"
    onnx_export.export(tiny("cnn"), X, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(onnx_export.ExportError, match=r"cnn\.onnx: not a valid ONNX model"):
        onnx_export.check(path)


def test_checker_rejects_a_graph_that_references_nothing(tmp_path):
    import onnx

    path = tmp_path / "mlp.onnx"
    onnx_export.export(tiny("mlp"), X, path)
    proto = onnx.load(str(path))
    proto.graph.node[1].input[0] = "no_such_tensor"  # well-formed protobuf, broken graph
    onnx.save(proto, str(path))
    with pytest.raises(onnx_export.ExportError, match=r"mlp\.onnx: not a valid ONNX model: .*no_such_tensor"):
        onnx_export.check(path)


def test_checker_names_a_missing_file(tmp_path):
    with pytest.raises(onnx_export.ExportError, match=r"absent\.onnx: ONNX file missing"):
        onnx_export.check(tmp_path / "absent.onnx")


class Spectrum(nn.Module):
    """Magnitude of a real FFT: aten::fft_rfft has no ONNX opset 17 export."""

    def forward(self, x):
        return torch.fft.rfft(x, dim=-1).abs()


def test_an_op_onnx_lacks_fails_naming_the_layer(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Sequential(nn.Identity(), Spectrum()), nn.Flatten(),
                          nn.LazyLinear(10))
    model(X)  # materialise the lazy layer
    path = tmp_path / "fft.onnx"
    with pytest.raises(onnx_export.ExportError, match=r"layer '2\.1' fails: .*aten::fft_rfft.*not supported"):
        onnx_export.export(model, X, path)
    assert not path.exists() and not list(tmp_path.iterdir())  # no partial file left behind


def test_a_provider_onnx_runtime_cannot_start_is_refused_not_silently_the_cpu(tmp_path, one_thread):
    """ONNX Runtime answers a provider it lacks with a warning and runs on the CPU; a latency timed there must not
    be reported as the GPU's. This machine's onnxruntime has no CUDA provider, so asking for it must fail."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider (onnxruntime-gpu)")
    path = tmp_path / "mlp.onnx"
    onnx_export.export(tiny("mlp"), X, path)
    with pytest.raises(onnx_export.ProviderUnavailable, match=r"did not start CUDAExecutionProvider \(it runs "
                                                              r"CPUExecutionProvider\)"):
        onnx_export.session(path, threads=1, provider="CUDAExecutionProvider")
    assert onnx_export.session(path, threads=1).get_providers() == ["CPUExecutionProvider"]
