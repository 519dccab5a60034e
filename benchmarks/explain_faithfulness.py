"""Explanations on real data: is each shipped attribution method faithful to the model (better than random orders of
the same parts of the input), how often is one explanation no better than random, how long does one take, and does
each method find a cue planted in the data.

Models (linear probes on frozen packaged backbones, ``fit --strategy linear-probe``):
- ``fashion``: Fashion-MNIST, ``--train-per-class`` training images per class, efficientnet_lite0 at ``--image-size``
  px; ``--n-explain`` test images explained (the same number per class);
- ``rotten``: rotten-tomatoes critic snippets, fresh against rotten (plot synopses left out), all-MiniLM-L6-v2;
  ``--n-explain`` test snippets explained (half per class);
- planted-cue variants of both: the labels are a coin flip independent of the content, and every example of the
  class ``cue`` carries the cue: a white square of 8 x 8 of the 28 pixels in the top-left corner of a Fashion-MNIST
  image, the word ``zebra`` at a random place in a snippet. Only the cue tells the classes apart, so a faithful
  explanation of a ``cue`` prediction puts its mass there. ``--n-explain / 2`` test examples of class ``cue``.
Per method (images: gradcam, integrated-gradients, smoothgrad; texts: integrated-gradients, occlusion), on the
predicted class, with explain's defaults (32 integrated-gradients steps, 16 SmoothGrad samples, 5 random orders):
deletion and insertion areas against random orders with the 95 % bootstrap interval of the gain over inputs
(:func:`transferkit.explanations.faithfulness.summarise`, the verdict ``explain`` prints); the share of inputs whose
own deletion area is no better than its random orders' mean (gain <= 0); seconds per attribution (the method alone)
and per faithfulness check (its 2 x 6 curves). Planted cue: the mean share of the positive attribution inside the
square (cell-level for Grad-CAM: its map is upsampled from the backbone's last feature map) or on the trigger word.
Target (the issue's): every method beats random with an interval above 0; planted-cue share >= 0.6.
Run:  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/explain_faithfulness.py --parts fashion,fashion-cue
      OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/explain_faithfulness.py --parts rotten,rotten-cue
(parts run separately share one results file; ``--quick``: 20 examples, 30 training examples per class).
"""

from __future__ import annotations

import bz2
import csv
import io
import time

import numpy as np

from _harness import Benchmark, choose

BENCH = Benchmark("explain_faithfulness", __doc__, threads=1)
PARTS = ("fashion", "fashion-cue", "rotten", "rotten-cue")
IMAGE_METHODS = ["gradcam", "integrated-gradients", "smoothgrad"]
TEXT_METHODS = ["integrated-gradients", "occlusion"]
SQUARE = 8  # pixels of the 28-pixel Fashion-MNIST image
TRIGGER = "zebra"


# --- data -------------------------------------------------------------------------------------------------------
def _fashion(train_per_class: int, test_per_class: int, seed: int):
    from _tasks import fashion_task

    return fashion_task(train_per_class, test_per_class, seed)


def _coin_labels(n: int, rng: np.random.Generator) -> list[str]:
    return ["cue" if c else "plain" for c in rng.integers(0, 2, size=n)]


def _fashion_cue(train_per_class: int, n_test: int, seed: int):
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.sources import from_arrays

    rng = np.random.default_rng(seed)
    splits = []
    for split, count in (("train", 2 * train_per_class), ("test", 2 * n_test)):
        images = load_fashion_mnist(split).items
        chosen = np.asarray(images)[rng.choice(len(images), size=count, replace=False)].copy()
        labels = _coin_labels(count, rng)
        for image, label in zip(chosen, labels):
            if label == "cue":
                image[:SQUARE, :SQUARE] = 255
        splits.append(from_arrays(chosen, labels, origin=f"fashion-mnist/{split} with a planted square"))
    return splits


def _rotten_rows() -> tuple[list[str], list[str]]:
    from transferkit.data.builtin import datasets_dir

    path = datasets_dir() / "rotten-tomatoes" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path) as raw:
        rows = [r for r in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
                if r["text"].strip() and r["category"] in ("fresh", "rotten")]
    return [r["text"].strip() for r in rows], [r["category"] for r in rows]


def _rotten(train_per_class: int, test_per_class: int, seed: int):
    from transferkit.data.sources import from_arrays

    texts, labels = _rotten_rows()
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], []]
    for name in ("fresh", "rotten"):
        rows = rng.permutation([i for i, label in enumerate(labels) if label == name])
        parts[0].extend(rows[:train_per_class])
        parts[1].extend(rows[train_per_class:train_per_class + test_per_class])
    return [from_arrays([texts[i] for i in p], [labels[i] for i in p], origin=f"rotten-tomatoes {role}")
            for p, role in zip(parts, ("train", "test"))]


def _rotten_cue(train_per_class: int, n_test: int, seed: int):
    from transferkit.data.sources import from_arrays

    texts, _ = _rotten_rows()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(texts), size=2 * train_per_class + 2 * n_test, replace=False)
    splits = []
    for role, rows in (("train", chosen[:2 * train_per_class]), ("test", chosen[2 * train_per_class:])):
        labels = _coin_labels(len(rows), rng)
        items = []
        for row, label in zip(rows, labels):
            words = texts[row].split()
            if label == "cue":
                words.insert(int(rng.integers(0, len(words) + 1)), TRIGGER)
            items.append(" ".join(words))
        splits.append(from_arrays(items, labels, origin=f"rotten-tomatoes {role} with a planted word"))
    return splits


# --- measurement -------------------------------------------------------------------------------------------------
def _fit(train, test, backbone: str, args, **options):
    import transferkit as tk

    result = tk.fit(train, test=test, backbone=backbone, strategy="linear-probe", baselines=[], report=False,
                    tracking_uri="off", progress=False, device="cpu", seed=args.seed, **options)
    return result.model, float(result.metrics["accuracy"])


def _cue_share(attribution: np.ndarray, words: list[str] | None) -> float:
    positive = np.clip(attribution, 0, None)
    total = float(positive.sum())
    if total <= 0:
        return 0.0
    if words is not None:
        return float(sum(w for word, w in zip(words, positive) if word.strip(".,;:!?\"'").lower() == TRIGGER) / total)
    height, width = attribution.shape
    inside = positive[:round(height * SQUARE / 28), :round(width * SQUARE / 28)]
    return float(inside.sum() / total)


def _explain(model, items: list, methods: list[str], args, cue: bool) -> dict:
    """Every method on every item (its predicted class, or class ``cue`` for the planted-cue part)."""
    from transferkit.explanations.config import ExplainConfig
    from transferkit.explanations.faithfulness import measure, summarise
    from transferkit.explanations.network import explained_network
    from transferkit.modalities import get_modality

    explainer = get_modality(model.modality).explainer()
    network = explained_network(model).eval()
    options = ExplainConfig(seed=args.seed)
    target = list(model.classes).index("cue") if cue else None
    out = {}
    for method in methods:
        measures, attribute_s, check_s, shares = [], [], [], []
        with BENCH.step(f"explain {method}"):
            for item in items:
                prepared = explainer.prepare(network.backbone, item)
                chosen = int(np.argmax(network.predict(prepared.batch)[0])) if target is None else target
                start = time.perf_counter()
                attribution = explainer.attribute(network, prepared, chosen, method, options)
                attribute_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                measures.append(measure(network.predict, explainer.units(prepared, attribution), chosen,
                                        random_orders=options.random_orders, seed=options.seed,
                                        batch_size=options.batch_size))
                check_s.append(time.perf_counter() - start)
                if cue:
                    shares.append(_cue_share(attribution, prepared.info.get("words")))
        usable = [m for m in measures if m["deletion"] is not None]
        gains = np.array([np.mean(m["random_deletion"]) - m["deletion"] for m in usable])
        entry = {"faithfulness": summarise(measures, seed=args.seed),
                 "share_no_better_than_random": round(float(np.mean(gains <= 0)), 4) if len(gains) else None,
                 "seconds_per_attribution": round(float(np.mean(attribute_s)), 4),
                 "seconds_per_faithfulness_check": round(float(np.mean(check_s)), 4), "n": len(items)}
        if cue:
            entry["cue_share"] = {"mean": round(float(np.mean(shares)), 4),
                                  "median": round(float(np.median(shares)), 4),
                                  "share_of_inputs_over_0.6": round(float(np.mean(np.asarray(shares) >= 0.6)), 4)}
        out[method] = entry
        f = entry["faithfulness"]
        line = (f"  {method}: deletion {f['deletion']['area']:.3f} vs random {f['deletion']['random_area']:.3f}, "
                f"gain {f['deletion']['gain']:+.3f} [{f['deletion']['interval'][0]:+.3f}, "
                f"{f['deletion']['interval'][1]:+.3f}] {f['verdict']}; no better than random on "
                f"{entry['share_no_better_than_random']:.0%}; {entry['seconds_per_attribution']:.3f} s per attribution")
        print(line + (f"; cue share {entry['cue_share']['mean']:.3f}" if cue else ""), flush=True)
    return out


def _part(name: str, args) -> dict:
    test_n = max(1, args.n_explain // 10)
    if name == "fashion":
        train, test = _fashion(args.train_per_class, test_n, args.seed)
    elif name == "fashion-cue":
        train, test = _fashion_cue(args.train_per_class, args.n_explain, args.seed)
    elif name == "rotten":
        train, test = _rotten(args.train_per_class * 2, args.n_explain // 2, args.seed)
    else:
        train, test = _rotten_cue(args.train_per_class * 2, args.n_explain, args.seed)
    image = name.startswith("fashion")
    backbone, options = (("efficientnet_lite0", {"image_size": args.image_size}) if image
                         else ("all-MiniLM-L6-v2", {}))
    with BENCH.step("fit"):
        model, accuracy = _fit(train, test, backbone, args, **options)
    print(f"{name}: {backbone} probe, test accuracy {accuracy:.3f} on {len(test)}", flush=True)
    cue = name.endswith("-cue")
    items = [item for item, label in zip(test.items, test.labels) if label == "cue"][:args.n_explain // 2] if cue \
        else list(test.items)[:args.n_explain]
    return {"backbone": backbone, "train": len(train), "test_accuracy": round(accuracy, 4), "explained": len(items),
            "methods": _explain(model, items, IMAGE_METHODS if image else TEXT_METHODS, args, cue)}


def main() -> None:
    parser = BENCH.parser(quick="20 examples explained, 30 training examples per class", seed=0)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--n-explain", type=int, default=200, help="examples explained per part (default 200)")
    parser.add_argument("--train-per-class", type=int, default=100, help="training images per class (texts: twice)")
    parser.add_argument("--image-size", type=int, default=64, help="efficientnet_lite0 input size (default 64)")
    args = BENCH.parse(parser)
    parts = choose(parser, "--parts", args.parts, PARTS)
    if args.quick:
        args.n_explain, args.train_per_class = 20, 30
    results = {name: _part(name, args) for name in parts}
    BENCH.save("explain_faithfulness_quick" if args.quick else "explain_faithfulness",
               {"settings": BENCH.settings("results", "output"), "parts": results}, merge="parts")


if __name__ == "__main__":
    main()
