"""What a task is: the questions every task type answers, whatever its labels.

A task says what a label is and everything that follows from it: how a label cell is read and checked, the head
that predicts it, the training loss, the probe fitted on frozen features, the metrics and their intervals, the
measure the verdict compares with a baseline, and what ``predict`` returns for one input. The verbs never look at
the kind of label themselves; they ask the task named by the run's config (``get_task(config.task)``).

Shapes: ``outputs`` are the head's raw outputs ``(N, width)`` (logits for classification); ``proba`` the model's
probabilities ``(N, width)`` after temperature; ``y_true`` / ``y_pred`` the targets as :meth:`Task.targets` gives
them (class indices ``(N,)`` for single-label classification).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np


class Task(ABC):
    """One task type. Subclasses set :attr:`name`, :attr:`description`, :attr:`loss_name`, :attr:`measure` and
    answer every abstract method; the registry (:mod:`transferkit.tasks`) holds one instance per name."""

    #: The name a config gives (``task: classification``) and ``config.json`` records.
    name: str = ""
    #: One line for listings and errors.
    description: str = ""
    #: Name of the training loss term (the engine logs it as ``train_<loss_name>``).
    loss_name: str = ""
    #: The metric the verdict compares with each baseline (higher is better), a key of :meth:`metrics`.
    measure: str = ""

    # --- labels -----------------------------------------------------------------------------------------------
    @abstractmethod
    def parse_labels(self, values: Sequence[Any], places: Sequence[str], column: str) -> list[Any]:
        """Label cells as labels; a missing or malformed cell is a DataError naming its place (row) and column."""

    @abstractmethod
    def check_labels(self, labels: list[Any], row_ids: Sequence[str], origin: str, *, normalize: bool,
                     column: str | None = None) -> list[Any]:
        """A whole label column checked (and, with ``normalize``, its spellings folded); ``column`` is the table's
        label column name (``None`` for labels given as a list)."""

    @abstractmethod
    def label_space(self, dataset: Any) -> list[str]:
        """What the head's outputs stand for, learnt from the training data (the class names)."""

    @abstractmethod
    def targets(self, dataset: Any, label_space: Sequence[str], *, normalize: bool = False) -> np.ndarray:
        """The dataset's labels as training and scoring targets against ``label_space``."""

    # --- model and training -----------------------------------------------------------------------------------
    @abstractmethod
    def new_head(self, in_features: int, label_space: Sequence[str]) -> Any:
        """A freshly initialised head ``(N, in_features) -> (N, width)`` (a ``torch.nn.Module``)."""

    @abstractmethod
    def loss(self, outputs: Any, targets: Any) -> Any:
        """The training loss of one batch, a scalar tensor."""

    @abstractmethod
    def validation_figures(self, outputs: Any, targets: Any) -> dict[str, Any]:
        """``{"loss": scalar tensor, "score": scalar tensor}`` of one validation batch; the engine monitors the
        score (higher is better) for early stopping and checkpoint selection."""

    @abstractmethod
    def new_probe(self, *, C: float | None = None, seed: int = 0) -> Any:
        """The scikit-learn estimator fitted on frozen features (it converts to a head with ``to_head()``)."""

    # --- evaluation -------------------------------------------------------------------------------------------
    @abstractmethod
    def predictions(self, proba: np.ndarray) -> np.ndarray:
        """Predicted targets from the model's outputs ``proba``."""

    @abstractmethod
    def metrics(self, y_true: np.ndarray, proba: np.ndarray, label_space: Sequence[str]) -> dict[str, Any]:
        """Every test metric of a model that gives ``proba`` (JSON-able)."""

    @abstractmethod
    def prediction_metrics(self, y_true: np.ndarray, y_pred: np.ndarray, label_space: Sequence[str]) -> dict[str, Any]:
        """The metrics of predictions alone (a baseline whose probabilities are not kept)."""

    @abstractmethod
    def fold_metrics(self, y_true: np.ndarray, proba: np.ndarray | None, y_pred: np.ndarray,
                     label_space: Sequence[str]) -> dict[str, float]:
        """The figures cross-validation summarises over folds (each with a mean, spread and interval)."""

    @abstractmethod
    def per_example_scores(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """``(N,)`` scores whose mean is :attr:`measure`: the unit of the paired bootstrap of the verdict."""

    @abstractmethod
    def compare(self, y_true: np.ndarray, model_pred: np.ndarray, baseline_pred: np.ndarray, baseline: str, *,
                seed: int = 0) -> Any:
        """The verdict against one baseline on the same examples (a :class:`~transferkit.evaluation.verdict.Comparison`)."""

    @abstractmethod
    def evidence(self, train: Any, test: Any, y_true: np.ndarray, proba: np.ndarray, label_space: Sequence[str], *,
                 val: Any = None, seed: int = 0) -> dict[str, str]:
        """The files the report reads beside a model: ``{file name: text}`` (predictions, examples, mistakes)."""

    # --- prediction -------------------------------------------------------------------------------------------
    @abstractmethod
    def prediction_record(self, row: str, proba: np.ndarray, label_space: Sequence[str],
                          top_k: int | None = None) -> dict[str, Any]:
        """What ``predict`` returns for one input, from its outputs ``proba`` ``(width,)``."""

    @abstractmethod
    def prediction_table(self, records: Sequence[dict[str, Any]], label_space: Sequence[str]) -> list[list[str]]:
        """``predict --output FILE.csv``: a header row, then one row of cells per record of :meth:`prediction_record`."""


#: The hooks every task answers (the contract test calls each of them).
HOOKS = tuple(sorted(Task.__abstractmethods__))
