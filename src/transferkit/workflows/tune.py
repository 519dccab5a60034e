"""``tune``: a hyper-parameter search (Optuna) over the options of one strategy, on the user's data.

The building blocks (the search space, the trial objective, the study storage, the results folder) are in
:mod:`transferkit.tuning.search`, whose docstring states the method; this module is the verb: check everything
before the first trial, load the data, open the study, run the trials, collect the best ones, write the results.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from transferkit.config import FitConfig
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.modalities import get_modality
from transferkit.tuning.search import (
    TrialObjective,
    TuneConfig,
    TuneResult,
    check_tune_output,
    default_space,
    defaults_in,
    make_tune_config,
    normalise_space,
    open_storage,
    run_config,
    soup_top,
    split_options,
    with_params,
    write_outputs,
)

log = logging.getLogger("transferkit")


def tune(data: Any = None, *, config: FitConfig | None = None, tune_config: TuneConfig | None = None,
         **options: Any) -> TuneResult:
    """Search the options of ``config.strategy`` on ``data`` with Optuna; see :mod:`transferkit.tuning.search`.

    ``options`` are :class:`~transferkit.config.FitConfig` options (the run being tuned) and
    :class:`~transferkit.tuning.search.TuneConfig` options (``n_trials``, ``objective``, ``storage``, ``space``,
    ``output``, ...). Everything (the space against the run's options, the storage, the data) is checked before the
    first trial.
    """
    optuna = _import_optuna()
    from transferkit.strategies.registry import get_strategy

    started = time.perf_counter()
    config, tune_config = _tune_configs(config, tune_config, data, options)
    entry = get_strategy(config.strategy)
    teachers = _check_run(config, entry)
    _check_search(config, tune_config, entry, data)
    space = _checked_space(config, tune_config)
    dataset = _load_data(data, config)
    make_strategy = _trial_strategy(config, teachers, dataset)
    backbone_name = _backbone_name(config, teachers, dataset)

    output = Path(tune_config.output) if tune_config.output else None
    name = tune_config.study_name or f"{config.strategy}-{backbone_name.replace('/', '_')}-{dataset.fingerprint()[:10]}"
    replaced_study = None
    if output is not None:
        replaced_study = check_tune_output(output, study=name, overwrite=tune_config.overwrite,
                                           default_storage=not tune_config.storage)
        output.mkdir(parents=True, exist_ok=True)
    url = _storage_url(tune_config, output)
    study = _open_study(optuna, name, url, config, tune_config)
    _enqueue_defaults(study, space, config)
    objective = TrialObjective(config, tune_config, space, dataset, backbone_name, _runs_dir(config, output, name),
                               make_strategy)
    keep_models = tune_config.keep_models or tune_config.soup
    if keep_models:
        objective.keep_dir = output / "trials"
    _run_trials(study, objective, tune_config, name, keep_models, entry.trains_network)

    result = _collect(study, name, url, objective, config, tune_config)
    if keep_models:
        for row in result.top:
            folder = objective.keep_dir / f"trial-{row['trial']}"
            if folder.is_dir():
                row["model"] = str(folder)
        if tune_config.soup:
            result.soup = soup_top(result, objective, config, output)
    result.seconds = time.perf_counter() - started
    if replaced_study is not None:
        result.notes.append(f"the results of study '{replaced_study}' in {output} were replaced (--overwrite); that "
                            "study stays in its storage.")
    if output is not None and result.best_config is not None:
        write_outputs(result, config, output, dataset, replaced=replaced_study is not None)
    return result


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError("transferkit tune needs Optuna: pip install 'transferkit[tune]'.") from exc
    return optuna


def _tune_configs(config: FitConfig | None, tune_config: TuneConfig | None, data: Any,
                  options: dict[str, Any]) -> tuple[FitConfig, TuneConfig]:
    """The config of the run being tuned and the search's own config, each with its options from the call."""
    fit_options, tune_options = split_options(options)
    if tune_config is None:
        tune_config = make_tune_config(**tune_options)
    elif tune_options:
        tune_config = make_tune_config(**{**tune_config.model_dump(), **tune_options})
    if config is None:
        origin = data if isinstance(data, str) else None
        config = run_config(**({"data": origin} if origin else {}), **fit_options)
    elif fit_options:
        config = run_config(**{**config.model_dump(), **fit_options})
    return config, tune_config


def _check_run(config: FitConfig, entry: Any) -> list[Any] | None:
    """The run being tuned: one strategy (not ``auto``), a device that is here, options it follows; for
    ``distill`` the teachers, loaded once and returned."""
    if entry.chooses_strategy:
        raise ConfigError("tune searches the options of one strategy; give --strategy linear-probe, finetune, lp-ft, "
                          "lora, l2sp or distill.")
    from transferkit.features.extract import resolve_device

    resolve_device(config.device)  # a device that is not here fails before the study starts
    if entry.verb == "distill":
        from transferkit.strategies.distill_setup import check_distill_options, load_teachers

        check_distill_options(config)
        return load_teachers(config.teacher)  # checked (and loaded once) before any trial
    if config.budget is not None:
        raise ConfigError("option 'budget' is used by fit --strategy auto; bound each trial with --epochs and "
                          "the search with --timeout.")
    config.check_options_apply()
    return None


def _check_search(config: FitConfig, tune_config: TuneConfig, entry: Any, data: Any) -> None:
    """The search's needs before any data is read: the training libraries (and pruning's), kept models (an output
    folder, the validation objective, a training strategy) and the output folder."""
    if entry.trains_network:
        from transferkit.strategies.requirements import check_training_installed

        check_training_installed(config.strategy)
        if tune_config.pruning:
            try:
                import optuna_integration  # noqa: F401
            except ImportError as exc:
                raise ConfigError("pruning training trials needs optuna-integration: pip install "
                                  "'transferkit[tune]', or pass --no-pruning.") from exc
    if tune_config.keep_models or tune_config.soup:
        flag = "--soup" if tune_config.soup else "--keep-models"
        if tune_config.output is None:
            raise ConfigError(f"tune {flag}: give --output; the top trials' models are kept in OUTPUT/trials/.")
        if tune_config.objective != "val":
            raise ConfigError(f"tune {flag}: needs --objective val (a cv trial trains one model per fold and keeps "
                              "none).")
        if not entry.trains_network:
            raise ConfigError(f"tune {flag}: linear-probe trials share the frozen backbone and refit in seconds; "
                              "keep models of a training strategy (finetune, lp-ft, lora, l2sp, distill).")
    if tune_config.output is not None:  # before any data is read: file, location, inputs
        check_tune_output(tune_config.output, inputs=[
            ("data", data if data is not None else config.data), ("backbone", config.backbone),
            ("unlabelled data", getattr(config, "unlabelled", None)), ("--work-dir", config.work_dir),
            *[("teacher model", t) for t in getattr(config, "teacher", None) or []]])


def _checked_space(config: FitConfig, tune_config: TuneConfig) -> dict[str, dict[str, Any]]:
    """The search space (the strategy's default one unless given): every option used by the strategy, and each
    takes the space's values."""
    from transferkit.config import option_users

    space = normalise_space(tune_config.space or default_space(config.strategy))
    ignored = [name for name in space if config.strategy not in option_users().get(name, (config.strategy,))]
    if ignored:
        raise ConfigError(f"search space: --strategy {config.strategy} does not use {', '.join(ignored)}; every "
                          "trial would train the same model. Search options of this strategy, or tune another one.")
    for name, spec in space.items():  # every option exists and takes the space's values
        probe_value = spec["choices"][0] if "choices" in spec else spec["low"]
        with_params(config, {name: probe_value}, origin=f"search space option '{name}'")
    return space


def _load_data(data: Any, config: FitConfig) -> Dataset:
    """The data the trials train and score on: loaded, checked as training data, cut to ``shots`` per class."""
    from transferkit.data.sources import load_data
    from transferkit.data.splits import sample_per_class
    from transferkit.data.validation import validate_dataset

    data = data if data is not None else config.data
    if data is None:
        raise ConfigError("no data to tune on: give a folder of images per class or a table file.")
    dataset = data if isinstance(data, Dataset) else load_data(data, config, task=config.task)
    validate_dataset(dataset, role="training")
    if config.shots is not None:
        dataset = sample_per_class(dataset, config.shots, config.seed)
    return dataset


def _trial_strategy(config: FitConfig, teachers: list[Any] | None,
                    dataset: Dataset) -> Callable[[Any], Any] | None:
    """For ``distill``, what builds each trial's strategy from its config (the teachers and the unlabelled data
    checked and loaded once); ``None`` for the other strategies."""
    if teachers is None:
        return None
    from transferkit.strategies.distill_setup import check_teacher_input, distill_strategy, load_unlabelled

    check_teacher_input(teachers, dataset)
    unlabelled = load_unlabelled(config, config.unlabelled, dataset.modality)

    def make_strategy(trial_config: Any) -> Any:
        return distill_strategy(trial_config, teachers, unlabelled)

    return make_strategy


def _backbone_name(config: FitConfig, teachers: list[Any] | None, dataset: Dataset) -> str:
    """The backbone every trial uses (for ``distill`` the student; ``auto`` ranked once), checked before any
    trial."""
    from transferkit.selection.ranking import check_candidates

    if teachers is not None:
        from transferkit.strategies.distill_setup import default_student

        name = default_student(config, teachers)
    else:
        name = config.backbone or get_modality(dataset.modality).default_backbone
    if name == "auto":
        from transferkit.selection.ranking import choose_backbone

        name, _ = choose_backbone(dataset, config)
    check_candidates([name], dataset.modality, dataset.origin, option="--backbone")
    return name


def _storage_url(tune_config: TuneConfig, output: Path | None) -> str:
    """The study's storage: the one given, else a SQLite file in the output folder (or the cache's tuning one)."""
    if tune_config.storage:
        return tune_config.storage
    from transferkit.backbones.packaged import cache_root

    folder = output if output is not None else cache_root() / "tuning"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def _runs_dir(config: FitConfig, output: Path | None, name: str) -> Path:
    """Where the trials' training runs live: under ``--work-dir``, else beside the study."""
    if config.work_dir:
        return Path(config.work_dir) / name
    from transferkit.backbones.packaged import cache_root

    return (output if output is not None else cache_root() / "tuning") / "runs" / name


def _open_study(optuna: Any, name: str, url: str, config: FitConfig, tune_config: TuneConfig) -> Any:
    """The study ``name`` in ``url`` (continued when it exists): TPE seeded by the run, the median pruner unless
    pruning is off; an error names a storage that cannot be opened."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(
            study_name=name, storage=open_storage(url), load_if_exists=True, direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=5),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0) if tune_config.pruning
            else optuna.pruners.NopPruner())
    except Exception as exc:  # a bad URL, an unreachable database, a missing driver
        raise ConfigError(f"tune: cannot open the study storage {url!r}: {exc}") from None


def _count(study: Any, *states: Any) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def _enqueue_defaults(study: Any, space: dict[str, dict[str, Any]], config: FitConfig) -> None:
    """A new study's first trial is the run's own options, when every option of the space has one."""
    from optuna.trial import TrialState

    finished = _count(study, TrialState.COMPLETE, TrialState.PRUNED)
    if finished == 0 and _count(study, TrialState.RUNNING, TrialState.WAITING) == 0:
        defaults = defaults_in(space, config)
        if len(defaults) == len(space):
            study.enqueue_trial(defaults)


def _run_trials(study: Any, objective: TrialObjective, tune_config: TuneConfig, name: str, keep_models: bool,
                collect_garbage: bool) -> None:
    """The trials still missing to reach ``n_trials`` (several workers on one study stop at the total too); with
    kept models, those of finished trials outside the top are deleted as the search goes."""
    from optuna.trial import TrialState

    finished = _count(study, TrialState.COMPLETE, TrialState.PRUNED)
    remaining = max(tune_config.n_trials - finished, 0)
    callbacks = []
    if keep_models:
        def keep_top_models(study_: Any, trial: Any) -> None:
            finished_trials = study_.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                        TrialState.FAIL))
            top = {t.number for t in sorted((t for t in finished_trials if t.state == TrialState.COMPLETE),
                                            key=lambda t: (-t.value, t.number))[: tune_config.top_k]}
            for t in finished_trials:
                folder = objective.keep_dir / f"trial-{t.number}"
                if t.number not in top and folder.is_dir():
                    shutil.rmtree(folder)

        callbacks.append(keep_top_models)
    if not remaining:
        return
    log.info("tune: study '%s' has %d finished trials; running %d more", name, finished, remaining)

    def stop_at_total(study_: Any, trial: Any) -> None:
        if _count(study, TrialState.COMPLETE, TrialState.PRUNED) >= tune_config.n_trials:
            study_.stop()

    study.optimize(objective, n_trials=remaining, timeout=tune_config.timeout, catch=(),
                   callbacks=[*callbacks, stop_at_total], gc_after_trial=collect_garbage)  # 1-2 s a call


def _collect(study: Any, name: str, url: str, objective: TrialObjective, config: FitConfig,
             tune_config: TuneConfig) -> TuneResult:
    """The study's outcome: the counts of complete, pruned and failed trials, the best one and the top ``top_k``."""
    from optuna.trial import TrialState

    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                      key=lambda t: (-t.value, t.number))
    result = TuneResult(name, url, None, {}, None, [], len(complete), _count(study, TrialState.PRUNED),
                        _count(study, TrialState.FAIL), objective.calls, measure=objective.task.measure)
    if complete:
        best = complete[0]
        result.best_value, result.best_params = float(best.value), dict(best.params)
        result.best_config = with_params(config, best.params)
        result.top = [{"trial": t.number, "value": float(t.value), "params": dict(t.params),
                       **({"fold_scores": t.user_attrs["fold_scores"]}
                          if "fold_scores" in t.user_attrs else {})}
                      for t in complete[: tune_config.top_k]]
    return result
