"""What a ``distill`` run is made of, before and around its training: its config (:class:`DistillConfig`), the
teachers (loaded and checked), the unlabelled data of the soft-target term, the default student and the ``distill``
strategy built from them. The verb that runs them is :func:`transferkit.workflows.distill.distill`; ``tune`` uses
them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from transferkit.config import FitConfig, describe_errors
from transferkit.errors import ConfigError
from transferkit.modalities import get_modality
from transferkit.strategies.options import DistillOptions


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


def student_backbone_options(config: FitConfig, modality: str) -> dict[str, Any]:
    """The student backbone's options for ``modality`` (token limit, image size)."""
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
    from transferkit.tasks import task_of

    tasks = {task_of(t).name for t in teachers}
    if len(tasks) > 1:
        listed = ", ".join(f"{path} ({task_of(t).name})" for path, t in zip(paths, teachers))
        raise ConfigError(f"--teacher: the teachers are models of different tasks ({listed}); give teachers of one "
                          "task.")
    modalities = {t.modality for t in teachers}
    if len(modalities) > 1:
        raise ConfigError(f"--teacher: the teachers take different inputs ({', '.join(sorted(modalities))}).")
    return teachers


def teachers_task(config: DistillConfig, teachers: list[Any]) -> DistillConfig:
    """``config`` with the teachers' task: taken from them when the run names none, else checked to be theirs
    (a student learns the task its teachers answer)."""
    from transferkit.tasks import task_of

    task = task_of(teachers[0]).name
    if "task" not in config.model_fields_set:
        return config.model_copy(update={"task": task})
    if config.task != task:
        raise ConfigError(f"--teacher {config.teacher[0]}: a {task} model, but option 'task' (--task-type "
                          f"{config.task}) asks for a {config.task} student. Give --task-type {task} (or leave it "
                          f"out: the teachers' task is the default), or {config.task} teachers.")
    return config


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
