"""Fusion against the best single model, side by side in one run:

- ``text`` (weight space and output space): all-MiniLM-L6-v2 fine-tuned several times on VADER movie-review
  snippets (binary sentiment; a small hyper-parameter search: learning rates and seeds). Against the best single
  run (chosen on validation): weight interpolation between the pretrained backbone + linear probe and that run
  (alpha chosen on validation), the uniform and the greedy soup of all runs, and the uniform and the fitted
  ensemble. Every model is scored on the validation data, an in-domain test set, and a shifted test domain (VADER
  Amazon product-review snippets), which never influences any choice.
- ``stack`` (features): EfficientNet-Lite0, Lite1 and Lite2 (ImageNet) features of few-label Fashion-MNIST,
  concatenated (and, beside it, each reduced to ``--reduce`` PCA components), then the linear probe, against each
  backbone's own probe and the best of them (chosen on validation).

Differences on the test sets come with a 95 % paired bootstrap interval (``transferkit.evaluation.verdict``).
Sized for a shared 2-core CPU: few labels, short texts (``--max-length 64``), few epochs, few runs; images at
each backbone's own resolution but few of them.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fusion.py --parts text,stack
Saves benchmarks/results/fusion.json (parts run separately are merged into it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _harness import Benchmark, choose
from _tasks import accuracy, comparison, split_per_class

BENCH = Benchmark("fusion", __doc__, threads=None)
PARTS = ("text", "stack")


def run_text(args, work: Path, echo=print) -> dict:
    import numpy as np

    import transferkit as tk
    from transferkit.models.artifacts import save_model
    from transferkit.backbones import create_backbone
    from transferkit.config import make_config
    from transferkit.data.builtin import load_vader
    from transferkit.strategies.run import train_with_strategy

    train, val, test = split_per_class(load_vader("movies"), args.shots, args.n_val, args.n_test, args.seed)
    _, _, shifted = split_per_class(load_vader("amazon"), 0, 0, args.n_test, args.seed)
    sets = {"val": val, "test": test, "shifted": shifted}

    def scored(model, entry: dict) -> dict:
        """``entry`` with the model's accuracy and predictions on every set."""
        for s, d in sets.items():
            entry[s], entry[f"{s}_pred"] = accuracy(model, d)
        return entry

    grid = [(float(lr), int(seed)) for lr in args.lrs.split(",") for seed in range(args.runs_per_lr)]
    runs, scores = [], {}
    with BENCH.step("text") as whole:
        for index, (lr, seed) in enumerate(grid):
            config = make_config(strategy="finetune", epochs=args.epochs, batch_size=32, seed=seed, lr=lr,
                                 augment="none", tracking_uri="off", progress=False, patience=0, device="cpu",
                                 work_dir=str(work / f"work-{index}"), max_length=args.max_length)
            with BENCH.step("text: fine-tune") as step:
                trained = train_with_strategy(config, create_backbone("all-MiniLM-L6-v2", max_length=args.max_length),
                                              train, val, train.classes)
                runs.append(save_model(trained.model, work / f"run-{index}"))
            name = f"finetune lr={lr:g} seed={seed}"
            scores[name] = scored(trained.model, {"train_seconds": round(step.wall_s, 1)})
            echo(f"text: {name}: val {scores[name]['val']:.4f} test {scores[name]['test']:.4f} "
                 f"shifted {scores[name]['shifted']:.4f} ({scores[name]['train_seconds']} s)")
        names = list(scores)
        best_index = int(np.argmax([scores[n]["val"] for n in names]))
        best_name = names[best_index]
        results = {f"best single ({best_name})": scores[best_name]}

        with BENCH.step("text: interpolation") as step:
            wise = tk.fuse("interpolate", runs[best_index], val=val, train=train,
                           eval_sets={"test": test, "shifted": shifted}, output=str(work / "wise"), device="cpu")
            chosen = scored(wise.model, {})
        chosen["seconds"] = round(step.wall_s, 1)
        results[f"interpolated (alpha={wise.alpha:g}, chosen on val)"] = chosen
        curve = [{k: round(v, 4) for k, v in row.items()} for row in wise.curve]
        probe_row = wise.curve[0]
        results["pretrained + probe (alpha=0)"] = {s: probe_row[f"{s}_accuracy"] for s in sets}
        echo(f"text: interpolation alpha {wise.alpha}: " + ", ".join(f"{s} {chosen[s]:.4f}" for s in sets))

        for kind in ("uniform", "greedy"):
            with BENCH.step("text: soup") as step:
                soup = tk.fuse("soup", runs, val=val, soup=kind, device="cpu")
                entry = scored(soup.model, {"runs_used": len(soup.used)})
            entry["seconds"] = round(step.wall_s, 1)
            results[f"{kind} soup ({len(soup.used)} of {len(runs)} runs)"] = entry
            echo(f"text: {kind} soup: " + ", ".join(f"{s} {entry[s]:.4f}" for s in sets))
        for weighting in ("uniform", "fitted"):
            with BENCH.step("text: ensemble") as step:
                ens = tk.fuse("ensemble", runs, val=val, weighting=weighting, device="cpu")
                entry = scored(ens.model, {"weights": [round(w, 3) for w in ens.weights]})
            entry["seconds"] = round(step.wall_s, 1)
            results[f"{weighting} ensemble ({len(runs)} runs)"] = entry
            echo(f"text: {weighting} ensemble: " + ", ".join(f"{s} {entry[s]:.4f}" for s in sets))

    comparisons = {}
    base = results[f"best single ({best_name})"]
    for name, entry in results.items():
        if name.startswith("best single") or "test_pred" not in entry:
            continue
        for s in ("test", "shifted"):
            y = sets[s].label_array(train.classes)
            comparisons[f"{name} vs best single, {s}"] = comparison(y, entry[f"{s}_pred"], base[f"{s}_pred"],
                                                                   "best")
    for entry in list(results.values()) + list(scores.values()):
        for s in sets:
            entry.pop(f"{s}_pred", None)
    return {"backbone": "all-MiniLM-L6-v2", "train_domain": "vader/movies", "shifted_domain": "vader/amazon",
            "n": {"train": len(train), "val": len(val), "test": len(test), "shifted": len(shifted)},
            "runs": scores, "results": results, "comparisons": comparisons, "interpolation_curve": curve,
            "settings": {"epochs": args.epochs, "lrs": args.lrs, "runs_per_lr": args.runs_per_lr,
                         "max_length": args.max_length, "shots_per_class": args.shots},
            "seconds": round(whole.wall_s, 1)}


def run_stack(args, work: Path, echo=print) -> dict:
    import transferkit as tk
    from transferkit.data.builtin import load_fashion_mnist

    train, val, test = split_per_class(load_fashion_mnist("train"), args.image_shots, args.image_val,
                                       args.image_test, args.seed)
    names = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    cache = str(work / "cache")
    with BENCH.step("stack: features and probes") as first:
        full = tk.fuse("stack", names, train=train, val=val, eval_sets={"test": test}, cache_dir=cache,
                       device="cpu", seed=args.seed)
    with BENCH.step("stack: reduced, from the cache") as second:
        reduced = tk.fuse("stack", names, train=train, val=val, eval_sets={"test": test}, cache_dir=cache,
                          device="cpu", reduce=args.reduce, seed=args.seed, compare_single=False)
    single = {n: {s: full.single[n][s]["accuracy"] for s in ("val", "test")} for n in names}
    best = max(names, key=lambda n: single[n]["val"])
    results = {f"{n} probe": single[n] for n in names}
    results[f"best single by val ({best})"] = single[best]
    results["stack Lite0+Lite1+Lite2 (3840-d)"] = {s: full.val[s]["accuracy"] for s in ("val", "test")}
    results[f"stack, PCA {args.reduce} per backbone ({3 * args.reduce}-d)"] = {
        s: reduced.val[s]["accuracy"] for s in ("val", "test")}
    for name, entry in results.items():
        echo(f"stack: {name}: val {entry['val']:.4f} test {entry['test']:.4f}")
    y = test.label_array(train.classes)
    from transferkit.backbones import create_backbone
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features
    from transferkit.estimators.linear_probe import LinearProbe

    backbone = create_backbone(best)
    fc = FeatureCache(cache)
    probe = LinearProbe(random_state=args.seed).fit(
        extract_features(backbone, train, cache=fc, progress=False), train.label_array(train.classes),
        extract_features(backbone, val, cache=fc, progress=False), val.label_array(train.classes))
    best_pred = probe.predict(extract_features(backbone, test, cache=fc, progress=False))
    comparisons = {}
    for label, model in (("stack", full.model), (f"stack PCA {args.reduce}", reduced.model)):
        pred = model.predict_proba(test, cache=fc, progress=False).argmax(axis=1)
        comparisons[f"{label} vs {best} probe, test"] = comparison(y, pred, best_pred, best)
    return {"data": "fashion-mnist", "n": {"train": len(train), "val": len(val), "test": len(test)},
            "results": results, "comparisons": comparisons,
            "seconds": {"features_and_probes": round(first.wall_s, 1),
                        "reduced_stack_from_cache": round(second.wall_s, 1)},
            "settings": {"shots_per_class": args.image_shots, "reduce": args.reduce,
                         "resolution": "each backbone's own (224, 240, 260 px)"}}


def main() -> None:
    parser = BENCH.parser(seed=0, full_doc=True)
    parser.add_argument("--parts", default="text,stack")
    parser.add_argument("--shots", type=int, default=128, help="text: labelled training snippets per class")
    parser.add_argument("--n-val", type=int, default=100, help="text: validation snippets per class")
    parser.add_argument("--n-test", type=int, default=150, help="text: test snippets per class (each test set)")
    parser.add_argument("--lrs", default="5e-5,1e-4,2e-4", help="text: learning rates of the fine-tuned runs")
    parser.add_argument("--runs-per-lr", type=int, default=1, help="text: seeds per learning rate")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--image-shots", type=int, default=30)
    parser.add_argument("--image-val", type=int, default=20)
    parser.add_argument("--image-test", type=int, default=50)
    parser.add_argument("--reduce", type=int, default=128)
    args = BENCH.parse(parser)
    parts = choose(parser, "--parts", args.parts, PARTS)
    BENCH.previous("fusion")  # parts run before are merged into the file: a damaged one stops here
    done: dict = {}
    for part in parts:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_text(args, Path(tmp)) if part == "text" else run_stack(args, Path(tmp))
        done[part] = result
        path = BENCH.save("fusion", {"parts": dict(done)}, merge="parts", echo=False)
        print(f"\n{part}: accuracy")
        sets = ["val", "test", "shifted"] if part == "text" else ["val", "test"]
        print(f"  {'model':<58}" + "".join(f"{s:>9}" for s in sets))
        for name, entry in result["results"].items():
            cells = "".join(f"{entry[s]:9.4f}" if isinstance(entry.get(s), float) else f"{'-':>9}" for s in sets)
            print(f"  {name:<58}{cells}")
        for name, c in result["comparisons"].items():
            print(f"  {name}: {100 * c['difference']:+.1f} pts [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] "
                  f"{c['verdict']}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
