"""Does fine-tuning beat the linear probe and training from scratch? Side by side in one run, on packaged weights:

- ``fashion``: EfficientNet-Lite0 (ImageNet) on Fashion-MNIST, ``--shots`` labelled images per class (default 100),
  tested on a stratified sample of the official test split;
- ``vader``: all-MiniLM-L6-v2 on the VADER movie-review snippets (binary sentiment), ``--text-shots`` per class
  (default 400), tested on held-out snippets of the same domain.

For each task, on the same training examples and the same test examples: the linear probe (cached features,
C by cross-validation), ``finetune`` (every layer, AdamW, warm-up + cosine, light augmentation, early stopping on a
15 % validation part), ``lp-ft`` (the probe as the starting head, then the same fine-tuning), and the from-scratch
baseline (the same architecture from random weights, the same budget). Differences come with a 95 % paired
bootstrap interval (``transferkit.evaluation.verdict.compare``).

With ``--seeds N`` each seed draws its own training and test samples and trains with its own seed; the
comparisons then pool every seed's test predictions (the interval resamples test examples, not seeds), and the
per-seed rows are kept.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/finetune_transfer.py [--tasks fashion,vader] [--seeds N] [--quick]
Saves benchmarks/results/finetune_transfer.json (or finetune_transfer_quick.json); tasks run separately are merged
into one file, each with the command that produced it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _harness import Benchmark, choose
from _tasks import comparison, fashion_task, vader_pools

BENCH = Benchmark("finetune_transfer", __doc__, threads=2)
TASKS = ("fashion", "vader")


def load_task(task: str, shots: int, n_test: int, seed: int = 0):
    """(backbone name, training set, test set) with ``shots`` examples per class and ``n_test`` test examples."""
    from transferkit.data.splits import sample_per_class

    if task == "fashion":
        return ("efficientnet_lite0", *fashion_task(shots, n_test // 10, seed))
    if task == "vader":
        pool, held_out = vader_pools("movies", seed=seed)
        return "all-MiniLM-L6-v2", sample_per_class(pool, shots, seed), sample_per_class(held_out, n_test // 2, seed)
    raise SystemExit(f"unknown task {task!r}; choose fashion or vader")


def run_task(task: str, *, shots: int, n_test: int, epochs: int, batch_size: int, lr: float | None,
             work: Path, seed: int = 0, echo=print, image_size: int | None = None, augment: str = "light",
             lp_ft_lr: float | None = None) -> dict:
    """Every contender on one task; returns accuracies, comparisons, times and the commands' options, and under
    ``"_predictions"`` / ``"_y_test"`` the test predictions (for pooling seeds; not saved)."""
    import transferkit as tk
    from transferkit.evaluation.scratch import scratch_baseline
    from transferkit.features.cache import FeatureCache

    backbone, train, test = load_task(task, shots, n_test, seed)
    classes = train.classes
    y_test = test.label_array(classes)
    image_size = image_size if task == "fashion" else None
    common = dict(test=test, backbone=backbone, seed=seed, progress=False, tracking_uri="off", device="cpu",
                  batch_size=batch_size, cache_dir=str(work / "features"), image_size=image_size)
    training = dict(epochs=epochs, baselines=["raw"], work_dir=str(work / "runs"), augment=augment)
    learning_rates = {"finetune": lr, "lp-ft": lp_ft_lr if lp_ft_lr is not None else lr}
    rows: dict[str, dict] = {}
    predictions = {}

    with BENCH.step(f"{task} linear-probe") as step:
        probe = tk.fit(train, strategy="linear-probe", baselines=["raw"], **common)
        predictions["linear-probe"] = probe.model.predict_proba(test, batch_size=batch_size, device="cpu",
                                                                cache=FeatureCache(work / "features"),
                                                                progress=False).argmax(1)
    rows["linear-probe"] = {"accuracy": probe.accuracy, "seconds": round(step.wall_s, 1)}
    rows["raw"] = {"accuracy": probe.baselines["raw"]["accuracy"], "description": probe.baselines["raw"]["description"]}
    echo(f"[{task}] linear probe {probe.accuracy:.4f} (raw {rows['raw']['accuracy']:.4f})")

    for strategy in ("finetune", "lp-ft"):
        with BENCH.step(f"{task} {strategy}") as step:
            result = tk.fit(train, strategy=strategy, lr=learning_rates[strategy], **common, **training)
            predictions[strategy] = result.model.predict_proba(test, batch_size=batch_size, device="cpu",
                                                               progress=False).argmax(1)
        facts = result.config["training"]
        rows[strategy] = {"accuracy": result.accuracy, "seconds": round(step.wall_s, 1),
                          "epochs_run": facts["training"]["epochs_run"], "best_epoch": facts["training"]["best_epoch"],
                          "lr": facts["lr"]}
        echo(f"[{task}] {strategy} {result.accuracy:.4f} ({rows[strategy]['seconds']:.0f} s)")

    from transferkit.config import make_config

    with BENCH.step(f"{task} scratch") as step:
        config = make_config(strategy="finetune", epochs=epochs, batch_size=batch_size, seed=seed, progress=False,
                             tracking_uri="off", device="cpu", work_dir=str(work / "runs"), image_size=image_size,
                             augment=augment)
        scratch = scratch_baseline(train, test, classes, seed=seed, config=config, backbone=backbone)
    predictions["scratch"] = scratch.predictions
    rows["scratch"] = {"accuracy": float((scratch.predictions == y_test).mean()),
                       "seconds": round(step.wall_s, 1), **scratch.extra}
    echo(f"[{task}] scratch {rows['scratch']['accuracy']:.4f} ({rows['scratch']['seconds']:.0f} s)")

    return {"backbone": backbone, "shots_per_class": shots, "n_train": len(train), "n_test": len(test),
            "epochs": epochs, "batch_size": batch_size, "image_size": image_size or "pretrained", "augment": augment,
            "seed": seed, "results": rows, "comparisons": comparisons(y_test, predictions, seed),
            "_predictions": predictions, "_y_test": y_test}


def comparisons(y_test, predictions: dict, seed: int = 0) -> dict:
    """finetune and lp-ft against the probe and the scratch baseline: differences with paired bootstrap intervals."""
    return {f"{model} vs {baseline}": comparison(y_test, predictions[model], predictions[baseline], baseline, seed)
            for model in ("finetune", "lp-ft") for baseline in ("linear-probe", "scratch")}


def saved(run: dict) -> dict:
    """A run's entry as saved: without the test predictions kept for pooling."""
    return {k: v for k, v in run.items() if not k.startswith("_")}


def pooled(runs: list[dict]) -> dict:
    """Several seeds of one task as one entry: per-seed rows, mean accuracies, and comparisons on the pooled test
    predictions (every seed's test examples together; each seed draws its own training and test samples)."""
    import numpy as np

    names = list(runs[0]["results"])
    y = np.concatenate([r["_y_test"] for r in runs])
    predictions = {name: np.concatenate([r["_predictions"][name] for r in runs]) for name in runs[0]["_predictions"]}
    entry = {k: v for k, v in saved(runs[0]).items() if k not in ("results", "comparisons", "seed", "n_test")}
    entry.update(seeds=len(runs), n_test_per_seed=runs[0]["n_test"],
                 results={name: {"accuracy": round(float(np.mean([r["results"][name]["accuracy"] for r in runs])), 4),
                                 "per_seed": [r["results"][name]["accuracy"] for r in runs]} for name in names},
                 comparisons=comparisons(y, predictions),
                 per_seed=[saved(r) for r in runs])
    return entry


def main() -> None:
    parser = BENCH.parser(quick="20 images / 100 snippets per class, 300 test, 2 epochs", seeds=1,
                          seeds_help="seeds (each draws its own training and test samples); with more than one, the "
                                     "comparisons pool every seed's test predictions")
    parser.add_argument("--tasks", default="fashion,vader")
    parser.add_argument("--shots", type=int, default=100, help="Fashion-MNIST labelled images per class")
    parser.add_argument("--text-shots", type=int, default=400, help="VADER labelled snippets per class")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=None,
                        help="Fashion-MNIST: input resolution for every contender (default: the backbone's 224 px)")
    parser.add_argument("--augment", default="light", help="augmentation preset of every trained contender")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of finetune and lp-ft (default: theirs)")
    parser.add_argument("--lp-ft-lr", type=float, default=None, help="learning rate of lp-ft (default: --lr)")
    args = BENCH.parse(parser)
    if args.quick:
        args.shots, args.text_shots, args.n_test, args.epochs = 20, 100, 300, 2
    tasks = choose(parser, "--tasks", args.tasks, TASKS)
    results_name = "finetune_transfer_quick" if args.quick else "finetune_transfer"
    BENCH.previous(results_name)  # merged into at the end: a damaged file stops the run here, not after it
    report: dict = {"tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            shots = args.shots if task == "fashion" else args.text_shots
            runs = [run_task(task, shots=shots, n_test=args.n_test, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, lp_ft_lr=args.lp_ft_lr, work=Path(tmp) / task / str(seed), seed=seed,
                             image_size=args.image_size, augment=args.augment) for seed in range(args.seeds)]
            report["tasks"][task] = pooled(runs) if len(runs) > 1 else saved(runs[0])
    for task, r in report["tasks"].items():
        tested = f"{r['n_test']} test" if "seeds" not in r else f"{r['seeds']} seeds x {r['n_test_per_seed']} test"
        print(f"\n{task}: {r['backbone']}, {r['shots_per_class']} per class ({r['n_train']} train), "
              f"{tested}, up to {r['epochs']} epochs")
        for name, row in r["results"].items():
            seconds = f"{row['seconds']:7.0f} s" if "seconds" in row else ""
            print(f"  {name:<14} {row['accuracy']:.4f} {seconds}")
        for name, c in r["comparisons"].items():
            print(f"  {name:<26} {100 * c['difference']:+6.1f} points ({100 * c['ci_low']:+.1f} to "
                  f"{100 * c['ci_high']:+.1f}): {c['verdict']}")
    print()
    BENCH.save(results_name, report, merge="tasks")  # tasks run separately (they take long) share one file


if __name__ == "__main__":
    main()
