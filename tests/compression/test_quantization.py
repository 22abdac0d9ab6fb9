"""int8 with ONNX Runtime: accuracy within tolerance of fp32, smaller files, seeded calibration, the ops that cost."""

import numpy as np
import pytest
import torch

from steps.compression import measure, onnx_export, quantization
from steps.compression.families import build
from steps.compression.families.spec import ModelSpec
from tests.helpers import synthetic_images

TOLERANCE = 0.02
"""int8 may lose at most 2 accuracy points against fp32 on the 300 held-out images (measured: 0 to 0.3 pt)."""


def images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = synthetic_images(n, seed)
    return (x[:, None].astype(np.float32) / 255.0), y.astype(np.int64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small CNN trained on the synthetic classes, exported to ONNX; (fp32 path, train x, test x, test y)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops gain nothing from 2 threads and lose much on a busy machine
    train_x, train_y = images(600, seed=1)
    test_x, test_y = images(300, seed=2)
    model = build(ModelSpec("cnn", channels=[4, 8], hidden=[64]))  # weights, not graph overhead, dominate the file
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    for _ in range(2):
        for idx in torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("quant") / "fp32.onnx"
    onnx_export.export(model.eval(), x[:2], path)
    return path, train_x, test_x, test_y


def accuracy(path, x, y) -> float:
    return float((onnx_export.predict(onnx_export.session(path, 1), x).argmax(1) == y).mean())


@pytest.mark.parametrize("method", quantization.METHODS)
def test_int8_keeps_accuracy_and_shrinks_the_file(trained, tmp_path, method):
    fp32, train_x, test_x, test_y = trained
    out = tmp_path / f"{method}.onnx"
    calibration = quantization.calibration_slice(train_x, 128, seed=0) if method == "static" else None
    quantization.quantize(fp32, out, method, calibration)
    proto = onnx_export.check(out)
    ops = {n.op_type for n in proto.graph.node}
    assert ops & ({"ConvInteger", "DynamicQuantizeLinear"} if method == "dynamic" else {"QuantizeLinear"})
    base = accuracy(fp32, test_x, test_y)
    assert base > 0.9  # the model really learned: a tolerance on a chance-level model would prove nothing
    assert base - accuracy(out, test_x, test_y) <= TOLERANCE
    assert measure.file_size(out) < 0.5 * measure.file_size(fp32)


def test_calibration_slice_is_seeded():
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    first, again = quantization.calibration_slice(x, 10, seed=3), quantization.calibration_slice(x, 10, seed=3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, quantization.calibration_slice(x, 10, seed=4))
    assert len(np.unique(first)) == 10
    with pytest.raises(ValueError, match="needs 101 images but the training split has only 100"):
        quantization.calibration_slice(x, 101, seed=0)


def test_static_needs_calibration_and_methods_are_checked(trained, tmp_path):
    fp32 = trained[0]
    with pytest.raises(ValueError, match="static quantization needs calibration images"):
        quantization.quantize(fp32, tmp_path / "s.onnx", "static")
    with pytest.raises(ValueError, match="unknown quantization method 'int4'; choose one of dynamic, static"):
        quantization.quantize(fp32, tmp_path / "s.onnx", "int4")
    assert not list(tmp_path.iterdir())


def test_profile_names_the_ops_that_cost(trained, tmp_path):
    fp32, *_ = trained
    quantization.quantize(fp32, tmp_path / "dyn.onnx", "dynamic")
    batch = np.zeros((16, 1, 28, 28), np.float32)
    dynamic = quantization.op_times_ms(tmp_path / "dyn.onnx", batch, threads=1, runs=2)
    assert "ConvInteger" in dynamic and all(t >= 0 for t in dynamic.values())
    assert list(dynamic.values()) == sorted(dynamic.values(), reverse=True)
    assert "ConvInteger" not in quantization.op_times_ms(fp32, batch, threads=1, runs=2)


def test_onnx_latency_percentiles(trained, tmp_path):
    fp32, *_ = trained
    result = measure.onnx_latency_ms({"a": fp32, "b": fp32}, np.zeros((8, 1, 28, 28), np.float32), warmup=1,
                                     repeats=5, threads=1)
    assert set(result) == {"a", "b"} and all(0 < r["p50"] <= r["p95"] for r in result.values())
