"""Options of a multi-task run (``transferkit multitask CONFIG``): typed, validated at construction, light.

A run has one backbone and several tasks; each task has its own data (train, optional validation and test) and
its own label set, and the tasks need not share examples. The training options mean what they mean for ``fit``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from transferkit._version import __version__
from transferkit.errors import ConfigError
from transferkit.options import DataOptions, describe_validation
from transferkit.strategies.options import FineTuneConfig

SAMPLINGS = ("proportional", "uniform", "temperature")
WEIGHTINGS = ("fixed", "uncertainty", "pcgrad")


class TaskConfig(DataOptions):
    """One task: a name, its data, how its tables are read (the options of :class:`~transferkit.options.DataOptions`),
    and how much its loss counts (``weighting = fixed`` and ``pcgrad``)."""

    name: str = Field(..., description="task name (letters, digits, _ and -): names its head, metrics and predictions")
    data: str | None = Field(None, description="training data: a folder with one sub-folder per class, or a table; may be given as a Dataset to the Python function instead")
    val: str | None = Field(None, description="validation data (same form); default: val_fraction of each class of the training data")
    test: str | None = Field(None, description="test data (same form); default: test_fraction of each class of the training data")
    shots: int | None = Field(None, gt=0, description="keep at most this many training examples per class")
    weight: float = Field(1.0, gt=0, description="loss weight of the task (fixed and pcgrad weighting)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "_-" for c in value):
            raise ValueError(f"task name {value!r} must be non-empty letters, digits, _ or -")
        return value


class MultiTaskConfig(BaseModel):
    """Everything that decides what ``multitask`` does."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    tasks: list[TaskConfig] = Field(..., min_length=1, description="the tasks (name, data, val, test, columns, shots, weight)")
    backbone: str | None = Field(None, description="backbone shared by every task (default efficientnet_lite0 for images, all-MiniLM-L6-v2 for text)")
    output: str | None = Field(None, description="folder for the saved multi-task model")
    overwrite: bool = Field(False, description="replace a model already in the output folder")
    sampling: Literal["proportional", "uniform", "temperature"] = Field("proportional", description="share of each training step's batch per task: proportional to the task's training examples, uniform, or temperature (proportional to n_t^(1/temperature))")
    temperature: float = Field(2.0, gt=0, description="sampling = temperature: 1 is proportional, large values approach uniform")
    weighting: Literal["fixed", "uncertainty", "pcgrad"] = Field("fixed", description="loss weighting: fixed (each task's weight), uncertainty (learned, Kendall et al. 2018), pcgrad (fixed weights, conflicting gradients projected, Yu et al. 2020)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of every random choice")
    batch_size: int = Field(32, gt=0, description="global training batch of each step, shared among the tasks by 'sampling'")
    epochs: int = Field(10, gt=0, description="maximum epochs (an epoch ends when the task with the most batches has seen its data once)")
    lr: float | None = Field(None, gt=0, description="learning rate of the backbone (default 1e-4)")
    head_lr: float | None = Field(None, gt=0, description="learning rate of the heads (default 10 x lr)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases and norms)")
    warmup: float = Field(0.1, ge=0, lt=1, description="part of the steps with a linear learning-rate warm-up, before cosine decay")
    accumulate: int = Field(1, gt=0, description="gradient accumulation, batches per optimiser step")
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = Field("auto", description="numeric precision")
    patience: int = Field(3, ge=0, description="early stopping after this many epochs without a better mean validation accuracy over the tasks (0 = off)")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="part of each class held out of a task's training data for validation when it has no val data")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="part of each class held out for testing when a task has no test data")
    augment: Literal["none", "light", "medium", "heavy"] = Field("light", description="augmentation preset (as for fit)")
    max_length: int = Field(256, gt=0, description="text backbones: maximum tokens per text")
    image_size: int | None = Field(None, gt=0, description="image backbones: input resolution in pixels (default: the backbone's own)")
    finetune: FineTuneConfig = Field(default_factory=FineTuneConfig, description="freezing, per-layer learning-rate decay and BatchNorm statistics of the shared backbone (bn_statistics auto: the pretrained statistics are kept when there are several tasks; for one, as finetune decides)")
    device: str = Field("auto", description="cpu, cuda, cuda:1, ... or auto")
    devices: int = Field(1, gt=0, description="processes / GPUs to train on")
    distributed: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = Field("auto", description="Lightning's multi-device strategy")
    num_workers: int = Field(0, ge=0, description="data-loader worker processes")
    deterministic: bool = Field(True, description="deterministic algorithms, seeded")
    resume: bool = Field(False, description="continue an interrupted run from its last checkpoint")
    work_dir: str | None = Field(None, description="folder for checkpoints and logs (default: under the transferkit cache)")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: SQLite in the transferkit cache); off disables MLflow")
    cache_dir: str | None = Field(None, description="feature cache folder used for test predictions")
    progress: bool = Field(True, description="show progress of long steps")

    @model_validator(mode="after")
    def _unique_names(self) -> "MultiTaskConfig":
        names = [t.name for t in self.tasks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"task names must be unique; repeated: {', '.join(repeated)}")
        return self

    def warn_unused_options(self) -> None:
        """One warning for options that this run's other choices make it ignore."""
        ignored = []
        if self.temperature != MultiTaskConfig.model_fields["temperature"].default and self.sampling != "temperature":
            ignored.append(f"temperature (used by sampling temperature; sampling is {self.sampling})")
        weighted = [t.name for t in self.tasks if t.weight != TaskConfig.model_fields["weight"].default]
        if weighted and self.weighting == "uncertainty":
            ignored.append(f"the weight of task(s) {', '.join(weighted)} (weighting uncertainty learns the weights; "
                           "fixed and pcgrad use them)")
        if ignored:
            import warnings

            warnings.warn(f"multitask: this run ignores {'; '.join(ignored)}.", stacklevel=2)

    def resolved(self, **facts: Any) -> dict[str, Any]:
        """The config as saved next to outputs, plus facts decided during the run."""
        return {"transferkit_version": __version__, **self.model_dump(), **facts}


def make_multitask_config(origin: str = "options", **values: Any) -> MultiTaskConfig:
    """Build a :class:`MultiTaskConfig`; validation problems become one ConfigError naming each option."""
    try:
        return MultiTaskConfig(**values)
    except ValidationError as exc:
        raise ConfigError(describe_validation(exc, MultiTaskConfig, origin)) from None


def load_multitask_config(path: str | Path, **overrides: Any) -> MultiTaskConfig:
    """A :class:`MultiTaskConfig` from a YAML file, with ``overrides`` laid over it (``None``: not given; a section
    such as ``finetune`` merged key by key); relative data paths are taken relative to the file's folder when they
    exist there, else relative to the working directory."""
    from transferkit.config import load_config_file

    path = Path(path)
    values = load_config_file(path)
    tasks = values.get("tasks")
    if isinstance(tasks, dict):  # tasks: {name: {data: ...}} is accepted too
        values["tasks"] = tasks = [{"name": name, **(spec or {})} for name, spec in tasks.items()]
    if isinstance(tasks, list):
        for task in tasks:
            if isinstance(task, dict):
                for key in ("data", "val", "test"):
                    value = task.get(key)
                    if isinstance(value, str) and not Path(value).is_absolute() and (path.parent / value).exists():
                        task[key] = str(path.parent / value)
    from transferkit.config import merge_config

    return merge_config(values, overrides, str(path), build=make_multitask_config)
