"""Few labelled images per class: does the linear probe gain from augmented views of each image?

Data: Fashion-MNIST (a pool of 60 training images per class drawn once, seed 0; 100 test images per class from the
test split), efficientnet_lite0 features at ``--image-size`` px. Six fixed views of every image, each view's
features computed once: the image, its horizontal flip, and four corner crops of 85 % of the side resized back to
the full size. Per number of labelled images per class (``--shots``) and seed, the labelled images drawn from the
pool; contenders, all from the same cached view features:

- ``plain``: the linear probe on the image's features (C by the probe's cross-validation), tested on the image;
- ``rows_flip`` / ``rows_all6``: each view of a labelled image a training row of its own (2 or 6 rows an image),
  the same C as ``plain`` (the views of one image must not be split across cross-validation folds); tested on
  the image, and with ``_tta`` on the mean of the test image's views;
- ``avg_flip`` / ``avg_all6``: the probe on the mean of each image's views (C by cross-validation), tested on the
  mean of the test image's views, and with ``_testorig`` on the image alone (no test-time cost).

Reported: accuracy per seed and the mean over seeds per contender; for the best contender of each setting, its
difference from ``plain`` with a 95 % paired-bootstrap interval per seed. Wall and CPU time of the view features.
Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/few_shot_images.py [--shots 8,16,32] [--seeds 0,1,2]
      [--image-size 64]
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from _harness import Benchmark
from _tasks import comparison

BENCH = Benchmark("few_shot_images", __doc__, threads=1)
POOL_PER_CLASS = 60
TEST_PER_CLASS = 100
CROP = 0.85
VIEW_NAMES = ("image", "flip", "crop top-left", "crop top-right", "crop bottom-left", "crop bottom-right")


def views(x):
    """The six views of a preprocessed batch ``(N, C, H, W)``, each of the same shape."""
    from torch.nn import functional as F

    h, w = x.shape[-2:]
    k = int(round(h * CROP))
    out = [x, x.flip(-1)]
    for i, j in ((0, 0), (0, w - k), (h - k, 0), (h - k, w - k)):
        out.append(F.interpolate(x[:, :, i:i + k, j:j + k], size=(h, w), mode="bilinear", align_corners=False))
    return out


def view_features(backbone, dataset, batch_size: int = 64) -> np.ndarray:
    """``(views, N, D)``: the backbone's pooled features of every view of every image."""
    import torch

    batches = []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            stop = min(len(dataset), start + batch_size)
            x = backbone.collate([backbone.prepare(dataset.items[i]) for i in range(start, stop)])
            batches.append([backbone.forward_features(v).numpy() for v in views(x)])
    return np.stack([np.concatenate([b[v] for b in batches]) for v in range(len(VIEW_NAMES))])


def one(V: np.ndarray, y: np.ndarray, V_test: np.ndarray, y_test: np.ndarray, shots: int, seed: int) -> dict:
    from transferkit.estimators.linear_probe import LinearProbe

    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in np.unique(y)])
    y_l = y[rows]
    plain = LinearProbe(random_state=seed).fit(V[0, rows], y_l)
    predictions = {"plain": plain.predict(V_test[0])}
    for name, chosen in (("flip", [0, 1]), ("all6", list(range(len(VIEW_NAMES))))):
        as_rows = LinearProbe(C=plain.C_, random_state=seed).fit(np.concatenate([V[v, rows] for v in chosen]),
                                                                 np.tile(y_l, len(chosen)))
        predictions[f"rows_{name}"] = as_rows.predict(V_test[0])
        predictions[f"rows_{name}_tta"] = as_rows.predict(V_test[chosen].mean(0))
        averaged = LinearProbe(random_state=seed).fit(V[chosen][:, rows].mean(0), y_l)
        predictions[f"avg_{name}"] = averaged.predict(V_test[chosen].mean(0))
        predictions[f"avg_{name}_testorig"] = averaged.predict(V_test[0])
    accuracy = {k: float(np.mean(p == y_test)) for k, p in predictions.items()}
    best = max((k for k in accuracy if k != "plain"), key=accuracy.get)
    return {"shots": shots, "seed": seed, "C_plain": plain.C_, "accuracy": accuracy,
            "all6_rows_vs_plain": comparison(y_test, predictions["rows_all6"], predictions["plain"], "plain",
                                             seed=seed),
            "best_of_seed": best}


def main() -> None:
    parser = BENCH.parser(seeds="0,1,2")
    parser.add_argument("--shots", default="8,16,32", help="labelled images per class (default 8,16,32)")
    parser.add_argument("--image-size", type=int, default=64, help="input size in px (default 64)")
    args = BENCH.parse(parser)
    from transferkit.backbones import create_backbone
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class

    pool = sample_per_class(load_fashion_mnist("train"), POOL_PER_CLASS, 0)
    test = sample_per_class(load_fashion_mnist("test"), TEST_PER_CLASS, 0)
    backbone = create_backbone("efficientnet_lite0", image_size=args.image_size).eval()
    wall, cpu = time.perf_counter(), time.process_time()
    with BENCH.step("view features"):
        V, V_test = view_features(backbone, pool), view_features(backbone, test)
    feature_time = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1),
                    "images": len(pool) + len(test), "views": len(VIEW_NAMES)}
    y, y_test = pool.label_array(pool.classes), test.label_array(pool.classes)
    results = {}
    for shots in (int(s) for s in args.shots.split(",")):
        with BENCH.step(f"{shots} per class"):
            runs = [one(V, y, V_test, y_test, shots, seed) for seed in args.seeds]
        mean = {k: round(statistics.mean(r["accuracy"][k] for r in runs), 4) for k in runs[0]["accuracy"]}
        results[f"fashion-mnist/{shots}"] = {"runs": runs, "mean": mean}
        print(f"{shots:3d}/class  " + "  ".join(f"{k} {v:.3f}" for k, v in mean.items()), flush=True)
        print("      all6 rows vs plain per seed: " + ", ".join(
            f"{r['all6_rows_vs_plain']['difference']:+.3f} [{r['all6_rows_vs_plain']['ci_low']:+.3f}, "
            f"{r['all6_rows_vs_plain']['ci_high']:+.3f}]" for r in runs), flush=True)
    BENCH.save("few_shot_images", {"seeds": args.seeds, "image_size": args.image_size, "views": VIEW_NAMES,
                                   "crop": CROP, "pool_per_class": POOL_PER_CLASS, "test_per_class": TEST_PER_CLASS,
                                   "view_features": feature_time, "results": results})


if __name__ == "__main__":
    main()
