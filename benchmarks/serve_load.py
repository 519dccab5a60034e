"""Bounded load on loopback against `transferkit serve` with an EfficientNet-Lite0 model: without and with
micro-batching (and the ONNX runtime), side by side in one run.

The model: packaged EfficientNet-Lite0 (ImageNet weights, 224 px) + a linear probe fitted on 20 Fashion-MNIST
training images per class (10 classes). The clients: ``--clients`` concurrent HTTP/1.1 clients on 127.0.0.1, each
sending one 28x28 PNG (a Fashion-MNIST test image) per request as multipart ``files``, for ``--seconds`` seconds,
after a short warm-up. Every configuration runs its own server process (1 worker, ``--threads`` intra-op
threads), started and stopped here; nothing leaves the machine.

Per configuration: requests per second, latency p50 / p90 / p99 (ms), status codes (every 5xx is a failure),
and the server's resident memory (RSS, sampled every second) at the start and end of the load. Beside them, in
the same run, the reference: the model's own batched ONNX Runtime throughput in this process (backbone session
and head on ready batches of 16 images at 224 px, ``--threads`` threads, no decoding, no HTTP), and each
configuration's throughput as a fraction of it (target: >= 0.7 for the service's default).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_load.py [--clients 16] [--seconds 45] [--threads 1]
      [--quick]
Saves benchmarks/results/serve_load.json (serve_load_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import Benchmark, rss_mb

BENCH = Benchmark("serve_load", __doc__, threads=1)
CONFIGS = (
    ("torch, no batching", ["--runtime", "torch", "--batch-wait-ms", "0"]),
    ("torch, micro-batching 10 ms", ["--runtime", "torch", "--batch-wait-ms", "10", "--max-batch-items", "16"]),
    ("onnx, no batching", ["--runtime", "onnx", "--batch-wait-ms", "0"]),
    ("onnx, micro-batching 10 ms", ["--runtime", "onnx", "--batch-wait-ms", "10", "--max-batch-items", "16"]),
)


def parse_args() -> argparse.Namespace:
    parser = BENCH.parser(quick="8 s per configuration (a smoke run)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=45.0, help="load per configuration, seconds (default 45)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured load before each measurement")
    return BENCH.parse(parser)  # --threads: the server's intra-op threads too


def build_model(folder: Path) -> tuple[Path, list[bytes]]:
    """The Lite0 model folder, and PNG bytes of 64 Fashion-MNIST test images for the clients."""
    from PIL import Image

    from transferkit import fit
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class

    train = sample_per_class(load_fashion_mnist("train"), 20, 0)
    test = load_fashion_mnist("test").subset(list(range(64)))
    fit(train, test=test, backbone="efficientnet_lite0", output=str(folder / "lite0"), progress=False,
        device="cpu", baselines=[], report=False, tracking_uri="off", cache_dir=str(folder / "cache"))
    images = []
    for item in test.items:
        buffer = io.BytesIO()
        Image.fromarray(item).save(buffer, "PNG")
        images.append(buffer.getvalue())
    return folder / "lite0", images


def onnx_reference(model: Path, images: list[bytes], threads: int, seconds: float) -> dict:
    """Images per second of the model's backbone in ONNX Runtime plus its head, on one ready batch of 16 images
    run again and again for ``seconds``: the ceiling a service of this model could reach on these threads."""
    import numpy as np
    from PIL import Image

    from transferkit.backbones.onnx_graph import feature_session, onnx_feed
    from transferkit.workflows.steps import resolve_model

    loaded = resolve_model(str(model))
    backbone = loaded.backbone
    batch = backbone.collate([backbone.prepare(np.asarray(Image.open(io.BytesIO(b)))) for b in images[:16]])
    session, _ = feature_session(backbone, threads)
    feed = onnx_feed(batch, backbone.modality)
    loaded.head_logits(session.run(None, feed)[0])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loaded.head_logits(session.run(None, feed)[0])
        done += 16
    return {"images_per_s": round(done / (time.perf_counter() - start), 2), "batch": 16, "threads": threads}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, options: list[str], threads: int, cache: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TRANSFERKIT_CACHE": str(cache)}
    process = subprocess.Popen([sys.executable, "-m", "transferkit.cli.main", "serve", str(model), "--port", str(port),
                                "--threads", str(threads), "--max-batch", "16", *options, "-q"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("server did not start within 300 s")


async def load(url: str, images: list[bytes], clients: int, seconds: float, warmup: float,
               pid: int) -> dict:
    import httpx

    latencies: list[float] = []
    codes: dict[str, int] = {}
    errors: list[str] = []
    memory: list[tuple[float, float]] = []
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def client(index: int) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            k = index
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                files = [("files", (f"{k}.png", images[k % len(images)], "image/png"))]
                try:
                    answer = await http.post(f"{url}/predict", files=files)
                    code = str(answer.status_code)
                except httpx.HTTPError as exc:
                    code = "connection error"
                    errors.append(f"{type(exc).__name__}: {exc}")
                done = time.perf_counter()
                if now >= measure_from:
                    latencies.append(done - now)
                    codes[code] = codes.get(code, 0) + 1
                k += clients

    async def sample_memory() -> None:
        while time.perf_counter() < stop_at:
            memory.append((round(time.perf_counter() - start, 1), round(rss_mb(pid, children=True), 1)))
            await asyncio.sleep(1.0)

    await asyncio.gather(sample_memory(), *[client(i) for i in range(clients)])
    latencies.sort()
    n = len(latencies)
    quantile = lambda q: 1000 * latencies[min(n - 1, int(q * n))] if n else None
    measured = [m for t, m in memory if t >= warmup]
    return {
        "requests": n, "requests_per_s": round(n / seconds, 2),
        "latency_ms": {"p50": quantile(0.50), "p90": quantile(0.90), "p99": quantile(0.99),
                       "mean": 1000 * statistics.fmean(latencies) if n else None},
        "status_codes": codes, "server_errors_5xx": sum(v for k, v in codes.items() if k.startswith("5")),
        "connection_errors": len(errors), "first_errors": errors[:3],
        "rss_mb": {"start": measured[0] if measured else None, "end": measured[-1] if measured else None,
                   "max": max(measured) if measured else None,
                   "growth_second_half": round(measured[-1] - measured[len(measured) // 2], 1) if measured else None},
        "rss_samples": memory,
    }


def main() -> None:
    args = parse_args()
    seconds = 8.0 if args.quick else args.seconds
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["TRANSFERKIT_CACHE"] = str(tmp / "cache")
        with BENCH.step("build the model") as step:
            model, images = build_model(tmp)
        print(f"model folder built in {step.wall_s:.1f} s: {model}")
        results = []
        for name, options in CONFIGS:
            process, url = start_server(model, options, args.threads, tmp / "cache")
            try:
                with BENCH.step(f"load: {name}"):
                    outcome = asyncio.run(load(url, images, args.clients, seconds, args.warmup, process.pid))
                info = httpx.get(f"{url}/info").json()["batching"]
                outcome["batches_run"], outcome["inputs_run"] = info["batches_run"], info["inputs_run"]
                outcome["mean_batch"] = round(info["inputs_run"] / max(info["batches_run"], 1), 2)
            finally:
                process.terminate()
                process.wait(timeout=30)
            outcome["config"] = name
            results.append(outcome)
            lat = outcome["latency_ms"]
            print(f"{name:30s} {outcome['requests_per_s']:7.2f} req/s  p50 {lat['p50']:7.1f} ms  p99 "
                  f"{lat['p99']:7.1f} ms  mean batch {outcome['mean_batch']:5.2f}  5xx {outcome['server_errors_5xx']}  "
                  f"conn.err {outcome['connection_errors']}  RSS {outcome['rss_mb']['start']:.0f} -> "
                  f"{outcome['rss_mb']['end']:.0f} MB (max {outcome['rss_mb']['max']:.0f})")
        with BENCH.step("reference: batched ONNX Runtime"):
            reference = onnx_reference(model, images, args.threads, seconds)
        print(f"{'model alone, ONNX Runtime, batch 16':30s} {reference['images_per_s']:7.2f} images/s")
    base = results[0]["requests_per_s"]
    for r in results:
        r["speed_vs_torch_no_batching"] = round(r["requests_per_s"] / base, 3) if base else None
        r["fraction_of_batched_onnx"] = round(r["requests_per_s"] / reference["images_per_s"], 3)
    report = {
        "model": "efficientnet_lite0 + linear probe (10 Fashion-MNIST classes)",
        "request": "one 28x28 PNG per request, multipart; resized to 224 px by the server",
        "clients": args.clients, "seconds_per_config": seconds, "warmup_s": args.warmup, "server_workers": 1,
        "server_threads": args.threads, "batched_onnx_reference": reference, "results": results,
    }
    BENCH.save("serve_load_quick" if args.quick else "serve_load", report, indent=1)


if __name__ == "__main__":
    main()
