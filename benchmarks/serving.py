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
    contract = datasets.contract(root)
    pixels, labels = datasets.raw_split(root, "test")
    normalised = datasets.normalise(pixels, datasets.read_manifest(root)).numpy()
    raw = caller_rows(pixels, contract)
    baseline = log_baseline(root, f"{name}-bare-tensor-baseline", normalised)
    bodies = {}
    for size in BATCHES:
        bodies[f"bare tensors, batch {size}"] = ("baseline", json.dumps({"inputs": normalised[:size].tolist()}).encode())
        bodies[f"raw pixels, batch {size}"] = ("champion", json.dumps({"inputs": raw[:size].tolist()}).encode())
        bodies[f"PNG (base64), batch {size}"] = ("champion", json.dumps(
            {"inputs": [png_base64(p) for p in raw[:size]]}).encode())
    with server(root, f"models:/{name}@champion", free_port(), work / "champion.log") as champion, \
            server(root, baseline, free_port(), work / "baseline.log") as bare:
        connections = {"champion": champion, "baseline": bare}
        accuracy = served_accuracy(champion, raw, labels)
        timed = time_servers(bodies, connections, repeats)
    folder = work / "pngs"
    folder.mkdir()
    from PIL import Image

    for i, image in enumerate(raw):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    write_idx(work / "t10k-images-idx3-ubyte.gz", raw)
    scoring = {"PNG folder": time_predict(root, f"models:/{name}@champion", folder, work / "folder.parquet"),
               "IDX file": time_predict(root, f"models:/{name}@champion", work / "t10k-images-idx3-ubyte.gz",
                                        work / "idx.parquet")}
    return {"http": timed, "served_accuracy": accuracy, "predict": scoring, "test_images": len(labels)}


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
    lines = ["| request | requests | p50 ms | p95 ms | requests/s |", "|---|---|---|---|---|"]
    for name, row in result["http"].items():
        lines.append(f"| {name} | {row['requests']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
                     f"{row['requests_per_s']:.1f} |")
    http = result["http"]
    overhead = http["raw pixels, batch 64"]["p50_ms"] / http["bare tensors, batch 64"]["p50_ms"] - 1
    lines += ["", f"Raw-pixel wrapper vs bare tensors at batch 64 (p50): {overhead:+.1%} (goal: at most +10%).",
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
