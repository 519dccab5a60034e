"""Tasks and helpers shared by the ranking benchmarks (rank_transferability.py, rank_cost.py)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE_CANDIDATES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "random:efficientnet_lite0"]
TEXT_CANDIDATES = ["all-MiniLM-L6-v2", "all-mpnet-base-v2", "random:all-MiniLM-L6-v2"]


def threads() -> int:
    """Torch intra-op threads for the whole run: $OMP_NUM_THREADS, else 2 (the machine's cores)."""
    import torch

    n = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(n)
    return n


def fashion_task(shots: int = 30, n_test_per_class: int = 50, seed: int = 0):
    """Fashion-MNIST: ``shots`` labelled training images per class; a stratified test sample from the test split."""
    from transferkit.data.builtin import load_fashion_mnist
    from transferkit.data.splits import sample_per_class

    train = sample_per_class(load_fashion_mnist("train"), shots, seed)
    test = sample_per_class(load_fashion_mnist("test"), n_test_per_class, seed)
    return train, test


def vader_task(domain: str, shots: int = 200, n_test_per_class: int = 200, seed: int = 0):
    """One VADER domain (binary sentiment): ``shots`` texts per class to score and train, a disjoint test sample."""
    import numpy as np

    from transferkit.data.builtin import load_vader

    data = load_vader(domain)
    labels = np.asarray(data.labels)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for name in data.classes:
        idx = rng.permutation(np.flatnonzero(labels == name))
        train_idx.extend(idx[:shots])
        test_idx.extend(idx[shots: shots + n_test_per_class])
    return (data.subset(np.sort(train_idx), origin=f"vader/{domain} ({shots} per class)"),
            data.subset(np.sort(test_idx), origin=f"vader/{domain} (test)"))


def environment(n_threads: int) -> dict:
    import torch

    return {"threads": n_threads, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "device": "cpu",
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv,
            "load_average_1_5_15_min_at_save": list(os.getloadavg())}


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
