"""The report's plots, drawn with matplotlib's Agg backend (no display needed) and returned as PNG bytes.

Every function takes plain data (lists, dicts as found in the run folder's JSON files) and returns ``bytes``; none
reads files. Figures are closed after drawing, so a long process does not accumulate them.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

DPI = 100
#: Above this many classes, axes show no class names (they would overlap); the tables beside the plots have them.
MAX_LABELLED_CLASSES = 60
_PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _finite(values: Sequence[Any]) -> list[float | None]:
    out: list[float | None] = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        out.append(number if math.isfinite(number) else None)
    return out


def learning_curves(history: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """Losses (left) and validation accuracy (right) per epoch (shown from 1), from rows ``{"epoch" (from 0),
    "train_loss" or "train_loss_epoch", "val_loss", "val_accuracy", other "train_<term>" losses}``; any may be
    missing."""
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = [int(row.get("epoch", i)) + 1 for i, row in enumerate(history)]
    train_key = "train_loss_epoch" if any("train_loss_epoch" in row for row in history) else "train_loss"
    # the strategy's own loss terms (train_l2sp, train_mmd, ...) as dashed lines beside the total
    terms = sorted({k for row in history for k in row if k.startswith("train_")} - {train_key, "train_loss",
                                                                                      "train_loss_step"})
    series = [(train_key, "train loss", _PALETTE[0], "-"), ("val_loss", "validation loss", _PALETTE[1], "-")]
    series += [(k, k.replace("_", " "), _PALETTE[(3 + i) % len(_PALETTE)], "--") for i, k in enumerate(terms)]
    for key, label, color, style in series:
        values = _finite([row.get(key) for row in history])
        points = [(e, v) for e, v in zip(epochs, values) if v is not None]
        if points:
            loss_ax.plot(*zip(*points), marker="o", color=color, ls=style, label=label)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("loss")
    if loss_ax.lines:
        loss_ax.legend()
    # a detector's runs record validation mAP@0.5 where the others record accuracy
    key, score = ("val_accuracy", "accuracy") if not any("val_map50" in row for row in history) else \
        ("val_map50", "mAP@0.5")
    values = _finite([row.get(key) for row in history])
    points = [(e, v) for e, v in zip(epochs, values) if v is not None]
    if points:
        acc_ax.plot(*zip(*points), marker="o", color=_PALETTE[2], label=f"validation {score}")
        best = max(points, key=lambda p: p[1])
        acc_ax.scatter([best[0]], [best[1]], s=120, facecolors="none", edgecolors="black", label="best epoch")
        acc_ax.legend()
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel(score)
    acc_ax.set_title(f"validation {score}")
    from matplotlib.ticker import MaxNLocator

    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    return _png(fig)


def confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """Rows: true class, columns: predicted class; colour by the row's share, each cell labelled with its count."""
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.float64)
    n = len(classes)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(12.0, 2.5 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= MAX_LABELLED_CLASSES:
        labels = [c if len(c) <= 18 else c[:17] + "…" for c in classes]
        ax.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
        ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8 if n > 12 else 10,
                        color="white" if share[i, j] > 0.5 else "black")
    return _png(fig)


def class_counts(counts: dict[str, dict[str, int]], classes: Sequence[str]) -> bytes:
    """Examples per class, one group of bars per split (``{"train": {class: n}, "test": {...}}``)."""
    import numpy as np

    plt = _pyplot()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(min(14.0, 3 + 0.5 * n), 3.2))
    splits = list(counts)
    width = 0.8 / max(len(splits), 1)
    x = np.arange(n)
    for k, split in enumerate(splits):
        ax.bar(x + (k - (len(splits) - 1) / 2) * width, [counts[split].get(c, 0) for c in classes], width,
               label=split, color=_PALETTE[k % len(_PALETTE)])
    if n <= MAX_LABELLED_CLASSES:
        ax.set_xticks(x, [c if len(c) <= 14 else c[:13] + "…" for c in classes], rotation=45 if n > 4 else 0,
                      ha="right" if n > 4 else "center")
    else:
        ax.set_xlabel(f"{n} classes (in the order of the table below)")
    ax.set_ylabel("examples")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def accuracy_with_intervals(rows: Sequence[tuple[str, float, float | None, float | None]]) -> bytes:
    """Horizontal bars of accuracy with their intervals: ``(name, accuracy, low, high)``, first row = the model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.55 * len(rows)))
    names = [r[0] for r in rows][::-1]
    values = [r[1] for r in rows][::-1]
    errors = [[max(0.0, r[1] - r[2]) if r[2] is not None else 0.0 for r in rows][::-1],
              [max(0.0, r[3] - r[1]) if r[3] is not None else 0.0 for r in rows][::-1]]
    colors = [_PALETTE[6]] * (len(rows) - 1) + [_PALETTE[0]]
    ax.barh(names, values, xerr=errors, color=colors, capsize=4)
    for y, value in enumerate(values):
        ax.text(min(value + 0.01, 0.98), y, f"{value:.3f}", va="center", ha="left" if value < 0.9 else "right",
                color="black" if value < 0.9 else "white", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy (whiskers: 95% Wilson interval)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def verdict_intervals(comparisons: Sequence[dict[str, Any]], measure: str = "accuracy") -> bytes:
    """The paired differences model - baseline (points of ``measure``) with their intervals, and zero: where
    transfer helped."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.6 * len(comparisons)))
    for y, c in enumerate(comparisons):
        diff, low, high = 100 * c["difference"], 100 * c["ci_low"], 100 * c["ci_high"]
        color = _PALETTE[2] if low > 0 else _PALETTE[1] if high < 0 else _PALETTE[6]
        ax.errorbar([diff], [y], xerr=[[diff - low], [high - diff]], fmt="o", color=color, capsize=5, markersize=8)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(range(len(comparisons)), [f"vs {c['baseline']}" for c in comparisons])
    ax.set_ylim(-0.7, len(comparisons) - 0.3)
    ax.set_xlabel(f"{measure} difference, model - baseline (points; 95% paired bootstrap interval)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def ranking_scores(rows: Sequence[dict[str, Any]], score: str, accuracy: str | None = None) -> bytes:
    """Candidates' ``score`` (bars, best first) and, where measured, their held-out ``accuracy`` (dots)."""
    plt = _pyplot()
    rows = [r for r in rows if isinstance(r.get("scores", {}).get(score), (int, float))]
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.5 * len(rows)))
    names = [str(r.get("name")) for r in rows][::-1]
    values = [float(r["scores"][score]) for r in rows][::-1]
    colors = [_PALETTE[6] if r.get("kind") == "raw" else _PALETTE[0] for r in rows][::-1]
    ax.barh(names, values, color=colors)
    ax.set_xlabel(score)
    ax.grid(axis="x", alpha=0.3)
    if accuracy:
        measured = [(i, r.get("accuracy", {}).get(accuracy)) for i, r in enumerate(rows[::-1])]
        measured = [(i, a) for i, a in measured if isinstance(a, (int, float))]
        if measured:
            twin = ax.twiny()
            twin.scatter([a for _, a in measured], [i for i, _ in measured], color=_PALETTE[1], zorder=3,
                         label=f"{accuracy} accuracy")
            twin.set_xlabel(f"held-out {accuracy.replace('_', ' ')} accuracy (red dots)")
            twin.set_xlim(0, 1)
    return _png(fig)


def alpha_curve(alphas: Sequence[float], values: Sequence[float], metric: str, best: float | None = None,
                extra: dict[str, Sequence[float]] | None = None) -> bytes:
    """A metric against the mixing weight alpha of weight interpolation (0 = pretrained, 1 = fine-tuned)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(alphas, values, marker="o", color=_PALETTE[0], label=metric)
    for k, (name, series) in enumerate((extra or {}).items(), start=1):
        ax.plot(alphas, series, marker=".", color=_PALETTE[k % len(_PALETTE)], label=name)
    if best is not None:
        ax.axvline(best, color=_PALETTE[1], ls="--", label=f"chosen alpha {best:g}")
    ax.set_xlabel("alpha (0 = pretrained weights, 1 = fine-tuned weights)")
    ax.set_ylabel(metric)
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def tradeoff(variants: Sequence[dict[str, Any]], x: str, y: str = "accuracy") -> bytes:
    """Each compressed variant as a labelled point of ``y`` (accuracy) against ``x`` (size or latency)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k, v in enumerate(variants):
        if isinstance(v.get(x), (int, float)) and isinstance(v.get(y), (int, float)):
            ax.scatter([v[x]], [v[y]], s=60, color=_PALETTE[k % len(_PALETTE)])
            ax.annotate(str(v.get("name", k)), (v[x], v[y]), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.grid(alpha=0.3)
    return _png(fig)


def embedding(points: Sequence[Sequence[float]], groups: Sequence[Any], title: str = "") -> bytes:
    """A 2-D embedding ``(N, 2)`` coloured by group (e.g. source / target domain, or class)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    names = list(dict.fromkeys(str(g) for g in groups))
    for k, name in enumerate(names):
        chosen = [p for p, g in zip(points, groups) if str(g) == name]
        ax.scatter([p[0] for p in chosen], [p[1] for p in chosen], s=10, alpha=0.6, label=name,
                   color=_PALETTE[k % len(_PALETTE)])
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    ax.legend(markerscale=2)
    return _png(fig)


def fold_spread(values: dict[str, Sequence[float]]) -> bytes:
    """Cross-validation: one dot per fold for each metric, with the mean as a bar."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.6 * len(values)))
    for y, (name, folds) in enumerate(values.items()):
        folds = [float(v) for v in folds]
        ax.scatter(folds, [y] * len(folds), color=_PALETTE[0], zorder=3)
        mean = sum(folds) / len(folds)
        ax.plot([mean, mean], [y - 0.3, y + 0.3], color=_PALETTE[1], lw=2)
    ax.set_yticks(range(len(values)), list(values))
    ax.set_ylim(-0.7, len(values) - 0.3)
    ax.set_xlabel("value per fold (red: mean)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def predicted_against_true(targets: Sequence[float], predictions: Sequence[float]) -> bytes:
    """Two panels of a regression model's test predictions: predicted against true values (with the line of
    perfect prediction), and residuals (predicted - true) against the predicted value."""
    import numpy as np

    plt = _pyplot()
    y, p = np.asarray(targets, dtype=float), np.asarray(predictions, dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    low, high = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    left.scatter(y, p, s=12, alpha=0.6, color=_PALETTE[0])
    left.plot([low, high], [low, high], color="black", linewidth=1, linestyle="--")
    left.set_xlabel("true value")
    left.set_ylabel("predicted value")
    left.set_title("predicted against true")
    right.scatter(p, p - y, s=12, alpha=0.6, color=_PALETTE[1])
    right.axhline(0, color="black", linewidth=1, linestyle="--")
    right.set_xlabel("predicted value")
    right.set_ylabel("residual (predicted - true)")
    right.set_title("residuals")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return _png(fig)
