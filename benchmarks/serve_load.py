"""Bounded load on loopback against `transferkit serve` with an EfficientNet-Lite0 model: without and with
micro-batching (and the ONNX runtime), side by side in one run.

The model: packaged EfficientNet-Lite0 (ImageNet weights, 224 px) + a linear probe fitted on 20 Fashion-MNIST
training images per class (10 classes). The clients: ``--clients`` concurrent HTTP/1.1 clients on 127.0.0.1, each
sending one 28x28 PNG (a Fashion-MNIST test image) per request as multipart ``files``, for ``--seconds`` seconds,
after a short warm-up. Every configuration runs its own server process (1 worker, ``--threads`` intra-op
threads), started and stopped here; nothing leaves the machine.

Per configuration: requests per second, latency p50 / p90 / p99 (ms), status codes (every 5xx is a failure),
and the server's resident memory (RSS, sampled every second) at the start and end of the load.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_load.py [--clients 16] [--seconds 45] [--threads 1]
      [--quick]
Saves benchmarks/results/serve_load.json (serve_load_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
CONFIGS = (
    ("torch, no batching", ["--runtime", "torch", "--batch-wait-ms", "0"]),
    ("torch, micro-batching 10 ms", ["--runtime", "torch", "--batch-wait-ms", "10", "--max-batch-items", "16"]),
    ("onnx, no batching", ["--runtime", "onnx", "--batch-wait-ms", "0"]),
    ("onnx, micro-batching 10 ms", ["--runtime", "onnx", "--batch-wait-ms", "10", "--max-batch-items", "16"]),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=45.0, help="load per configuration, seconds (default 45)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured load before each measurement")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the server (default 1)")
    parser.add_argument("--quick", action="store_true", help="8 s per configuration (a smoke run)")
    return parser.parse_args()


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), MB."""
    total = 0.0
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


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
            memory.append((round(time.perf_counter() - start, 1), round(rss_mb(pid), 1)))
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
        t0 = time.perf_counter()
        model, images = build_model(tmp)
        print(f"model folder built in {time.perf_counter() - t0:.1f} s: {model}")
        results = []
        for name, options in CONFIGS:
            process, url = start_server(model, options, args.threads, tmp / "cache")
            try:
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
    base = results[0]["requests_per_s"]
    for r in results:
        r["speed_vs_torch_no_batching"] = round(r["requests_per_s"] / base, 3) if base else None
    report = {
        "benchmark": "serve_load", "model": "efficientnet_lite0 + linear probe (10 Fashion-MNIST classes)",
        "request": "one 28x28 PNG per request, multipart; resized to 224 px by the server",
        "clients": args.clients, "seconds_per_config": seconds, "warmup_s": args.warmup, "server_workers": 1,
        "server_threads": args.threads, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                    "load_average_at_end": os.getloadavg()},
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("serve_load_quick.json" if args.quick else "serve_load.json")
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
