"""A probe sweep on cached features against the same sweep recomputing the backbone's features every time.

EfficientNet-Lite0 (packaged ImageNet weights) on Fashion-MNIST: ``--per-class`` labelled training images per class
(from the training split) and ``--test`` test images. The sweep fits ``transferkit.estimators.linear_probe.LinearProbe``
with 10 fixed values of ``C`` (1e-4 .. 1e2) and scores each on the test images. Three ways, in one run:

- ``recompute``: for every setting, extract the training and test features again (``run_backbone``, no cache), then
  fit and score: the "freeze and fit" loop of a script that keeps the frozen backbone in the model. (A Keras-style
  loop that trains the head for several epochs pays the backbone once per epoch, so this is the cheapest version
  of it.)
- ``cache, cold``: the same sweep through ``extract_features`` with an empty ``FeatureCache``: the first setting
  runs the backbone and fills the cache, the other nine read it. It runs interleaved with ``recompute``, setting by
  setting, so that load from other processes on a shared machine falls on both.
- ``cache, warm``: the sweep again with the cache filled (a second run on the same data: no backbone pass).

With 10 settings the cold ratio cannot reach 10x (the cached side still runs the backbone once, and both sides
fit the same 10 probes); the warm ratio is what every later sweep, fold or tuning trial on the same data gets.
The accuracy of every setting must be identical across the three (same features, same probe).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_cache.py [--threads 1] [--per-class 100] [--test 500]
      [--quick]
Saves benchmarks/results/probe_cache.json (or probe_cache_quick.json).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from _harness import Benchmark

TARGET_RATIO = 10.0
BENCH = Benchmark("probe_cache", __doc__, threads=1)


def parse_args() -> argparse.Namespace:
    parser = BENCH.parser(quick="10 per class, 100 test images, 4 settings")
    parser.add_argument("--per-class", type=int, default=100, help="training images per class (default 100)")
    parser.add_argument("--test", type=int, default=500, help="test images (default 500)")
    parser.add_argument("--settings", type=int, default=10, help="values of C in the sweep (default 10)")
    return BENCH.parse(parser)


def main() -> None:
    args = parse_args()
    if args.quick:
        args.per_class, args.test, args.settings = 10, 100, 4
    import numpy as np

    from transferkit.backbones import create_backbone
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import ExtractionStats, extract_features, run_backbone
    from transferkit.estimators.linear_probe import LinearProbe

    train = sample_per_class(load_fashion_mnist("train"), args.per_class, seed=0)
    test = load_fashion_mnist("test").subset(np.arange(args.test))
    classes = train.classes
    y_train, y_test = train.label_array(classes), test.label_array(classes)
    Cs = [float(c) for c in np.logspace(-4, 2, args.settings)]
    backbone = create_backbone("efficientnet_lite0").eval()
    print(f"Fashion-MNIST: {len(train)} training ({args.per_class} per class), {len(test)} test images; "
          f"EfficientNet-Lite0 at 224 px; {len(Cs)} settings of C; PyTorch on {args.threads} thread(s)")

    def probe(C: float, X_train, X_test) -> float:
        model = LinearProbe(C=C).fit(X_train, y_train)
        return float(np.mean(model.predict(X_test) == y_test))

    def recompute_step(C: float) -> float:
        X_train = run_backbone(backbone, train, progress=False, device="cpu")
        X_test = run_backbone(backbone, test, progress=False, device="cpu")
        return probe(C, X_train, X_test)

    def cached_step(C: float, cache: FeatureCache) -> tuple[float, int]:
        stats_train, stats_test = ExtractionStats(), ExtractionStats()
        X_train = extract_features(backbone, train, cache=cache, progress=False, device="cpu", stats=stats_train)
        X_test = extract_features(backbone, test, cache=cache, progress=False, device="cpu", stats=stats_test)
        return probe(C, X_train, X_test), stats_train.computed + stats_test.computed

    sides = ("recompute", "cache_cold", "cache_warm")
    wall = {side: 0.0 for side in sides}
    cpu = {side: 0.0 for side in sides}
    accuracies: dict[str, list[float]] = {side: [] for side in sides}
    passes = {side: 0 for side in sides}

    def timed(side: str, run) -> None:
        with BENCH.step(side) as step:
            accuracy, computed = run()
        cpu[side] += step.cpu_s
        wall[side] += step.wall_s
        accuracies[side].append(accuracy)
        passes[side] += computed

    with tempfile.TemporaryDirectory(prefix="tk-probe-cache-") as folder:
        cache = FeatureCache(folder)
        # The two sweeps run interleaved, setting by setting, so that load from other processes falls on both.
        for C in Cs:
            timed("recompute", lambda: (recompute_step(C), len(train) + len(test)))
            timed("cache_cold", lambda: cached_step(C, cache))
        for C in Cs:  # a second sweep on the same data: the cache is full
            timed("cache_warm", lambda: cached_step(C, cache))

    labels = {"recompute": "recompute", "cache_cold": "cache, cold", "cache_warm": "cache, warm"}
    for side in sides:
        print(f"{labels[side] + ':':<13} {wall[side]:7.1f} s wall, {cpu[side]:7.1f} s CPU; {passes[side]} backbone "
              "passes")
    naive_acc, cold_acc, warm_acc = (accuracies[side] for side in sides)
    same = naive_acc == cold_acc == warm_acc
    cold_ratio, warm_ratio = wall["recompute"] / wall["cache_cold"], wall["recompute"] / wall["cache_warm"]
    cold_cpu_ratio, warm_cpu_ratio = cpu["recompute"] / cpu["cache_cold"], cpu["recompute"] / cpu["cache_warm"]
    print(f"\n{'C':>10}  {'recompute':>9}  {'cold':>6}  {'warm':>6}")
    for C, a, b, c in zip(Cs, naive_acc, cold_acc, warm_acc):
        print(f"{C:10.1e}  {a:9.4f}  {b:6.4f}  {c:6.4f}")
    print(f"\nspeed-up of the sweep: {cold_ratio:.1f}x with a cold cache (CPU time {cold_cpu_ratio:.1f}x; about "
          f"{len(Cs)}x at most, by construction), {warm_ratio:.1f}x warm (CPU time {warm_cpu_ratio:.1f}x; target >= "
          f"{TARGET_RATIO:g}x); accuracies identical for every setting: {same}")

    result = {
        "data": {"train": len(train), "per_class": args.per_class, "test": len(test), "classes": len(classes)},
        "backbone": "efficientnet_lite0 (packaged ImageNet weights), 224 px",
        "settings": Cs,
        **{side: {"seconds": wall[side], "cpu_seconds": cpu[side], "accuracies": accuracies[side],
                  "backbone_passes": passes[side]} for side in sides},
        "speedup_cold": cold_ratio,
        "speedup_warm": warm_ratio,
        "speedup_cold_cpu_time": cold_cpu_ratio,
        "speedup_warm_cpu_time": warm_cpu_ratio,
        "accuracies_identical": same,
        "target": {"speedup_min": TARGET_RATIO, "met_cold": bool(cold_ratio >= TARGET_RATIO),
                   "met_warm": bool(warm_ratio >= TARGET_RATIO)},
    }
    BENCH.save("probe_cache_quick" if args.quick else "probe_cache", result)


if __name__ == "__main__":
    sys.exit(main())
