"""Semi-supervised probe (``fit --unlabelled``) against the labelled-only probe: few labels plus 2,000 unlabelled.

Data: Fashion-MNIST (a pool of 250 training images per class, efficientnet_lite0 features at ``--image-size`` px;
100 test images per class from the test split) and VADER movies (a pool of 1,100 texts per class and 100 per class
held out; all-MiniLM-L6-v2 features). Per seed and number of labels per class (``--shots``, default 4 and 20): the
labelled examples drawn from the pool, 2,000 unlabelled examples drawn from the rest of it (labels dropped).
Contenders, all on the same features and the same C (chosen by the probe's cross-validation on the labelled
examples, as ``fit`` does):
- ``labelled-only``: the linear probe on the labelled examples;
- ``pseudo-labels``: curriculum pseudo-labelling, 5 rounds (:mod:`transferkit.estimators.pseudo_labels`);
- ``fit``: what ``fit --unlabelled`` keeps: pseudo-labels when folds of the labelled data show no loss
  (``keep_by_folds``), else the labelled-only probe.
Reported per seed: test accuracy of each, and ``fit`` minus labelled-only with its 95 % paired-bootstrap interval;
over seeds: means. Target: >= +5 points at 4 labels per class on both datasets, never a measurable loss at 20.
Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/semi_supervised.py [--quick] [--seeds 0,1,2]
"""

from __future__ import annotations

import statistics

import numpy as np

from _harness import Benchmark
from _tasks import comparison, frozen_features, split_per_class

BENCH = Benchmark("semi_supervised", __doc__, threads=2)
UNLABELLED = 2000


def _pool(name: str, image_size: int):
    from transferkit.data.builtin import load_fashion_mnist, load_vader
    from transferkit.data.splits import sample_per_class

    if name == "fashion-mnist":
        pool = sample_per_class(load_fashion_mnist("train"), 250, 0)
        test = sample_per_class(load_fashion_mnist("test"), 100, 0)
        backbone, options = "efficientnet_lite0", {"image_size": image_size}
    else:
        pool, _, test = split_per_class(load_vader("movies"), 1100, 0, 100, 0)
        backbone, options = "all-MiniLM-L6-v2", {}
    with BENCH.step(f"{name} features"):
        X, X_test = (frozen_features(backbone, d, **options) for d in (pool, test))
    classes = pool.classes
    return X, pool.label_array(classes), X_test, test.label_array(classes)


def _draw(y: np.ndarray, shots: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labelled = np.concatenate([rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in np.unique(y)])
    rest = np.setdiff1d(np.arange(len(y)), labelled)
    return labelled, rng.choice(rest, min(UNLABELLED, len(rest)), replace=False)


def _one(X, y, X_test, y_test, shots: int, seed: int) -> dict:
    from transferkit.estimators.pseudo_labels import curriculum_pseudo_labels
    from transferkit.tasks import get_task
    from transferkit.workflows.semi_supervised import ROUNDS, keep_by_folds

    task = get_task("classification")
    labelled, unlabelled = _draw(y, shots, seed)
    X_l, y_l, X_u = X[labelled], y[labelled], X[unlabelled]
    plain = task.new_probe(seed=seed).fit(X_l, y_l)

    def new_probe():
        return task.new_probe(C=plain.C_, seed=seed)

    semi, facts = curriculum_pseudo_labels(new_probe, X_l, y_l, X_u, rounds=ROUNDS)
    keep, folds = keep_by_folds(new_probe, X_l, y_l, X_u, seed)
    predictions = {"labelled-only": plain.predict(X_test), "pseudo-labels": semi.predict(X_test)}
    predictions["fit"] = predictions["pseudo-labels"] if keep else predictions["labelled-only"]
    return {**{f"accuracy_{k}": float((p == y_test).mean()) for k, p in predictions.items()},
            "kept": keep, "folds": folds, "C": plain.C_, "mix_distance": facts.mix_distance,
            "fit_vs_labelled_only": comparison(y_test, predictions["fit"], predictions["labelled-only"],
                                               "labelled-only", seed=seed),
            "pseudo_vs_labelled_only": comparison(y_test, predictions["pseudo-labels"],
                                                  predictions["labelled-only"], "labelled-only", seed=seed)}


def main() -> None:
    parser = BENCH.parser(quick="one seed", seeds="0,1,2")
    parser.add_argument("--shots", default="4,20", help="labelled examples per class (default 4,20)")
    parser.add_argument("--image-size", type=int, default=112, help="Fashion-MNIST input size in px (default 112)")
    parser.add_argument("--datasets", default="fashion-mnist,vader-movies")
    args = BENCH.parse(parser)
    seeds = [0] if args.quick else args.seeds
    results = {}
    for name in args.datasets.split(","):
        X, y, X_test, y_test = _pool(name, args.image_size)
        for shots in (int(s) for s in args.shots.split(",")):
            with BENCH.step(f"{name} {shots} per class"):
                runs = [_one(X, y, X_test, y_test, shots, seed) for seed in seeds]
            mean = {k: round(statistics.mean(r[k] for r in runs), 4) for k in runs[0] if k.startswith("accuracy")}
            results[f"{name}/{shots}"] = {"runs": runs, "mean": mean}
            verdicts = ", ".join(r["fit_vs_labelled_only"]["verdict"] for r in runs)
            print(f"{name:14s} {shots:3d}/class  labelled-only {mean['accuracy_labelled-only']:.3f}  pseudo-labels "
                  f"{mean['accuracy_pseudo-labels']:.3f}  fit {mean['accuracy_fit']:.3f}  "
                  f"kept {sum(r['kept'] for r in runs)}/{len(runs)}  ({verdicts})", flush=True)
    BENCH.save("semi_supervised_quick" if args.quick else "semi_supervised",
               {"seeds": seeds, "unlabelled": UNLABELLED, "image_size": args.image_size, "results": results})


if __name__ == "__main__":
    main()
