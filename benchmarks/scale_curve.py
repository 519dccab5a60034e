"""Cost at scale: a linear probe (`fit`, default strategy) and `predict` on growing data, wall time, CPU time and peak
resident memory per size.

Images: Fashion-MNIST (28x28 grey, the training split) with EfficientNet-Lite0 (packaged weights) at ``--image-size``
pixels; texts: VADER (all four domains, sign of the rating) and rotten-tomatoes critic snippets (fresh / rotten) with
all-MiniLM-L6-v2. The probe step is ``transferkit.fit`` on N training examples, tested on a fixed 1,000 (features of
train and test into a fresh feature cache, C chosen by the probe, the raw-input baseline beside it); the predict step
is ``transferkit.predict`` of the saved model on N examples. Each (modality, size, step) runs in its own process, so
that its peak memory is its own; the default runtime is used (``auto``: ONNX Runtime from 1,000 examples).

Reported per size: wall and CPU seconds, seconds per 1,000 examples, peak RSS (MB), the fit's own timings and the raw
baseline's share of the fit. Targets (issue "scale and speed"): per-example time at the largest size within 1.2x of
that at 10k; peak memory at 60k images <= 1.5x that at 10k and <= 3 GB; the raw baseline <= 20 % of a fit.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_curve.py [--image-sizes 1000,10000,60000]
      [--text-sizes 1000,10000] [--image-size 224] [--quick]
Saves benchmarks/results/scale_curve.json (or scale_curve_quick.json); sizes run before are kept (merged).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from _harness import Benchmark

BENCH = Benchmark("scale_curve", __doc__, threads=1)
N_TEST = 1000


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def parse_args():
    parser = BENCH.parser(quick="1,000 and 4,000 images at 64 px, 1,000 and 4,000 texts", work=True)
    parser.add_argument("--image-sizes", type=_sizes, default=[1000, 10000, 60000])
    parser.add_argument("--text-sizes", type=_sizes, default=[1000, 10000])
    parser.add_argument("--image-size", type=int, default=224, help="input resolution of the image backbone")
    parser.add_argument("--child", default=None, help=argparse_hidden())
    return BENCH.parse(parser)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


# ---------------------------------------------------------------------------------------------- data (in the child)

def image_data(n: int):
    from transferkit.data.builtin import load_fashion_mnist

    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    return train.subset(range(n)), test.subset(range(N_TEST))


def text_pool():
    import bz2
    import csv
    import io

    import numpy as np

    from transferkit.data.builtin import VADER_DOMAINS, datasets_dir, load_vader
    from transferkit.data.dataset import Dataset

    texts, labels = [], []
    for domain in sorted(VADER_DOMAINS):
        data = load_vader(domain)
        texts += list(data.items)
        labels += list(data.labels)
    path = datasets_dir() / "rotten-tomatoes" / "rotten_tomatoes_corpus_full.csv.bz2"
    with io.TextIOWrapper(bz2.open(path), encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["category"] in ("fresh", "rotten") and row["text"].strip():
                texts.append(row["text"].strip())
                labels.append("positive" if row["category"] == "fresh" else "negative")
    order = np.random.default_rng(0).permutation(len(texts))
    return Dataset("text", [texts[i] for i in order], [labels[i] for i in order], "vader+rotten-tomatoes")


def text_data(n: int):
    pool = text_pool()
    if n + N_TEST > len(pool):
        raise SystemExit(f"only {len(pool)} texts: at most {len(pool) - N_TEST} for training")
    return pool.subset(range(N_TEST, N_TEST + n)), pool.subset(range(N_TEST))


def child(spec: str, work: Path, image_size: int) -> None:
    """One measured step in this process: prints one JSON line."""
    import resource
    import time

    modality, size, step = spec.split(":")
    n = int(size)
    train, test = image_data(n) if modality == "image" else text_data(n)
    backbone = "efficientnet_lite0" if modality == "image" else "all-MiniLM-L6-v2"
    model_dir = work / f"{modality}-{n}-model"
    import transferkit

    start, start_cpu = time.perf_counter(), time.process_time()
    facts = {}
    if step == "probe":
        shutil.rmtree(work / f"{modality}-{n}-cache", ignore_errors=True)
        options = {"image_size": image_size} if modality == "image" else {}
        result = transferkit.fit(train, test=test, backbone=backbone, output=str(model_dir), overwrite=True,
                                 cache_dir=str(work / f"{modality}-{n}-cache"), baselines=["raw"], report=False,
                                 tracking_uri="off", progress=False, device="cpu", **options)
        facts = {"timings_s": {k: round(v, 2) for k, v in result.timings.items()},
                 "accuracy": result.metrics.get("accuracy"),
                 "raw_accuracy": result.baselines.get("raw", {}).get("accuracy"),
                 "raw_description": result.baselines.get("raw", {}).get("description")}
    else:
        items = train.items
        predictions = transferkit.predict(str(model_dir), items, progress=False, device="cpu")
        facts = {"predicted": len(predictions)}
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak, 1), **facts}))


def run_child(spec: str, args) -> dict:
    command = [sys.executable, __file__, "--child", spec, "--work", args.work, "--image-size", str(args.image_size),
               "--threads", str(args.threads), "--output", "unused"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    work = BENCH.work_folder()
    if args.child:
        child(args.child, work, args.image_size)
        return
    if args.quick:
        args.image_sizes, args.text_sizes, args.image_size = [1000, 4000], [1000, 4000], 64
    curves: dict[str, dict] = {}
    for modality, sizes in (("image", args.image_sizes), ("text", args.text_sizes)):
        for n in sizes:
            row = {}
            for step in ("probe", "predict"):
                figures = run_child(f"{modality}:{n}:{step}", args)
                if "wall_s" in figures:
                    figures["s_per_1k"] = round(1000 * figures["wall_s"] / n, 3)
                row[step] = figures
                print(f"{modality:5} {n:>6} {step:7} {json.dumps(figures)}", flush=True)
            timings = row["probe"].get("timings_s", {})
            if timings:
                fit_s = sum(timings.values())
                row["raw_baseline_share"] = round(timings.get("baseline_raw", 0.0) / fit_s, 3)
            curves[f"{modality}-{n}"] = {"modality": modality, "n": n, **row}
    summary = {}
    for modality in ("image", "text"):
        rows = sorted((v for v in curves.values() if v["modality"] == modality), key=lambda v: v["n"])
        ok = [r for r in rows if "wall_s" in r["probe"] and "wall_s" in r["predict"]]
        if len(ok) >= 2:
            small, large = ok[-2], ok[-1]
            summary[modality] = {
                "sizes": [small["n"], large["n"]],
                **{f"{step}_per_example_ratio": round(large[step]["s_per_1k"] / small[step]["s_per_1k"], 3)
                   for step in ("probe", "predict")},
                **{f"{step}_peak_ratio": round(large[step]["peak_rss_mb"] / small[step]["peak_rss_mb"], 3)
                   for step in ("probe", "predict")},
                "largest_peak_mb": max(large[s]["peak_rss_mb"] for s in ("probe", "predict")),
                "raw_baseline_share_max": max(r.get("raw_baseline_share", 0) for r in ok)}
    print(json.dumps(summary, indent=2))
    BENCH.save("scale_curve_quick" if args.quick else "scale_curve",
               {"image_size": args.image_size, "n_test": N_TEST, "curves": curves, "summary": summary},
               merge="curves")


if __name__ == "__main__":
    main()
