"""``fit --strategy auto`` on few labels per class: the candidates measured on the user's own training data.

With a handful of examples per class, no fixed rule knows whether the probe, the probe started from the class
names, or a network strategy (contrastive tuning of a text encoder, fine-tuning an image backbone) is best: it
depends on the data. So the planner measures them, on the same repeated stratified folds of the training data:

- ``linear-probe``: the probe on the cached frozen features (its ``C`` chosen inside each fold);
- ``linear-probe`` with the label-name prior (when the class names or descriptions have an embedding: text);
- the modality's few-shot training strategies (:attr:`~transferkit.modalities.base.Modality.few_shot_strategies`),
  each trained on every fold of the first repeat by the engine, when its estimated cost (a timed training step
  times the steps) fits the time left in ``--budget`` (without a budget, :data:`UNBUDGETED_MEASURE_S`); a
  candidate whose running mean falls :data:`BEHIND_BY` below the best probe on the same folds stops early.

The choice is the candidate with the best mean accuracy on the folds it shares with the probe; a candidate is
chosen over the probe only when it is strictly better on those folds, so ``auto`` never picks what measured worse
than the probe. The figures (mean, spread, folds, seconds) go into the plan's facts and explanation.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

#: Folds per repeat (fewer when the smallest class has fewer examples) and repeats for the probes.
FOLDS = 4
PROBE_REPEATS = 2
#: Folds of a training candidate: two halves, so that measuring costs about one training on all the data.
TRAINING_FOLDS = 2
#: Inner folds that choose each probe's C inside a measurement fold.
INNER_FOLDS = 3
#: Without --budget, network candidates are measured only if their folds are estimated to take at most this.
UNBUDGETED_MEASURE_S = 600.0
#: A forward pass (no gradient) as a share of a training step's time, and the factor for the engine's overheads
#: in a training candidate's estimate (:func:`training_estimate_s`).
FORWARD_SHARE = 0.5
ESTIMATE_OVERHEAD = 1.5
#: A training candidate this far below the best probe after its first fold stops early.
BEHIND_BY = 0.05
PROBE = "linear-probe"
LABEL_NAMES = "linear-probe + label names"


@dataclass
class Candidate:
    """One candidate's measurement: per-fold accuracies (fold order of :func:`measure_candidates`), seconds."""

    name: str
    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None
    #: A training candidate: the best probe's mean accuracy on the same folds (the paired reference).
    probe_on_same_folds: float | None = None
    #: A training candidate: the estimated seconds of its folds (compared with ``seconds`` once measured).
    estimate_s: float | None = None

    def mean(self, folds: int | None = None) -> float:
        values = self.scores[:folds] if folds else self.scores
        return float(np.mean(values)) if values else float("nan")

    def describe(self) -> str:
        if self.skipped and not self.scores:
            return f"{self.name}: not measured ({self.skipped})"
        spread = f" ± {np.std(self.scores):.3f}" if len(self.scores) > 1 else ""
        stop = f"; {self.skipped}" if self.skipped else ""
        paired = (f", the probe {self.probe_on_same_folds:.3f} on the same folds"
                  if self.probe_on_same_folds is not None else "")
        estimated = f", estimated {self.estimate_s:.0f} s" if self.estimate_s is not None else ""
        return (f"{self.name} {self.mean():.3f}{spread} ({len(self.scores)} folds{paired}, {self.seconds:.0f} s"
                f"{estimated}{stop})")


def measure_candidates(train: Any, X: np.ndarray, y: np.ndarray, config: Any, *, backbone: Any, backbone_name: str,
                       prototypes: np.ndarray | None, strategies: tuple[str, ...], time_left_s: float | None,
                       time_step: Callable[..., float]) -> tuple[list[Candidate], int]:
    """Every candidate measured on the same folds of ``train`` (features ``X`` ``(N, D)``, class indices ``y``);
    returns the candidates and the folds per repeat. ``time_step(backbone, train, classes, batch_size, device,
    strategy=...)``: seconds of one training step of that strategy (the cost estimate of a training candidate)."""
    from transferkit.strategies.registry import build_strategy

    from transferkit.evaluation.cross_validation import stratified_folds

    folds = min(FOLDS, int(np.bincount(y).min()))
    splits = stratified_folds(y, folds, PROBE_REPEATS, seed=config.seed)
    candidates = [_probe_candidate(PROBE, X, y, splits, config.seed, None)]
    if prototypes is not None:
        candidates.append(_probe_candidate(LABEL_NAMES, X, y, splits, config.seed, prototypes))
    best_probe = max(candidates, key=lambda c: (c.mean(), c.name == PROBE))
    if not strategies:
        return candidates, folds
    halves = stratified_folds(y, TRAINING_FOLDS, 1, seed=config.seed + 1)
    reference = _probe_candidate(best_probe.name, X, y, halves, config.seed,
                                 prototypes if best_probe.name == LABEL_NAMES else None)
    for name in strategies:
        started = time.perf_counter()
        step_s = time_step(backbone, train, list(train.classes), config.batch_size, config.device,
                           strategy=build_strategy(config.model_copy(update={"strategy": name})))
        candidates.append(_training_candidate(name, train, y, halves, config, step_s, backbone_name,
                                              reference.scores, time_left_s))
        if time_left_s is not None:
            time_left_s -= time.perf_counter() - started
    return candidates, folds


def _probe_candidate(name: str, X: np.ndarray, y: np.ndarray, splits: list, seed: int,
                     prototypes: np.ndarray | None) -> Candidate:
    from transferkit.estimators.label_names import PrototypeProbe
    from transferkit.estimators.linear_probe import LinearProbe

    start = time.perf_counter()
    candidate = Candidate(name, PROBE, {"label_prior": "on" if prototypes is not None else "off"})
    for a, b in splits:
        probe = (LinearProbe(cv=INNER_FOLDS, random_state=seed) if prototypes is None else
                 PrototypeProbe(prototypes, cv=INNER_FOLDS, random_state=seed))
        candidate.scores.append(float(np.mean(probe.fit(X[a], y[a]).predict(X[b]) == y[b])))
    candidate.seconds = time.perf_counter() - start
    return candidate


def _training_candidate(name: str, train: Any, y: np.ndarray, splits: list, config: Any, step_s: float,
                        backbone_name: str, probe_scores: list[float], time_left_s: float | None) -> Candidate:
    """A training strategy on each of the folds ``splits`` (``probe_scores``: the best probe's accuracy on each),
    if its estimated cost fits the time left."""
    from transferkit.evaluation.cross_validation import train_fold

    candidate = Candidate(name, name)
    classes = list(train.classes)
    fold_config = config.model_copy(update={"strategy": name, "budget": None, "calibrate": False})
    estimate = candidate.estimate_s = training_estimate_s(len(splits[0][0]), len(y), config, step_s) * len(splits)
    allowed = UNBUDGETED_MEASURE_S if time_left_s is None else time_left_s / 2  # the rest: the final training
    if estimate > allowed:
        candidate.skipped = (f"its {len(splits)} folds would take about {estimate:.0f} s, more than the "
                             f"{allowed:.0f} s {'allowed without --budget' if time_left_s is None else 'the budget leaves for measuring'}")
        return candidate
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="transferkit-auto-") as work:
        for index, (a, b) in enumerate(splits):
            proba, _ = train_fold(fold_config, backbone_name, train.subset(a, origin=f"fold {index + 1} training"),
                                  train.subset(b, origin=f"fold {index + 1} held out"), classes,
                                  f"{work}/fold{index}")
            candidate.scores.append(float(np.mean(np.argmax(proba, axis=1) == y[b])))
            done = len(candidate.scores)
            if done < len(splits) and candidate.mean() < float(np.mean(probe_scores[:done])) - BEHIND_BY:
                candidate.skipped = f"stopped after {done} fold(s), clearly behind the probe"
                break
    candidate.seconds = time.perf_counter() - start
    candidate.probe_on_same_folds = float(np.mean(probe_scores[:len(candidate.scores)]))
    return candidate


def training_estimate_s(n_train: int, n_all: int, config: Any, step_s: float) -> float:
    """Estimated seconds of one fold of a training candidate: ``config.epochs`` epochs of training steps on the
    ``n_train`` fold examples less the validation part (``step_s`` a full batch, a short batch its share), the
    validation part's forward pass each epoch, then the forward passes over all ``n_all`` examples (the head's
    features and the held-out predictions), a forward pass counted as :data:`FORWARD_SHARE` of a step; times
    :data:`ESTIMATE_OVERHEAD` (the engine's per-epoch work, the fresh backbone). Checked on WordNet glosses at 8 per
    class (all-MiniLM-L6-v2, contrastive, 10 epochs): about 1.1 x the measured seconds of a fold; counting every
    short batch as a full step had made it 1.6 x."""
    n_fit = n_train * (1 - config.val_fraction)
    steps = config.epochs * max(1.0, n_fit / config.batch_size)  # a short last batch costs its share of a step
    forward_examples = config.epochs * (n_train - n_fit) + n_all
    return (steps + forward_examples / config.batch_size * FORWARD_SHARE) * step_s * ESTIMATE_OVERHEAD


def choose(candidates: list[Candidate], folds: int) -> tuple[Candidate, str]:
    """The candidate to train, and the sentence that explains it with the measured figures. The probes compare on
    all their folds (ties: the plain probe); a training candidate that ran all its folds is chosen only when it is
    strictly better than the best probe on those same folds (the largest margin among such candidates)."""
    best = max((c for c in candidates if c.strategy == PROBE), key=lambda c: (c.mean(), c.name == PROBE))
    margin = 0.0
    for other in candidates:
        if other.strategy == PROBE or other.skipped or len(other.scores) != TRAINING_FOLDS:
            continue
        if other.mean() - other.probe_on_same_folds > margin:
            best, margin = other, other.mean() - other.probe_on_same_folds
    figures = "; ".join(c.describe() for c in candidates)
    reason = (f"measured on the training data, the probes on {folds} stratified folds x {PROBE_REPEATS} repeats "
              f"and training strategies on {TRAINING_FOLDS} stratified halves: {figures}; {best.name} is chosen, "
              "and nothing that measured worse than the probe on the same folds is")
    return best, reason


def measured_facts(candidates: list[Candidate], folds: int) -> dict[str, Any]:
    """What the run config records of the measurement."""
    return {"folds": folds, "probe_repeats": PROBE_REPEATS, "training_folds": TRAINING_FOLDS,
            "candidates": [{**asdict(c), "mean": round(c.mean(), 4) if c.scores else None} for c in candidates]}


__all__ = ["Candidate", "choose", "measure_candidates", "measured_facts"]
