"""Serving benchmark: the registered champion behind `mlflow models serve`, raw pixels vs today's bare tensors.

    make run && .venv/bin/python benchmarks/serving.py            # the project's champion, after a default run
    .venv/bin/python benchmarks/serving.py --root DIR --model NAME # another project (after its run)

Two scoring servers run side by side (`shrinkflow serve-model`): the champion as registered now (raw pixels
in, ONNX Runtime inside, named answers out) and, as the baseline, the same student logged the way versions
were registered before (`mlflow.pytorch.log_model`, torch.export; normalised float32 tensors in, logits out).
Requests alternate between the two servers, one at a time, so the machine's drift hits both alike; each
body is encoded once before timing (the client's JSON cost is not the server's). Batch 1 and 64, raw
pixel arrays and base64 PNGs. Then `shrinkflow predict` on the 10,000 test images, as a folder of PNGs and
as one IDX file (wall time of the whole command, start-up included). Writes a dated JSON + Markdown file
to benchmarks/results/.

Goal (issue 25): the raw-input wrapper costs at most 10% over bare tensors at batch 64.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

from steps import tracking
from steps.core import datasets
from steps.core.names import ModelRole
from steps.core.torchkit import load_model
from steps.serving.inputs import caller_rows

BATCHES = (1, 64)
BIN = Path(sys.executable).parent


def png_base64(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def log_baseline(root: Path, name: str, normalised: np.ndarray) -> str:
    """The student registered as versions were before the contract: torch.export, normalised tensors in."""
    import mlflow

    tracking.use_store(root)
    mlflow.set_experiment("benchmark")
    with mlflow.start_run(run_name="serving baseline"):
        student = load_model(root, ModelRole.STUDENT)[0].eval()
        info = mlflow.pytorch.log_model(student, name="model", input_example=normalised[:2],
                                        registered_model_name=name)
    return f"models:/{name}/{info.registered_model_version}"


@contextlib.contextmanager
def server(root: Path, model: str, port: int, log: Path):
    process = subprocess.Popen([str(BIN / "shrinkflow"), "serve-model", model, "--port", str(port), "--root",
                                str(root)], stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"{model}: the server exited ({log.read_text()[-2000:]})")
            with contextlib.suppress(OSError):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/ping")
                if connection.getresponse().status == 200:
                    break
            time.sleep(0.2)  # polling, bounded by the deadline
        yield http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def call(connection: http.client.HTTPConnection, body: bytes) -> float:
    """Milliseconds for one request (the answer read whole); fails on any status but 200."""
    start = time.perf_counter()
    connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}: {payload[:500]!r}")
    return elapsed


def summary(samples: list[float]) -> dict:
    values = np.asarray(samples)
    return {"requests": len(values), "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)), "requests_per_s": float(1000 / values.mean())}


def time_servers(bodies: dict[str, tuple[str, bytes]], connections: dict[str, http.client.HTTPConnection],
                 repeats: int, warmup: int = 5) -> dict[str, dict]:
    """Each body sent `repeats` times to its server, all of them in turns (one request each per turn)."""
    samples: dict[str, list[float]] = {name: [] for name in bodies}
    for turn in range(warmup + repeats):
        for name, (target, body) in bodies.items():
            elapsed = call(connections[target], body)
            if turn >= warmup:
                samples[name].append(elapsed)
    return {name: summary(values) for name, values in samples.items()}


def write_idx(path: Path, images: np.ndarray) -> None:
    header = (0x00000803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in images.shape)
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(header + images.astype(np.uint8).tobytes())


def time_predict(root: Path, model: str, source: Path, out: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "shrinkflow"), "predict", model, str(source), "-o", str(out), "--root",
                           str(root)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"shrinkflow predict failed: {done.stderr[-2000:]}")
    import pandas as pd

    rows = len(pd.read_parquet(out))
    return {"rows": rows, "seconds": seconds, "images_per_s": rows / seconds}


def benchmark(root: Path, name: str, repeats: int, work: Path) -> dict:
    tracking.use_store(root)
    contract = datasets.contract(root)
    pixels, labels = datasets.raw_split(root, "test")
    normalised = datasets.normalise(pixels, datasets.read_manifest(root)).numpy()
    raw = caller_rows(pixels, contract)
    baseline_name = f"{name}-bare-tensor-baseline"
    try:
        baseline = log_baseline(root, baseline_name, normalised)
        in_process = time_in_process(name, baseline, raw, normalised, repeats)
        timed, accuracy = time_http(root, name, baseline, raw, normalised, labels, repeats, work)
    finally:
        tracking.delete_registered_model(baseline_name)  # leave the project's registry as it was
    folder = work / "pngs"
    folder.mkdir()
    from PIL import Image

    for i, image in enumerate(raw):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    write_idx(work / "t10k-images-idx3-ubyte.gz", raw)
    scoring = {"PNG folder": time_predict(root, f"models:/{name}@champion", folder, work / "folder.parquet"),
               "IDX file": time_predict(root, f"models:/{name}@champion", work / "t10k-images-idx3-ubyte.gz",
                                        work / "idx.parquet")}
    return {"http": timed, "in_process": in_process, "served_accuracy": accuracy, "predict": scoring,
            "test_images": len(labels)}


def time_http(root: Path, name: str, baseline: str, raw: np.ndarray, normalised: np.ndarray, labels: np.ndarray,
              repeats: int, work: Path) -> tuple[dict, float]:
    """Both scoring servers, side by side: ({request kind: latency summary}, the champion's HTTP accuracy)."""
    bodies = {}
    for size in BATCHES:
        bodies[f"bare tensors, batch {size}"] = ("baseline", json.dumps({"inputs": normalised[:size].tolist()}).encode())
        bodies[f"raw pixels, batch {size}"] = ("champion", json.dumps({"inputs": raw[:size].tolist()}).encode())
        bodies[f"PNG (base64), batch {size}"] = ("champion", json.dumps(
            {"inputs": [png_base64(p) for p in raw[:size]]}).encode())
    with server(root, f"models:/{name}@champion", free_port(), work / "champion.log") as champion, \
            server(root, baseline, free_port(), work / "baseline.log") as bare:
        accuracy = served_accuracy(champion, raw, labels)
        return time_servers(bodies, {"champion": champion, "baseline": bare}, repeats), accuracy


def time_in_process(name: str, baseline: str, raw: np.ndarray, normalised: np.ndarray, repeats: int,
                    size: int = 64) -> dict[str, dict]:
    """The wrapper's own cost, without HTTP, interleaved: the champion's pyfunc on uint8 pixels and on encoded
    PNGs; its ONNX graph run bare in ONNX Runtime on the same pixels (float32); and today's bare-tensor model
    (the baseline's pyfunc) on normalised tensors."""
    import mlflow

    from steps.compression.measure import interleaved_ms

    model = tracking.load_predictor(name, tracking.aliases(name)["champion"])
    bare = mlflow.pyfunc.load_model(baseline)
    session = model.unwrap_python_model().session
    pixels, tensors = raw[:size], normalised[:size]
    floats = np.ascontiguousarray(pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2),
                                  dtype=np.float32)
    encoded = np.array([base64.b64decode(png_base64(p)) for p in pixels], dtype=object)
    runners = {"bare tensors (today's registered model)": lambda: bare.predict(tensors),
               "ONNX graph alone (float32 pixels)": lambda: session.run(None, {"x": floats}),
               "pyfunc, uint8 pixels": lambda: model.predict(pixels),
               "pyfunc, PNG bytes": lambda: model.predict(encoded)}
    return interleaved_ms(runners, warmup=10, repeats=max(repeats, 50))


def served_accuracy(connection: http.client.HTTPConnection, raw: np.ndarray, labels: np.ndarray) -> float:
    """The champion's accuracy over HTTP on the raw test split (in requests of 1,000 images)."""
    correct = 0
    for i in range(0, len(raw), 1000):
        connection.request("POST", "/invocations", json.dumps({"inputs": raw[i: i + 1000].tolist()}).encode(),
                           {"Content-Type": "application/json"})
        answers = json.loads(connection.getresponse().read())["predictions"]
        correct += int((np.array([a["class_index"] for a in answers]) == labels[i: i + 1000]).sum())
    return correct / len(labels)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def table(result: dict) -> str:
    lines = ["| over HTTP | requests | p50 ms | p95 ms | requests/s |", "|---|---|---|---|---|"]
    for name, row in result["http"].items():
        lines.append(f"| {name} | {row['requests']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
                     f"{row['requests_per_s']:.1f} |")
    http, local = result["http"], result["in_process"]
    overhead = http["raw pixels, batch 64"]["p50_ms"] / http["bare tensors, batch 64"]["p50_ms"] - 1
    bare = local["bare tensors (today's registered model)"]["p50"]
    lines += ["", "| in process, batch 64 | p50 ms | p95 ms | vs bare tensors (p50) |", "|---|---|---|---|"]
    for name, row in local.items():
        lines.append(f"| {name} | {row['p50']:.3f} | {row['p95']:.3f} | {row['p50'] / bare - 1:+.1%} |")
    wrapper = local["pyfunc, uint8 pixels"]["p50"] / local["ONNX graph alone (float32 pixels)"]["p50"] - 1
    lines += ["", f"Raw pixels vs today's bare tensors at batch 64 (p50): {overhead:+.1%} over HTTP, "
              f"{local['pyfunc, uint8 pixels']['p50'] / bare - 1:+.1%} in process (goal: at most +10%); the wrapper "
              f"(checks, answer frame, MLflow's predict) over its own graph: {wrapper:+.1%}.",
              f"Accuracy of the served champion over HTTP on the raw test split: {result['served_accuracy']:.4f} "
              f"({result['test_images']} images).", "",
              "| shrinkflow predict | rows | seconds | images/s |", "|---|---|---|---|"]
    for name, row in result["predict"].items():
        lines.append(f"| {name} | {row['rows']} | {row['seconds']:.1f} | {row['images_per_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--root", type=Path, default=common.REPO, help="a project after its run (a registered champion)")
    p.add_argument("--model", default="fashion-student", help="the registered model name")
    p.add_argument("--repeats", type=int, default=200, help="timed requests per kind of request")
    args = p.parse_args()
    repeats = 10 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="shrinkflow-serving-") as scratch:
        result = benchmark(args.root.resolve(), args.model, repeats, Path(scratch))
    common.report(args, "serving", "Serving benchmark", table(result), result, repeats=repeats)


if __name__ == "__main__":
    main()
