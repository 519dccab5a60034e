"""``explore`` at scale: 10,000 and 60,000 Fashion-MNIST training images, time and peak memory, and how well its
clusters match the true classes.

Each size runs in its own process (``tk.explore`` on the images as an array Dataset, efficientnet_lite0 at
``--image-size`` px, the default feature cache, ``--map auto``: UMAP above 5,000 examples; neighbours exact up to
20,000, pynndescent above), so that its peak resident memory is its own; the same process then clusters the raw
pixels (PCA to 50 dimensions, k-means with k = 10) for comparison. Reported per size: wall and CPU seconds of the
features and of the whole explore (a second call reads the cache), peak RSS, the number of clusters chosen by the
silhouette score and the adjusted Rand index of explore's clusters against the classes, of k-means with k = 10 on
the same features (``--clusters 10``), and of k-means on raw pixels.
Run:  OMP_NUM_THREADS=2 nice .venv/bin/python benchmarks/explore_scale.py [--quick] [--sizes 10000,60000]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from _harness import Benchmark, peak_rss_mb

BENCH = Benchmark("explore_scale", __doc__, threads=2)


def _child(size: int, image_size: int, work: str) -> dict:
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    import transferkit as tk
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class

    data = sample_per_class(load_fashion_mnist("train"), size // 10, 0)
    truth = data.labels
    timings = {}
    for name, options in (("first", {}), ("cached, k = 10", {"clusters": 10})):
        start, cpu = time.perf_counter(), time.process_time()
        result = tk.explore(data, backbone="efficientnet_lite0", image_size=image_size, device="cpu",
                            output=f"{work}/{size}-{len(timings)}", overwrite=True, progress=False, **options)
        timings[name] = {"wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(time.process_time() - cpu, 1),
                         "clusters": result.facts["cluster_count"], "map": result.facts["map_method"],
                         "neighbours": result.facts["neighbour_search"],
                         "ari": round(adjusted_rand_score(truth, result.table["cluster"]), 4),
                         "outliers": result.facts["outliers"], "exact_duplicates": result.facts["exact_duplicates"],
                         "near_duplicates": result.facts["near_duplicates"]}
    pixels = np.asarray(data.items, dtype=np.float32).reshape(len(data), -1) / 255.0
    start = time.perf_counter()
    reduced = PCA(50, random_state=0).fit_transform(pixels)
    raw = KMeans(10, n_init=4, random_state=0).fit_predict(reduced)
    return {"size": len(data), "explore": timings, "peak_rss_mb": round(peak_rss_mb(), 1),
            "raw_pixels_kmeans": {"ari": round(adjusted_rand_score(truth, raw), 4),
                                  "wall_s": round(time.perf_counter() - start, 1)}}


def main() -> None:
    parser = BENCH.parser(quick="2,000 images only", work=True)
    parser.add_argument("--sizes", default="10000,60000")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--child", type=int, default=None, help=argparse_hidden())
    args = BENCH.parse(parser)
    if args.child is not None:
        print("RESULT " + json.dumps(_child(args.child, args.image_size, args.work)), flush=True)
        return
    sizes = [2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    results = []
    for size in sizes:
        with BENCH.step(f"{size} images"):
            proc = subprocess.run([sys.executable, __file__, "--child", str(size), "--image-size", str(args.image_size),
                                   "--work", args.work, "--threads", str(args.threads)],
                                  capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"size {size} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(line[len("RESULT "):]))
        r = results[-1]
        first = r["explore"]["first"]
        print(f"{size:6d} images: explore {first['wall_s']} s (cpu {first['cpu_s']} s), peak RSS {r['peak_rss_mb']} MB;"
              f" {first['clusters']} clusters ARI {first['ari']}, k=10 ARI {r['explore']['cached, k = 10']['ari']} "
              f"({r['explore']['cached, k = 10']['wall_s']} s cached); raw-pixel k-means ARI "
              f"{r['raw_pixels_kmeans']['ari']}", flush=True)
    BENCH.save("explore_scale_quick" if args.quick else "explore_scale",
               {"image_size": args.image_size, "results": results})


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
