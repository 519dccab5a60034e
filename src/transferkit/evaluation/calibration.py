"""Calibration: do the predicted probabilities mean what they say?

- :func:`expected_calibration_error` (ECE, Naeini et al. 2015; Guo et al. 2017, "On Calibration of Modern Neural
  Networks"): the confidence ``c_i = max_k p_ik`` of each of the ``N`` predictions is put in one of ``B``
  equal-width bins of ``[0, 1]``; ``ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|``, where ``acc`` is the share
  of correct predictions in the bin and ``conf`` their mean confidence. 0 is perfect; a model that says 0.9 and is
  right 60 % of the time has an ECE near 0.3.
- :func:`reliability_diagram`: accuracy against confidence per bin, as a PNG (matplotlib, Agg backend).
- :class:`TemperatureScaling` (Guo et al. 2017): one scalar ``T > 0`` divides the logits, ``p = softmax(z / T)``,
  chosen to minimise the negative log-likelihood on *validation* data. It changes no prediction (the arg-max of
  ``z / T`` is the arg-max of ``z``), only how confident they are. A :class:`~transferkit.models.model.TransferModel`
  carries its ``temperature``; it is saved in the model's ``config.json`` and applied by ``predict_proba``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transferkit.errors import ConfigError, DataError

DEFAULT_BINS = 15
#: Bounds of the temperature search (log-scale); outside them the logits carry no usable information.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def _check(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, proba = np.asarray(y_true), np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or len(proba) != len(y_true):
        raise DataError(f"calibration needs probabilities (N, classes) and N labels; got {proba.shape} and "
                        f"{y_true.shape}.")
    if len(y_true) == 0:
        raise DataError("calibration needs at least one example.")
    return y_true.astype(np.int64), proba


def calibration_bins(y_true: np.ndarray, proba: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: ``count``, mean ``confidence`` and ``accuracy`` (NaN for empty bins), and
    the bin ``edges`` (``n_bins + 1``)."""
    if n_bins < 1:
        raise ConfigError(f"calibration: n_bins must be at least 1; got {n_bins}.")
    y_true, proba = _check(y_true, proba)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds confidences in (edges[b], edges[b + 1]]; a confidence of exactly 0 goes to the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Top-label ECE of probabilities ``proba`` ``(N, classes)`` for integer labels ``y_true`` ``(N,)``."""
    bins = calibration_bins(y_true, proba, n_bins)
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["count"][filled] * gaps) / np.sum(bins["count"]))


def negative_log_likelihood(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean ``-log p(true class)`` (probabilities clipped at 1e-12)."""
    y_true, proba = _check(y_true, proba)
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y_true)), y_true], 1e-12, 1.0))))


def calibration_summary(y_true: np.ndarray, proba: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict[str, float]:
    """``ece``, ``nll`` and mean ``confidence``: the figures saved beside accuracy."""
    _, proba_checked = _check(y_true, proba)
    return {"ece": expected_calibration_error(y_true, proba, n_bins), "nll": negative_log_likelihood(y_true, proba),
            "mean_confidence": float(proba_checked.max(axis=1).mean())}


def reliability_diagram(y_true: np.ndarray, proba: np.ndarray, path: str | Path, *, n_bins: int = DEFAULT_BINS,
                        title: str | None = None, others: dict[str, np.ndarray] | None = None) -> Path:
    """Write a reliability diagram (accuracy against confidence per bin, the diagonal is perfect calibration, bar
    widths show how many predictions fall in each bin) to ``path`` (PNG). ``others`` maps a label to further
    probabilities of the same examples (e.g. after temperature scaling) drawn as lines on the same axes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    series = {"model": proba, **(others or {})}
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for index, (label, p) in enumerate(series.items()):
        bins = calibration_bins(y_true, p, n_bins)
        ece = expected_calibration_error(y_true, p, n_bins)
        filled = bins["count"] > 0
        centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
        if index == 0:
            ax.bar(centres[filled], bins["accuracy"][filled], width=1.0 / n_bins, edgecolor="black", alpha=0.6,
                   label=f"{label} (ECE {ece:.3f})")
            hist.bar(centres, bins["count"], width=1.0 / n_bins, edgecolor="black", alpha=0.6)
        else:
            ax.plot(bins["confidence"][filled], bins["accuracy"][filled], marker="o", label=f"{label} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"reliability diagram ({len(y_true)} examples, {n_bins} bins)")
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("confidence (largest predicted probability)")
    hist.set_ylabel("predictions")
    fig.tight_layout()
    from transferkit._io import save_figure

    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class TemperatureScaling:
    """One temperature for all logits, fitted by minimising the validation NLL (scikit-learn style).

    ``fit(logits, y)`` with logits ``(N, classes)`` (log-probabilities work too: a per-row constant does not change
    the softmax) and integer labels ``(N,)``; learned ``temperature_``. The search is a bounded scalar
    minimisation over ``log T`` in :data:`TEMPERATURE_BOUNDS` (the NLL is convex in ``1 / T``).
    """

    def __init__(self, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> None:
        self.bounds = bounds

    def fit(self, logits: np.ndarray, y: np.ndarray) -> "TemperatureScaling":
        from scipy.optimize import minimize_scalar

        y, logits = _check(y, logits)
        low, high = self.bounds
        if not 0 < low < 1 < high:
            raise ConfigError(f"TemperatureScaling: bounds must satisfy 0 < low < 1 < high; got {self.bounds}.")
        if not np.all(np.isfinite(logits)):
            raise DataError("TemperatureScaling: the logits hold NaN or infinite values.")
        rows = np.arange(len(y))

        def nll(log_t: float) -> float:
            z = logits / np.exp(log_t)
            z = z - z.max(axis=1, keepdims=True)
            return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, y]))

        result = minimize_scalar(nll, bounds=(np.log(low), np.log(high)), method="bounded",
                                 options={"xatol": 1e-4})
        self.temperature_ = float(np.exp(result.x))
        self.nll_before_, self.nll_after_ = nll(0.0), float(result.fun)
        if self.nll_before_ < self.nll_after_:  # the bounded search can only end worse at a bound; keep T = 1 then
            self.temperature_, self.nll_after_ = 1.0, self.nll_before_
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits, self.temperature_)


def fit_temperature(model, data, *, batch_size: int = 64, device: str = "auto", num_workers: int = 0,
                    cache=None, progress: bool = False) -> dict[str, float]:
    """Fit ``model.temperature`` (a :class:`~transferkit.models.model.TransferModel`) on labelled validation ``data``;
    returns the temperature and the validation NLL / ECE before and after."""
    y = data.label_array(model.classes)
    logits = model.predict_logits(data, batch_size=batch_size, device=device, num_workers=num_workers, cache=cache,
                                  progress=progress)
    return fit_temperature_on_logits(model, logits, y)


def fit_temperature_on_logits(model, logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Like :func:`fit_temperature`, from validation logits already computed."""
    scaler = TemperatureScaling().fit(logits, y)
    before, after = softmax(logits), scaler.predict_proba(logits)
    model.temperature = scaler.temperature_
    return {"temperature": scaler.temperature_, "n_validation": int(len(y)),
            "validation_nll_before": scaler.nll_before_, "validation_nll_after": scaler.nll_after_,
            "validation_ece_before": expected_calibration_error(y, before),
            "validation_ece_after": expected_calibration_error(y, after)}


def out_of_fold_probe_logits(X: np.ndarray, y: np.ndarray, C: float, *, folds: int = 5, seed: int = 0,
                             prototypes: np.ndarray | None = None) -> np.ndarray:
    """Held-out logits ``(N, classes)`` of a linear probe with fixed ``C`` on features ``X`` ``(N, D)``: each example
    scored by a probe fitted without it (stratified folds). A temperature fitted on them calibrates the probe fitted
    on all of ``X`` without setting data aside (the folds' probes are close to it). With ``prototypes`` (one row per
    class), the probe is the label-name :class:`~transferkit.estimators.label_names.PrototypeProbe`."""
    import torch
    from sklearn.model_selection import StratifiedKFold

    from transferkit.estimators.linear_probe import LinearProbe

    y = np.asarray(y)
    classes = np.unique(y)
    counts = np.unique(y, return_counts=True)[1]
    n_splits = min(folds, int(counts.min()))
    if n_splits < 2:
        raise DataError("temperature scaling of the probe needs at least 2 examples of every class, or validation "
                        "data (--val).")
    logits = np.zeros((len(y), len(classes)), dtype=np.float64)
    for a, b in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X, y):
        if prototypes is not None:
            from transferkit.estimators.label_names import PrototypeProbe

            head = PrototypeProbe(prototypes, C=C, random_state=seed).fit(X[a], y[a]).to_head().eval()
        else:
            head = LinearProbe(C=C, random_state=seed).fit(X[a], y[a]).to_head().eval()
        if len(np.unique(y[a])) != len(classes):
            raise DataError("temperature scaling of the probe: a fold lacks a class; give validation data (--val).")
        with torch.inference_mode():
            logits[b] = head(torch.as_tensor(np.asarray(X[b]), dtype=torch.float32)).double().numpy()
    return logits
