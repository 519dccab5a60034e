"""k-fold cross-validation of any strategy, with spread, and a paired verdict against the baselines.

A result on one split with one seed is an anecdote. :func:`cross_validate` splits the labelled data into ``folds``
stratified folds (``repeats`` times, each time shuffled by another seed: repeated stratified k-fold), trains on
``folds - 1`` of them and tests on the last, in turn, and runs the baselines on exactly the same folds:

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

import json
import logging
import math
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.config import FitConfig, make_config
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, DataError
from transferkit.evaluation.verdict import Comparison, paired_bootstrap_interval, verdict_of
from transferkit.modalities import get_modality

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
    """What :func:`cross_validate` measured.

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
        lines = [title, f"{'model':<{width}}  {'accuracy: mean +- std [interval]':>31}  {'macro-F1':>31}  {'ECE':>7}",
                 "-" * (width + 76)]

        def cell(s: dict[str, Any] | None) -> str:
            if s is None:
                return f"{'-':>31}"
            return f"{s['mean']:.4f} +- {s['std']:.4f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]".rjust(31)

        for name, s in rows:
            ece = s.get("ece")
            lines.append(f"{name:<{width}}  {cell(s.get('accuracy'))}  {cell(s.get('macro_f1'))}  "
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


def _summarise(values: list[float], test_fraction: float, confidence: float) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    low, high = corrected_t_interval(arr, test_fraction, confidence)
    low, high = max(low, 0.0), min(high, 1.0) if np.all(arr <= 1.0) else high  # NLL has no upper bound
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "ci_low": low, "ci_high": high, "values": [float(v) for v in arr]}


class ProbeOnFeatures:
    """The linear probe on one frozen backbone's cached features (the strategy, or the ``linear-probe`` baseline)."""

    def __init__(self, backbone, config: FitConfig, cache) -> None:
        self.backbone, self.config, self.cache = backbone, config, cache

    def __call__(self, train: Dataset, test: Dataset, classes: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
        from transferkit.features.extract import ExtractionStats, extract_features
        from transferkit.models.model import TransferModel
        from transferkit.tasks import get_task

        cfg = self.config
        task = get_task(cfg.task)
        stats_train, stats_test = ExtractionStats(), ExtractionStats()
        extract = dict(cache=self.cache, batch_size=cfg.batch_size, device=cfg.device, num_workers=cfg.num_workers,
                       progress=cfg.progress)
        X_train = extract_features(self.backbone, train, stats=stats_train, **extract)
        X_test = extract_features(self.backbone, test, stats=stats_test, **extract)
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


def _cv_baselines(requested: list[str] | None, strategy: str, n_train: int) -> tuple[list[str], dict[str, str]]:
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


def _prepare_output(path: str | None, overwrite: bool, inputs: list[tuple[str, Any]] = ()) -> Path | None:
    """The results folder, checked before any fold runs: not a file, not an input, writable; a folder that holds
    earlier cross-validation results is replaced only with ``overwrite`` (once the new results are complete); a
    folder that holds anything else is never written into."""
    from transferkit._io import check_location, check_not_input, folder_is_empty
    from transferkit.models.folder import describe_folder, is_model_folder

    if path is None:
        return None
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output {folder} exists and is a file; give a folder path (a new or empty folder).")
    check_not_input(folder, inputs)
    check_location(folder)
    if not folder_is_empty(folder):
        if not (folder / CV_FILE).is_file() or is_model_folder(folder):
            raise ConfigError(f"--output {folder} is not empty: it holds {describe_folder(folder)}, not "
                              "cross-validation results; nothing in it is replaced, even with --overwrite. Choose a "
                              "new folder.")
        if not overwrite:
            raise ConfigError(f"--output {folder} already holds cross-validation results; pass --overwrite to replace "
                              "them (the old ones stay until the new ones are written), or choose a new folder.")
    return folder


def cross_validate(data: Any = None, *, config: FitConfig | None = None, folds: int = 5, repeats: int = 1,
                   confidence: float = 0.95, **options: Any) -> CVResult:
    """Stratified (repeated) k-fold cross-validation of ``config.strategy`` and its baselines on ``data``.

    ``data`` is a path (image folder or table) or a :class:`~transferkit.data.Dataset`; the other options are those
    of :class:`~transferkit.config.FitConfig` (``backbone``, ``strategy``, ``shots``, ``baselines``, ``output``,
    ``calibrate``, ...). Everything is checked before any backbone runs. With ``output``, ``cv.json`` (every fold,
    the summary and the verdicts), ``run_config.yaml``, ``summary.txt`` and ``reliability.png`` (out-of-fold
    probabilities of the first repeat) are written there.
    """
    from transferkit.data.sources import load_data
    from transferkit.data.splits import sample_per_class
    from transferkit.data.validation import validate_dataset

    started = time.perf_counter()
    if not 0 < confidence < 1:
        raise ConfigError(f"option 'confidence' must be between 0 and 1; got {confidence}.")
    if config is None:
        origin = data if isinstance(data, str) else getattr(data, "origin", None) if data is not None else None
        config = make_config(**({"data": str(origin)} if origin is not None else {}), **options)
    elif options:
        config = make_config(**{**config.model_dump(), **options})
    check_cv_config(config)
    data = data if data is not None else config.data
    if data is None:
        raise ConfigError("no data to cross-validate: give a folder of images per class or a table file.")
    from transferkit.strategies.registry import get_strategy

    trains_network = get_strategy(config.strategy).trains_network
    if trains_network or (config.baselines and "scratch" in config.baselines):
        from transferkit.strategies.requirements import check_training_installed

        check_training_installed(config.strategy if trains_network else "the scratch baseline")
    output = _prepare_output(config.output, config.overwrite, [("data", data), ("backbone", config.backbone),
                                                                ("--work-dir", config.work_dir)])
    dataset = data if isinstance(data, Dataset) else load_data(
        data, label_column=config.label_column, text_column=config.text_column, path_column=config.path_column,
        encoding=config.encoding, delimiter=config.delimiter, normalize_labels=config.normalize_labels,
        task=config.task)
    validate_dataset(dataset, role="training")
    if config.shots is not None:
        dataset = sample_per_class(dataset, config.shots, config.seed)
    from transferkit.tasks import get_task

    task = get_task(config.task)
    classes = task.label_space(dataset)
    labels = task.targets(dataset, classes)
    splits = stratified_folds(labels, folds, repeats, config.seed, class_names=classes)
    n_train_fold = len(splits[0][0])
    baseline_names, skipped = _cv_baselines(config.baselines, config.strategy, n_train_fold)

    backbone_name = config.backbone or get_modality(dataset.modality).default_backbone
    ranking_facts: dict[str, Any] = {}
    if backbone_name == "auto":
        from transferkit.selection.ranking import choose_backbone

        # chosen once on all the data, test folds' labels included: a mild optimism, stated in the docs
        backbone_name, ranking_facts = choose_backbone(dataset, config)

    import torch

    from transferkit.backbones import create_backbone
    from transferkit.evaluation.baselines import BASELINES
    from transferkit.features.cache import FeatureCache

    needs_frozen = not trains_network or LINEAR_PROBE in baseline_names
    temporary_cache = None
    if config.no_cache:  # the folds still share features, in a cache that lives for this run only
        temporary_cache = Path(tempfile.mkdtemp(prefix="transferkit-cv-cache-"))
        cache_root = temporary_cache
    elif config.cache_dir:
        cache_root = Path(config.cache_dir)
    else:
        from transferkit.features.cache import default_cache_dir

        cache_root = default_cache_dir()
    cache = FeatureCache(cache_root)
    frozen = None
    if needs_frozen:
        torch.manual_seed(config.seed)
        frozen_backbone = create_backbone(backbone_name, **config.backbone_options(dataset.modality))
        if frozen_backbone.modality != dataset.modality:
            raise ConfigError(f"backbone '{backbone_name}' takes {frozen_backbone.modality} input but "
                              f"{dataset.origin} holds {dataset.modality} data.")
        frozen = ProbeOnFeatures(frozen_backbone, config, cache)

    n_folds = len(splits)
    oof = {name: np.full((repeats, len(dataset)), -1, dtype=np.int64) for name in ["model", *baseline_names]}
    oof_proba = np.zeros((len(dataset), len(classes)), dtype=np.float64)
    records: list[dict[str, Any]] = []
    try:
        for index, (train_idx, test_idx) in enumerate(splits):
            repeat, fold = divmod(index, folds)
            fold_start = time.perf_counter()
            tag = f"repeat {repeat + 1} fold {fold + 1}"
            train = dataset.subset(train_idx, origin=f"{dataset.origin} ({tag} train)")
            test = dataset.subset(test_idx, origin=f"{dataset.origin} ({tag} test)")
            y_test = labels[test_idx]
            record: dict[str, Any] = {"repeat": repeat, "fold": fold, "n_train": len(train), "n_test": len(test),
                                      "metrics": {}, "facts": {}}
            if not trains_network:
                proba, facts = frozen(train, test, classes)
                record["extraction"] = facts.pop("extraction")
            else:
                fold_dir = str(Path(config.work_dir) / f"repeat{repeat}-fold{fold}") if config.work_dir else None
                proba, facts = train_fold(config, backbone_name, train, test, classes, fold_dir)
            pred = task.predictions(proba)
            oof["model"][repeat, test_idx] = pred
            if repeat == 0:
                oof_proba[test_idx] = proba
            record["metrics"]["model"] = task.fold_metrics(y_test, proba, pred, classes)
            record["facts"]["model"] = facts
            for name in baseline_names:
                if name == LINEAR_PROBE:
                    b_proba, b_facts = frozen(train, test, classes)
                    record["extraction"] = b_facts.pop("extraction")
                    b_pred = task.predictions(b_proba)
                else:
                    result = BASELINES[name](train, test, classes, seed=config.seed, config=config,
                                             backbone=backbone_name, val=None)
                    b_proba, b_pred, b_facts = result.probabilities, result.predictions, result.extra
                oof[name][repeat, test_idx] = b_pred
                record["metrics"][name] = task.fold_metrics(y_test, b_proba, b_pred, classes)
                record["facts"][name] = b_facts
            if "scratch" in baseline_names:
                from transferkit.strategies.run import finish_run

                finish_run(config.model_copy(update={"init_from": None}), train)
            record["seconds"] = round(time.perf_counter() - fold_start, 3)
            records.append(record)
            log.info("cross-validation %s (%d/%d): accuracy %.4f%s", tag, index + 1, n_folds,
                     record["metrics"]["model"]["accuracy"],
                     "".join(f", {n} {record['metrics'][n]['accuracy']:.4f}" for n in baseline_names))
    finally:
        if temporary_cache is not None:
            shutil.rmtree(temporary_cache, ignore_errors=True)

    test_fraction = float(np.mean([len(b) for _, b in splits])) / len(dataset)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for name in ["model", *baseline_names]:
        summary[name] = {m: _summarise([r["metrics"][name][m] for r in records], test_fraction, confidence)
                         for m in METRICS if m in records[0]["metrics"][name]}
    comparisons, intervals = [], {}
    measure = task.measure

    def scores(pred: np.ndarray) -> np.ndarray:  # (repeats, N) per-example scores of out-of-fold predictions
        return np.stack([task.per_example_scores(labels, row) for row in pred])

    model_scores = scores(oof["model"])
    for name in baseline_names:
        fold_diff = np.array([r["metrics"]["model"][measure] - r["metrics"][name][measure] for r in records])
        fold_low, fold_high = corrected_t_interval(fold_diff, test_fraction, confidence)
        per_example = (model_scores - scores(oof[name])).mean(axis=0)
        ex_low, ex_high = paired_bootstrap_interval(per_example, confidence, seed=config.seed)
        low, high = max(min(fold_low, ex_low), -1.0), min(max(fold_high, ex_high), 1.0)
        comparisons.append(Comparison(name, summary["model"][measure]["mean"], summary[name][measure]["mean"],
                                      float(fold_diff.mean()), low, high, confidence, verdict_of(low, high)))
        intervals[name] = {"folds": [fold_low, fold_high], "examples": [ex_low, ex_high],
                           "fold_differences": [float(d) for d in fold_diff]}

    resolved = config.resolved(backbone=backbone_name, classes=classes, modality=dataset.modality,
                               n_examples=len(dataset), data_fingerprint=dataset.fingerprint(), folds=folds,
                               repeats=repeats, confidence=confidence, baselines_run=baseline_names,
                               baselines_not_run=skipped, **ranking_facts)
    result = CVResult(resolved, records, summary, comparisons, intervals, skipped_baselines=skipped,
                      out_of_fold={"labels": labels, "proba_repeat0": oof_proba, **oof},
                      seconds=time.perf_counter() - started)
    if output is not None:
        result.output = _write_output(result, output)
    return result


def _write_output(result: CVResult, folder: Path) -> Path:
    """The results, written into a staging folder that replaces ``folder`` once complete; the reliability plot is
    optional (its failure is a warning and a note)."""
    import yaml

    from transferkit._io import atomic_write_json, atomic_write_text, folder_is_empty, staged_folder
    from transferkit.models.folder import late_step
    from transferkit.evaluation.calibration import reliability_diagram

    if not folder_is_empty(folder) and not (folder / CV_FILE).is_file():  # filled by something else meanwhile
        folder = folder.with_name(f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        warnings.warn(f"--output {result.config.get('output')} was filled while the folds ran; the results are "
                      f"written to {folder} instead.", stacklevel=3)
    with staged_folder(folder, what="--output") as staging:
        late_step("the reliability plot", lambda: reliability_diagram(
            result.out_of_fold["labels"], result.out_of_fold["proba_repeat0"], staging / "reliability.png",
            title=f"{result.config['strategy']}: out-of-fold predictions"), result.notes,
            saved="the results are saved")
        atomic_write_json(staging / CV_FILE, json.loads(json.dumps(result.to_dict(), default=str)))
        atomic_write_text(staging / "run_config.yaml",
                          yaml.safe_dump(json.loads(json.dumps(result.config, default=str)), sort_keys=False))
        atomic_write_text(staging / "summary.txt", result.table() + "\n"
                          + "".join(f"note: {note}\n" for note in result.notes))
    return folder
