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

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multitask import _split  # noqa: E402  (the same disjoint per-class split)

RESULTS = Path(__file__).resolve().parent / "results"


def _accuracy(model, data, **kw) -> tuple[float, list[int]]:
    import numpy as np

    proba = model.predict_proba(data, batch_size=64, device="cpu", cache=None, progress=False)
    pred = proba.argmax(axis=1)
    return float(np.mean(pred == data.label_array(model.classes))), pred.tolist()


def _compare(y, pred, base_pred, name) -> dict:
    from transferkit.evaluation.verdict import compare

    c = compare(y, pred, base_pred, name)
    return {"difference": round(c.difference, 4), "ci_low": round(c.ci_low, 4), "ci_high": round(c.ci_high, 4),
            "verdict": c.verdict}


def run_text(args, work: Path, echo=print) -> dict:
    import numpy as np

    import transferkit as tk
    from transferkit.artifacts import save_model
    from transferkit.backbones import create_backbone
    from transferkit.config import make_config
    from transferkit.data.builtin import load_vader
    from transferkit.strategies.run import train_with_strategy

    train, val, test = _split(load_vader("movies"), args.shots, args.n_val, args.n_test, args.seed)
    _, _, shifted = _split(load_vader("amazon"), 0, 0, args.n_test, args.seed)
    sets = {"val": val, "test": test, "shifted": shifted}
    grid = [(float(lr), int(seed)) for lr in args.lrs.split(",") for seed in range(args.runs_per_lr)]
    runs, scores = [], {}
    start = time.perf_counter()
    for index, (lr, seed) in enumerate(grid):
        config = make_config(strategy="finetune", epochs=args.epochs, batch_size=32, seed=seed, lr=lr, augment="none",
                             tracking_uri="off", progress=False, patience=0, device="cpu",
                             work_dir=str(work / f"work-{index}"), max_length=args.max_length)
        t0 = time.perf_counter()
        trained = train_with_strategy(config, create_backbone("all-MiniLM-L6-v2", max_length=args.max_length),
                                      train, val, train.classes)
        folder = save_model(trained.model, work / f"run-{index}")
        runs.append(folder)
        name = f"finetune lr={lr:g} seed={seed}"
        scores[name] = {"train_seconds": round(time.perf_counter() - t0, 1)}
        for s, d in sets.items():
            scores[name][s], scores[name][f"{s}_pred"] = _accuracy(trained.model, d)
        echo(f"text: {name}: val {scores[name]['val']:.4f} test {scores[name]['test']:.4f} "
             f"shifted {scores[name]['shifted']:.4f} ({scores[name]['train_seconds']} s)")
    names = list(scores)
    best_index = int(np.argmax([scores[n]["val"] for n in names]))
    best_name = names[best_index]
    results = {f"best single ({best_name})": scores[best_name]}

    t0 = time.perf_counter()
    wise = tk.fuse("interpolate", runs[best_index], val=val, train=train, eval_sets={"test": test, "shifted": shifted},
                   output=str(work / "wise"), device="cpu")
    chosen = {"val": None}
    for s, d in sets.items():
        chosen[s], chosen[f"{s}_pred"] = _accuracy(wise.model, d)
    chosen["seconds"] = round(time.perf_counter() - t0, 1)
    results[f"interpolated (alpha={wise.alpha:g}, chosen on val)"] = chosen
    curve = [{k: round(v, 4) for k, v in row.items()} for row in wise.curve]
    probe_row = wise.curve[0]
    results["pretrained + probe (alpha=0)"] = {s: probe_row[f"{s}_accuracy"] for s in sets}
    echo(f"text: interpolation alpha {wise.alpha}: " + ", ".join(f"{s} {chosen[s]:.4f}" for s in sets))

    for kind in ("uniform", "greedy"):
        t0 = time.perf_counter()
        soup = tk.fuse("soup", runs, val=val, soup=kind, device="cpu")
        entry = {"runs_used": len(soup.used)}
        for s, d in sets.items():
            entry[s], entry[f"{s}_pred"] = _accuracy(soup.model, d)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        results[f"{kind} soup ({len(soup.used)} of {len(runs)} runs)"] = entry
        echo(f"text: {kind} soup: " + ", ".join(f"{s} {entry[s]:.4f}" for s in sets))
    for weighting in ("uniform", "fitted"):
        t0 = time.perf_counter()
        ens = tk.fuse("ensemble", runs, val=val, weighting=weighting, device="cpu")
        entry = {"weights": [round(w, 3) for w in ens.weights]}
        for s, d in sets.items():
            entry[s], entry[f"{s}_pred"] = _accuracy(ens.model, d)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        results[f"{weighting} ensemble ({len(runs)} runs)"] = entry
        echo(f"text: {weighting} ensemble: " + ", ".join(f"{s} {entry[s]:.4f}" for s in sets))

    comparisons = {}
    base = results[f"best single ({best_name})"]
    for name, entry in results.items():
        if name.startswith("best single") or "test_pred" not in entry:
            continue
        for s in ("test", "shifted"):
            y = sets[s].label_array(train.classes)
            comparisons[f"{name} vs best single, {s}"] = _compare(y, entry[f"{s}_pred"], base[f"{s}_pred"], "best")
    for entry in list(results.values()) + list(scores.values()):
        for s in sets:
            entry.pop(f"{s}_pred", None)
    return {"backbone": "all-MiniLM-L6-v2", "train_domain": "vader/movies", "shifted_domain": "vader/amazon",
            "n": {"train": len(train), "val": len(val), "test": len(test), "shifted": len(shifted)},
            "runs": scores, "results": results, "comparisons": comparisons, "interpolation_curve": curve,
            "settings": {"epochs": args.epochs, "lrs": args.lrs, "runs_per_lr": args.runs_per_lr,
                         "max_length": args.max_length, "shots_per_class": args.shots},
            "seconds": round(time.perf_counter() - start, 1)}


def run_stack(args, work: Path, echo=print) -> dict:
    import numpy as np

    import transferkit as tk
    from transferkit.data.builtin import load_fashion_mnist

    train, val, test = _split(load_fashion_mnist("train"), args.image_shots, args.image_val, args.image_test,
                              args.seed)
    names = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    start = time.perf_counter()
    cache = str(work / "cache")
    full = tk.fuse("stack", names, train=train, val=val, eval_sets={"test": test}, cache_dir=cache, device="cpu",
                   seed=args.seed)
    first = time.perf_counter() - start
    t0 = time.perf_counter()
    reduced = tk.fuse("stack", names, train=train, val=val, eval_sets={"test": test}, cache_dir=cache, device="cpu",
                      reduce=args.reduce, seed=args.seed, compare_single=False)
    second = time.perf_counter() - t0
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
    from transferkit.strategies.linear_probe import LinearProbe

    backbone = create_backbone(best)
    fc = FeatureCache(cache)
    probe = LinearProbe(random_state=args.seed).fit(
        extract_features(backbone, train, cache=fc, progress=False), train.label_array(train.classes),
        extract_features(backbone, val, cache=fc, progress=False), val.label_array(train.classes))
    best_pred = probe.predict(extract_features(backbone, test, cache=fc, progress=False))
    comparisons = {}
    for label, model in (("stack", full.model), (f"stack PCA {args.reduce}", reduced.model)):
        pred = model.predict_proba(test, cache=fc, progress=False).argmax(axis=1)
        comparisons[f"{label} vs {best} probe, test"] = _compare(y, pred, best_pred, best)
    return {"data": "fashion-mnist", "n": {"train": len(train), "val": len(val), "test": len(test)},
            "results": results, "comparisons": comparisons,
            "seconds": {"features_and_probes": round(first, 1), "reduced_stack_from_cache": round(second, 1)},
            "settings": {"shots_per_class": args.image_shots, "reduce": args.reduce,
                         "resolution": "each backbone's own (224, 240, 260 px)"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="text,stack")
    parser.add_argument("--seed", type=int, default=0)
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
    parser.add_argument("--output", default=str(RESULTS / "fusion.json"))
    args = parser.parse_args()

    import torch

    threads = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
    torch.set_num_threads(threads)
    out = Path(args.output)
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved.update({"benchmark": "fusion", "threads": threads, "machine": platform.machine(),
                  "python": sys.version.split()[0], "torch": torch.__version__})
    saved.setdefault("parts", {})
    for part in args.parts.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_text(args, Path(tmp)) if part == "text" else run_stack(args, Path(tmp))
        result["command"] = f"OMP_NUM_THREADS={threads} .venv/bin/python benchmarks/fusion.py " + " ".join(sys.argv[1:])
        saved["parts"][part] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(saved, indent=2) + "\n")
        print(f"\n{part}: accuracy")
        sets = ["val", "test", "shifted"] if part == "text" else ["val", "test"]
        print(f"  {'model':<58}" + "".join(f"{s:>9}" for s in sets))
        for name, entry in result["results"].items():
            cells = "".join(f"{entry[s]:9.4f}" if isinstance(entry.get(s), float) else f"{'-':>9}" for s in sets)
            print(f"  {name:<58}{cells}")
        for name, c in result["comparisons"].items():
            print(f"  {name}: {100 * c['difference']:+.1f} pts [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] "
                  f"{c['verdict']}")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
