"""``tune --soup`` against the best trial, side by side in one run: does souping the top trials' weights pay?

all-MiniLM-L6-v2 fine-tuned on VADER movie-review snippets (binary sentiment) by ``tune --strategy finetune``
(objective: accuracy on a stratified validation part of the training data; learning rate, weight decay and
layer-wise decay searched; pruning off so that every trial runs to the end); ``--soup`` keeps the top trials'
weights and builds the greedy soup on that validation part (beside it, for reference, the uniform soup of the
same top trials, ``fuse --method soup --soup-method uniform``). The best trial's model and the soups are scored
on held-out snippets of the same domain and on VADER Amazon product-review snippets (a shifted domain), which
influence nothing. Differences come with a 95 % paired bootstrap interval.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tune_soup.py [--trials 6] [--shots 200] [--quick]
Saves benchmarks/results/tune_soup.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _harness import Benchmark
from _tasks import accuracy, comparison, vader_pools


def main() -> None:
    bench = Benchmark("tune_soup", __doc__, threads=1)
    parser = bench.parser(quick="3 trials, 50 snippets per class, 200 test, 1 epoch")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--shots", type=int, default=200, help="labelled snippets per class")
    parser.add_argument("--n-test", type=int, default=1000, help="held-out snippets per test domain")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    args = bench.parse(parser)
    if args.quick:
        args.trials, args.top_k, args.shots, args.n_test, args.epochs = 3, 2, 50, 200, 1
    import numpy as np

    import transferkit as tk
    from transferkit.data.builtin import load_vader
    from transferkit.data.splits import sample_per_class
    from transferkit.workflows.tune import tune

    pool, held_out = vader_pools("movies")
    train = sample_per_class(pool, args.shots, 0)
    test = sample_per_class(held_out, args.n_test // 2, 0)
    shifted = sample_per_class(load_vader("amazon"), args.n_test // 2, 0)
    work = Path(tempfile.mkdtemp(prefix="tk-tune-soup-"))
    space = {"lr": {"low": 3e-5, "high": 3e-4, "log": True}, "weight_decay": {"low": 1e-4, "high": 1e-1, "log": True},
             "finetune.layer_lr_decay": {"low": 0.6, "high": 1.0}}
    with bench.step("search") as step:
        result = tune(train, strategy="finetune", backbone="all-MiniLM-L6-v2", epochs=args.epochs, batch_size=32,
                      max_length=args.max_length, augment="none", tracking_uri="off", device="cpu", progress=False,
                      n_trials=args.trials, top_k=args.top_k, pruning=False, soup=True, space=space,
                      output=str(work / "tune"), work_dir=str(work / "runs"), cache_dir=str(work / "features"))
    seconds = round(step.wall_s, 1)
    print(result.table(), flush=True)
    if result.soup is None:
        raise SystemExit("no soup was made (see the notes above)")
    from transferkit.fusion.soups import soup

    kept = [row["model"] for row in result.top]
    models = {"best trial": tk.load_model(kept[0]), "greedy soup": tk.load_model(result.soup["output"]),
              "uniform soup": soup(kept, method="uniform").model}
    rows, comparisons = {}, {}
    for name, data in (("test", test), ("shifted (amazon)", shifted)):
        y = data.label_array(models["best trial"].classes)
        scored = {key: accuracy(model, data) for key, model in models.items()}
        rows[name] = {key: round(acc, 4) for key, (acc, _) in scored.items()}
        for key in ("greedy soup", "uniform soup"):
            c = comparison(y, np.array(scored[key][1]), np.array(scored["best trial"][1]), "best trial")
            comparisons[f"{name}: {key}"] = c
            print(f"{name:<18} best trial {rows[name]['best trial']:.4f}  {key} {rows[name][key]:.4f}  difference "
                  f"{100 * c['difference']:+.1f} points ({c['ci_low']:+.3f} to {c['ci_high']:+.3f}: {c['verdict']})",
                  flush=True)
    report = {"settings": vars(args), "seconds_search": seconds, "n_train": len(train),
              "validation": {"best_trial": result.top[0]["value"], "soup": result.soup["val_accuracy"],
                             "soup_ingredients": len(result.soup["models"]), "top_k": len(result.top)},
              "top": [{k: v for k, v in row.items() if k not in ("model", "config")} for row in result.top],
              "accuracy": rows, "comparisons": comparisons}
    bench.save("tune_soup_quick" if args.quick else "tune_soup", report)


if __name__ == "__main__":
    main()
