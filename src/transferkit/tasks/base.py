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
    #: The name of :meth:`output_loss` in listings and result files (``log_loss``, ``mse``, ``bce``).
    output_loss_name: str = ""
    #: Whether a label is a set of names (a table may then give it as one 0/1 column per label:
    #: ``--label-column a,b,c``).
    label_sets: bool = False
    #: Whether :meth:`prediction_interval` can give the model an interval (``fit`` then calibrates one).
    gives_intervals: bool = False
    #: The metrics of the summary table (keys of :meth:`metrics` and :meth:`prediction_metrics`, with their headers).
    summary_columns: tuple[tuple[str, str], ...] = ()
    #: Whether ``proba`` are class probabilities that temperature scaling calibrates (``--calibrate``, reliability
    #: diagrams, ECE and NLL).
    calibrates: bool = False
    #: Whether a folder with one sub-folder per class holds this task's labels (else only tables and lists do).
    reads_class_folders: bool = False
    #: What the head's outputs are called in listings ("2 classes", "1 target", "5 labels").
    output_noun: str = "outputs"
    #: The transferability scores (:mod:`transferkit.selection.scores`) this task has a form of (``None``: every
    #: registered score); ``rank`` computes these by default and refuses the others.
    transferability_scores: tuple[str, ...] | None = None
    #: Whether labels are classes whose names a text backbone can embed (the label-name prior and zero-shot row;
    #: ``new_probe`` then takes ``prototypes=``, one row per class).
    uses_label_names: bool = False

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

    @abstractmethod
    def strata(self, labels: Sequence[Any]) -> list[str]:
        """One group name per label (``(N,)``): stratified splits, folds and ``--shots`` keep each group's share
        (classification: the class; regression: a quantile bin of the target; multi-label: the rarest label)."""

    @abstractmethod
    def check_training_labels(self, dataset: Any, *, min_classes: int = 2) -> None:
        """Training labels that cannot train this task (fewer than ``min_classes`` classes; a constant target; a
        label never positive) are a DataError naming the data (and the row or label); suspicious ones a warning."""

    @abstractmethod
    def check_split_labels(self, train: Any, other: Any, *, normalize: bool = False) -> None:
        """Labels of validation or test data ``other`` that the training data cannot have taught (an unseen class)
        are a DataError naming the row; with ``normalize`` spellings are folded into the training data's."""

    # --- model and training -----------------------------------------------------------------------------------
    @abstractmethod
    def new_head(self, in_features: int, label_space: Sequence[str], targets: np.ndarray | None = None) -> Any:
        """A freshly initialised head ``(N, in_features) -> (N, width)`` (a ``torch.nn.Module``); ``targets`` are the
        training targets (a regression head standardises its outputs by their mean and deviation)."""

    @abstractmethod
    def loss(self, outputs: Any, targets: Any, *, head: Any = None) -> Any:
        """The training loss of one batch, a scalar tensor. ``head`` is the head that produced ``outputs`` (a
        regression head carries the training targets' scale, which makes the loss unit-free)."""

    @abstractmethod
    def validation_figures(self, outputs: Any, targets: Any, *, head: Any = None) -> dict[str, Any]:
        """``{"loss": scalar tensor, "score": scalar tensor}`` of one validation batch; the engine monitors the
        score (higher is better) for early stopping and checkpoint selection."""

    @abstractmethod
    def distillation_terms(self, student_outputs: Any, teacher_outputs: Any, targets: Any, *, temperature: float,
                           alpha: float, head: Any = None) -> dict[str, Any]:
        """The named loss terms of distilling one batch (their sum is minimised): ``soft_targets`` (the student
        matching the teachers) and :attr:`loss_name` (the task's loss on the true targets, weighted ``1 - alpha``).

        Shapes: ``student_outputs`` ``(N, width)`` the student head's raw outputs, ``teacher_outputs``
        ``(K, N, width)`` those of ``K`` teachers (after their saved temperature), ``targets`` ``(N, k)`` the
        batch's targets (a class-index column, a value column, or the 0/1 label columns) with unlabelled examples
        marked (class index ``-100``, NaN); ``head`` is the student's head (a regression head's target scale)."""

    @abstractmethod
    def proba_from_outputs(self, outputs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """The model's outputs ``proba`` ``(N, width)`` from its head's raw outputs ``(N, width)``: class
        probabilities (softmax of ``outputs / temperature``), label probabilities (sigmoid), or values in the
        target's units (regression: unchanged)."""

    def explained_scores(self, outputs: Any, temperature: float = 1.0) -> Any:
        """What ``explain`` attributes, from the head's raw outputs ``(N, width)`` (a torch tensor, differentiable):
        by default the outputs themselves (a regression's values, each label's logit)."""
        return outputs

    @abstractmethod
    def new_probe(self, *, C: float | None = None, seed: int = 0, **options: Any) -> Any:
        """The scikit-learn estimator fitted on frozen features (it converts to a head with ``to_head()``);
        ``options`` tune its solver (``standardize``, ``tol``, ``max_iter``: the raw baseline's settings)."""

    @abstractmethod
    def transferability(self, score: str, values: np.ndarray, targets: np.ndarray) -> float:
        """The transferability score ``score`` (one of :attr:`transferability_scores`) of ``values`` (features
        ``(N, D)``, or source probabilities for the scores that take them) against ``targets`` as :meth:`targets`
        gives them; higher means the backbone is expected to transfer better (``rank``)."""

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
    def output_loss(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        """The mean loss of the model's outputs ``proba`` against ``y_true`` (lower is better; named
        :attr:`output_loss_name`): what fusion breaks ties by and fits ensemble weights on."""

    @abstractmethod
    def prediction_interval(self, y_true: np.ndarray, proba: np.ndarray, level: float, *,
                            calibrated_on: str) -> dict[str, Any] | None:
        """The prediction interval a model carries, calibrated on held-out targets ``y_true`` and the model's
        outputs ``proba`` there, for nominal coverage ``level`` (regression: split conformal); ``None`` for tasks
        without intervals (or too few examples). ``calibrated_on`` says what the examples are."""

    @abstractmethod
    def per_example_scores(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """``(N,)`` scores whose mean is :attr:`measure`: the unit of the paired bootstrap of the verdict."""

    def compare(self, y_true: np.ndarray, model_pred: np.ndarray, baseline_pred: np.ndarray, baseline: str, *,
                seed: int = 0) -> Any:
        """The verdict against one baseline on the same examples (a :class:`~transferkit.evaluation.verdict.Comparison`):
        the paired bootstrap of :meth:`per_example_scores`."""
        from transferkit.evaluation.verdict import compare

        return compare(y_true, model_pred, baseline_pred, baseline, seed=seed, scores=self.per_example_scores)

    @abstractmethod
    def evidence(self, train: Any, test: Any, y_true: np.ndarray, proba: np.ndarray, label_space: Sequence[str], *,
                 val: Any = None, seed: int = 0) -> dict[str, str]:
        """The files the report reads beside a model: ``{file name: text}`` (predictions, examples, mistakes)."""

    # --- prediction -------------------------------------------------------------------------------------------
    @abstractmethod
    def prediction_record(self, row: str, proba: np.ndarray, label_space: Sequence[str],
                          top_k: int | None = None, *, interval: dict[str, Any] | None = None) -> dict[str, Any]:
        """What ``predict`` returns for one input, from its outputs ``proba`` ``(width,)``; ``interval`` is the
        prediction interval the model carries (:meth:`prediction_interval`; tasks without intervals ignore it)."""

    @abstractmethod
    def prediction_table(self, records: Sequence[dict[str, Any]], label_space: Sequence[str]) -> list[list[str]]:
        """``predict --output FILE.csv``: a header row, then one row of cells per record of :meth:`prediction_record`."""


#: The hooks every task answers (the contract test calls each of them).
HOOKS = tuple(sorted(Task.__abstractmethods__))
