"""The linear probe's choice of ``C``: one warm-started regularisation path per fold against a cold fit per value.

EfficientNet-Lite0 (packaged ImageNet weights) features of ``--per-class`` Fashion-MNIST training images per class
at ``--image-size`` pixels (the setting of ``benchmarks/auto.py`` at 1,000 labels per class, where the probe's
search and the raw-pixel baseline's took more than a 300 s budget). Both sides use the same standardised features, the same stratified folds and
the same seven values of ``C`` (``LinearProbe``'s defaults, 1e-4 .. 1e2):

- ``cold``: a fresh L-BFGS logistic regression for every (fold, C), the way ``LinearProbe`` searched before;
- ``path``: ``LinearProbe._select_C`` as it is now: per fold, the values from the smallest ``C`` up, each fit
  starting from the previous solution.

Reported: seconds of each search (run one after the other, path first, in one process), the ratio, the validation
accuracy of every C on both sides and the chosen C. The strictly convex objective has one optimum per C, so both
should choose the same C; differences come from L-BFGS stopping at ``max_iter`` before converging.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_path.py [--per-class 500] [--image-size 32]
Saves benchmarks/results/probe_path.json.
"""

from __future__ import annotations

import warnings

from _harness import Benchmark


def main() -> None:
    bench = Benchmark("probe_path", __doc__, threads=1)
    parser = bench.parser(seed=0)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=32)
    args = bench.parse(parser)
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning

    from transferkit.backbones import create_backbone
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class
    from transferkit.features.extract import extract_features
    from transferkit.estimators.linear_probe import LinearProbe, _floor_scale

    train = sample_per_class(load_fashion_mnist("train"), args.per_class, args.seed)
    backbone = create_backbone("efficientnet_lite0", image_size=args.image_size)
    with bench.step("features") as step:
        X = extract_features(backbone, train, cache=None, device="cpu", progress=False)
    extraction_s = step.wall_s
    y = train.label_array(train.classes)

    probe = LinearProbe(random_state=args.seed)
    from sklearn.preprocessing import StandardScaler

    probe.scaler_ = StandardScaler().fit(X)
    _floor_scale(probe.scaler_)
    Xs = probe.scaler_.transform(X)
    probe.n_features_in_ = X.shape[1]

    with bench.step("path") as step:
        path_scores = probe._select_C(Xs, y, None, None)
    path_s = step.wall_s

    # the cold search on the same folds
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    from transferkit.estimators.linear_probe import LARGE_DATA

    if len(y) > LARGE_DATA:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=args.seed)
    else:
        splitter = StratifiedKFold(n_splits=probe.cv, shuffle=True, random_state=args.seed)
    folds = list(splitter.split(np.zeros(len(y)), y))
    cold_scores = {}
    with bench.step("cold") as step, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in probe.Cs:
            accs = [float(np.mean(probe._new_model(C).fit(Xs[a], y[a]).predict(Xs[b]) == y[b])) for a, b in folds]
            cold_scores[float(C)] = float(np.mean(accs))
    cold_s = step.wall_s

    def chosen(scores):
        best = max(scores.values())
        return min(c for c, s in scores.items() if s >= best - 1e-12)

    report = {
        "n_train": len(y), "features": int(X.shape[1]), "folds": len(folds), "Cs": [float(c) for c in probe.Cs],
        "extraction_seconds": round(extraction_s, 2),
        "path_seconds": round(path_s, 2), "cold_seconds": round(cold_s, 2), "speedup": round(cold_s / path_s, 2),
        "path_scores": path_scores, "cold_scores": cold_scores,
        "path_C": chosen(path_scores), "cold_C": chosen(cold_scores),
        "max_score_difference": max(abs(path_scores[c] - cold_scores[c]) for c in cold_scores),
    }
    print(f"{len(y)} examples x {X.shape[1]} features, {len(folds)} folds x {len(probe.Cs)} values of C:")
    print(f"  cold {cold_s:.1f} s, path {path_s:.1f} s: {report['speedup']:.1f}x faster")
    print(f"  chosen C: path {report['path_C']:g} (CV {max(path_scores.values()):.4f}), "
          f"cold {report['cold_C']:g} (CV {max(cold_scores.values()):.4f}); "
          f"largest difference of a CV score {report['max_score_difference']:.4f}")
    bench.save("probe_path", report)


if __name__ == "__main__":
    main()
