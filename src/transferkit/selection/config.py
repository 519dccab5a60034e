"""The options of ``rank``: typed, validated at construction, the same for the Python API and the CLI."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from transferkit.errors import ConfigError
from transferkit.options import DataOptions, RuntimeOptions, build_options
from transferkit.tasks import DEFAULT_TASK

DEFAULT_SCORES = ("logme", "leep", "nce", "hscore", "shrinkage_hscore")


class RankConfig(DataOptions, RuntimeOptions):
    """Everything that decides what ``rank`` does. ``None`` means "chosen for you". How data is read and the runtime
    options are shared with the other verbs (:mod:`transferkit.options`)."""

    candidates: list[str] | None = Field(None, description="backbone names to rank (`transferkit models`, timm:ARCH, hf:MODEL_ID, random:NAME, a local folder); default: every installed backbone of the data's modality")
    scores: list[str] = Field(default_factory=lambda: list(DEFAULT_SCORES), description="transferability scores to compute: logme, leep, nce, hscore, shrinkage_hscore (the default), logme_no_intercept (the paper's exact LogME)")
    sort_by: str | None = Field(None, description="score that orders the table (default: the first of `scores`)")
    raw_baseline: bool = Field(True, description="add the raw input (pixels, or TF-IDF reduced by truncated SVD) as a row of the ranking")
    raw_dims: int = Field(256, gt=1, description="dimensions the TF-IDF matrix is reduced to (truncated SVD) before scoring")
    validate_: bool = Field(False, alias="validate", description="also measure each candidate's held-out accuracy (linear probe, one-epoch fine-tune) and the weighted Kendall tau between scores and accuracies")
    finetune_epochs: int = Field(1, gt=0, description="epochs of the fine-tune measured by validate")
    test: str | None = Field(None, description="held-out data for validate (same form as the data); default: a stratified part of the data")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="part of each class held out for validate when no test data is given")
    shots: int | None = Field(None, gt=0, description="keep at most this many labelled examples per class for scoring (and training, with validate)")
    max_length: int = Field(256, gt=0, description="text backbones: maximum tokens per text")
    task: str = Field(DEFAULT_TASK, description="what a label is (`transferkit.tasks`): classification (the default), regression (a numeric target: LogME's regression form, validate measures R2) or multilabel (a set of labels per example: LogME on the per-label indicators, validate measures example F1)")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        from transferkit.tasks import TASKS, task_names

        if value not in TASKS:
            raise ValueError(f"unknown task {value!r}; known tasks: {', '.join(task_names())}")
        return value

    @field_validator("scores")
    @classmethod
    def _known_scores(cls, value: list[str]) -> list[str]:
        from transferkit.selection.scores import get_score

        names = [get_score(name).name for name in value]
        if not names:
            raise ValueError("give at least one score")
        return list(dict.fromkeys(names))

    @field_validator("candidates")
    @classmethod
    def _non_empty_candidates(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [str(v).strip() for v in value if str(v).strip()]
        if not names:
            raise ValueError("give at least one candidate backbone name")
        return list(dict.fromkeys(names))

    @model_validator(mode="after")
    def _scores_of_the_task(self) -> "RankConfig":
        """The scores the task has a form of: the default list cut to them, a score asked for that has none an
        error naming the option."""
        from transferkit.tasks import get_task

        task = get_task(self.task)
        known = task.transferability_scores
        if known is None:
            return self
        if "scores" not in self.model_fields_set:
            self.scores = [name for name in self.scores if name in known] or list(known[:1])
            return self
        other = [name for name in self.scores if name not in known]
        if other:
            raise ConfigError(f"option 'scores': {', '.join(other)} ha{'s' if len(other) == 1 else 've'} no form for "
                              f"the {task.name} task (it needs class labels); choose among {', '.join(known)} "
                              f"(--scores {known[0]}).")
        return self

    @model_validator(mode="after")
    def _sort_by_is_computed(self) -> "RankConfig":
        if self.sort_by is not None:
            from transferkit.selection.scores import get_score

            name = get_score(self.sort_by).name
            if name not in self.scores:
                raise ConfigError(f"option 'sort_by': '{name}' is not among the computed scores "
                                  f"({', '.join(self.scores)}); add it to --scores or sort by one of them.")
            if name != self.sort_by:
                self.sort_by = name
        return self

    @property
    def validate(self) -> bool:  # noqa: D401 - a plain alias of the option
        return self.validate_

    @property
    def primary_score(self) -> str:
        return self.sort_by or self.scores[0]


def make_rank_config(**values: Any) -> RankConfig:
    """Build a RankConfig; problems become one ConfigError naming each option, what was given and what is allowed."""
    return build_options(RankConfig, "rank", **values)
