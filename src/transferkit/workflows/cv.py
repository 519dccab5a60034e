"""``cv``: stratified (repeated) k-fold cross-validation of one strategy beside its baselines, with spread and a
paired verdict.

The building blocks (folds, the corrected t-interval, the fold trainers, :class:`CVResult`) are in
:mod:`transferkit.evaluation.cross_validation`, whose docstring states the method; this module is the verb: check,
load, split, run every fold (the model and each baseline on the same folds), compare, write the results folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.config import FitConfig, make_config
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.evaluation.cross_validation import (
    CV_FILE,
    LINEAR_PROBE,
    CVResult,
    ProbeOnFeatures,
    check_cv_config,
    corrected_t_interval,
    cv_baselines,
    stratified_folds,
    summarise_folds,
    train_fold,
)
from transferkit.evaluation.verdict import Comparison, paired_bootstrap_interval, verdict_of
from transferkit.workflows.steps import backbone_name as choose_backbone_name
from transferkit.workflows.steps import load_training_data, training_requirement

log = logging.getLogger("transferkit")


def cross_validate(data: Any = None, *, config: FitConfig | None = None, folds: int = 5, repeats: int = 1,
                   confidence: float = 0.95, **options: Any) -> CVResult:
    """Stratified (repeated) k-fold cross-validation of ``config.strategy`` and its baselines on ``data``.

    ``data`` is a path (image folder or table) or a :class:`~transferkit.data.Dataset`; the other options are those
    of :class:`~transferkit.config.FitConfig` (``backbone``, ``strategy``, ``shots``, ``baselines``, ``output``,
    ``calibrate``, ...). Everything is checked before any backbone runs. With ``output``, ``cv.json`` (every fold,
    the summary and the verdicts), ``run_config.yaml``, ``summary.txt`` and ``reliability.png`` (out-of-fold
    probabilities of the first repeat) are written there.
    """
    started = time.perf_counter()
    if not 0 < confidence < 1:
        raise ConfigError(f"option 'confidence' must be between 0 and 1; got {confidence}.")
    config = _cv_config(config, data, options)
    check_cv_config(config)
    data = data if data is not None else config.data
    if data is None:
        raise ConfigError("no data to cross-validate: give a folder of images per class or a table file.")
    _check_training_installed(config)
    output = _prepare_output(config.output, config.overwrite, [("data", data), ("backbone", config.backbone),
                                                                ("--work-dir", config.work_dir)])
    dataset = load_training_data(data, config)
    plan = _plan_folds(dataset, config, folds, repeats)
    # with ``auto``, chosen once on all the data, test folds' labels included: a mild optimism, stated in the docs
    name, ranking_facts = choose_backbone_name(config, dataset)
    with _fold_cache(config) as cache:
        frozen = _frozen_probe(plan, config, name, cache)
        records, oof, oof_proba = _run_folds(plan, config, name, frozen)
    test_fraction = float(np.mean([len(b) for _, b in plan.splits])) / len(dataset)
    summary = _summary(records, plan.baselines, test_fraction, confidence)
    comparisons, intervals = _compare(plan, records, summary, oof, test_fraction, confidence, config.seed)

    resolved = config.resolved(backbone=name, classes=plan.classes, modality=dataset.modality,
                               n_examples=len(dataset), data_fingerprint=dataset.fingerprint(), folds=folds,
                               repeats=repeats, confidence=confidence, baselines_run=plan.baselines,
                               baselines_not_run=plan.skipped, **ranking_facts)
    result = CVResult(resolved, records, summary, comparisons, intervals, skipped_baselines=plan.skipped,
                      out_of_fold={"labels": plan.labels, "proba_repeat0": oof_proba, **oof},
                      seconds=time.perf_counter() - started)
    if output is not None:
        result.output = _write_output(result, output)
    return result


def _cv_config(config: FitConfig | None, data: Any, options: dict[str, Any]) -> FitConfig:
    """The run's config: ``config`` with ``options`` over it, or one made from ``options`` and the data's name."""
    if config is None:
        origin = data if isinstance(data, str) else getattr(data, "origin", None) if data is not None else None
        return make_config(**({"data": str(origin)} if origin is not None else {}), **options)
    if options:
        return make_config(**{**config.model_dump(), **options})
    return config


def _check_training_installed(config: FitConfig) -> None:
    """The training libraries, when the strategy trains a network or the scratch baseline was asked for."""
    from transferkit.strategies.registry import get_strategy

    needed = training_requirement(config, get_strategy(config.strategy).trains_network)
    if needed is not None:
        from transferkit.strategies.requirements import check_training_installed

        check_training_installed(needed)


@dataclass
class _Folds:
    """What every fold of one run shares: the data, its task and targets, the splits and the baselines."""

    dataset: Dataset
    task: Any
    classes: list[str]
    labels: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    folds: int
    repeats: int
    baselines: list[str]
    skipped: dict[str, str]
    trains_network: bool


def _plan_folds(dataset: Dataset, config: FitConfig, folds: int, repeats: int) -> _Folds:
    """The task's targets of ``dataset``, its stratified folds (by class; quantile bins of a target; each row's
    rarest label) and the baselines that run beside the model."""
    from transferkit.data.dataset import sort_labels
    from transferkit.strategies.registry import get_strategy
    from transferkit.tasks import get_task

    task = get_task(config.task)
    classes = task.label_space(dataset)
    labels = task.targets(dataset, classes)
    strata = task.strata(dataset.labels)
    groups = sort_labels(strata)
    code = {group: i for i, group in enumerate(groups)}
    splits = stratified_folds([code[group] for group in strata], folds, repeats, config.seed, class_names=groups)
    baseline_names, skipped = cv_baselines(config.baselines, config.strategy, len(splits[0][0]))
    return _Folds(dataset, task, classes, labels, splits, folds, repeats, baseline_names, skipped,
                  get_strategy(config.strategy).trains_network)


@contextmanager
def _fold_cache(config: FitConfig) -> Iterator[Any]:
    """The feature cache the folds share: the run's cache, or without one (``no_cache``) a temporary one that lives
    for this run only."""
    from transferkit.features.cache import FeatureCache

    temporary_cache = None
    if config.no_cache:
        temporary_cache = Path(tempfile.mkdtemp(prefix="transferkit-cv-cache-"))
        cache_root = temporary_cache
    elif config.cache_dir:
        cache_root = Path(config.cache_dir)
    else:
        from transferkit.features.cache import default_cache_dir

        cache_root = default_cache_dir()
    try:
        yield FeatureCache(cache_root)
    finally:
        if temporary_cache is not None:
            shutil.rmtree(temporary_cache, ignore_errors=True)


def _frozen_probe(plan: _Folds, config: FitConfig, name: str, cache: Any) -> ProbeOnFeatures | None:
    """The linear probe on the frozen backbone's cached features, when the strategy is the probe or the probe is
    a baseline; ``None`` otherwise."""
    if plan.trains_network and LINEAR_PROBE not in plan.baselines:
        return None
    import torch

    from transferkit.backbones import create_backbone

    dataset = plan.dataset
    torch.manual_seed(config.seed)
    frozen_backbone = create_backbone(name, **config.backbone_options(dataset.modality))
    if frozen_backbone.modality != dataset.modality:
        raise ConfigError(f"backbone '{name}' takes {frozen_backbone.modality} input but "
                          f"{dataset.origin} holds {dataset.modality} data.")
    return ProbeOnFeatures(frozen_backbone, config, cache)


def _run_folds(plan: _Folds, config: FitConfig, name: str,
               frozen: ProbeOnFeatures | None) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], np.ndarray]:
    """Every fold in turn: its records, the out-of-fold predictions of each repeat per model ``(repeats, ...)`` and
    the model's out-of-fold probabilities of the first repeat ``(N, classes)``."""
    task, dataset = plan.task, plan.dataset
    # shaped as the task's predictions of all examples (class indices, values, 0/1 label matrices)
    shape = task.predictions(task.proba_from_outputs(np.zeros((len(dataset), len(plan.classes)),
                                                              dtype=np.float32))).shape
    oof = {n: np.zeros((plan.repeats, *shape), dtype=np.float64) for n in ["model", *plan.baselines]}
    oof_proba = np.zeros((len(dataset), len(plan.classes)), dtype=np.float64)
    records: list[dict[str, Any]] = []
    for index, (train_idx, test_idx) in enumerate(plan.splits):
        record = _run_fold(plan, config, name, frozen, index, oof, oof_proba)
        records.append(record)
        log.info("cross-validation repeat %d fold %d (%d/%d): %s %.4f%s", record["repeat"] + 1, record["fold"] + 1,
                 index + 1, len(plan.splits), task.measure, record["metrics"]["model"][task.measure],
                 "".join(f", {n} {record['metrics'][n][task.measure]:.4f}" for n in plan.baselines))
    return records, oof, oof_proba


def _run_fold(plan: _Folds, config: FitConfig, name: str, frozen: ProbeOnFeatures | None, index: int,
              oof: dict[str, np.ndarray], oof_proba: np.ndarray) -> dict[str, Any]:
    """Fold ``index``: the model and every baseline trained on its training part and scored on its test part; their
    predictions written into ``oof`` (and the model's first-repeat probabilities into ``oof_proba``)."""
    from transferkit.evaluation.baselines import BASELINES

    task, classes = plan.task, plan.classes
    train_idx, test_idx = plan.splits[index]
    repeat, fold = divmod(index, plan.folds)
    fold_start = time.perf_counter()
    tag = f"repeat {repeat + 1} fold {fold + 1}"
    train = plan.dataset.subset(train_idx, origin=f"{plan.dataset.origin} ({tag} train)")
    test = plan.dataset.subset(test_idx, origin=f"{plan.dataset.origin} ({tag} test)")
    y_test = plan.labels[test_idx]
    record: dict[str, Any] = {"repeat": repeat, "fold": fold, "n_train": len(train), "n_test": len(test),
                              "metrics": {}, "facts": {}}
    if not plan.trains_network:
        proba, facts = frozen(train, test, classes)
        record["extraction"] = facts.pop("extraction")
    else:
        fold_dir = str(Path(config.work_dir) / f"repeat{repeat}-fold{fold}") if config.work_dir else None
        proba, facts = train_fold(config, name, train, test, classes, fold_dir)
    pred = task.predictions(proba)
    oof["model"][repeat, test_idx] = pred
    if repeat == 0:
        oof_proba[test_idx] = proba
    record["metrics"]["model"] = task.fold_metrics(y_test, proba, pred, classes)
    record["facts"]["model"] = facts
    for baseline in plan.baselines:
        if baseline == LINEAR_PROBE:
            b_proba, b_facts = frozen(train, test, classes)
            record["extraction"] = b_facts.pop("extraction")
            b_pred = task.predictions(b_proba)
        else:
            result = BASELINES[baseline](train, test, classes, seed=config.seed, config=config, backbone=name,
                                         val=None)
            b_proba, b_pred, b_facts = result.probabilities, result.predictions, result.extra
        oof[baseline][repeat, test_idx] = b_pred
        record["metrics"][baseline] = task.fold_metrics(y_test, b_proba, b_pred, classes)
        record["facts"][baseline] = b_facts
    if "scratch" in plan.baselines:
        from transferkit.strategies.run import finish_run

        finish_run(config.model_copy(update={"init_from": None}), train)
    record["seconds"] = round(time.perf_counter() - fold_start, 3)
    return record


def _summary(records: list[dict[str, Any]], baselines: list[str], test_fraction: float,
             confidence: float) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model and metric: mean, spread and corrected t-interval over the fold scores."""
    return {name: {m: summarise_folds([r["metrics"][name][m] for r in records], test_fraction, confidence)
                   for m in records[0]["metrics"][name]}
            for name in ["model", *baselines]}


def _compare(plan: _Folds, records: list[dict[str, Any]], summary: dict[str, Any], oof: dict[str, np.ndarray],
             test_fraction: float, confidence: float, seed: int) -> tuple[list[Comparison], dict[str, Any]]:
    """The paired comparison of the model with each baseline: the union of the corrected t-interval over fold
    differences and the paired bootstrap over test examples, and the verdict it supports."""
    task, measure = plan.task, plan.task.measure
    comparisons, intervals = [], {}

    def scores(pred: np.ndarray) -> np.ndarray:  # (repeats, N) per-example scores of out-of-fold predictions
        return np.stack([task.per_example_scores(plan.labels, row) for row in pred])

    model_scores = scores(oof["model"])
    for name in plan.baselines:
        fold_diff = np.array([r["metrics"]["model"][measure] - r["metrics"][name][measure] for r in records])
        fold_low, fold_high = corrected_t_interval(fold_diff, test_fraction, confidence)
        per_example = (model_scores - scores(oof[name])).mean(axis=0)
        ex_low, ex_high = paired_bootstrap_interval(per_example, confidence, seed=seed)
        low, high = max(min(fold_low, ex_low), -1.0), min(max(fold_high, ex_high), 1.0)
        comparisons.append(Comparison(name, summary["model"][measure]["mean"], summary[name][measure]["mean"],
                                      float(fold_diff.mean()), low, high, confidence, verdict_of(low, high)))
        intervals[name] = {"folds": [fold_low, fold_high], "examples": [ex_low, ex_high],
                           "fold_differences": [float(d) for d in fold_diff]}
    return comparisons, intervals


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
        from transferkit.tasks import DEFAULT_TASK, get_task

        if get_task(result.config.get("task", DEFAULT_TASK)).calibrates:
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
