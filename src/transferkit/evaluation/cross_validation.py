"""k-fold cross-validation of any strategy, with spread, and a paired verdict against the baselines.

A result on one split with one seed is an anecdote. Cross-validation (the ``cv`` verb,
:func:`transferkit.workflows.cv.cross_validate`; this module holds its building blocks) splits the labelled data
into ``folds`` stratified folds (``repeats`` times, each time shuffled by another seed: repeated stratified k-fold),
trains on ``folds - 1`` of them and tests on the last, in turn, and runs the baselines on exactly the same folds:

- ``raw`` (pixels or TF-IDF + logistic regression) always;
- ``linear-probe`` (frozen features + logistic regression) when the strategy trains the backbone;
- ``scratch`` (the same architecture from random weights, same budget) where ``fit`` would run it (training
  strategies on small data) or when asked for.

Frozen-feature work (the linear probe as strategy or baseline, and the probe stage of lp-ft) reads the feature
cache: the first fold computes every example's features (each example is in some fold), every later fold and
repeat is served from the cache. Without a cache (``no_cache``) a temporary one lives for the duration of the run.

Per metric (accuracy, macro-F1, ECE, NLL) the result gives the mean over the ``J = folds x repeats`` fold scores,
their standard deviation and a confidence interval. Fold scores are not independent (their training sets overlap),
so the interval uses the corrected resampled t-statistic of Nadeau & Bengio (2003, "Inference for the
Generalization Error"): ``mean +- t_{J-1} * sqrt((1/J + n_test/n_train) * s^2)``, where ``s^2`` is the variance
of the fold scores.

The comparison with a baseline is paired: the same folds, the same test examples. Two intervals of the accuracy
difference are computed, the corrected t-interval over the fold differences (noise of the training sets) and the
paired bootstrap over test examples of :func:`transferkit.evaluation.verdict.paired_bootstrap_interval` (noise of
the test sample; each example's difference is averaged over the repeats first, since it is the same example). The
verdict reads their union, so "helped" or "hurt" is claimed only when both kinds of noise agree.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.config import FitConfig
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, DataError
from transferkit.evaluation.verdict import Comparison

log = logging.getLogger("transferkit")

#: Metrics summarised over folds (ECE and NLL for the model, whose probabilities are kept).
METRICS = ("accuracy", "macro_f1", "ece", "nll")
LINEAR_PROBE = "linear-probe"


def stratified_folds(labels: np.ndarray, folds: int, repeats: int = 1, seed: int = 0,
                     class_names: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train_indices, test_indices)`` of every fold of every repeat (``folds * repeats`` pairs, repeat-major).

    Each repeat partitions the examples into ``folds`` disjoint test folds, each class split as evenly as its count
    allows (scikit-learn's ``RepeatedStratifiedKFold``, seeded). ``labels`` are class indices into ``class_names``
    (used in messages), or the class names themselves."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    labels = np.asarray(labels)
    if folds < 2:
        raise ConfigError(f"option 'folds' must be at least 2; got {folds}.")
    if repeats < 1:
        raise ConfigError(f"option 'repeats' must be at least 1; got {repeats}.")
    names, counts = np.unique(labels, return_counts=True)
    if class_names is not None:
        names = [class_names[int(n)] for n in names]
    if counts.min() < folds:
        rare = ", ".join(f"'{n}' ({c})" for n, c in zip(names, counts) if c < folds)
        verb = "has" if (counts < folds).sum() == 1 else "have"
        if counts.min() >= 2:
            advice = f"Lower --folds to {int(counts.min())} or add examples."
        else:
            advice = ("Cross-validation needs at least 2 examples of every class, whatever --folds: add examples of "
                      "that class or remove it from the data.")
        raise DataError(f"{folds}-fold cross-validation needs at least {folds} examples of every class; {rare} "
                        f"{verb} fewer. {advice}")
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    return [(np.sort(a), np.sort(b)) for a, b in splitter.split(np.zeros(len(labels)), labels)]


def corrected_t_interval(values: np.ndarray, test_fraction: float, confidence: float = 0.95) -> tuple[float, float]:
    """Nadeau-Bengio corrected interval of the mean of ``J`` fold scores ``values``: the variance of the mean is
    ``(1/J + n_test/n_train) * s^2`` instead of ``s^2 / J`` (the training sets overlap). ``test_fraction`` is
    ``n_test / n``; with one value the interval is the value itself."""
    from scipy.stats import t

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean
    ratio = test_fraction / (1.0 - test_fraction)
    half = float(t.ppf(0.5 + confidence / 2, len(values) - 1)) * math.sqrt((1.0 / len(values) + ratio) * values.var(ddof=1))
    return mean - half, mean + half


@dataclass
class CVResult:
    """What :func:`transferkit.workflows.cv.cross_validate` measured.

    ``folds``: one record per fold (``repeat``, ``fold``, sizes, each model's metrics, feature-cache use, seconds);
    ``summary``: ``{"model" or baseline: {metric: {mean, std, ci_low, ci_high, values}}}``; ``comparisons``: one
    :class:`~transferkit.evaluation.verdict.Comparison` per baseline (fold-mean accuracies, the union interval, the
    verdict); ``intervals``: the two intervals behind each comparison.
    """

    config: dict[str, Any]
    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, dict[str, Any]]]
    comparisons: list[Comparison]
    intervals: dict[str, dict[str, list[float]]]
    skipped_baselines: dict[str, str] = field(default_factory=dict)
    out_of_fold: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    output: Path | None = None
    seconds: float = 0.0
    #: Optional steps of writing the results that failed (the reliability plot): each also a warning.
    notes: list[str] = field(default_factory=list)

    def mean(self, metric: str = "accuracy", model: str = "model") -> float:
        return self.summary[model][metric]["mean"]

    def table(self) -> str:
        """Plain text: mean +- std and interval of each metric for the model and every baseline, then the verdicts."""
        cfg = self.config
        title = (f"{cfg['folds']}-fold cross-validation x {cfg['repeats']} repeat(s) of {cfg['backbone']} "
                 f"({cfg['strategy']}) on {cfg['n_examples']} examples, {cfg['confidence']:.0%} intervals")
        rows = [(f"{cfg['strategy']}", self.summary["model"])]
        rows += [(f"baseline: {name}", s) for name, s in self.summary.items() if name != "model"]
        width = max(len(r[0]) for r in rows)
        from transferkit.tasks import DEFAULT_TASK, get_task

        first, second = (get_task(cfg.get("task", DEFAULT_TASK)).summary_columns + (("", ""),))[:2]
        lines = [title, f"{'model':<{width}}  {first[1] + ': mean +- std [interval]':>31}  {second[1]:>31}  {'ECE':>7}",
                 "-" * (width + 76)]

        def cell(s: dict[str, Any] | None) -> str:
            if s is None:
                return f"{'-':>31}"
            return f"{s['mean']:.4f} +- {s['std']:.4f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]".rjust(31)

        for name, s in rows:
            ece = s.get("ece")
            lines.append(f"{name:<{width}}  {cell(s.get(first[0]))}  {cell(s.get(second[0]))}  "
                         f"{ece['mean'] if ece else float('nan'):7.4f}")
        lines += [f"verdict: {c.sentence()}" for c in self.comparisons]
        lines += [f"not run: {name} ({why})" for name, why in self.skipped_baselines.items()]
        cache = [f["extraction"] for f in self.folds if f.get("extraction")]
        if cache:
            lines.append("feature cache: " + ", ".join(f"fold {f['repeat'] + 1}.{f['fold'] + 1} {f['extraction']['computed']} "
                                                       f"computed / {f['extraction']['from_cache']} cached"
                                                       for f in self.folds if f.get("extraction")))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "summary": self.summary, "comparisons": [c.to_dict() for c in self.comparisons],
                "intervals": self.intervals, "folds": self.folds, "baselines_not_run": self.skipped_baselines,
                "seconds": round(self.seconds, 2), **({"notes": self.notes} if self.notes else {})}


def summarise_folds(values: list[float], test_fraction: float, confidence: float) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    low, high = corrected_t_interval(arr, test_fraction, confidence)
    # a figure that is never negative (accuracy, F1, MAE) is not below 0; one of 0..1 (not NLL, MAE) not above 1
    low = max(low, 0.0) if np.all(arr >= 0.0) else low
    high = min(high, 1.0) if np.all((arr >= 0.0) & (arr <= 1.0)) else high
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "ci_low": low, "ci_high": high, "values": [float(v) for v in arr]}


class ProbeOnFeatures:
    """The linear probe on one frozen backbone's cached features (the strategy, or the ``linear-probe`` baseline)."""

    def __init__(self, backbone, config: FitConfig, cache) -> None:
        self.backbone, self.config, self.cache = backbone, config, cache

    def __call__(self, train: Dataset, test: Dataset, classes: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
        from transferkit.features.extract import ExtractionStats
        from transferkit.features.sharded import extract_features_sharded
        from transferkit.models.model import TransferModel
        from transferkit.tasks import get_task

        cfg = self.config
        task = get_task(cfg.task)
        stats_train, stats_test = ExtractionStats(), ExtractionStats()
        extract = dict(cache=self.cache, batch_size=cfg.batch_size, device=cfg.device, num_workers=cfg.num_workers,
                       progress=cfg.progress, runtime=cfg.runtime, processes=cfg.processes)
        X_train = extract_features_sharded(self.backbone, train, stats=stats_train, **extract)
        X_test = extract_features_sharded(self.backbone, test, stats=stats_test, **extract)
        y_train = task.targets(train, classes)
        probe = task.new_probe(C=cfg.probe_c, seed=cfg.seed).fit(X_train, y_train)
        model = TransferModel(self.backbone, probe.to_head(), classes, strategy=LINEAR_PROBE, task=task.name)
        facts: dict[str, Any] = {"C": probe.C_,
                                 "extraction": {"computed": stats_train.computed + stats_test.computed,
                                                "from_cache": stats_train.from_cache + stats_test.from_cache}}
        if cfg.calibrate:
            from transferkit.evaluation.calibration import fit_temperature_on_logits, out_of_fold_probe_logits

            logits = out_of_fold_probe_logits(X_train, y_train, probe.C_, seed=cfg.seed)
            facts["temperature"] = fit_temperature_on_logits(model, logits, y_train)["temperature"]
        return model.head_proba(X_test), facts


def train_fold(config: FitConfig, backbone_name: str, train: Dataset, test: Dataset, classes: list[str],
                fold_dir: str | None, strategy: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """A training strategy on one fold: a fresh backbone (seeded), the engine, predictions of the test fold.
    ``strategy``: a fresh strategy object for the fold (default: the one ``config.strategy`` names)."""
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.strategies.run import train_with_strategy

    torch.manual_seed(config.seed)
    backbone = create_backbone(backbone_name, **config.backbone_options(train.modality))
    fold_config = config.model_copy(update={"work_dir": fold_dir, "output": None, "resume": False})
    trained = train_with_strategy(fold_config, backbone, train, None, classes, strategy=strategy)
    facts: dict[str, Any] = {"epochs_run": trained.outcome.epochs_run, "best_epoch": trained.outcome.best_epoch,
                             "training_seconds": trained.outcome.seconds}
    if config.calibrate:
        from transferkit.data.splits import stratified_split
        from transferkit.evaluation.calibration import fit_temperature

        # the part train_with_strategy held out for early stopping: never trained on
        _, held_out = stratified_split(train, config.val_fraction, config.seed, names=("train", "validation"))
        facts["temperature"] = fit_temperature(trained.model, held_out, batch_size=config.batch_size,
                                               device=config.device, num_workers=config.num_workers)["temperature"]
    proba = trained.model.predict_proba(test, batch_size=config.batch_size, device=config.device,
                                        num_workers=config.num_workers, cache=None, progress=config.progress)
    from transferkit.strategies.run import finish_run

    finish_run(fold_config, train)  # the fold's finished weights are kept only for --resume, which cv does not do
    return proba, facts


def cv_baselines(requested: list[str] | None, strategy: str, n_train: int) -> tuple[list[str], dict[str, str]]:
    from transferkit.evaluation.baselines import choose_baselines

    from transferkit.strategies.registry import get_strategy

    names, skipped = choose_baselines(requested, strategy, n_train)
    if get_strategy(strategy).trains_network:  # the probe on the same frozen features, beside a trained model
        names = [*names, LINEAR_PROBE]
    return names, skipped


def check_cv_config(config: FitConfig) -> None:
    """Options that cannot work with cross-validation fail here, before any work."""
    from transferkit.strategies.registry import get_strategy

    if get_strategy(config.strategy).chooses_strategy:
        raise ConfigError("cross-validation evaluates one strategy; give --strategy linear-probe, finetune, lp-ft, "
                          "lora or l2sp (`fit --strategy auto` prints which one it would choose).")
    if config.test is not None or config.val is not None:
        raise ConfigError("cross-validation tests on each fold of DATA in turn; leave out --test and --val.")
    if config.devices > 1:
        raise ConfigError("cross-validation trains its folds one after another in one process; use --devices 1.")
    if config.resume:
        raise ConfigError("--resume is not supported by cross-validation; run it again (features are cached).")
    if config.budget is not None:
        raise ConfigError("option 'budget' is used by fit --strategy auto; cross-validation trains each fold for "
                          "--epochs.")
    config.check_options_apply()
    from transferkit.features.extract import resolve_device

    resolve_device(config.device)


CV_FILE = "cv.json"
