"""Label issues: how well ``explore`` finds flipped labels, and what removing them buys.

Data: Fashion-MNIST (``--per-class`` training images per class from the training split, 100 per class from the test
split; efficientnet_lite0 features at ``--image-size`` px) and VADER movies (binary sentiment; ``--per-class`` texts
per class, 100 per class held out; all-MiniLM-L6-v2 features). Noise, 10 % of the training labels:
- ``symmetric``: 10 % of the examples, each given one of the other classes at random;
- ``class-conditional``: the same number of flips, each class moved to one fixed other class (Fashion-MNIST: class
  ``c`` -> ``c + 1``, a systematic confusion; VADER: positive -> negative only, 20 % of the positives).
Finder: ``explore``'s own steps (:mod:`transferkit.exploration.analysis`): out-of-fold probabilities of a 5-fold
linear probe (C chosen once by the probe's cross-validation), then confident learning (cleanlab's
``find_label_issues``, prune by noise rate). Reported: precision (= recall) of the top-k by the label-issue score
at the true number of flips k; precision and recall of the flagged set; test accuracy of the probe trained on the
noisy labels, on the noisy labels less the flagged examples, and on the clean labels, with the paired-bootstrap
interval of cleaned minus noisy. Target: precision >= 0.7 at 10 % symmetric noise, and a measurable gain.
Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/label_issues.py [--quick] [--seeds 0,1,2]
"""

from __future__ import annotations

import statistics

import numpy as np

from _harness import Benchmark
from _tasks import comparison, frozen_features, split_per_class

BENCH = Benchmark("label_issues", __doc__, threads=2)
NOISE = 0.10


def _flip(y: np.ndarray, classes: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    count = int(round(NOISE * len(y)))
    if kind == "symmetric":
        rows = rng.choice(len(y), count, replace=False)
        noisy[rows] = (y[rows] + rng.integers(1, classes, size=count)) % classes
    elif classes == 2:  # positives (class 1) only
        rows = rng.choice(np.flatnonzero(y == 1), count, replace=False)
        noisy[rows] = 0
    else:
        rows = rng.choice(len(y), count, replace=False)
        noisy[rows] = (y[rows] + 1) % classes
    return noisy


def _data(name: str, per_class: int, image_size: int):
    from transferkit.data.builtin import load_fashion_mnist, load_vader
    from transferkit.data.splits import sample_per_class

    if name == "fashion-mnist":
        train = sample_per_class(load_fashion_mnist("train"), per_class, 0)
        test = sample_per_class(load_fashion_mnist("test"), 100, 0)
        backbone, options = "efficientnet_lite0", {"image_size": image_size}
    else:
        train, _, test = split_per_class(load_vader("movies"), per_class, 0, 100, 0)
        backbone, options = "all-MiniLM-L6-v2", {}
    with BENCH.step(f"{name} features"):
        X, X_test = (frozen_features(backbone, d, **options) for d in (train, test))
    classes = train.classes
    return X, train.label_array(classes), X_test, test.label_array(classes), len(classes)


def _one(X, y, X_test, y_test, classes: int, kind: str, seed: int) -> dict:
    from transferkit.exploration.analysis import label_issues, out_of_fold_probabilities
    from transferkit.tasks import get_task

    task = get_task("classification")
    noisy = _flip(y, classes, kind, seed)
    wrong = noisy != y
    proba, chosen = out_of_fold_probabilities(X, noisy, task, folds=5, seed=seed)
    score, flagged, method = label_issues(noisy, proba)
    top = np.argsort(-score)[:wrong.sum()]
    fits = {}
    for name, keep in (("noisy", np.ones(len(y), bool)), ("cleaned", ~flagged), ("clean", None)):
        labels = y if keep is None else noisy[keep]
        rows = np.ones(len(y), bool) if keep is None else keep
        fits[name] = task.new_probe(C=chosen, seed=seed).fit(X[rows], labels).predict(X_test)
    return {"flips": int(wrong.sum()), "precision_at_k": float(wrong[top].mean()),
            "flagged": int(flagged.sum()),
            "flagged_precision": float(wrong[flagged].mean()) if flagged.any() else 0.0,
            "flagged_recall": float(flagged[wrong].mean()),
            **{f"accuracy_{k}": float((p == y_test).mean()) for k, p in fits.items()},
            "cleaned_vs_noisy": comparison(y_test, fits["cleaned"], fits["noisy"], "noisy labels", seed=seed),
            "method": method, "C": chosen}


def main() -> None:
    parser = BENCH.parser(quick="60 examples per class, one seed", seeds="0,1,2")
    parser.add_argument("--per-class", type=int, default=300, help="training examples per class (default 300)")
    parser.add_argument("--image-size", type=int, default=112, help="Fashion-MNIST input size in px (default 112)")
    parser.add_argument("--datasets", default="fashion-mnist,vader-movies")
    args = BENCH.parse(parser)
    per_class, seeds = (60, [0]) if args.quick else (args.per_class, args.seeds)
    results = {}
    for name in args.datasets.split(","):
        X, y, X_test, y_test, classes = _data(name, per_class, args.image_size)
        for kind in ("symmetric", "class-conditional"):
            with BENCH.step(f"{name} {kind}"):
                runs = [_one(X, y, X_test, y_test, classes, kind, seed) for seed in seeds]
            mean = {k: statistics.mean(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float)}
            results[f"{name}/{kind}"] = {"runs": runs, "mean": {k: round(v, 4) for k, v in mean.items()}}
            print(f"{name:14s} {kind:17s} P@k {mean['precision_at_k']:.3f}  flagged P {mean['flagged_precision']:.3f}"
                  f" R {mean['flagged_recall']:.3f}  acc noisy {mean['accuracy_noisy']:.3f} cleaned "
                  f"{mean['accuracy_cleaned']:.3f} clean {mean['accuracy_clean']:.3f}  "
                  f"(seed {seeds[0]}: {runs[0]['cleaned_vs_noisy']['verdict']})", flush=True)
    BENCH.save("label_issues_quick" if args.quick else "label_issues",
               {"per_class": per_class, "seeds": seeds, "noise": NOISE, "image_size": args.image_size,
                "results": results})


if __name__ == "__main__":
    main()
