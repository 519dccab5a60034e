"""Domain adaptation benchmark, text: VADER movie-review snippets (labelled) -> tweets (unlabelled).

Frozen all-MiniLM-L6-v2 features (computed once, cached), a small trainable bottleneck head per method on top
(full fine-tuning of MiniLM for every method and seed does not fit a 2-core CPU). Binary sentiment: rows with
|valence| < 0.5 dropped, the sign is the label (../shared/datasets/vader, Latin-1). By default every labelled
movie snippet (10,072) is the source and every tweet (3,432) the unlabelled target, as a user would adapt with all
they have; then the seeds differ in the training seed only (``--n-source`` / ``--n-target`` draw a random sample per
seed instead). Each seed runs ``adapt(method="auto")``: every method (its trade-off weight chosen by the label-free
validator), the validator's choice among all of them, source-only (the same head without an adaptation term, and
``source-probe``, the linear probe on the source features), and, as the ceiling, a linear probe trained on labelled tweets (5-fold
cross-validation on the target sample). Target labels are used only to score.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adapt_text.py [--quick]
"""

from __future__ import annotations

import numpy as np

from _harness import Benchmark
from adapt_common import print_table, run_record, summarise


def sample(dataset, n: int, seed: int):
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(dataset), size=min(n or len(dataset), len(dataset)), replace=False))
    return dataset.subset(idx)


def main() -> None:
    bench = Benchmark("adapt_text", __doc__, threads=1)
    parser = bench.parser(quick="1 seed, 600 texts per domain, 4 epochs", seeds=3)
    parser.add_argument("--n-source", type=int, default=None, help="movie snippets used as the labelled source "
                        "(default: all 10,072; fewer: a random sample per seed)")
    parser.add_argument("--n-target", type=int, default=None, help="tweets used as the unlabelled target (default: "
                        "all 3,432; fewer: a random sample per seed)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--validator", default="im")
    parser.add_argument("--known-prior", action="store_true", help="give adapt the tweets' class mix (target_prior, "
                        "counted from their labels: what a user who knows the share of positive tweets would pass); "
                        "not a label-free result")
    args = bench.parse(parser)
    if args.quick:
        args.seeds, args.n_source, args.n_target, args.epochs = 1, 600, 600, 4

    from transferkit.backbones import create_backbone
    from transferkit.data.builtin import load_vader
    from transferkit.evaluation.validators import ALL_VALIDATORS
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features
    from transferkit.api import default_cache_dir
    from transferkit.workflows.adapt import adapt
    from transferkit.estimators.linear_probe import LinearProbe
    from sklearn.model_selection import cross_val_score

    movies, tweets = load_vader("movies"), load_vader("tweets")
    backbone = create_backbone("all-MiniLM-L6-v2")
    cache = FeatureCache(default_cache_dir())
    runs, in_domain = [], []
    for seed in range(args.seeds):
        source, target = sample(movies, args.n_source, seed), sample(tweets, args.n_target, 100 + seed)
        prior = None
        if args.known_prior:
            prior = {c: float(np.mean(np.asarray(target.labels) == c)) for c in source.classes}
        with bench.step("adapt") as step:
            result = adapt(source, target, backbone=backbone, target_labels=list(target.labels), method="auto",
                           target_prior=prior, validator=args.validator, seed=seed, epochs=args.epochs,
                           progress=False, embedding="none")
        seconds = step.wall_s
        record = run_record(result.report, args.validator, seconds)
        X_target = extract_features(backbone, target, cache=cache, progress=False)
        ceiling = float(np.mean(cross_val_score(LinearProbe(random_state=seed), X_target,
                                                np.asarray(target.labels), cv=5)))
        record["in_domain_probe"] = ceiling
        in_domain.append(ceiling)
        runs.append(record)
        print(f"seed {seed}: {seconds:.0f} s; source-only {record['source_only_accuracy']:.4f}, "
              f"choice ({args.validator}) {record['choice_by_validator'][args.validator]['choice']} "
              f"{record['choice_by_validator'][args.validator]['target_accuracy']:.4f}, in-domain {ceiling:.4f}",
              flush=True)
    summary = summarise(runs, list(ALL_VALIDATORS))
    source_only = summary["methods"]["source-only"]["mean"]
    ceiling = float(np.mean(in_domain))
    chosen = summary["label_free_choice"][args.validator]["mean"]
    gap_closed = (chosen - source_only) / (ceiling - source_only) if ceiling > source_only else float("nan")
    probe_only = summary["methods"]["source-probe"]["mean"]  # adapt's plain probe on the source features
    gap_closed_probe = (chosen - probe_only) / (ceiling - probe_only) if ceiling > probe_only else float("nan")
    print_table(f"VADER movies -> tweets, MiniLM frozen features + bottleneck head, {args.seeds} seeds, "
                f"{args.threads} thread(s)", summary, {"in-domain probe": ceiling},
                args.validator)
    print(f"gap closed by the label-free choice: {100 * gap_closed:.0f}% of (in-domain - source-only); "
          f"{100 * gap_closed_probe:.0f}% of (in-domain - source-only probe); target: at least 33%")
    sizes = "" if args.quick else "".join(f"_{tag}{n}" for tag, n in (("src", args.n_source), ("tgt", args.n_target)) if n)
    name = ("adapt_text" + ("_quick" if args.quick else "") + sizes
            + ("" if args.validator == "im" else f"_{args.validator}") + ("_prior" if args.known_prior else ""))
    bench.save(name, {
        "task": "VADER movies -> tweets", "backbone": "all-MiniLM-L6-v2 (frozen, cached features)",
        "settings": vars(args), "summary": summary, "in_domain_probe": ceiling, "source_only_probe": probe_only,
        "gap_closed": gap_closed, "gap_closed_over_probe": gap_closed_probe,
        "target": "close at least a third of the gap between source-only and in-domain", "runs": runs})


if __name__ == "__main__":
    main()
