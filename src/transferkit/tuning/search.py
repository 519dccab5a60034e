"""Hyper-parameter search over the options of any strategy (Optuna): the building blocks of the ``tune`` verb,
:func:`transferkit.workflows.tune.tune` (the space, the trial objective, the study storage, the results folder).

Each trial draws values for the options of a search space (``lr``, ``weight_decay``, ``finetune.freeze``,
``lora.rank``, ``augment``, ``probe_c``, ...; any :class:`~transferkit.config.FitConfig` option, nested sections
written ``section.option``), builds the run's config with them and scores it:

- ``objective="val"``: trained on the training part of the data and scored by the task's measure (accuracy;
  R² for regression; example-based F1 for multi-label) on a stratified validation part (``val_fraction``; the test data is never seen). Training strategies also stop early and pick their best
  epoch on that part, so the objective is slightly optimistic; confirm the winner with ``transferkit cv``. Training strategies report the validation accuracy after
  every epoch to Optuna through the engine (``optuna_integration.PyTorchLightningPruningCallback``), and bad trials
  are pruned mid-run by the median rule (``MedianPruner``: a trial is stopped when its best epoch so far is worse
  than the median of earlier trials at the same epoch).
- ``objective="cv"``: the mean of the task's measure over stratified folds (by class, quantile bins of a
  regression target, or each row's rarest label) (:mod:`transferkit.evaluation.cross_validation`),
  reported fold by fold, pruned after a fold by the same rule.

Frozen features (the probe, and lp-ft's probe stage) come from the feature cache, so a probe sweep costs one
extraction. The study lives in a database: by default a SQLite file in the output folder (``study.db``), so that a
search that was interrupted resumes with the trials already done (``n_trials`` is the total the study should
reach; finished and pruned trials count, a trial a killed process left running is marked failed once its
heartbeat is older than :data:`GRACE_PERIOD_S`), and any SQLAlchemy URL (``postgresql://...``) lets several
machines work on one study; ``journal:PATH`` (Optuna's journal file storage) does the same for processes that
share a file system, without a database server. The first trial of a new study runs the defaults (where the space contains them), so
the best configuration found is never one that scored below the defaults.

Any strategy can be searched, ``distill`` too (its teachers are loaded once; ``distill.temperature`` and
``distill.alpha`` are in its default space).

Outputs: ``best_config.yaml``, ready for ``transferkit fit --config`` (``distill --config`` for distill); ``top_trials.json`` and one
``trials/trial-N.yaml`` per top trial; ``tune.json``. With ``keep_models`` the top trials' weights stay as model
folders (``trials/trial-N/``; a trial that leaves the top has its folder deleted), and ``soup`` combines them
after the search into a greedy model soup (``soup/``, :mod:`transferkit.fusion.soups`): the trials are
fine-tuned from the same pretrained weights with different options, the setting in which averaging weights
works. Its validation figure is measured on the part the trials were chosen on, so it is optimistic; confirm it
on test data (``transferkit evaluate``).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transferkit.config import FitConfig, make_config
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")

HEARTBEAT_S = 20
GRACE_PERIOD_S = 60


class TuneConfig(BaseModel):
    """How the search runs (the run being tuned is a :class:`~transferkit.config.FitConfig`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    n_trials: int = Field(20, gt=0, description="trials the study should have finished in total (a resumed study runs only the missing ones)")
    timeout: float | None = Field(None, gt=0, description="stop starting new trials after this many seconds")
    objective: Literal["val", "cv"] = Field("val", description="val: the task's measure (accuracy, R2, example F1) on a stratified validation part of the data; cv: its mean over stratified folds")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="objective val: part of each class held out for scoring")
    folds: int = Field(3, ge=2, description="objective cv: number of folds")
    pruning: bool = Field(True, description="stop bad trials early (median rule, per epoch or per fold)")
    storage: str | None = Field(None, description="Optuna storage: a database URL (sqlite:///path.db, postgresql://..., "
                                "mysql://...) or journal:PATH (an append-only log file that several processes on "
                                "one file system share without a database server); default sqlite:///OUTPUT/study.db")
    study_name: str | None = Field(None, description="study name in the storage (default: strategy and data fingerprint)")
    space: dict[str, Any] | None = Field(None, description="search space: option -> {low, high, log} or {choices: [...]} or a list of choices; default per strategy")
    top_k: int = Field(5, gt=0, description="trials listed (and saved as configs) as the top runs")
    keep_models: bool = Field(False, description="keep the weights of the top_k trials as model folders in "
                              "OUTPUT/trials/trial-N/ (objective val, training strategies), e.g. for a model soup")
    soup: bool = Field(False, description="after the search, a greedy soup of the kept top trials' weights, each "
                       "ingredient added only if it raises validation accuracy (or keeps it with a lower log loss), saved in OUTPUT/soup (implies keep_models)")
    output: str | None = Field(None, description="folder for study.db, best_config.yaml, top_trials.json, trials/")
    overwrite: bool = Field(False, description="replace the results of another study in output (a study of the same "
                            "name is continued, never replaced)")


def default_space(strategy: str) -> dict[str, Any]:
    """The options searched when no space is given, per strategy (its registry entry's search space)."""
    from transferkit.strategies.registry import get_strategy

    return get_strategy(strategy).search_space()


def normalise_space(space: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, spec in space.items():
        if isinstance(spec, (list, tuple)):
            spec = {"choices": list(spec)}
        if not isinstance(spec, dict) or not ("choices" in spec or {"low", "high"} <= set(spec)):
            raise ConfigError(f"search space option '{name}': give {{low: .., high: .., log: true|false}} or "
                              f"{{choices: [...]}} (or a list of choices); got {spec!r}.")
        extra = set(spec) - {"choices", "low", "high", "log", "step"}
        if extra:
            raise ConfigError(f"search space option '{name}': unknown keys {sorted(extra)}; allowed: low, high, log, "
                              "step, choices.")
        if "choices" in spec and not spec["choices"]:
            raise ConfigError(f"search space option '{name}': choices is empty.")
        if "low" in spec and not spec["low"] < spec["high"]:
            raise ConfigError(f"search space option '{name}': low ({spec['low']}) must be below high ({spec['high']}).")
        out[name] = dict(spec)
    return out


def run_config(origin: str = "options", **values: Any) -> FitConfig:
    """The config of the run being tuned: a :class:`~transferkit.strategies.distill_setup.DistillConfig` for
    ``distill`` (it names the teachers), a :class:`~transferkit.config.FitConfig` otherwise."""
    from transferkit.strategies.registry import get_strategy, strategy_names

    name = values.get("strategy")
    own_config = get_strategy(name).make_config if name in strategy_names() else None
    return (own_config or make_config)(origin, **values)


def with_params(base: FitConfig, params: dict[str, Any], origin: str = "search space") -> FitConfig:
    values = base.model_dump()
    for name, value in params.items():
        section, _, option = name.partition(".")
        if option:
            if not isinstance(values.get(section), dict):
                raise ConfigError(f"{origin}: '{name}': '{section}' is not a section of the run's options.")
            values[section] = {**values[section], option: value}
        else:
            values[name] = value
    return run_config(origin, **values)


def _suggest(trial: Any, name: str, spec: dict[str, Any]) -> Any:
    if "choices" in spec:
        return trial.suggest_categorical(name, spec["choices"])
    low, high = spec["low"], spec["high"]
    if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
        return trial.suggest_int(name, low, high, log=bool(spec.get("log", False)), step=int(spec.get("step", 1)))
    return trial.suggest_float(name, float(low), float(high), log=bool(spec.get("log", False)),
                               step=spec.get("step"))


def defaults_in(space: dict[str, dict[str, Any]], base: FitConfig) -> dict[str, Any]:
    """The base config's values of the searched options, where the space contains them."""
    values = base.model_dump()
    out = {}
    for name, spec in space.items():
        section, _, option = name.partition(".")
        value = values[section][option] if option else values.get(name)
        if value is None and name == "lr":
            from transferkit.strategies.registry import get_strategy

            default_lr = get_strategy(base.strategy).default_lr
            value = default_lr() if default_lr is not None else None  # what the run uses when lr is not given
        if value is None:
            continue
        if ("choices" in spec and value in spec["choices"]) or \
                ("low" in spec and spec["low"] <= value <= spec["high"]):
            out[name] = value
    return out


@dataclass
class TuneResult:
    """The study after the search: the best trial, the top ones, where everything was written."""

    study_name: str
    storage: str
    best_value: float | None
    best_params: dict[str, Any]
    best_config: FitConfig | None
    top: list[dict[str, Any]]
    n_complete: int
    n_pruned: int
    n_failed: int
    n_run_now: int
    output: Path | None = None
    best_config_path: Path | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    soup: dict[str, Any] | None = None
    measure: str = "accuracy"  # what the objective is: the task's measure

    def table(self) -> str:
        lines = [f"study '{self.study_name}' ({self.storage}): {self.n_complete} complete, {self.n_pruned} pruned, "
                 f"{self.n_failed} failed; {self.n_run_now} run now in {self.seconds:.0f} s"]
        if self.best_value is not None:
            lines.append(f"best {self.measure}: {self.best_value:.4f} with " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.best_params.items()))
        for row in self.top:
            lines.append(f"  trial {row['trial']:>3}  {row['value']:.4f}  " +
                         ", ".join(f"{k}={_fmt(v)}" for k, v in row["params"].items()))
        if self.best_config_path is not None:
            lines.append(f"best config: {self.best_config_path} (transferkit {run_verb(self.best_config)} --config "
                         f"{self.best_config_path})")
        lines += self.notes
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"study_name": self.study_name, "storage": self.storage, "best_value": self.best_value,
                "best_params": self.best_params, "top": self.top, "n_complete": self.n_complete,
                "n_pruned": self.n_pruned, "n_failed": self.n_failed, "n_run_now": self.n_run_now,
                "best_config": str(self.best_config_path) if self.best_config_path else None,
                "soup": self.soup, "notes": self.notes, "seconds": round(self.seconds, 2)}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    tune_keys = set(TuneConfig.model_fields)
    return ({k: v for k, v in options.items() if k not in tune_keys},
            {k: v for k, v in options.items() if k in tune_keys})


def make_tune_config(**values: Any) -> TuneConfig:
    try:
        return TuneConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(f"option '{'.'.join(map(str, e['loc']))}': {e['msg']} (got {e.get('input')!r})"
                             for e in exc.errors())
        raise ConfigError(f"tune: {problems}") from None


def open_storage(url: str) -> Any:
    import optuna

    if url.startswith("journal:"):  # an append-only log file: several processes, no database server
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix("journal:").removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_PERIOD_S)
    return url


class TrialObjective:
    """Scores one trial's config (see the module docstring)."""

    def __init__(self, base: FitConfig, tune: TuneConfig, space: dict[str, dict[str, Any]], dataset: Dataset,
                 backbone_name: str, runs_dir: Path, make_strategy: Any = None) -> None:
        from transferkit.data.splits import stratified_split

        self.base, self.tune, self.space, self.dataset = base, tune, space, dataset
        self.backbone_name, self.runs_dir = backbone_name, runs_dir
        self.make_strategy = make_strategy  # config -> a fresh strategy (distill: its teachers); None: by name
        from transferkit.strategies.registry import get_strategy

        from transferkit.tasks import get_task

        self.entry = get_strategy(base.strategy)
        self.keep_dir: Path | None = None  # where the trials' models are saved (keep_models)
        self.task = get_task(dataset.task)
        self.classes = self.task.label_space(dataset)
        self.calls = 0
        if tune.objective == "val":
            self.train, self.val = stratified_split(dataset, tune.val_fraction, base.seed, names=("train", "validation"))
        else:
            from transferkit.data.dataset import sort_labels
            from transferkit.evaluation.cross_validation import stratified_folds

            strata = self.task.strata(dataset.labels)
            groups = sort_labels(strata)
            code = {group: index for index, group in enumerate(groups)}
            self.splits = stratified_folds(np.asarray([code[group] for group in strata]), tune.folds, 1, base.seed,
                                           class_names=groups)
        self._frozen = None

    def score(self, proba: np.ndarray, data: Dataset) -> float:
        """The task's measure (accuracy, R², example-based F1) of outputs ``proba`` on ``data``."""
        y_true = self.task.targets(data, self.classes)
        return float(np.mean(self.task.per_example_scores(y_true, self.task.predictions(proba))))

    def _probe(self, config: FitConfig):
        from transferkit.evaluation.cross_validation import ProbeOnFeatures

        if self._frozen is None:
            import torch

            from transferkit.backbones import create_backbone
            from transferkit.features.cache import FeatureCache, default_cache_dir

            torch.manual_seed(config.seed)
            self._frozen = create_backbone(self.backbone_name, **config.backbone_options(self.dataset.modality))
            self._cache = FeatureCache(config.cache_dir or default_cache_dir())
        return ProbeOnFeatures(self._frozen, config, self._cache)

    def __call__(self, trial: Any) -> float:
        import optuna

        self.calls += 1
        params = {name: _suggest(trial, name, spec) for name, spec in self.space.items()}
        config = with_params(self.base, params)
        work = self.runs_dir / f"trial-{trial.number}"
        if self.tune.objective == "val":
            if not self.entry.trains_network:
                proba, _ = self._probe(config)(self.train, self.val, self.classes)
                return self.score(proba, self.val)
            return self._train_and_score(config, trial, work)
        scores = []
        for index, (a, b) in enumerate(self.splits):
            train, test = self.dataset.subset(a), self.dataset.subset(b)
            if not self.entry.trains_network:
                proba, _ = self._probe(config)(train, test, self.classes)
            else:
                from transferkit.evaluation.cross_validation import train_fold

                proba, _ = train_fold(config, self.backbone_name, train, test, self.classes, str(work / f"fold{index}"),
                                       strategy=self.make_strategy(config) if self.make_strategy else None)
            scores.append(self.score(proba, test))
            trial.report(float(np.mean(scores)), step=index)
            if self.tune.pruning and index < len(self.splits) - 1 and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {index + 1}: mean {self.task.measure} "
                                         f"{np.mean(scores):.4f}")
        trial.set_user_attr("fold_scores", scores)
        return float(np.mean(scores))

    def _train_and_score(self, config: FitConfig, trial: Any, work: Path) -> float:
        import torch

        from transferkit.backbones import create_backbone
        from transferkit.strategies.run import train_with_strategy

        callbacks = []
        if self.tune.pruning:
            from optuna_integration import PyTorchLightningPruningCallback

            callbacks.append(PyTorchLightningPruningCallback(trial, monitor="val_accuracy"))
        torch.manual_seed(config.seed)
        backbone = create_backbone(self.backbone_name, **config.backbone_options(self.dataset.modality))
        trial_config = config.model_copy(update={"work_dir": str(work), "output": None})
        try:
            trained = train_with_strategy(trial_config, backbone, self.train, self.val, self.classes,
                                          strategy=self.make_strategy(config) if self.make_strategy else None,
                                          callbacks=callbacks)
        finally:
            from transferkit.strategies.run import finish_run

            finish_run(trial_config, self.train)  # no trial keeps its weights (a pruned one neither)
        trial.set_user_attr("epochs_run", trained.outcome.epochs_run)
        trial.set_user_attr("best_epoch", trained.outcome.best_epoch)
        if "kept" in (trained.facts.get("final_choice") or {}):
            trial.set_user_attr("kept", trained.facts["final_choice"]["kept"])
        score = float(trained.best_score)  # of the model the trial returns (lp-ft may have kept its probe)
        if self.keep_dir is not None:
            from transferkit.models.artifacts import save_model

            save_model(trained.model, self.keep_dir / f"trial-{trial.number}", overwrite=True,
                       metrics={"tune": {"trial": trial.number, "objective": score, "params": trial.params}},
                       run_config=runnable_config(config))
        return score


TUNE_FILE = "tune.json"


def _studies_in(db: Path) -> list[str]:
    import optuna

    try:
        return list(optuna.study.get_all_study_names(storage=f"sqlite:///{db.resolve()}"))
    except Exception:  # noqa: BLE001 - a database of another program, or damaged: treated as foreign
        return []


def check_tune_output(path: str | Path, *, study: str | None = None, overwrite: bool = False,
                      default_storage: bool = True, inputs: list[tuple[str, Any]] = ()) -> str | None:
    """Check the output folder of a search before it starts (:class:`ConfigError` naming ``--output`` otherwise).

    Without ``study``: the checks that need no data (not a file, not one of the ``inputs``, writable). With
    ``study`` (its name): a folder holding the results of the same study is continued (a resumed search); one
    holding another study's results is replaced only with ``overwrite``; one holding anything else is never written
    into. Returns the name of the study whose results will be replaced, or ``None``."""
    from transferkit._io import check_location, check_not_input, folder_is_empty
    from transferkit.models.folder import describe_folder, is_model_folder

    folder = Path(path)
    if study is None:
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--output {folder} exists and is a file; give a folder path (a new or empty folder).")
        check_not_input(folder, inputs)
        check_location(folder)
        return None
    if folder_is_empty(folder):
        return None
    summary, db = folder / TUNE_FILE, folder / "study.db"
    if is_model_folder(folder) or not (summary.is_file() or db.is_file()):
        raise ConfigError(f"--output {folder} is not empty: it holds {describe_folder(folder)}, not the results of a "
                          "search; nothing in it is replaced, even with --overwrite. Choose a new folder.")
    previous = None
    if summary.is_file():
        try:
            previous = json.loads(summary.read_text(encoding="utf-8")).get("study_name")
        except (ValueError, OSError, AttributeError):
            previous = None
    if previous == study or (previous is None and default_storage and study in _studies_in(db)):
        log.info("tune: %s holds study '%s'; continuing it", folder, study)
        return None
    if previous is None:
        names = _studies_in(db) if db.is_file() else []
        previous = names[-1] if names else "an unnamed study"
    if not overwrite:
        raise ConfigError(f"--output {folder} already holds the results of study '{previous}', and this search is "
                          f"study '{study}'. Pass --overwrite to replace those results (the study itself stays in "
                          f"its storage), give --study-name {previous} to continue that study, or choose a new "
                          "folder.")
    return previous


def soup_top(result: TuneResult, objective: TrialObjective, config: FitConfig, output: Path) -> dict[str, Any] | None:
    """A greedy soup of the top trials' kept models on the search's validation part, saved in ``OUTPUT/soup``."""
    from transferkit.fusion.soups import soup

    kept = [row["model"] for row in result.top if "model" in row]
    if len(kept) < 2:
        result.notes.append(f"soup: left out, {len(kept)} top trial(s) with a kept model (a soup needs two; trials "
                            "run before --keep-models kept none).")
        return None
    try:
        souped = soup(kept, objective.val, method="greedy", output=output / "soup", overwrite=True,
                      batch_size=config.batch_size, device=config.device)
    except ConfigError as exc:  # e.g. LoRA trials of different ranks: weights of different shapes
        result.notes.append(f"soup: left out: {exc}")
        return None
    used = [kept[i] for i in souped.used]
    best_single = souped.best_ingredient_accuracy
    result.notes.append(f"soup of {len(used)} of {len(kept)} top trials: validation accuracy {souped.val_accuracy:.4f} "
                        f"(best single {best_single:.4f}); model in {souped.output}")
    return {"models": used, "val_accuracy": souped.val_accuracy, "best_single_val_accuracy": best_single,
            "output": str(souped.output)}


def run_verb(config: FitConfig | None) -> str:
    """The command that runs a tuned config: ``distill`` for distillation, ``fit`` otherwise."""
    if config is None:
        return "fit"
    from transferkit.strategies.registry import get_strategy

    return get_strategy(config.strategy).verb


def runnable_config(config: FitConfig) -> dict[str, Any]:
    """The options of ``config`` that differ from the defaults (and its strategy), as a YAML-ready mapping for
    ``fit --config`` (``distill --config``)."""
    values = {"strategy": config.strategy, **config.model_dump(exclude_defaults=True)}
    for key in ("output", "overwrite", "resume", "work_dir", "progress"):
        values.pop(key, None)
    return values


def write_outputs(result: TuneResult, base: FitConfig, output: Path, dataset: Dataset, *,
                   replaced: bool = False) -> None:
    import yaml

    from transferkit._io import atomic_write_json, atomic_write_text

    header = (f"# best of study '{result.study_name}' ({result.storage}): objective {result.best_value:.4f}\n"
              f"# run it: transferkit {run_verb(result.best_config)} --config {output / 'best_config.yaml'} "
              "--output MODEL_FOLDER\n")
    if base.data is None:
        header += f"# data was given as an in-memory dataset ({dataset.origin}): add 'data: PATH' to run it\n"
    path = output / "best_config.yaml"
    atomic_write_text(path, header + yaml.safe_dump(runnable_config(result.best_config), sort_keys=False))
    result.best_config_path = path
    trials = output / "trials"
    trials.mkdir(exist_ok=True)
    for row in result.top:
        trial_path = trials / f"trial-{row['trial']}.yaml"
        atomic_write_text(trial_path, f"# trial {row['trial']}: objective {row['value']:.4f}\n" +
                          yaml.safe_dump(runnable_config(with_params(base, row["params"])), sort_keys=False))
        row["config"] = str(trial_path)
    kept = {f"trial-{row['trial']}" for row in result.top}
    for stale in trials.glob("trial-*"):  # trials that left the top, or of a study whose results were replaced
        if stale.name.removesuffix(".yaml") not in kept:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    if replaced and result.soup is None and (output / "soup").is_dir():  # the replaced study's soup
        shutil.rmtree(output / "soup")
    atomic_write_json(output / "top_trials.json", result.top)
    atomic_write_json(output / "tune.json", json.loads(json.dumps(result.to_dict(), default=str)))
    _write_report(result, base, output)


def _write_report(result: TuneResult, base: FitConfig, output: Path) -> None:
    """The search's page: its summary and top trials as a section of the run report, beside the best options."""
    import yaml

    from transferkit._io import atomic_write_json, atomic_write_text
    from transferkit.reporting.tracking import report_and_track

    names = sorted({k for row in result.top for k in row["params"]})
    section = {"title": "Hyper-parameter search",
               "text": result.table().splitlines()[0] + (f"\n\nbest objective {result.best_value:.4f}; the best "
                                                        f"options are in best_config.yaml."
                                                        if result.best_value is not None else ""),
               "table": {"columns": ["trial", "objective", *names],
                         "rows": [[row["trial"], round(row["value"], 4), *[_fmt(row["params"].get(k)) for k in names]]
                                  for row in result.top]}}
    atomic_write_json(output / "report_sections.json", {"sections": [section]})
    best = result.best_config.model_dump() if result.best_config is not None else base.model_dump()
    atomic_write_text(output / "run_config.yaml", yaml.safe_dump(json.loads(json.dumps(best, default=str)),
                                                                sort_keys=False))
    report_and_track(output, params=best, metrics={"tune": json.loads(json.dumps(result.to_dict(), default=str))},
                     tracking_uri=base.tracking_uri, report=base.report, run_name=f"tune {result.study_name}",
                     tags={"transferkit.strategy": f"tune:{base.strategy}"}, notes=result.notes)
