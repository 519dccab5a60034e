"""``fit --unlabelled``: the probe trained with pseudo-labels of unlabelled examples, beside the same probe on the
labelled examples alone.

Steps of fit's probe path when ``unlabelled`` is given: read the unlabelled data (same modality), its features
through the feature cache, the check of its class mix against the labelled one (predicted by the labelled-only
probe; a warning when they differ), a decision on folds of the labelled data (curriculum pseudo-labelling is kept
only when it does not lower the held-out accuracy there: the test data never decides), and the labelled-only probe
as a row of the results with the task's verdict, on the same test split. The method is in
:mod:`transferkit.estimators.pseudo_labels`.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")

#: Name of the labelled-only probe's row among the results.
LABELLED_ONLY = "labelled-only"
#: Total variation distance between the labelled and the predicted unlabelled class mix above which fit warns.
MIX_WARNING = 0.25
#: Rounds of the confidence schedule.
ROUNDS = 5


def check_unlabelled_option(config: Any, entry: Any) -> None:
    """Before any work: ``unlabelled`` is used by the probe path only (a strategy that trains a network has no
    semi-supervised objective here yet)."""
    if config.unlabelled is not None and entry.trains_network:
        raise ConfigError(f"option 'unlabelled': semi-supervised fitting uses pseudo-labels on the frozen-feature "
                          f"probe (--strategy linear-probe); strategy '{config.strategy}' trains the network and has "
                          "no consistency objective yet. Use --strategy linear-probe, or drop --unlabelled.")


def _load_unlabelled(config: Any, train: Any) -> Any:
    from transferkit.data.sources import load_data
    from transferkit.data.validation import validate_dataset

    unlabelled = load_data(config.unlabelled, config, unlabelled=True)
    validate_dataset(unlabelled, role="unlabelled")
    if unlabelled.modality != train.modality:
        raise ConfigError(f"option 'unlabelled': {unlabelled.origin} holds {unlabelled.modality} data but the "
                          f"training data {train.origin} holds {train.modality}; give unlabelled {train.modality} data.")
    return unlabelled


def keep_by_folds(new_probe: Any, X: np.ndarray, y: np.ndarray, X_u: np.ndarray, seed: int) -> tuple[bool, dict]:
    """Whether pseudo-labelling is kept: its mean held-out accuracy over stratified folds of the labelled data is at
    least the labelled-only probe's (the unlabelled examples join every fold's training part)."""
    from sklearn.model_selection import StratifiedKFold

    from transferkit.estimators.pseudo_labels import curriculum_pseudo_labels

    folds = int(min(5, np.bincount(y)[np.bincount(y) > 0].min()))
    if folds < 2:
        return True, {"folds": 0, "reason": "a class has one labelled example: no folds; kept"}
    plain, semi = [], []
    for train_rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        plain.append(float((new_probe().fit(X[train_rows], y[train_rows]).predict(X[held]) == y[held]).mean()))
        probe, _ = curriculum_pseudo_labels(new_probe, X[train_rows], y[train_rows], X_u, rounds=ROUNDS)
        semi.append(float((probe.predict(X[held]) == y[held]).mean()))
    keep = np.mean(semi) >= np.mean(plain)
    return bool(keep), {"folds": folds, "labelled_only_accuracy": float(np.mean(plain)),
                        "pseudo_label_accuracy": float(np.mean(semi))}


def pseudo_label_probe(run: Any, probe: Any, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                       extract: dict[str, Any]) -> Any:
    """The probe ``fit`` keeps: curriculum pseudo-labelling with the unlabelled data when the folds of the labelled
    data do not advise against it, else ``probe`` (labelled only). The labelled-only probe becomes a row of
    ``run.baselines`` with its verdict; the facts go to ``run.strategy_facts`` / ``run.strategy_metrics``."""
    from transferkit.estimators.pseudo_labels import curriculum_pseudo_labels
    from transferkit.features.sharded import extract_features_sharded as extract_features

    config, task = run.config, run.task
    unlabelled = _load_unlabelled(config, run.train)
    X_u = extract_features(run.backbone, unlabelled, **extract)

    def new_probe() -> Any:
        return task.new_probe(C=probe.C_, seed=config.seed)

    keep, folds = keep_by_folds(new_probe, X_train, y_train, X_u, config.seed)
    semi, facts = curriculum_pseudo_labels(new_probe, X_train, y_train, X_u, rounds=ROUNDS)
    if facts.mix_distance > MIX_WARNING:
        warnings.warn(f"fit: the unlabelled data {unlabelled.origin} looks differently mixed from the labelled data "
                      f"(predicted class shares differ by {facts.mix_distance:.2f} in total variation); pseudo-labels "
                      "follow the labelled mix, so check that the unlabelled data is from the same task.", stacklevel=3)
    labelled_pred = task.predictions(probe.predict_proba(X_test))
    chosen = semi if keep else probe
    run.baselines[LABELLED_ONLY] = {**task.prediction_metrics(run.y_test, labelled_pred, run.classes),
                                    "description": "the same probe (same C) on the labelled examples alone"}
    run.comparisons.append(task.compare(run.y_test, task.predictions(chosen.predict_proba(X_test)), labelled_pred,
                                        LABELLED_ONLY, seed=config.seed))
    summary = {"unlabelled": len(unlabelled), "used": keep, "rounds": ROUNDS, "folds": folds, **facts.to_dict()}
    run.strategy_facts["pseudo_labels"] = summary
    run.strategy_metrics["pseudo_labels"] = summary
    log.info("fit: pseudo-labels %s (held-out accuracy on folds of the labelled data: %s)",
             "used" if keep else "not used: they lowered", folds)
    return chosen
