"""A probe sweep on cached features against the same sweep recomputing the backbone's features every time.

EfficientNet-Lite0 (packaged ImageNet weights) on Fashion-MNIST: ``--per-class`` labelled training images per class
(from the training split) and ``--test`` test images. The sweep fits ``transferkit.strategies.linear_probe.LinearProbe``
with 10 fixed values of ``C`` (1e-4 .. 1e2) and scores each on the test images. Three ways, in one run:

- ``recompute``: for every setting, extract the training and test features again (``run_backbone``, no cache), then
  fit and score: the "freeze and fit" loop of a script that keeps the frozen backbone in the model. (A Keras-style
  loop that trains the head for several epochs pays the backbone once per epoch, so this is the cheapest version
  of it.)
- ``cache, cold``: the same sweep through ``extract_features`` with an empty ``FeatureCache``: the first setting
  runs the backbone and fills the cache, the other nine read it.
- ``cache, warm``: the sweep again with the cache filled (a second run on the same data: no backbone pass).

With 10 settings the cold ratio cannot reach 10x (the cached side still runs the backbone once, and both sides
fit the same 10 probes); the warm ratio is what every later sweep, fold or tuning trial on the same data gets.
The accuracy of every setting must be identical across the three (same features, same probe).

Run:  .venv/bin/python benchmarks/probe_cache.py [--threads 1] [--per-class 100] [--test 500] [--quick]
Saves benchmarks/results/probe_cache.json (or probe_cache_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 10.0
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1)")
    parser.add_argument("--per-class", type=int, default=100, help="training images per class (default 100)")
    parser.add_argument("--test", type=int, default=500, help="test images (default 500)")
    parser.add_argument("--settings", type=int, default=10, help="values of C in the sweep (default 10)")
    parser.add_argument("--quick", action="store_true", help="10 per class, 100 test images, 4 settings")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.quick:
        args.per_class, args.test, args.settings = 10, 100, 4
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from transferkit.backbones import create_backbone
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import ExtractionStats, extract_features, run_backbone
    from transferkit.strategies.linear_probe import LinearProbe

    train = sample_per_class(load_fashion_mnist("train"), args.per_class, seed=0)
    test = load_fashion_mnist("test").subset(np.arange(args.test))
    classes = train.classes
    y_train, y_test = train.label_array(classes), test.label_array(classes)
    Cs = [float(c) for c in np.logspace(-4, 2, args.settings)]
    backbone = create_backbone("efficientnet_lite0").eval()
    print(f"Fashion-MNIST: {len(train)} training ({args.per_class} per class), {len(test)} test images; "
          f"EfficientNet-Lite0 at 224 px; {len(Cs)} settings of C; PyTorch on {args.threads} thread(s)")

    def probe(C: float, X_train, X_test) -> tuple[float, float]:
        start = time.perf_counter()
        model = LinearProbe(C=C).fit(X_train, y_train)
        accuracy = float(np.mean(model.predict(X_test) == y_test))
        return accuracy, time.perf_counter() - start

    def recompute() -> tuple[list[float], float, float]:
        start, fit_seconds, accuracies = time.perf_counter(), 0.0, []
        for C in Cs:
            X_train = run_backbone(backbone, train, progress=False, device="cpu")
            X_test = run_backbone(backbone, test, progress=False, device="cpu")
            accuracy, seconds = probe(C, X_train, X_test)
            accuracies.append(accuracy)
            fit_seconds += seconds
        return accuracies, time.perf_counter() - start, fit_seconds

    def cached(cache: FeatureCache) -> tuple[list[float], float, float, int]:
        start, fit_seconds, accuracies, computed = time.perf_counter(), 0.0, [], 0
        for C in Cs:
            stats_train, stats_test = ExtractionStats(), ExtractionStats()
            X_train = extract_features(backbone, train, cache=cache, progress=False, device="cpu", stats=stats_train)
            X_test = extract_features(backbone, test, cache=cache, progress=False, device="cpu", stats=stats_test)
            computed += stats_train.computed + stats_test.computed
            accuracy, seconds = probe(C, X_train, X_test)
            accuracies.append(accuracy)
            fit_seconds += seconds
        return accuracies, time.perf_counter() - start, fit_seconds, computed

    with tempfile.TemporaryDirectory(prefix="tk-probe-cache-") as folder:
        cache = FeatureCache(folder)
        # Cold cache first, then the recomputing sweep, then the warm cache: the recomputing side sits between
        # the two cached ones, so a change in machine load during the run shows as a cold/warm discrepancy.
        cold_acc, cold_s, cold_fit_s, cold_computed = cached(cache)
        print(f"cache, cold:  {cold_s:7.1f} s ({cold_fit_s:.1f} s fitting probes; {cold_computed} backbone passes)")
        naive_acc, naive_s, naive_fit_s = recompute()
        print(f"recompute:    {naive_s:7.1f} s ({naive_fit_s:.1f} s fitting probes; "
              f"{len(Cs) * (len(train) + len(test))} backbone passes)")
        warm_acc, warm_s, warm_fit_s, warm_computed = cached(cache)
        print(f"cache, warm:  {warm_s:7.1f} s ({warm_fit_s:.1f} s fitting probes; {warm_computed} backbone passes)")

    same = naive_acc == cold_acc == warm_acc
    cold_ratio, warm_ratio = naive_s / cold_s, naive_s / warm_s
    print(f"\n{'C':>10}  {'recompute':>9}  {'cold':>6}  {'warm':>6}")
    for C, a, b, c in zip(Cs, naive_acc, cold_acc, warm_acc):
        print(f"{C:10.1e}  {a:9.4f}  {b:6.4f}  {c:6.4f}")
    print(f"\nspeed-up of the sweep: {cold_ratio:.1f}x with a cold cache (bound: {len(Cs)}x), {warm_ratio:.1f}x warm "
          f"(target >= {TARGET_RATIO:g}x); accuracies identical for every setting: {same}")

    result = {
        "benchmark": "probe_cache",
        "command": "OMP_NUM_THREADS={t} .venv/bin/python benchmarks/probe_cache.py --threads {t}{q}".format(
            t=args.threads, q=" --quick" if args.quick else ""),
        "environment": {"cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                        "python": platform.python_version(),
                        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "data": {"train": len(train), "per_class": args.per_class, "test": len(test), "classes": len(classes)},
        "backbone": "efficientnet_lite0 (packaged ImageNet weights), 224 px",
        "settings": Cs,
        "recompute": {"seconds": naive_s, "probe_fit_seconds": naive_fit_s, "accuracies": naive_acc,
                      "backbone_passes": len(Cs) * (len(train) + len(test))},
        "cache_cold": {"seconds": cold_s, "probe_fit_seconds": cold_fit_s, "accuracies": cold_acc,
                       "backbone_passes": cold_computed},
        "cache_warm": {"seconds": warm_s, "probe_fit_seconds": warm_fit_s, "accuracies": warm_acc,
                       "backbone_passes": warm_computed},
        "speedup_cold": cold_ratio,
        "speedup_warm": warm_ratio,
        "accuracies_identical": same,
        "target": {"speedup_min": TARGET_RATIO, "met_cold": bool(cold_ratio >= TARGET_RATIO),
                   "met_warm": bool(warm_ratio >= TARGET_RATIO)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("probe_cache_quick.json" if args.quick else "probe_cache.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    sys.exit(main())
