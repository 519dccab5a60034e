"""Multi-label classification: each example has a set of labels (tags) out of a fixed set learnt from training.

A label cell is a set: labels separated by ``|`` or ``;`` (``drama|comedy``), a JSON list (``["drama", "comedy"]``,
``[]`` for none), or a list when labels are given in Python. A set is kept as its sorted JSON list
(``'["comedy", "drama"]'``). The head is a linear layer with one logit per label, trained by binary cross-entropy on
per-label sigmoids; the probe is one-vs-rest logistic regression whose per-label thresholds, chosen on validation
data, are folded into the biases (0.5 decides every label); the metrics are micro-, macro- and example-based F1,
mAP, subset accuracy, Hamming loss and per-label precision / recall with bootstrap intervals; the verdict compares
example-based F1 by a paired bootstrap; ``predict`` gives the label set with each label's probability. Splits are
stratified by each row's rarest label.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Sequence

import numpy as np

from transferkit.tasks.base import Task

#: Separators of labels inside one cell, tried in this order.
SEPARATORS = ("|", ";")


def label_set_text(names: Sequence[str]) -> str:
    """A label set as it is kept: the sorted JSON list of its distinct names."""
    return json.dumps(sorted(set(names)), ensure_ascii=False)


def label_set(text: str) -> list[str]:
    """The names of a kept label set (:func:`label_set_text`)."""
    return json.loads(text)


def split_cell(value: Any, place: str, column: str) -> list[str]:
    """One cell as its label names; a missing cell, an empty name or a malformed JSON list is a DataError naming
    ``place``."""
    from transferkit.data.sources import is_blank
    from transferkit.errors import DataError

    if isinstance(value, (list, tuple, set, np.ndarray)):
        parts = list(value)
    elif is_blank(value):
        raise DataError(f"{place}: the {column} is missing or empty. Give the row's labels separated by '|' (or "
                        "'[]' for a row with none), or drop the row.")
    elif isinstance(value, dict):
        raise DataError(f"{place}: the {column} is a dict; give a list of labels or labels separated by '|'.")
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                parts = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{place}: the {column} starts like a JSON list but is not one ({exc.msg}); write it "
                                'as ["a", "b"] or as a|b.') from None
            if not isinstance(parts, list):
                raise DataError(f"{place}: the {column} is not a JSON list of labels.")
        else:
            separator = next((s for s in SEPARATORS if s in text), None)
            parts = text.split(separator) if separator else [text]
    names = []
    for part in parts:
        if isinstance(part, (list, tuple, dict, set)):
            raise DataError(f"{place}: the {column} holds a nested {type(part).__name__}; each label is a string.")
        if isinstance(part, (float, np.floating)) and float(part).is_integer():
            part = int(part)
        name = "" if part is None else str(part).strip()
        if not name:
            raise DataError(f"{place}: the {column} ({str(value)[:60]!r}) has an empty label (a separator at an end, "
                            "or two in a row); remove it.")
        names.append(name)
    return names


class MultiLabelClassification(Task):
    """The ``multilabel`` task (see the module docstring). Targets are 0/1 matrices ``(N, labels)`` (float32)."""

    name = "multilabel"
    description = "multi-label classification: a set of labels per example, per-label sigmoid and binary cross-entropy"
    output_noun = "labels"
    loss_name = "binary_cross_entropy"
    output_loss_name = "bce"
    label_sets = True
    measure = "example_f1"
    summary_columns = (("example_f1", "example-F1"), ("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"))
    transferability_scores = ("logme", "logme_no_intercept")

    # --- labels -----------------------------------------------------------------------------------------------
    def parse_labels(self, values: Sequence[Any], places: Sequence[str], column: str) -> list[str]:
        return [label_set_text(split_cell(value, place, column)) for value, place in zip(values, places)]

    def check_labels(self, labels: list[str], row_ids: Sequence[str], origin: str, *, normalize: bool,
                     column: str | None = None) -> list[str]:
        """Two spellings of one label (case, whitespace, Unicode form) are an error naming a row of each, or, with
        ``normalize``, folded into the more frequent spelling."""
        from transferkit.data.dataset import label_key
        from transferkit.errors import DataError

        counts = Counter(name for text in labels for name in label_set(text))
        by_key: dict[str, list[str]] = {}
        for name in counts:
            by_key.setdefault(label_key(name), []).append(name)
        clashes = {key: names for key, names in by_key.items() if len(names) > 1}
        if not clashes:
            return labels
        if not normalize:
            names = next(iter(clashes.values()))
            rows = [next(row for row, text in zip(row_ids, labels) if name in label_set(text)) for name in names[:2]]
            raise DataError(f"{origin}: label '{names[0]}' ({rows[0]}) and '{names[1]}' ({rows[1]}) differ only in "
                            "case, whitespace or Unicode form. Spell them alike, or pass --normalize-labels "
                            "(normalize_labels=True).")
        spelling = {name: max(names, key=lambda n: (counts[n], n)) for names in clashes.values() for name in names}
        return [label_set_text([spelling.get(name, name) for name in label_set(text)]) for text in labels]

    def label_space(self, dataset: Any) -> list[str]:
        from transferkit.data.dataset import sort_labels

        return sort_labels([name for text in dataset.labels or [] for name in label_set(text)])

    def targets(self, dataset: Any, label_space: Sequence[str], *, normalize: bool = False) -> np.ndarray:
        from transferkit.data.dataset import label_key
        from transferkit.errors import DataError

        if dataset.labels is None:
            raise DataError(f"{dataset.origin} has no labels; this step needs labelled data.")
        index = {name: j for j, name in enumerate(label_space)}
        if normalize:
            index.update({label_key(name): j for name, j in list(index.items())})
        Y = np.zeros((len(dataset.labels), len(label_space)), dtype=np.float32)
        for i, text in enumerate(dataset.labels):
            for name in label_set(text):
                j = index.get(name, index.get(label_key(name)) if normalize else None)
                if j is None:
                    raise DataError(f"{dataset.row_ids[i]}: label '{name}' was not seen in training (known: "
                                    f"{list(label_space)[:10]}). Remove it or add training examples with it.")
                Y[i, j] = 1.0
        return Y

    def strata(self, labels: Sequence[Any]) -> list[str]:
        """Each row's rarest label (by its count in ``labels``), "" for a row with none."""
        sets = [label_set(text) for text in labels]
        counts = Counter(name for names in sets for name in names)
        return [min(names, key=lambda n: (counts[n], n)) if names else "" for names in sets]

    def check_training_labels(self, dataset: Any, *, min_classes: int = 2) -> None:
        import warnings

        from transferkit.data.validation import DataWarning
        from transferkit.errors import DataError

        space = self.label_space(dataset)
        if len(space) < min_classes:
            raise DataError(f"{dataset.origin}: the training data has {len(space)} label(s) ({', '.join(space)}); "
                            f"multi-label classification needs at least {min_classes}. For one yes/no label use "
                            "--task-type classification.")
        counts = Counter(name for text in dataset.labels for name in label_set(text))
        always = [name for name in space if counts[name] == len(dataset)]
        single = [name for name in space if counts[name] == 1]
        if always:
            warnings.warn(f"{dataset.origin}: label(s) {always[:5]} are on every training row; they will always be "
                          "predicted.", DataWarning, stacklevel=4)
        if single:
            warnings.warn(f"{dataset.origin}: label(s) {single[:5]} have a single positive example; results for "
                          "them are unreliable.", DataWarning, stacklevel=4)

    def check_split_labels(self, train: Any, other: Any, *, normalize: bool = False) -> None:
        from transferkit.data.dataset import label_key
        from transferkit.errors import DataError

        known = self.label_space(train)
        spelled = {label_key(name): name for name in known}
        fixed = []
        for row, text in zip(other.row_ids, other.labels):
            names = []
            for name in label_set(text):
                if name not in spelled.values():
                    training = spelled.get(label_key(name))
                    if training is None:
                        raise DataError(f"{row}: label '{name}' never appears in the training data ({train.origin}); "
                                        "a model cannot learn it. Add training examples with it or remove it.")
                    if not normalize:
                        raise DataError(f"{row}: label '{name}' is spelled '{training}' in the training data "
                                        f"({train.origin}). Spell it alike, or pass --normalize-labels.")
                    name = training
                names.append(name)
            fixed.append(label_set_text(names))
        other.labels = fixed

    # --- model and training -----------------------------------------------------------------------------------
    def new_head(self, in_features: int, label_space: Sequence[str], targets: np.ndarray | None = None) -> Any:
        from transferkit.models.heads import LinearHead

        return LinearHead(in_features, len(label_space))

    def loss(self, outputs: Any, targets: Any, *, head: Any = None) -> Any:
        """Binary cross-entropy of per-label logits ``(N, labels)`` against 0/1 targets ``(N, labels)``."""
        from torch.nn import functional as F

        return F.binary_cross_entropy_with_logits(outputs.float(), targets.float())

    def validation_figures(self, outputs: Any, targets: Any, *, head: Any = None) -> dict[str, Any]:
        """The loss, and the example-based F1 at the 0.5 threshold as the score."""
        predicted = outputs > 0
        truth = targets > 0.5
        both = (predicted & truth).sum(dim=1).float()
        sizes = (predicted.sum(dim=1) + truth.sum(dim=1)).float()
        f1 = (2 * both / sizes.clamp(min=1)).where(sizes > 0, 1.0)
        return {"loss": self.loss(outputs, targets), "score": f1.mean()}

    def distillation_terms(self, student_outputs: Any, teacher_outputs: Any, targets: Any, *, temperature: float,
                           alpha: float, head: Any = None) -> dict[str, Any]:
        """Per-label binary KL to the teachers' averaged tempered sigmoids, and the binary cross-entropy on the true
        labels (:func:`~transferkit.losses.distillation.multilabel_distillation_terms`)."""
        from transferkit.losses.distillation import multilabel_distillation_terms

        return multilabel_distillation_terms(student_outputs, teacher_outputs, targets, temperature=temperature,
                                             alpha=alpha, hard_name=self.loss_name)

    def proba_from_outputs(self, outputs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Per-label sigmoid of ``outputs / temperature``."""
        scaled = np.asarray(outputs, dtype=np.float64) / temperature
        return (1.0 / (1.0 + np.exp(-scaled))).astype(np.float32)

    def new_probe(self, *, C: float | None = None, seed: int = 0, **options: Any) -> Any:
        from transferkit.estimators.task_probes import MultiLabelProbe

        return MultiLabelProbe(C=C, random_state=seed, **options)

    def transferability(self, score: str, values: np.ndarray, targets: np.ndarray) -> float:
        """LogME on the per-label 0/1 indicators (the form LogME gives one-hot classes, with several ones per
        row), the mean evidence over the labels that vary in ``targets`` (a label on every row or on none says
        nothing about the features)."""
        from transferkit.errors import DataError
        from transferkit.selection.scores import logme_regression_score
        from transferkit.tasks.regression import LOGME_INTERCEPT

        Y = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
        varying = Y.min(axis=0) != Y.max(axis=0)
        if not varying.any():
            raise DataError("every label is on every row or on none; no transferability score can be computed.")
        return logme_regression_score(values, Y[:, varying], intercept=LOGME_INTERCEPT[score])

    # --- evaluation -------------------------------------------------------------------------------------------
    def predictions(self, proba: np.ndarray) -> np.ndarray:
        return (np.asarray(proba) >= 0.5).astype(np.int64)

    def metrics(self, y_true: np.ndarray, proba: np.ndarray, label_space: Sequence[str]) -> dict[str, Any]:
        from transferkit.evaluation.task_metrics import multilabel_metrics

        return multilabel_metrics(y_true, self.predictions(proba), label_space, proba)

    def prediction_metrics(self, y_true: np.ndarray, y_pred: np.ndarray, label_space: Sequence[str]) -> dict[str, Any]:
        from transferkit.evaluation.task_metrics import multilabel_metrics

        return multilabel_metrics(y_true, y_pred, label_space)

    def fold_metrics(self, y_true: np.ndarray, proba: np.ndarray | None, y_pred: np.ndarray,
                     label_space: Sequence[str]) -> dict[str, float]:
        from transferkit.evaluation.task_metrics import multilabel_metrics

        m = multilabel_metrics(y_true, y_pred, label_space, proba)
        return {name: m[name] for name in ("example_f1", "micro_f1", "macro_f1", "map") if m.get(name) is not None}

    def output_loss(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        """Mean binary cross-entropy over examples and labels."""
        p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1 - 1e-12)
        y = np.asarray(y_true, dtype=np.float64)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def prediction_interval(self, y_true: np.ndarray, proba: np.ndarray, level: float, *,
                            calibrated_on: str) -> dict[str, Any] | None:
        """None: the outputs are probabilities, not values with an interval."""
        return None

    def per_example_scores(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        from transferkit.evaluation.task_metrics import example_f1_scores

        return example_f1_scores(y_true, y_pred)

    def evidence(self, train: Any, test: Any, y_true: np.ndarray, proba: np.ndarray, label_space: Sequence[str], *,
                 val: Any = None, seed: int = 0) -> dict[str, str]:
        """``predictions.csv``: every test row with its true and predicted label sets and each label's
        probability (the report's per-label precision / recall come from it)."""
        import csv
        import io

        predicted = self.predictions(proba)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["input", "labels", "predicted", *[f"p_{name}" for name in label_space]])
        for row, truth, chosen, p in zip(test.row_ids, y_true, predicted, proba):
            writer.writerow([row, "|".join(n for n, t in zip(label_space, truth) if t > 0),
                             "|".join(n for n, c in zip(label_space, chosen) if c), *[f"{v:.6f}" for v in p]])
        return {"predictions.csv": buffer.getvalue()}

    # --- prediction -------------------------------------------------------------------------------------------
    def prediction_record(self, row: str, proba: np.ndarray, label_space: Sequence[str],
                          top_k: int | None = None, *, interval: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"input": row, "labels": the predicted set (most likely first), "probabilities": {label: p}}`` for the
        ``top_k`` most likely labels (all when ``None``)."""
        order = np.argsort(-np.asarray(proba), kind="stable")
        return {"input": row, "labels": [label_space[int(j)] for j in order if proba[j] >= 0.5],
                "probabilities": {label_space[int(j)]: float(proba[j]) for j in order[: top_k or len(order)]}}

    def prediction_table(self, records: Sequence[dict[str, Any]], label_space: Sequence[str]) -> list[list[str]]:
        """Columns ``input, labels, p_<label>...`` (the set joined by ``|``; a label outside the top k is empty)."""
        def cell(probability: float | None) -> str:
            return "" if probability is None else f"{probability:.6f}"

        return [["input", "labels", *[f"p_{name}" for name in label_space]],
                *([r["input"], "|".join(r["labels"]), *[cell(r["probabilities"].get(n)) for n in label_space]]
                  for r in records)]
