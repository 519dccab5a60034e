"""Regression transfer on VADER sentiment ratings (the mean of 20 human ratings, -4 to +4) in two domains (movie
reviews, Amazon reviews): the MiniLM ridge probe and MiniLM fine-tuning against TF-IDF ridge (the raw baseline) and
the mean predictor, over seeds; R2 and MAE with 95 % bootstrap intervals, and paired intervals of the R2 difference
(transferkit's verdict). Then rank's LogME regression score on MiniLM, MPNet, random-weight MiniLM and TF-IDF (256
LSA dimensions) against each candidate's measured ridge R2 on held-out data.

Each seed draws ``--train`` training and ``--test`` test snippets (disjoint) from the domain. Every model comes from
``transferkit.fit(task="regression")``; the TF-IDF ridge is its raw baseline on the same split.
"""

from __future__ import annotations

import numpy as np

from _harness import Benchmark
from _tasks import probe_and_finetune, text_transfer_parser

DOMAINS = ("movies", "amazon")
CANDIDATES = ("all-MiniLM-L6-v2", "all-mpnet-base-v2", "random:all-MiniLM-L6-v2", "tfidf")


def split(domain: str, n_train: int, n_test: int, seed: int):
    from transferkit.data.builtin import load_vader_ratings

    data = load_vader_ratings(domain)
    order = np.random.default_rng(seed).permutation(len(data))
    return (data.subset(np.sort(order[:n_train]), origin=f"vader/{domain} train (seed {seed})"),
            data.subset(np.sort(order[n_train:n_train + n_test]), origin=f"vader/{domain} test (seed {seed})"))


def figures(metrics: dict) -> dict:
    return {name: {"value": metrics[name], "interval": metrics["intervals"][name]} for name in ("r2", "mae")}


def run_fit(train, test, args, cache_dir: str, **options) -> dict:
    import transferkit as tk
    from transferkit.tasks import get_task

    task = get_task("regression")
    result = tk.fit(train, test=test, task="regression", backbone="all-MiniLM-L6-v2", baselines=["raw"],
                    report=False, progress=False, cache_dir=cache_dir, seed=args.seed_of_run, max_length=args.max_length,
                    **options)
    y_test = task.targets(test, ["value"])
    predicted = task.predictions(result.model.predict_proba(test, progress=False, cache=None))
    mean = np.full(len(y_test), task.targets(train, ["value"]).mean())
    against_mean = task.compare(y_test, predicted, mean, "mean", seed=args.seed_of_run)
    return {"model": figures(result.metrics), "raw": figures(result.baselines["raw"]),
            "raw_description": result.baselines["raw"]["description"],
            "against_raw": result.comparisons[0].to_dict(), "against_mean": against_mean.to_dict()}


def mean_predictor(train, test) -> dict:
    from transferkit.evaluation.task_metrics import regression_metrics
    from transferkit.tasks import get_task

    task = get_task("regression")
    y_test = task.targets(test, ["value"])
    return figures(regression_metrics(y_test, np.full(len(y_test), task.targets(train, ["value"]).mean())))


def rank_candidates(train, test, cache_dir: str, max_length: int) -> dict:
    """LogME (regression form) on each candidate's training features, and the R2 its ridge probe measures on test."""
    from sklearn.decomposition import TruncatedSVD

    from transferkit.backbones import create_backbone
    from transferkit.estimators.task_probes import RidgeProbe
    from transferkit.evaluation.baselines import RawInputEncoder
    from transferkit.evaluation.task_metrics import r2_scores
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features
    from transferkit.selection.scores import logme_regression_score

    y_train = np.array([float(v) for v in train.labels])
    y_test = np.array([float(v) for v in test.labels])
    rows = {}
    for name in CANDIDATES:
        if name == "tfidf":
            encoder = RawInputEncoder().fit(train)
            X_train, X_test = encoder.transform(train), encoder.transform(test)
            probe = RidgeProbe(standardize=encoder.standardize).fit(X_train, y_train)
            scored = TruncatedSVD(256, random_state=0).fit_transform(X_train)
        else:
            import torch

            torch.manual_seed(0)
            backbone = create_backbone(name, max_length=max_length)
            cache = FeatureCache(cache_dir)
            X_train = extract_features(backbone, train, cache=cache, progress=False)
            X_test = extract_features(backbone, test, cache=cache, progress=False)
            probe = RidgeProbe().fit(X_train, y_train)
            scored = X_train
        rows[name] = {"logme": logme_regression_score(scored, y_train),
                      "r2": float(np.mean(r2_scores(y_test, probe.predict(X_test))))}
    by_logme = sorted(rows, key=lambda n: -rows[n]["logme"])
    by_r2 = sorted(rows, key=lambda n: -rows[n]["r2"])
    return {"candidates": rows, "order_by_logme": by_logme, "order_by_r2": by_r2, "same_order": by_logme == by_r2}


def main() -> None:
    bench = Benchmark("regression_transfer", __doc__, threads=2)
    parser = text_transfer_parser(bench, "100 training and 100 test snippets, 1 seed, 1 fine-tuning epoch (a smoke run)",
                                  epochs=4)
    args = bench.parse(parser)
    if args.quick:
        args.train, args.test, args.seeds, args.epochs = 100, 100, [0], 1
    cache_dir = str(bench.work_folder() / "cache")
    results: dict = {"settings": bench.settings("work"), "domains": {}}
    for domain in DOMAINS:
        runs = []
        for seed in args.seeds:
            args.seed_of_run = seed
            train, test = split(domain, args.train, args.test, seed)
            run = {"seed": seed, "mean": mean_predictor(train, test),
                   **probe_and_finetune(bench, run_fit, train, test, args, cache_dir, f"{domain}-{seed}")}
            runs.append(run)
            line = [f"{domain} seed {seed}: mean R2 {run['mean']['r2']['value']:+.3f}",
                    f"TF-IDF ridge R2 {run['probe']['raw']['r2']['value']:+.3f}"]
            for method in ("probe", "finetune"):
                if method in run:
                    r = run[method]
                    line.append(f"MiniLM {method} R2 {r['model']['r2']['value']:+.3f} "
                                f"[{r['model']['r2']['interval'][0]:+.3f}, {r['model']['r2']['interval'][1]:+.3f}] "
                                f"MAE {r['model']['mae']['value']:.3f}; vs TF-IDF {r['against_raw']['difference']:+.3f} "
                                f"[{r['against_raw']['ci_low']:+.3f}, {r['against_raw']['ci_high']:+.3f}] "
                                f"{r['against_raw']['verdict']}")
            print("; ".join(line), flush=True)
        train, test = split(domain, args.train, args.test, args.seeds[0])
        with bench.step("rank"):
            ranking = rank_candidates(train, test, cache_dir, args.max_length)
        print(f"{domain}: LogME order {ranking['order_by_logme']}, R2 order {ranking['order_by_r2']}, same: "
              f"{ranking['same_order']}", flush=True)
        results["domains"][domain] = {"runs": runs, "ranking": ranking}
    bench.save("regression_transfer_quick" if args.quick else "regression_transfer", results)


if __name__ == "__main__":
    main()
