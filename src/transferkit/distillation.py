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
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from transferkit.config import FitConfig, describe_errors
from transferkit.errors import ConfigError
from transferkit.modalities import get_modality
from transferkit.strategies.distill import DistillOptions

log = logging.getLogger("transferkit")


class DistillConfig(FitConfig):
    """Everything that decides what ``distill`` does: the :class:`~transferkit.config.FitConfig` training options
    (``backbone`` is the student) plus the teachers, unlabelled data and the distillation loss."""

    strategy: Literal["distill"] = Field("distill", description="always distill")  # type: ignore[assignment]
    teacher: list[str] = Field(default_factory=list, description="teacher model folders written by fit (or distill); "
                               "several make an ensemble whose averaged probabilities are the soft targets")
    unlabelled: str | None = Field(None, description="unlabelled data (an image folder or a table without labels) "
                                   "used for the soft-target term only")
    distill: DistillOptions = Field(default_factory=DistillOptions, description="temperature, soft/hard weighting, "
                                    "feature matching, teacher-output cache")
    compare_plain: bool = Field(False, description="also train the same student without distillation (plain "
                                "fine-tuning on the labelled data, same budget) and report the paired difference")


def make_distill_config(origin: str = "options", **values: Any) -> DistillConfig:
    """Build a :class:`DistillConfig`; validation problems become one :class:`ConfigError` naming each option."""
    if isinstance(values.get("teacher"), (str, Path)):
        values["teacher"] = [str(values["teacher"])]
    try:
        return DistillConfig(**values)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, origin)) from None


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
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    def summary(self) -> str:
        rows = [(f"student {self.config['backbone']} (distill)", self.metrics["accuracy"],
                 self.facts.get("total_parameters"))]
        if self.plain is not None:
            rows.append((f"student {self.config['backbone']} without distillation", self.plain["accuracy"],
                         self.facts.get("total_parameters")))
        rows += [(f"teacher {t['backbone']} ({t['path']})", t["accuracy"], t["parameters"]) for t in self.teachers]
        if len(self.teachers) > 1 and "ensemble_accuracy" in self.config:
            rows.append(("teacher ensemble", self.config["ensemble_accuracy"],
                         sum(t["parameters"] for t in self.teachers)))
        width = max(len(r[0]) for r in rows)
        lines = [f"{'model':<{width}}  accuracy  parameters", "-" * (width + 22)]
        lines += [f"{name:<{width}}  {acc:8.4f}  {params or 0:>10,}" for name, acc, params in rows]
        if self.comparison is not None:
            c = self.comparison
            lines.append(f"distillation vs plain training: {100 * c.difference:+.1f} points "
                         f"({c.confidence:.0%} interval {100 * c.ci_low:+.1f} to {100 * c.ci_high:+.1f}; {c.verdict})")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _backbone_options(config: FitConfig, modality: str) -> dict[str, Any]:
    return get_modality(modality).backbone_options(max_length=config.max_length,
                                                   image_size=getattr(config, "image_size", None))


def load_teachers(paths: list[str]) -> list[Any]:
    """The teacher model folders, loaded and checked: they exist and take one kind of input."""
    from transferkit.models.artifacts import load_model

    if not paths:
        raise ConfigError("distill: give a teacher model folder (--teacher MODEL_DIR; repeat it for an ensemble).")
    teachers = []
    for path in paths:
        if not Path(path).is_dir():
            raise ConfigError(f"--teacher {path}: no such model folder; give a folder written by `transferkit fit`.")
        teachers.append(load_model(path))
    modalities = {t.modality for t in teachers}
    if len(modalities) > 1:
        raise ConfigError(f"--teacher: the teachers take different inputs ({', '.join(sorted(modalities))}).")
    return teachers


def check_teacher_input(teachers: list[Any], data: Any) -> None:
    """The teachers take the kind of input ``data`` holds."""
    if data.modality != teachers[0].modality:
        raise ConfigError(f"distill: the teachers take {teachers[0].modality} input but {data.origin} holds "
                          f"{data.modality} data.")


def load_unlabelled(config: FitConfig, unlabelled: Any, modality: str) -> Any:
    """The unlabelled data of the soft-target term (a path or a dataset; ``None`` for none), its labels dropped."""
    if unlabelled is None:
        return None
    from transferkit.data.sources import load_data

    data = unlabelled if not isinstance(unlabelled, (str, Path)) else load_data(
        unlabelled, text_column=config.text_column, path_column=config.path_column, encoding=config.encoding,
        unlabelled=True)
    if data.modality != modality:
        raise ConfigError(f"--unlabelled {data.origin}: holds {data.modality} data, the training data {modality}.")
    data.labels = None
    return data


def check_distill_options(config: FitConfig) -> None:
    """Options that distillation cannot follow, refused before any work."""
    if config.mixup or config.cutmix:
        raise ConfigError("distill: options 'mixup' and 'cutmix' mix labels, which cached soft targets cannot follow; "
                          "use distill's own mixup (--mixup on the distill command, distill={'mixup': 0.2} from "
                          "Python), where the teachers see the mixed images, or --augment.")
    if config.budget is not None:
        raise ConfigError("distill: option 'budget' is used by fit --strategy auto; bound distillation with --epochs.")
    config.check_options_apply("distill")
    from transferkit.features.extract import resolve_device

    resolve_device(config.device)


def default_student(config: FitConfig, teachers: list[Any]) -> str:
    """The student backbone: ``config.backbone``, or the first teacher's architecture (pretrained)."""
    return config.backbone or teachers[0].backbone.name.removeprefix("random:")


def distill_strategy(config: DistillConfig, teachers: list[Any], unlabelled: Any = None) -> Any:
    """The ``distill`` training strategy of ``config`` with loaded ``teachers`` (a fresh one per run: it keeps the
    teacher outputs of the run's training data)."""
    from transferkit.strategies.distill import Distill

    options = config.distill if not config.no_cache else config.distill.model_copy(update={"cache_teacher": False})
    return Distill(teachers, options, finetune=config.finetune, head_lr=config.head_lr, unlabelled=unlabelled,
                   cache_dir=None if config.no_cache else config.cache_dir, batch_size=config.batch_size,
                   device=config.device)


def distill(data: Any = None, *, teacher: Any = None, student: str | None = None,
            config: DistillConfig | None = None, val: Any = None, test: Any = None, unlabelled: Any = None,
            **options: Any) -> DistillResult:
    """Train ``student`` (a backbone name) on ``data`` from ``teacher`` (a model folder, or a list of them for an
    ensemble) and evaluate it, the teachers and (with ``compare_plain``) the plain student on the same test data.

    ``data``, ``val``, ``test`` and ``unlabelled`` are paths or :class:`~transferkit.data.Dataset` objects; other
    options are those of :class:`DistillConfig` (``epochs``, ``lr``, ``output``, ``distill={"temperature": 2}``,
    ...). Teachers, data and options are all checked before any training.
    """
    from transferkit.api import load_splits, source_origin

    if config is None:
        values = {"data": source_origin(data), "val": source_origin(val), "test": source_origin(test),
                  "unlabelled": source_origin(unlabelled), **options}
        if teacher is not None:
            values["teacher"] = [str(t) for t in teacher] if isinstance(teacher, (list, tuple)) else [str(teacher)]
        if student is not None:
            values["backbone"] = student
        config = make_distill_config(**values)
    elif options or teacher is not None or student is not None:
        extra = dict(options)
        if teacher is not None:
            extra["teacher"] = [str(t) for t in teacher] if isinstance(teacher, (list, tuple)) else [str(teacher)]
        if student is not None:
            extra["backbone"] = student
        config = make_distill_config(**{**config.model_dump(), **extra})
    data = data if data is not None else config.data
    val = val if val is not None else config.val
    test = test if test is not None else config.test
    unlabelled = unlabelled if unlabelled is not None else config.unlabelled
    if data is None:
        raise ConfigError("distill: no training data; give a folder of images per class or a table file.")
    check_distill_options(config)
    from transferkit.strategies.requirements import check_training_installed

    check_training_installed("distill")
    if config.output is not None:
        from transferkit.models.folder import check_output_folder, unfinished_model

        if config.resume and unfinished_model(config.output):  # the interrupted run's own model: replaced
            config = config.model_copy(update={"overwrite": True})
        check_output_folder(config.output, config.overwrite, inputs=[
            ("training data", data), ("validation data", val), ("test data", test), ("unlabelled data", unlabelled),
            ("student backbone", config.backbone), ("--work-dir", config.work_dir),
            *[("teacher model", t) for t in config.teacher or []]])
    timings: dict[str, float] = {}
    start = time.perf_counter()
    teachers = load_teachers(config.teacher)
    train, val_ds, test_ds = load_splits(data, val, test, config)
    check_teacher_input(teachers, train)
    unlabelled_ds = load_unlabelled(config, unlabelled, train.modality)
    classes = train.classes
    student_name = default_student(config, teachers)

    import torch

    from transferkit.backbones import create_backbone

    torch.manual_seed(config.seed)
    backbone = create_backbone(student_name, **_backbone_options(config, train.modality))
    if backbone.modality != train.modality:
        raise ConfigError(f"--student {student_name} takes {backbone.modality} input but {train.origin} holds "
                          f"{train.modality} data.")
    timings["load"] = time.perf_counter() - start

    from transferkit.evaluation.metrics import classification_metrics
    from transferkit.strategies.run import finish_run, train_with_strategy

    strategy = distill_strategy(config, teachers, unlabelled_ds)
    strategy.check_options(backbone, augmented=config.augment != "none")
    start = time.perf_counter()
    trained = train_with_strategy(config, backbone, train, val_ds, classes, strategy=strategy)
    timings["training"] = time.perf_counter() - start
    model = trained.model
    from transferkit.models.artifact_kinds import model_card
    from transferkit.models.artifacts import save_model
    from transferkit.models.folder import late_step, update_model_folder

    notes: list[str] = []
    output = None
    training_log = {"training_log.csv": Path(trained.outcome.metrics_csv).read_text(encoding="utf-8")} \
        if trained.outcome.metrics_csv else {}
    if config.output is not None:  # saved as soon as it exists; evaluation and comparisons update the folder
        output = save_model(model, config.output, overwrite=config.overwrite,
                            run_config=config.resolved(backbone=student_name, classes=classes,
                                                       modality=train.modality),
                            metrics={"training": trained.facts, "timings_s": timings,
                                     "pending": "test evaluation and the teachers' figures"},
                            extra_files=training_log, keep_beside=True)
    predict = dict(batch_size=config.batch_size, device=config.device, num_workers=config.num_workers,
                   progress=config.progress)
    y_test = test_ds.label_array(classes)
    proba = model.predict_proba(test_ds, cache=None, **predict)
    metrics = classification_metrics(y_test, proba.argmax(axis=1), classes)

    teacher_rows, teacher_probas = [], []
    for path, t in zip(config.teacher, teachers):
        from transferkit.features.cache import FeatureCache, default_cache_dir

        cache = None if config.no_cache else FeatureCache(config.cache_dir or default_cache_dir())
        p = t.predict_proba(test_ds, cache=cache, **predict)[:, [t.classes.index(c) for c in classes]]
        teacher_probas.append(p)
        teacher_rows.append({"path": str(path), "backbone": t.backbone.name, "accuracy":
                             float(np.mean(p.argmax(axis=1) == y_test)),
                             "parameters": int(sum(q.numel() for q in t.parameters()))})
    facts = dict(trained.facts)
    extra_facts: dict[str, Any] = {}
    if len(teachers) > 1:
        extra_facts["ensemble_accuracy"] = float(np.mean(np.mean(teacher_probas, axis=0).argmax(axis=1) == y_test))

    import yaml

    plain, comparison = None, None

    def train_plain() -> tuple[dict[str, Any], Any]:
        from transferkit.evaluation.verdict import compare
        from transferkit.strategies.finetune import FineTune

        torch.manual_seed(config.seed)
        plain_backbone = create_backbone(student_name, **_backbone_options(config, train.modality))
        start = time.perf_counter()
        # the same input mixing for the plain student (the engine's mixup, labels mixed with the same weight)
        plain_config = config.model_copy(update={"mixup": config.distill.mixup}) if config.distill.mixup else config
        plain_strategy = FineTune(config.finetune, head_lr=config.head_lr)
        if config.distill.variants:  # the same text versions, cross-entropy only (alpha 0 at T 1 is exactly that)
            plain_options = config.distill.model_copy(update={"alpha": 0.0, "temperature": 1.0, "feature_weight": 0.0})
            plain_strategy = distill_strategy(config.model_copy(update={"distill": plain_options}), teachers,
                                              None)
        plain_run = train_with_strategy(plain_config, plain_backbone, train, val_ds, classes,
                                        strategy=plain_strategy, stage="plain")
        timings["plain_training"] = time.perf_counter() - start
        plain_pred = plain_run.model.predict_proba(test_ds, cache=None, **predict).argmax(axis=1)
        return ({**classification_metrics(y_test, plain_pred, classes),
                 "epochs_run": plain_run.outcome.epochs_run, "seconds": plain_run.outcome.seconds},
                compare(y_test, proba.argmax(axis=1), plain_pred, "plain student", seed=config.seed))

    pending = ["the plain-student comparison"] if config.compare_plain else []

    def all_metrics() -> dict[str, Any]:
        return {"test": metrics, "teachers": teacher_rows, "plain_student": plain,
                "comparisons": [comparison.to_dict()] if comparison is not None else [],
                "training": trained.facts, "timings_s": timings, **extra_facts, **({"notes": notes} if notes else {}),
                **({"pending": ", ".join(pending)} if pending else {})}

    def update_folder() -> None:
        if result.output is not None:
            update_model_folder(result.output, metrics=all_metrics(), files={
                "summary.txt": result.summary() + "\n", "README.md": model_card(result.output, all_metrics()),
                "run_config.yaml": yaml.safe_dump(result.config, sort_keys=False)})

    resolved = config.resolved(backbone=student_name, classes=classes, modality=train.modality, n_train=len(train),
                               n_val=len(val_ds) if val_ds is not None else 0, n_test=len(test_ds),
                               n_unlabelled=len(unlabelled_ds) if unlabelled_ds is not None else 0,
                               data_fingerprint=train.fingerprint(), test_fingerprint=test_ds.fingerprint(),
                               teachers=teacher_rows, **extra_facts)
    result = DistillResult(model, resolved, metrics, teacher_rows, plain, comparison, facts, output=output,
                           timings=timings, notes=notes)
    update_folder()
    if config.compare_plain:
        outcome = late_step("training the plain student for the comparison", train_plain, notes,
                            saved="the distilled student is saved" if output is not None else "the student stands")
        if outcome is not None:
            plain, comparison = outcome
            result.plain, result.comparison = plain, comparison
        pending.clear()
        update_folder()
    if config.output is not None:
        from transferkit.reporting.tracking import report_and_track

        training = trained.facts.get("training") or {}
        report_and_track(result.output, params=resolved, metrics=all_metrics(), tracking_uri=config.tracking_uri,
                         report=config.report, run_name=f"distill {resolved.get('backbone', '')}".strip(),
                         run_id=training.get("mlflow_run_id") if training.get("mlflow_uri") else None,
                         tags={"transferkit.strategy": "distill"}, notes=notes)
        if notes:
            late_step("writing the notes", update_folder, [])
    late_step("cleaning up the run's work folder", lambda: finish_run(config, train), notes)
    return result


__all__ = ["DistillConfig", "DistillResult", "distill", "make_distill_config"]
