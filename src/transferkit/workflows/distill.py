"""``distill``: a smaller student trained from saved teacher models, evaluated beside its teachers.

The verb behind ``transferkit distill`` (the CLI calls :func:`distill`). The training itself is the ``distill``
strategy on the shared engine (:mod:`transferkit.strategies.distill`); this module loads the teachers and the data,
checks everything before any work, trains, evaluates the student and the teachers on the same test examples,
optionally trains the same student without distillation for the same budget (``compare_plain``, with a paired
verdict; with ``distill.mixup`` the plain student gets the same mixup, with ``distill.variants`` the same text
versions), and saves the student as an ordinary model folder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ConfigError
from transferkit.strategies.distill_setup import (
    DistillConfig,
    check_distill_options,
    check_teacher_input,
    default_student,
    distill_strategy,
    load_teachers,
    load_unlabelled,
    make_distill_config,
    student_backbone_options,
    teachers_task,
)
from transferkit.workflows.steps import (
    build_config,
    check_model_output,
    clean_up_training,
    feature_cache,
    load_splits,
    network_interval,
    save_early,
    timed,
    update_run_folder,
)

log = logging.getLogger("transferkit")


@dataclass
class DistillResult:
    """The student, its test metrics, the teachers' metrics on the same examples, and the plain-student comparison."""

    model: Any
    config: dict[str, Any]
    metrics: dict[str, Any]
    teachers: list[dict[str, Any]]
    plain: dict[str, Any] | None = None
    comparison: Any = None
    facts: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Optional steps after the student was saved that failed (the plain student, the report, tracking).
    notes: list[str] = field(default_factory=list)

    @property
    def measure(self) -> str:
        """The task's measure that the figures are (``accuracy`` for classification, ``r2``, ``example_f1``)."""
        return self.config.get("measure", "accuracy")

    @property
    def accuracy(self) -> float:
        """The student's test measure (accuracy for classification)."""
        return self.metrics[self.measure]

    def summary(self) -> str:
        measure = self.measure
        rows = [(f"student {self.config['backbone']} (distill)", self.metrics[measure],
                 self.facts.get("total_parameters"))]
        if self.plain is not None:
            rows.append((f"student {self.config['backbone']} without distillation", self.plain[measure],
                         self.facts.get("total_parameters")))
        rows += [(f"teacher {t['backbone']} ({t['path']})", t[measure], t["parameters"]) for t in self.teachers]
        if len(self.teachers) > 1 and f"ensemble_{measure}" in self.config:
            rows.append(("teacher ensemble", self.config[f"ensemble_{measure}"],
                         sum(t["parameters"] for t in self.teachers)))
        width = max(len(r[0]) for r in rows)
        lines = [f"{'model':<{width}}  {measure:>10}  parameters", "-" * (width + 24)]
        lines += [f"{name:<{width}}  {value:10.4f}  {params or 0:>10,}" for name, value, params in rows]
        if self.comparison is not None:
            c = self.comparison
            lines.append(f"distillation vs plain training ({measure}): {100 * c.difference:+.1f} points "
                         f"({c.confidence:.0%} interval {100 * c.ci_low:+.1f} to {100 * c.ci_high:+.1f}; {c.verdict})")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def distill(data: Any = None, *, teacher: Any = None, student: str | None = None,
            config: DistillConfig | None = None, val: Any = None, test: Any = None, unlabelled: Any = None,
            **options: Any) -> DistillResult:
    """Train ``student`` (a backbone name) on ``data`` from ``teacher`` (a model folder, or a list of them for an
    ensemble) and evaluate it, the teachers and (with ``compare_plain``) the plain student on the same test data.

    ``data``, ``val``, ``test`` and ``unlabelled`` are paths or :class:`~transferkit.data.Dataset` objects; other
    options are those of :class:`DistillConfig` (``epochs``, ``lr``, ``output``, ``distill={"temperature": 2}``,
    ...). Teachers, data and options are all checked before any training.
    """
    from transferkit.strategies.run import train_with_strategy
    from transferkit.tasks import get_task

    config, data, val, test, unlabelled = _distill_config(config, data, teacher, student, val, test, unlabelled,
                                                          options)
    config = _check_before_work(config, data, val, test, unlabelled)
    timings: dict[str, float] = {}
    notes: list[str] = []
    with timed(timings, "load"):
        teachers = load_teachers(config.teacher)
        config = teachers_task(config, teachers)
        train, val_ds, test_ds = load_splits(data, val, test, config)
        check_teacher_input(teachers, train)
        unlabelled_ds = load_unlabelled(config, unlabelled, train.modality)
        student_name = default_student(config, teachers)
        backbone = _student_backbone(student_name, config, train)
        classes = get_task(config.task).label_space(train)

    strategy = distill_strategy(config, teachers, unlabelled_ds)
    strategy.check_options(backbone, augmented=config.augment != "none")
    with timed(timings, "training"):
        trained = train_with_strategy(config, backbone, train, val_ds, classes, strategy=strategy)
    trained.model.interval = network_interval(trained.model, get_task(config.task), config, train, val_ds)
    output = _save_student(trained, config, student_name, train, timings)

    student_pred, metrics = _test_student(trained.model, test_ds, classes, config)
    if trained.model.interval:
        from transferkit.evaluation.conformal import interval_coverage

        metrics["interval"] = interval_coverage(trained.model.interval, get_task(config.task).targets(test_ds, classes),
                                                student_pred)
    teacher_rows, extra_facts = _test_teachers(teachers, test_ds, classes, config)
    resolved = config.resolved(backbone=student_name, classes=classes, modality=train.modality,
                               measure=get_task(config.task).measure, n_train=len(train), n_val=len(val_ds) if val_ds is not None else 0,
                               n_test=len(test_ds), n_unlabelled=len(unlabelled_ds) if unlabelled_ds is not None else 0,
                               data_fingerprint=train.fingerprint(), test_fingerprint=test_ds.fingerprint(),
                               teachers=teacher_rows, **extra_facts)
    result = DistillResult(trained.model, resolved, metrics, teacher_rows, None, None, dict(trained.facts),
                           output=output, timings=timings, notes=notes)
    pending = ["the plain-student comparison"] if config.compare_plain else []
    _update_folder(result, trained, extra_facts, pending)
    if config.compare_plain:
        _compare_plain(result, config, teachers, student_name, (train, val_ds, test_ds), student_pred)
        pending.clear()
        _update_folder(result, trained, extra_facts, pending)
    if config.output is not None:
        _report_and_track(result, config, trained, extra_facts)
    clean_up_training(config, train, notes)
    return result


def _distill_config(config: DistillConfig | None, data: Any, teacher: Any, student: str | None, val: Any, test: Any,
                    unlabelled: Any, options: dict[str, Any]) -> tuple[DistillConfig, Any, Any, Any, Any]:
    """The run's config (the arguments over ``config``'s fields) and its data sources; an error without training
    data."""
    options = dict(options)
    if teacher is not None:
        options["teacher"] = [str(t) for t in teacher] if isinstance(teacher, (list, tuple)) else [str(teacher)]
    if student is not None:
        options["backbone"] = student
    config = build_config(make_distill_config, config,
                          {"data": data, "val": val, "test": test, "unlabelled": unlabelled}, options)
    data = data if data is not None else config.data
    val = val if val is not None else config.val
    test = test if test is not None else config.test
    unlabelled = unlabelled if unlabelled is not None else config.unlabelled
    if data is None:
        raise ConfigError("distill: no training data; give a folder of images per class or a table file.")
    return config, data, val, test, unlabelled


def _check_before_work(config: DistillConfig, data: Any, val: Any, test: Any, unlabelled: Any) -> DistillConfig:
    """The options distillation cannot follow, the training libraries, and the model folder (which none of the
    inputs may be; an interrupted run's own unfinished model may be replaced with ``resume``)."""
    check_distill_options(config)
    from transferkit.strategies.requirements import check_training_installed

    check_training_installed("distill")
    return check_model_output(config, [
        ("training data", data), ("validation data", val), ("test data", test), ("unlabelled data", unlabelled),
        ("student backbone", config.backbone), ("--work-dir", config.work_dir),
        *[("teacher model", t) for t in config.teacher or []]])


def _student_backbone(name: str, config: DistillConfig, train: Any) -> Any:
    """The student backbone ``name`` (random parts seeded), checked to take the training data's modality."""
    import torch

    from transferkit.backbones import create_backbone

    torch.manual_seed(config.seed)
    backbone = create_backbone(name, **student_backbone_options(config, train.modality))
    if backbone.modality != train.modality:
        raise ConfigError(f"--student {name} takes {backbone.modality} input but {train.origin} holds "
                          f"{train.modality} data.")
    return backbone


def _save_student(trained: Any, config: DistillConfig, student_name: str, train: Any,
                  timings: dict[str, float]) -> Path | None:
    """The student saved as soon as it is trained (with its training log); evaluation and comparisons update the
    folder later."""
    training_log = {"training_log.csv": Path(trained.outcome.metrics_csv).read_text(encoding="utf-8")} \
        if trained.outcome.metrics_csv else {}
    run_config = config.resolved(backbone=student_name, classes=trained.model.classes, modality=train.modality)
    return save_early(trained.model, config, run_config,
                      {"training": trained.facts, "timings_s": timings,
                       "pending": "test evaluation and the teachers' figures"}, training_log)


def _predict_options(config: DistillConfig) -> dict[str, Any]:
    return dict(batch_size=config.batch_size, device=config.device, num_workers=config.num_workers,
                progress=config.progress)


def _test_student(model: Any, test_ds: Any, classes: list[str], config: DistillConfig) -> tuple[np.ndarray, dict]:
    """The student's predictions on the test data (the task's predicted targets) and its test metrics."""
    from transferkit.tasks import get_task

    task = get_task(config.task)
    proba = model.predict_proba(test_ds, cache=None, **_predict_options(config))
    return task.predictions(proba), task.metrics(task.targets(test_ds, classes), proba, classes)


def _test_teachers(teachers: list[Any], test_ds: Any, classes: list[str],
                   config: DistillConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each teacher's measure (accuracy for classification) and size on the same test examples, and the
    ensemble's (averaged outputs) for several."""
    from transferkit.tasks import get_task

    task = get_task(config.task)
    y_test = task.targets(test_ds, classes)

    def measured(proba: np.ndarray) -> float:
        return float(np.mean(task.per_example_scores(y_test, task.predictions(proba))))

    teacher_rows, teacher_probas = [], []
    for path, t in zip(config.teacher, teachers):
        p = t.predict_proba(test_ds, cache=feature_cache(config), **_predict_options(config))[
            :, [t.classes.index(c) for c in classes]]
        teacher_probas.append(p)
        teacher_rows.append({"path": str(path), "backbone": t.backbone.name, task.measure: measured(p),
                             "parameters": int(sum(q.numel() for q in t.parameters()))})
    extra_facts: dict[str, Any] = {}
    if len(teachers) > 1:
        extra_facts[f"ensemble_{task.measure}"] = measured(np.mean(teacher_probas, axis=0))
    return teacher_rows, extra_facts


def _compare_plain(result: DistillResult, config: DistillConfig, teachers: list[Any], student_name: str,
                   splits: tuple[Any, Any, Any], student_pred: np.ndarray) -> None:
    """The same student trained without distillation (same budget, same mixing and text versions) and the paired
    comparison, set on ``result``; a failure is a note (the distilled student stands)."""
    from transferkit.models.folder import late_step

    outcome = late_step("training the plain student for the comparison",
                        lambda: _train_plain(config, teachers, student_name, splits, student_pred, result.timings),
                        result.notes,
                        saved="the distilled student is saved" if result.output is not None else "the student stands")
    if outcome is not None:
        result.plain, result.comparison = outcome


def _train_plain(config: DistillConfig, teachers: list[Any], student_name: str, splits: tuple[Any, Any, Any],
                 student_pred: np.ndarray, timings: dict[str, float]) -> tuple[dict[str, Any], Any]:
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.strategies.finetune import FineTune
    from transferkit.strategies.run import train_with_strategy

    from transferkit.tasks import get_task

    task = get_task(config.task)
    train, val_ds, test_ds = splits
    classes = task.label_space(train)
    torch.manual_seed(config.seed)
    plain_backbone = create_backbone(student_name, **student_backbone_options(config, train.modality))
    start = time.perf_counter()
    # the same input mixing for the plain student (the engine's mixup, labels mixed with the same weight)
    plain_config = config.model_copy(update={"mixup": config.distill.mixup}) if config.distill.mixup else config
    plain_strategy = FineTune(config.finetune, head_lr=config.head_lr)
    if config.distill.variants:  # the same text versions, cross-entropy only (alpha 0 at T 1 is exactly that)
        plain_options = config.distill.model_copy(update={"alpha": 0.0, "temperature": 1.0, "feature_weight": 0.0})
        plain_strategy = distill_strategy(config.model_copy(update={"distill": plain_options}), teachers, None)
    plain_run = train_with_strategy(plain_config, plain_backbone, train, val_ds, classes,
                                    strategy=plain_strategy, stage="plain")
    timings["plain_training"] = time.perf_counter() - start
    plain_proba = plain_run.model.predict_proba(test_ds, cache=None, **_predict_options(config))
    y_test = task.targets(test_ds, classes)
    return ({**task.metrics(y_test, plain_proba, classes),
             "epochs_run": plain_run.outcome.epochs_run, "seconds": plain_run.outcome.seconds},
            task.compare(y_test, student_pred, task.predictions(plain_proba), "plain student", seed=config.seed))


def _all_metrics(result: DistillResult, trained: Any, extra_facts: dict[str, Any],
                 pending: list[str]) -> dict[str, Any]:
    """What ``metrics.json`` holds: the student's test figures, the teachers', the plain student's and the
    comparison, the training facts, timings, notes and the steps still pending."""
    return {"test": result.metrics, "teachers": result.teachers, "plain_student": result.plain,
            "comparisons": [result.comparison.to_dict()] if result.comparison is not None else [],
            "training": trained.facts, "timings_s": result.timings, **extra_facts,
            **({"notes": result.notes} if result.notes else {}),
            **({"pending": ", ".join(pending)} if pending else {})}


def _update_folder(result: DistillResult, trained: Any, extra_facts: dict[str, Any], pending: list[str]) -> None:
    update_run_folder(result.output, _all_metrics(result, trained, extra_facts, pending), result.summary(),
                      result.config)


def _report_and_track(result: DistillResult, config: DistillConfig, trained: Any, extra_facts: dict[str, Any]) -> None:
    """The HTML report and the tracked run (the training's own run continued when it was tracked); the notes of
    failed late steps written into the folder."""
    from transferkit.models.folder import late_step
    from transferkit.reporting.tracking import report_and_track

    training = trained.facts.get("training") or {}
    report_and_track(result.output, params=result.config, metrics=_all_metrics(result, trained, extra_facts, []),
                     tracking_uri=config.tracking_uri, report=config.report,
                     run_name=f"distill {result.config.get('backbone', '')}".strip(),
                     run_id=training.get("mlflow_run_id") if training.get("mlflow_uri") else None,
                     tags={"transferkit.strategy": "distill"}, notes=result.notes)
    if result.notes:
        late_step("writing the notes", lambda: _update_folder(result, trained, extra_facts, []), [])
