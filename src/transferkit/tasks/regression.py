"""Regression: each example has a numeric target (a rating, a price, an age), predicted in its own units.

A label cell is a finite number (kept as its shortest text, ``"2.5"``); the head is a
:class:`~transferkit.models.heads.RegressionHead` (a linear output on the standardised target, reported in the
target's units) trained by mean squared error on the standardised target; the probe is ridge regression with its
penalty chosen by cross-validation; the metrics are MAE, RMSE, R² and Spearman's rank correlation with bootstrap
intervals; the verdict compares R² (per example ``1 - error² / Var(target)``, whose mean is R²) by a paired
bootstrap; ``predict`` gives the value. Splits and folds are stratified by quantile bins of the target.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from transferkit.tasks.base import Task

#: The name of the single output (a model's ``classes``).
VALUE = "value"
#: Most quantile bins the splits stratify by (fewer on small data: about ten examples per bin).
MAX_BINS = 10
#: The LogME forms of the tasks with real-valued (or 0/1 per-label) targets: score name -> whether a bias feature
#: is added (the paper's exact LogME has none).
LOGME_INTERCEPT = {"logme": True, "logme_no_intercept": False}


def number_text(value: float) -> str:
    """A target's shortest exact text: ``3.0`` -> ``"3"``, ``2.50`` -> ``"2.5"``."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


class Regression(Task):
    """The ``regression`` task (see the module docstring). Targets are values ``(N,)`` (float32)."""

    name = "regression"
    description = "regression: a numeric target per example, predicted in its own units (MSE on the standardised target)"
    output_noun = "target"
    loss_name = "mse"
    output_loss_name = "mse"
    gives_intervals = True
    measure = "r2"
    summary_columns = (("r2", "R2"), ("mae", "MAE"), ("rmse", "RMSE"))
    transferability_scores = ("logme", "logme_no_intercept")

    # --- labels -----------------------------------------------------------------------------------------------
    def parse_labels(self, values: Sequence[Any], places: Sequence[str], column: str) -> list[str]:
        from transferkit.data.sources import is_blank
        from transferkit.errors import DataError

        labels = []
        for value, place in zip(values, places):
            if isinstance(value, (list, tuple, dict, set, np.ndarray)):
                raise DataError(f"{place}: the {column} is a {type(value).__name__} ({str(value)[:40]}); a "
                                "regression target is one number.")
            if is_blank(value):
                raise DataError(f"{place}: the {column} is missing or empty. Fill it in or drop the row.")
            if isinstance(value, (bool, np.bool_)):
                raise DataError(f"{place}: the {column} is {value}, not a number; a regression target is numeric.")
            try:
                number = float(str(value).strip().replace("\u2212", "-")) if isinstance(value, str) else float(value)
            except (TypeError, ValueError):
                raise DataError(f"{place}: the {column} is {str(value)[:40]!r}, not a number; a regression target is "
                                "numeric. Correct the cell, or choose classification (--task-type classification) "
                                "if the column holds classes.") from None
            if not math.isfinite(number):
                raise DataError(f"{place}: the {column} is {value!r}, not a finite number (NaN and infinity cannot "
                                "be learnt or scored). Correct the cell or drop the row.")
            labels.append(number_text(number))
        return labels

    def check_labels(self, labels: list[str], row_ids: Sequence[str], origin: str, *, normalize: bool,
                     column: str | None = None) -> list[str]:
        return labels

    def label_space(self, dataset: Any) -> list[str]:
        return [VALUE]

    def targets(self, dataset: Any, label_space: Sequence[str], *, normalize: bool = False) -> np.ndarray:
        from transferkit.errors import DataError

        if dataset.labels is None:
            raise DataError(f"{dataset.origin} has no targets; this step needs labelled data.")
        try:
            return np.asarray([float(label) for label in dataset.labels], dtype=np.float32)
        except ValueError:
            bad = next(i for i, label in enumerate(dataset.labels) if not _is_number(label))
            raise DataError(f"{dataset.row_ids[bad]}: the target {dataset.labels[bad]!r} is not a number; a "
                            "regression model is scored on numeric targets.") from None

    def strata(self, labels: Sequence[Any]) -> list[str]:
        """Quantile bins of the target (about ten examples per bin, at most :data:`MAX_BINS`), by rank."""
        values = np.asarray([float(v) for v in labels], dtype=np.float64)
        n = len(values)
        bins = max(1, min(MAX_BINS, n // 10))
        ranks = np.empty(n, dtype=np.int64)
        ranks[np.argsort(values, kind="stable")] = np.arange(n)
        return [f"bin {int(r) * bins // max(n, 1)}" for r in ranks]

    def check_training_labels(self, dataset: Any, *, min_classes: int = 2) -> None:
        from transferkit.errors import DataError

        values = self.targets(dataset, [VALUE])
        if min_classes >= 2 and len(values) and float(values.min()) == float(values.max()):
            raise DataError(f"{dataset.origin}: the training target is constant ({dataset.labels[0]} in all "
                            f"{len(values)} rows, first {dataset.row_ids[0]}); a regression needs varying values. "
                            "Choose another column with --label-column, or add examples with other values.")

    def check_split_labels(self, train: Any, other: Any, *, normalize: bool = False) -> None:
        self.targets(other, [VALUE])  # every target a number; any value may be scored

    # --- model and training -----------------------------------------------------------------------------------
    def new_head(self, in_features: int, label_space: Sequence[str], targets: np.ndarray | None = None) -> Any:
        from transferkit.models.heads import RegressionHead

        values = np.asarray(targets if targets is not None else [0.0], dtype=np.float64)
        return RegressionHead(in_features, 1, float(values.mean()), float(values.std()) or 1.0)

    @staticmethod
    def _standardised_errors(outputs: Any, targets: Any, head: Any) -> Any:
        scale = getattr(head, "target_scale", None)
        errors = outputs.float().reshape(len(targets)) - targets.float().reshape(len(targets))
        return errors / scale.reshape(()) if scale is not None and scale.numel() == 1 else errors

    def loss(self, outputs: Any, targets: Any, *, head: Any = None) -> Any:
        """Mean squared error of ``outputs`` ``(N, 1)`` against ``targets`` ``(N,)``, in units of the training
        target's deviation (the head's ``target_scale``)."""
        return (self._standardised_errors(outputs, targets, head) ** 2).mean()

    def validation_figures(self, outputs: Any, targets: Any, *, head: Any = None) -> dict[str, Any]:
        """The loss, and the score ``1 - loss`` (R² against the training target's variance)."""
        loss = (self._standardised_errors(outputs, targets, head) ** 2).mean()
        return {"loss": loss, "score": 1.0 - loss}

    def distillation_terms(self, student_outputs: Any, teacher_outputs: Any, targets: Any, *, temperature: float,
                           alpha: float, head: Any = None) -> dict[str, Any]:
        """Squared error to the teachers' mean value and to the target, both in units of the training target's
        deviation (:func:`~transferkit.losses.distillation.regression_distillation_terms`); ``temperature`` does
        not apply to values."""
        from transferkit.losses.distillation import regression_distillation_terms

        scale = getattr(head, "target_scale", None)
        scale = scale.reshape(()) if scale is not None and scale.numel() == 1 else 1.0
        return regression_distillation_terms(student_outputs, teacher_outputs, targets.reshape(len(targets)),
                                             alpha=alpha, scale=scale, hard_name=self.loss_name)

    def proba_from_outputs(self, outputs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """The head's values, unchanged (a temperature has no meaning here)."""
        return np.asarray(outputs, dtype=np.float32)

    def new_probe(self, *, C: float | None = None, seed: int = 0, **options: Any) -> Any:
        """:class:`~transferkit.estimators.task_probes.RidgeProbe`; ``C`` fixes ``alpha = 1 / C`` (solver options
        other than ``standardize`` do not apply: ridge has a closed form)."""
        from transferkit.estimators.task_probes import RidgeProbe

        return RidgeProbe(alpha=None if C is None else 1.0 / C, standardize=options.get("standardize", True))

    def transferability(self, score: str, values: np.ndarray, targets: np.ndarray) -> float:
        """LogME's regression form (You et al., 2021) on the standardised target; ``logme_no_intercept`` without
        the bias feature."""
        from transferkit.selection.scores import logme_regression_score

        return logme_regression_score(values, targets, intercept=LOGME_INTERCEPT[score])

    # --- evaluation -------------------------------------------------------------------------------------------
    def predictions(self, proba: np.ndarray) -> np.ndarray:
        return np.asarray(proba, dtype=np.float64).reshape(len(proba), -1)[:, 0]

    def metrics(self, y_true: np.ndarray, proba: np.ndarray, label_space: Sequence[str]) -> dict[str, Any]:
        return self.prediction_metrics(y_true, self.predictions(proba), label_space)

    def prediction_metrics(self, y_true: np.ndarray, y_pred: np.ndarray, label_space: Sequence[str]) -> dict[str, Any]:
        from transferkit.evaluation.task_metrics import regression_metrics

        return regression_metrics(y_true, y_pred)

    def fold_metrics(self, y_true: np.ndarray, proba: np.ndarray | None, y_pred: np.ndarray,
                     label_space: Sequence[str]) -> dict[str, float]:
        m = self.prediction_metrics(y_true, y_pred, label_space)
        return {name: m[name] for name in ("r2", "mae", "rmse", "spearman") if m[name] is not None}

    def output_loss(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        """Mean squared error in the target's units squared."""
        errors = self.predictions(proba) - np.asarray(y_true, dtype=np.float64).reshape(-1)
        return float(np.mean(errors ** 2))

    def prediction_interval(self, y_true: np.ndarray, proba: np.ndarray, level: float, *,
                            calibrated_on: str) -> dict[str, Any] | None:
        """Split conformal (:mod:`transferkit.evaluation.conformal`): ``value ± q``, ``q`` the finite-sample
        quantile of the absolute calibration residuals."""
        from transferkit.evaluation.conformal import split_conformal_interval

        return split_conformal_interval(y_true, self.predictions(proba), level, calibrated_on=calibrated_on)

    def per_example_scores(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        from transferkit.evaluation.task_metrics import r2_scores

        return r2_scores(y_true, y_pred)

    def evidence(self, train: Any, test: Any, y_true: np.ndarray, proba: np.ndarray, label_space: Sequence[str], *,
                 val: Any = None, seed: int = 0) -> dict[str, str]:
        """``predictions.csv``: every test row with its target, prediction and residual (for the report's scatter
        and residual plots)."""
        import csv
        import io

        predicted = self.predictions(proba)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["input", "target", "prediction", "residual"])
        for row, target, value in zip(test.row_ids, y_true, predicted):
            writer.writerow([row, f"{float(target):.6g}", f"{float(value):.6g}", f"{float(value - target):.6g}"])
        return {"predictions.csv": buffer.getvalue()}

    # --- prediction -------------------------------------------------------------------------------------------
    def prediction_record(self, row: str, proba: np.ndarray, label_space: Sequence[str],
                          top_k: int | None = None, *, interval: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"input": row, "value": the predicted value}`` (``top_k`` does not apply), with ``low`` and ``high``
        (and the interval's ``level``) when the model carries a prediction interval."""
        value = float(np.asarray(proba).reshape(-1)[0])
        if interval is None:
            return {"input": row, "value": value}
        return {"input": row, "value": value, "low": value - interval["half_width"],
                "high": value + interval["half_width"], "level": interval["level"]}

    def prediction_table(self, records: Sequence[dict[str, Any]], label_space: Sequence[str]) -> list[list[str]]:
        """Columns ``input, value`` (and ``low, high`` when the records have an interval)."""
        if records and "low" in records[0]:
            return [["input", "value", "low", "high"],
                    *([r["input"], f"{r['value']:.6g}", f"{r['low']:.6g}", f"{r['high']:.6g}"] for r in records)]
        return [["input", "value"], *([r["input"], f"{r['value']:.6g}"] for r in records)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
