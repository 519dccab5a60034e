"""Single-label classification: each example has exactly one class out of a fixed set learnt from the training data.

A label is a string (a number in a table becomes its text: ``3.0`` -> ``"3"``); the head is a linear layer with
one logit per class, trained by cross-entropy; the probe is a logistic regression on frozen features; the metrics
are accuracy, macro-F1, per-class precision / recall / F1, the confusion matrix and calibration (ECE, NLL); the
verdict compares accuracy by a paired bootstrap over test examples; ``predict`` gives the most likely class and the
probabilities of the ``top_k`` most likely ones.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from transferkit.tasks.base import Task


class SingleLabelClassification(Task):
    """The ``classification`` task (see the module docstring). Targets are class indices ``(N,)`` (int64)."""

    name = "classification"
    description = "single-label classification: one class per example, softmax and cross-entropy"
    output_noun = "classes"
    loss_name = "cross_entropy"
    output_loss_name = "log_loss"
    measure = "accuracy"
    summary_columns = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))
    reads_class_folders = True
    uses_label_names = True
    calibrates = True

    # --- labels -----------------------------------------------------------------------------------------------
    def parse_labels(self, values: Sequence[Any], places: Sequence[str], column: str) -> list[str]:
        from transferkit.data.sources import label_cell

        return [label_cell(value, place, column) for value, place in zip(values, places)]

    def check_labels(self, labels: list[str], row_ids: Sequence[str], origin: str, *, normalize: bool,
                     column: str | None = None) -> list[str]:
        from transferkit.data.sources import check_label_spellings, check_numeric_labels

        if column is not None:
            check_numeric_labels(labels, column, origin)
        return check_label_spellings(labels, row_ids, origin, normalize)

    def label_space(self, dataset: Any) -> list[str]:
        return dataset.classes

    def targets(self, dataset: Any, label_space: Sequence[str], *, normalize: bool = False) -> np.ndarray:
        return dataset.label_array(label_space, normalize=normalize)

    def strata(self, labels: Sequence[Any]) -> list[str]:
        return list(labels)

    def check_training_labels(self, dataset: Any, *, min_classes: int = 2) -> None:
        from transferkit.data.validation import check_class_counts

        check_class_counts(dataset, min_classes=min_classes)

    def check_split_labels(self, train: Any, other: Any, *, normalize: bool = False) -> None:
        from transferkit.data.validation import check_unseen_labels

        check_unseen_labels(train, other, normalize_labels=normalize)

    # --- model and training -----------------------------------------------------------------------------------
    def new_head(self, in_features: int, label_space: Sequence[str], targets: np.ndarray | None = None) -> Any:
        from transferkit.models.heads.linear import LinearHead

        return LinearHead(in_features, len(label_space))

    def loss(self, outputs: Any, targets: Any, *, head: Any = None) -> Any:
        """Cross-entropy of logits ``(N, classes)`` against class indices ``(N,)`` or class probabilities
        ``(N, classes)`` (mixup / cutmix)."""
        from torch.nn import functional as F

        return F.cross_entropy(outputs, targets)

    def distillation_terms(self, student_outputs: Any, teacher_outputs: Any, targets: Any, *, temperature: float,
                           alpha: float, head: Any = None) -> dict[str, Any]:
        """Hinton et al.'s soft targets (the teachers' averaged tempered probabilities) and the cross-entropy
        (:func:`~transferkit.losses.distillation.classification_distillation_terms`)."""
        from transferkit.losses.distillation import classification_distillation_terms, ensemble_soft_logits

        labels = targets.reshape(len(targets), -1)[:, 0].long()
        return classification_distillation_terms(student_outputs, ensemble_soft_logits(teacher_outputs, temperature),
                                                 labels, temperature=temperature, alpha=alpha)

    def validation_figures(self, outputs: Any, targets: Any, *, head: Any = None) -> dict[str, Any]:
        from torch.nn import functional as F

        return {"loss": F.cross_entropy(outputs.float(), targets),
                "score": (outputs.argmax(dim=1) == targets).float().mean()}

    def proba_from_outputs(self, outputs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Softmax of ``outputs / temperature`` over the classes."""
        import torch

        logits = torch.from_numpy(np.ascontiguousarray(outputs, dtype=np.float32))
        return torch.softmax(logits / temperature, dim=1).numpy()

    def explained_scores(self, outputs: Any, temperature: float = 1.0) -> Any:
        """Log-probabilities of the classes (log-softmax of ``outputs / temperature``)."""
        import torch

        return torch.log_softmax(outputs / temperature, dim=1)

    def new_probe(self, *, C: float | None = None, seed: int = 0, **options: Any) -> Any:
        from transferkit.estimators.linear_probe import LinearProbe

        prototypes = options.pop("prototypes", None)
        if prototypes is not None:  # the label-name prior: the probe starts from the zero-shot classifier
            from transferkit.estimators.label_names import PrototypeProbe

            return PrototypeProbe(prototypes, C=C, random_state=seed, **options)
        return LinearProbe(C=C, random_state=seed, **options)

    def transferability(self, score: str, values: np.ndarray, targets: np.ndarray) -> float:
        """The registered score itself (every score is defined for class indices)."""
        from transferkit.selection.scores import get_score

        return float(get_score(score).function(values, targets))

    # --- evaluation -------------------------------------------------------------------------------------------
    def predictions(self, proba: np.ndarray) -> np.ndarray:
        return np.asarray(proba).argmax(axis=1)

    def metrics(self, y_true: np.ndarray, proba: np.ndarray, label_space: Sequence[str]) -> dict[str, Any]:
        from transferkit.evaluation.calibration import calibration_summary

        return {**self.prediction_metrics(y_true, self.predictions(proba), label_space),
                "calibration": calibration_summary(y_true, proba)}

    def prediction_metrics(self, y_true: np.ndarray, y_pred: np.ndarray, label_space: Sequence[str]) -> dict[str, Any]:
        from transferkit.evaluation.metrics import classification_metrics

        return classification_metrics(y_true, y_pred, label_space)

    def fold_metrics(self, y_true: np.ndarray, proba: np.ndarray | None, y_pred: np.ndarray,
                     label_space: Sequence[str]) -> dict[str, float]:
        from transferkit.evaluation.calibration import expected_calibration_error, negative_log_likelihood

        m = self.prediction_metrics(y_true, y_pred, label_space)
        out = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
        if proba is not None:
            out["ece"] = expected_calibration_error(y_true, proba)
            out["nll"] = negative_log_likelihood(y_true, proba)
        return out

    def output_loss(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        """Mean log-loss of the class probabilities ``(N, C)`` at the labels ``(N,)``."""
        y = np.asarray(y_true, dtype=np.int64)
        picked = np.clip(np.asarray(proba, dtype=np.float64)[np.arange(len(y)), y], 1e-12, 1.0)
        return float(-np.mean(np.log(picked)))

    def prediction_interval(self, y_true: np.ndarray, proba: np.ndarray, level: float, *,
                            calibrated_on: str) -> dict[str, Any] | None:
        """None: the outputs are probabilities, not values with an interval."""
        return None

    def per_example_scores(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """1.0 where the prediction is right, else 0.0 (their mean is the accuracy)."""
        from transferkit.evaluation.verdict import right_or_wrong

        return right_or_wrong(y_true, y_pred)

    def evidence(self, train: Any, test: Any, y_true: np.ndarray, proba: np.ndarray, label_space: Sequence[str], *,
                 val: Any = None, seed: int = 0) -> dict[str, str]:
        from transferkit.reporting.evidence import fit_evidence

        return fit_evidence(train, test, y_true, proba, label_space, val=val, seed=seed)

    # --- prediction -------------------------------------------------------------------------------------------
    def prediction_record(self, row: str, proba: np.ndarray, label_space: Sequence[str],
                          top_k: int | None = None, *, interval: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"input": row, "label": most likely class, "probabilities": {class: p}}`` for the ``top_k`` most
        likely classes (all when ``None``), most likely first."""
        order = np.argsort(-proba)[: top_k or len(proba)]
        return {"input": row, "label": label_space[int(order[0])],
                "probabilities": {label_space[int(i)]: float(proba[i]) for i in order}}

    def prediction_table(self, records: Sequence[dict[str, Any]], label_space: Sequence[str]) -> list[list[str]]:
        """Columns ``input, label, p_<class>...``; a class outside a record's top-k has an empty cell."""
        def cell(probability: float | None) -> str:
            return "" if probability is None else f"{probability:.6f}"

        return [["input", "label", *[f"p_{c}" for c in label_space]],
                *([r["input"], r["label"], *[cell(r["probabilities"].get(c)) for c in label_space]] for r in records)]
