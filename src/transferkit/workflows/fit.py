"""``fit``: adapt a pretrained backbone to the user's labelled data and evaluate it beside the baselines on held-out
data.

The steps, in order: check every option that can be checked (strategy, device, libraries, output folder), load
and check the data, choose and build the backbone, plan the strategy (``auto``), train (a probe on cached frozen
features, or the training engine), save the model, evaluate it on the test data, run the baselines and give the
verdicts, write the report and track the run, clean up the run's work folder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.config import FitConfig, make_config
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.workflows.label_prior import (
    check_label_file,
    embed_label_names,
    plan_label_prior,
    zero_shot_predictions,
)
from transferkit.workflows.semi_supervised import check_unlabelled_option, pseudo_label_probe
from transferkit.workflows.steps import (
    RunLog,
    backbone_name,
    build_backbone,
    build_config,
    check_model_output,
    check_runtime,
    clean_up_training,
    feature_cache,
    load_splits,
    network_interval,
    save_early,
    timed,
    training_requirement,
    update_run_folder,
)

log = logging.getLogger("transferkit")


@dataclass
class FitResult:
    """What ``fit`` produced: the model, its test metrics, the baselines' metrics and the verdicts."""

    model: Any
    config: dict[str, Any]
    metrics: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    comparisons: list[Any]
    skipped_baselines: dict[str, str] = field(default_factory=dict)
    output: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: False on the other processes of a multi-process (DDP) run: they train, the main process evaluates and saves.
    is_main_process: bool = True
    #: Optional steps after the model was saved that failed (a baseline, a plot, the report, tracking): each is
    #: also a warning, and is written into metrics.json and summary.txt.
    notes: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    def summary(self) -> str:
        """A plain-text table of the model against its baselines, and the verdicts."""
        from transferkit.tasks import DEFAULT_TASK, get_task

        columns = get_task(self.config.get("task", DEFAULT_TASK)).summary_columns
        rows = [(f"{self.config['backbone']} ({self.config['strategy']})", self.metrics)]
        rows += [(f"baseline: {name}", m) for name, m in self.baselines.items()]
        width = max(len(r[0]) for r in rows)

        def cell(value: Any) -> str:
            return f"{value:10.4f}" if isinstance(value, (int, float)) else f"{'-':>10}"

        lines = [f"{'model':<{width}}" + "".join(f"  {header:>10}" for _, header in columns),
                 "-" * (width + 12 * len(columns))]
        lines += [f"{name:<{width}}" + "".join(f"  {cell(m.get(key))}" for key, _ in columns) for name, m in rows]
        lines += [f"verdict: {c.sentence()}" for c in self.comparisons]
        lines += [f"not run: {name} ({why})" for name, why in self.skipped_baselines.items()]
        calibration = self.metrics.get("calibration")
        if calibration:
            scaling = self.config.get("temperature_scaling")
            lines.append(f"calibration: ECE {calibration['ece']:.4f}, NLL {calibration['nll']:.4f}"
                         + (f" (temperature {scaling['temperature']:.3f} fitted on validation data)" if scaling else ""))
        interval = self.metrics.get("interval")
        if interval:
            lines.append(f"prediction interval: value ± {interval['width'] / 2:.4g} ({interval['level']:.0%} split "
                         f"conformal); test coverage {interval['coverage']:.1%} of {interval['n']} examples")
        if self.config.get("plan"):
            lines.append(f"auto: {self.config['plan']['explanation']}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def fit(data: Any = None, *, config: FitConfig | None = None, val: Any = None, test: Any = None, **options: Any) -> FitResult:
    """Adapt a pretrained backbone to ``data`` and evaluate it against the baselines on held-out data.

    ``data``, ``val`` and ``test`` are paths (image folder or table) or :class:`~transferkit.data.Dataset` objects.
    Other options are those of :class:`~transferkit.config.FitConfig` (``backbone``, ``strategy``, ``output``, ...).
    Everything is checked before any backbone runs.
    """
    config = build_config(make_config, config, {"data": data, "val": val, "test": test}, options)
    data, val, test = (given if given is not None else configured
                       for given, configured in ((data, config.data), (val, config.val), (test, config.test)))
    if data is None:
        raise ConfigError("no training data: give a folder of images per class or a table file.")
    from transferkit.tasks import task_workflow

    workflow = task_workflow(config.task)
    if workflow is not None:  # a task whose examples are not one label each (detection) runs its own workflow
        return workflow(config, data, val, test)
    run = _check_before_work(config, data, val, test)
    started = time.perf_counter()
    with timed(run.log.timings, "load"):
        _load_data(run, data, val, test)
        _choose_backbone(run)
    if run.entry.chooses_strategy:
        with timed(run.log.timings, "plan"):
            _plan_strategy(run, started)
    if run.entry.trains_network:
        _train_network(run)
    else:
        _fit_probe(run)
    _save(run)
    _evaluate_on_test(run)
    _run_baselines(run)
    if run.is_main:
        _report_and_track(run)
    return run.result


@dataclass
class _FitRun:
    """One ``fit`` call's state, filled in by its steps in order."""

    config: FitConfig
    entry: Any  #: the strategy's registry entry
    log: RunLog = field(default_factory=RunLog)
    train: Dataset | None = None
    val: Dataset | None = None
    test: Dataset | None = None
    task: Any = None
    classes: list[str] = field(default_factory=list)
    baseline_names: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    backbone_name: str = ""
    backbone: Any = None
    ranking_facts: dict[str, Any] = field(default_factory=dict)
    plan_facts: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Any] = field(default_factory=list)
    model: Any = None
    is_main: bool = True
    proba: Any = None  #: test probabilities, (n_test, n_classes); ``None`` until computed
    y_test: Any = None
    y_pred: Any = None
    calibration: dict[str, Any] = field(default_factory=dict)
    strategy_facts: dict[str, Any] = field(default_factory=dict)
    strategy_metrics: dict[str, Any] = field(default_factory=dict)
    extra_files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparisons: list[Any] = field(default_factory=list)
    result: FitResult | None = None
    label_prior: Any = None  #: the label-name prior (:class:`~transferkit.workflows.label_prior.LabelPrior`)
    probe_views: Any = None  #: the probe's extra views (:class:`~transferkit.workflows.probe_views.ProbeViews`)
    zero_shot_pred: Any = None  #: test predictions of the zero-shot classifier on the class texts

    def resolved_config(self) -> dict[str, Any]:
        """The run config saved with the model: the options as resolved, the data's facts, the choices made."""
        return self.config.resolved(
            backbone=self.backbone_name, classes=self.classes, modality=self.train.modality,
            n_train=len(self.train), n_val=len(self.val) if self.val is not None else 0, n_test=len(self.test),
            data_fingerprint=self.train.fingerprint(), test_fingerprint=self.test.fingerprint(),
            baselines_run=list(self.baselines), baselines_not_run=self.skipped, **self.strategy_facts,
            **self.ranking_facts, **self.plan_facts,
            **({"label_names": self.label_prior.facts()} if self.label_prior is not None else {}),
            **({"temperature_scaling": self.calibration} if self.calibration else {}),
        )

    def all_metrics(self) -> dict[str, Any]:
        """What ``metrics.json`` holds at this point of the run."""
        return {"test": self.metrics, "baselines": self.baselines, "comparisons": [c.to_dict() for c in self.comparisons],
                "baselines_not_run": self.skipped, **self.strategy_metrics, **self.log.status()}

    def update_folder(self) -> None:
        update_run_folder(self.result.output, self.all_metrics(), self.result.summary(), self.result.config)


def _check_before_work(config: FitConfig, data: Any, val: Any, test: Any) -> _FitRun:
    """Every check that needs no data read: the strategy's options, the device, the training libraries, the
    output folder."""
    from transferkit.strategies.registry import get_strategy

    entry = get_strategy(config.strategy)
    from transferkit.tasks import get_task

    if config.calibrate and not get_task(config.task).calibrates:
        raise ConfigError(f"option 'calibrate': temperature scaling calibrates class probabilities; a {config.task} "
                          "model's outputs are not those. Drop --calibrate.")
    if config.budget is not None and not entry.chooses_strategy:
        raise ConfigError("option 'budget' is used by --strategy auto (the planner fits its choice in the budget); "
                          "with another strategy, bound the run with --epochs.")
    if not entry.chooses_strategy:
        config.check_options_apply()  # options this strategy ignores: a warning (an error where it changes the result)
    check_runtime(config.device, training_requirement(config, entry.trains_network))
    check_label_file(config)
    check_unlabelled_option(config, entry)
    config = check_model_output(config, inputs=[
        ("training data", data), ("validation data", val), ("test data", test), ("backbone", config.backbone),
        ("--work-dir", config.work_dir)])
    return _FitRun(config, entry)


def _load_data(run: _FitRun, data: Any, val: Any, test: Any) -> None:
    """The three sets, the task's label space, and the baselines that apply to this strategy and data size."""
    from transferkit.evaluation.baselines import choose_baselines
    from transferkit.tasks import get_task

    run.train, run.val, run.test = load_splits(data, val, test, run.config)
    run.task = get_task(run.config.task)
    run.classes = run.task.label_space(run.train)
    run.baseline_names, run.skipped = choose_baselines(run.config.baselines, run.config.strategy, len(run.train))
    if "label_prior" in run.entry.options or run.entry.chooses_strategy:
        from transferkit.modalities import get_modality

        run.label_prior = plan_label_prior(run.config, run.task, get_modality(run.train.modality), run.classes)
    if "probe_views" in run.entry.options or run.entry.chooses_strategy:
        from transferkit.modalities import get_modality
        from transferkit.workflows.probe_views import plan_probe_views

        run.probe_views = plan_probe_views(run.config, get_modality(run.train.modality),
                                           run.task.targets(run.train, run.classes))


def _choose_backbone(run: _FitRun) -> None:
    run.backbone_name, run.ranking_facts = backbone_name(run.config, run.train)
    run.backbone = build_backbone(run.backbone_name, run.config, run.train)
    if run.label_prior is not None:
        embed_label_names(run.label_prior, run.backbone, run.config)


def _plan_strategy(run: _FitRun, started: float) -> None:
    """``--strategy auto``: the planner picks the strategy (and epochs) that fits the data and the budget; the run
    goes on as if that strategy had been asked for."""
    from transferkit.evaluation.baselines import choose_baselines
    from transferkit.strategies.planner import plan_strategy
    from transferkit.strategies.registry import get_strategy

    config = run.config
    scratch_runs = "scratch" in choose_baselines(config.baselines, "finetune", len(run.train))[0]
    prior = run.label_prior if run.label_prior is not None and run.label_prior.use else None
    plan = plan_strategy(run.train, config, run.backbone, budget_s=config.budget, started=started,
                         cache=feature_cache(config), ranking_facts=run.ranking_facts, scratch_runs=scratch_runs,
                         label_prototypes=prior.prototypes if prior is not None else None,
                         backbone_name=run.backbone_name)
    log.info("%s", plan.explanation)
    run.config = config.model_copy(update={"strategy": plan.strategy, **plan.options,
                                           **({"epochs": plan.epochs} if plan.epochs else {})})
    if prior is not None and plan.options.get("label_prior") == "off":
        prior.use, prior.reason = False, "auto measured the plain probe better on folds of the training data"
    run.entry = get_strategy(run.config.strategy)
    run.config.check_options_apply(chosen_by="auto")
    run.baseline_names, run.skipped = choose_baselines(run.config.baselines, run.config.strategy, len(run.train))
    if plan.training_time_limit_s is not None:
        from transferkit.engine.time_limit import time_limit

        run.callbacks.append(time_limit(plan.training_time_limit_s))
    run.plan_facts = {"strategy_requested": "auto", "plan": plan.to_dict()}


def _fit_probe(run: _FitRun) -> None:
    """The probe path: frozen features (cached) of the three sets, a probe on the training features, and the test
    probabilities from the probe."""
    from transferkit.features.sharded import extract_features_sharded as extract_features
    from transferkit.models.model import TransferModel

    config, task, classes = run.config, run.task, run.classes
    run.y_test = task.targets(run.test, classes)
    extract = dict(cache=feature_cache(config), batch_size=config.batch_size, device=config.device,
                   num_workers=config.num_workers, progress=config.progress, runtime=config.runtime,
                   processes=config.processes)
    with timed(run.log.timings, "features"):
        X_train = extract_features(run.backbone, run.train, **extract)
        X_val = extract_features(run.backbone, run.val, **extract) if run.val is not None else None
        X_test = extract_features(run.backbone, run.test, **extract)
    with timed(run.log.timings, "probe"):
        y_train = task.targets(run.train, classes)
        y_val = task.targets(run.val, classes) if run.val is not None else None
        prior = run.label_prior if run.label_prior is not None and run.label_prior.use else None
        probe = task.new_probe(C=config.probe_c, seed=config.seed,
                               **({"prototypes": prior.prototypes} if prior is not None else {}))
        probe.fit(X_train, y_train, X_val, y_val)
        if run.probe_views is not None and run.probe_views.views:
            from transferkit.workflows.probe_views import refit_on_views

            probe = refit_on_views(run.probe_views, probe, run.train, X_train, y_train,
                                   lambda views: extract_features(run.backbone, views, **extract))
        if config.unlabelled is not None:
            probe = pseudo_label_probe(run, probe, X_train, y_train, X_test, extract)
        if run.label_prior is not None and run.label_prior.prototypes is not None:
            run.zero_shot_pred = zero_shot_predictions(run.label_prior, X_test)
        run.model = TransferModel(run.backbone, probe.to_head(), classes, strategy=config.strategy, task=task.name)
        run.model.interval = _probe_interval(run, probe, X_train, y_train, X_val, y_val)
        if config.calibrate:
            run.calibration = _calibrate_probe(run, probe.C_, X_train, y_train, X_val, y_val)
        run.proba = run.model.head_proba(X_test)
    run.strategy_facts = {"probe_C": probe.C_, **run.strategy_facts,
                          **({"augmented_views": run.probe_views.facts()} if run.probe_views is not None else {})}
    run.strategy_metrics = {
        **run.strategy_metrics, "probe": {"C": probe.C_, "validation_scores": {str(k): v for k, v in probe.validation_scores_.items()},
                  "label_prior": prior is not None}}


def _probe_interval(run: _FitRun, probe: Any, X_train: Any, y_train: Any, X_val: Any, y_val: Any) -> Any:
    """The task's prediction interval (regression: split conformal at ``--interval``) of the probe: calibrated on
    the validation features, else on out-of-fold predictions of the training features (5 folds, the probe's
    chosen C); ``None`` for tasks without intervals or ``--interval 0``."""
    task, level, seed = run.task, run.config.interval, run.config.seed
    if not task.gives_intervals or level == 0:
        return None
    if X_val is not None:
        return task.prediction_interval(y_val, run.model.head_proba(X_val), level, calibrated_on="the validation data")
    import numpy as np
    from sklearn.model_selection import KFold

    folds = min(5, len(y_train))
    out_of_fold = np.zeros((len(y_train), len(run.classes)), dtype=np.float64)
    for fitted, held in KFold(folds, shuffle=True, random_state=seed).split(X_train):
        fold_probe = task.new_probe(C=probe.C_, seed=seed).fit(X_train[fitted], y_train[fitted])
        out_of_fold[held] = np.asarray(fold_probe.predict_proba(X_train[held])).reshape(len(held), -1)
    return task.prediction_interval(y_train, out_of_fold, level,
                                    calibrated_on=f"out-of-fold predictions of the training data, {folds} folds")


def _calibrate_probe(run: _FitRun, C: float, X_train: Any, y_train: Any, X_val: Any, y_val: Any) -> dict[str, Any]:
    """Temperature scaling of the probe's logits: on the validation features, else on out-of-fold logits of the
    training features (never on data the probe was fitted on)."""
    from transferkit.evaluation.calibration import fit_temperature_on_logits, out_of_fold_probe_logits

    if X_val is not None:
        return fit_temperature_on_logits(run.model, run.model.head_logits(X_val), y_val)
    prior = run.label_prior if run.label_prior is not None and run.label_prior.use else None
    logits = out_of_fold_probe_logits(X_train, y_train, C, seed=run.config.seed,
                                      prototypes=prior.prototypes if prior is not None else None)
    return {**fit_temperature_on_logits(run.model, logits, y_train), "on": "out-of-fold logits"}


def _train_network(run: _FitRun) -> None:
    """The engine path: the strategy trains the network; the test probabilities come later, from the model."""
    from transferkit.strategies.run import train_with_strategy

    config = run.config
    run.y_test = run.task.targets(run.test, run.classes)
    with timed(run.log.timings, "training"):
        trained = train_with_strategy(config, run.backbone, run.train, run.val, run.classes, callbacks=run.callbacks)
    run.model, run.is_main = trained.model, trained.is_main_process
    if run.is_main:
        run.model.interval = network_interval(run.model, run.task, config, run.train, run.val)
    if config.calibrate and run.is_main:
        run.calibration = _calibrate_network(run)
    run.strategy_facts = {"training": {k: v for k, v in trained.facts.items() if k != "history"}}
    run.strategy_metrics = {"training": trained.facts}
    if trained.outcome.metrics_csv and run.is_main:
        run.extra_files["training_log.csv"] = Path(trained.outcome.metrics_csv).read_text(encoding="utf-8")


def _calibrate_network(run: _FitRun) -> dict[str, Any]:
    """Temperature scaling on the validation data, else on the part of the training data that
    ``train_with_strategy`` held out (never trained on)."""
    from transferkit.data.splits import stratified_split
    from transferkit.evaluation.calibration import fit_temperature

    config = run.config
    held_out = run.val if run.val is not None else stratified_split(
        run.train, config.val_fraction, config.seed, names=("train", "validation"))[1]
    return fit_temperature(run.model, held_out, batch_size=config.batch_size, device=config.device,
                           num_workers=config.num_workers)


def _save(run: _FitRun) -> None:
    """The result, and the model saved as soon as it exists (its metrics say what is still pending)."""
    run.log.pending = ["test evaluation", *(f"baseline {name}" for name in run.baseline_names)]
    run.result = FitResult(run.model, run.resolved_config(), run.metrics, run.baselines, run.comparisons,
                           skipped_baselines=run.skipped, timings=run.log.timings, is_main_process=run.is_main,
                           notes=run.log.notes)
    if run.is_main:
        run.result.output = save_early(run.model, run.config, run.result.config, run.all_metrics(), run.extra_files)


def _evaluate_on_test(run: _FitRun) -> None:
    """The model's test predictions (on the main process) and the task's metrics of them."""
    config = run.config
    if run.is_main and run.proba is None:
        with timed(run.log.timings, "test_predictions"):
            run.proba = run.model.predict_proba(run.test, batch_size=config.batch_size, device=config.device,
                                                num_workers=config.num_workers, cache=None, progress=config.progress)
    run.y_pred = run.task.predictions(run.proba) if run.proba is not None else None
    if run.y_pred is not None:
        run.metrics.update(run.task.metrics(run.y_test, run.proba, run.classes))
        if getattr(run.model, "interval", None):
            from transferkit.evaluation.conformal import interval_coverage

            run.metrics["interval"] = interval_coverage(run.model.interval, run.y_test, run.y_pred)
    run.log.pending.remove("test evaluation")
    run.update_folder()


def _run_baselines(run: _FitRun) -> None:
    """Each baseline on the same test data, and the verdict of the model against it. A baseline that fails is a
    note: the saved model stands."""
    from transferkit.models.folder import late_step

    saved = "the model is saved" if run.result.output is not None else "the model stands"
    for name in run.baseline_names:
        if not run.is_main and name != "scratch":
            continue  # other processes of a multi-process run only join the baselines that train
        outcome = late_step(f"baseline {name}", lambda name=name: _run_baseline(run, name), run.log.notes, saved=saved)
        run.log.pending.remove(f"baseline {name}")
        if outcome is None:
            run.skipped[name] = "failed; see the notes"
            continue
        if not run.is_main or outcome.predictions is None:
            continue
        run.baselines[name] = {**run.task.prediction_metrics(run.y_test, outcome.predictions, run.classes),
                               "description": outcome.description, **outcome.extra}
        run.comparisons.append(run.task.compare(run.y_test, run.y_pred, outcome.predictions, name,
                                                seed=run.config.seed))
    if run.zero_shot_pred is not None and run.is_main and "zero-shot" in (run.config.baselines or ["zero-shot"]):
        _zero_shot_row(run)
    elif "zero-shot" in (run.config.baselines or []):
        run.skipped["zero-shot"] = ("the label-name prior does not apply: " + run.label_prior.reason
                                    if run.label_prior is not None else "not available for this strategy")
    run.log.pending.clear()
    run.result.config = run.resolved_config()


def _zero_shot_row(run: _FitRun) -> None:
    """The zero-shot classifier on the class texts (no labelled example used) beside the baselines, with its
    verdict: what the labelled examples added to what the class names already knew."""
    from transferkit.workflows.label_prior import ZERO_SHOT

    run.baselines[ZERO_SHOT] = {
        **run.task.prediction_metrics(run.y_test, run.zero_shot_pred, run.classes),
        "description": f"nearest class text (cosine) in {run.backbone_name}'s embedding; {run.label_prior.reason}"}
    run.comparisons.append(run.task.compare(run.y_test, run.y_pred, run.zero_shot_pred, ZERO_SHOT,
                                            seed=run.config.seed))


def _run_baseline(run: _FitRun, name: str) -> Any:
    from transferkit.evaluation.baselines import BASELINES

    with timed(run.log.timings, f"baseline_{name}"):
        return BASELINES[name](run.train, run.test, run.classes, seed=run.config.seed, config=run.config,
                               backbone=run.backbone_name, val=run.val)


def _report_and_track(run: _FitRun) -> None:
    """The late files of the model folder (summary, examples, reliability diagram), the HTML report and the MLflow
    run, then the run's work folder removed. Each optional step that fails is a note."""
    from transferkit.models.folder import late_step, update_model_folder
    from transferkit.reporting.tracking import record_fit

    config, result, notes = run.config, run.result, run.log.notes
    if result.output is not None:
        run.update_folder()
        late_step("the examples and predictions for the report", lambda: update_model_folder(
            result.output, files=run.task.evidence(run.train, run.test, run.y_test, run.proba, run.classes,
                                                   val=run.val, seed=config.seed)), notes)
        if config.calibrate and run.proba is not None:
            from transferkit.evaluation.calibration import reliability_diagram

            late_step("the reliability diagram", lambda: reliability_diagram(
                run.y_test, run.proba, result.output / "reliability.png",
                title=f"{run.backbone_name} ({config.strategy}), test data"), notes)
    record_fit(config, result, run.all_metrics(), notes=notes)  # the report in the output folder, then the MLflow run
    if notes and result.output is not None:
        late_step("writing the notes", run.update_folder, [])
    if run.entry.trains_network or "scratch" in run.baselines:
        clean_up_training(config, run.train, notes)
