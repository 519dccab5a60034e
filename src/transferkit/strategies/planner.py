"""``fit --strategy auto``: choose among linear-probe, lp-ft, finetune and lora from the data and a time budget.

What the planner looks at, all measured on the training data before any training (its own measurements use at
most :data:`PLANNER_SHOTS` examples per class, so that planning stays a small part of a budget on large data):

- labels per class (the smallest and the median count), the number of classes and the modality;
- the backbone's transferability: its LogME score on the training features (and the ranking, when ``--backbone
  auto`` chose the backbone);
- the gap between the linear probe on the frozen features and the same probe on raw inputs (pixels or TF-IDF),
  both cross-validated on the training data: how much the pretrained features are worth here;
- the cost of each strategy, from a timed probe of the step time (forward + backward + update of one training
  batch on a copy of the backbone) times the steps an epoch takes, plus the probe's measured cost.

The rules, in order (thresholds are the module constants below):

1. Fewer than :data:`FEW_SHOT_MAX` labels per class (median): the candidates are measured on repeated stratified
   folds of the training data (:mod:`transferkit.strategies.selection_by_cv`): the probe, the probe started from
   the class names (text), and the modality's few-shot training strategies (contrastive tuning for text,
   fine-tuning for images) when the budget allows; the best on the shared folds is chosen, never one that measured
   worse than the probe. Updating millions of weights on so few labels often overfits (Kumar et al. 2022), and
   often helps (SetFit, Tunstall et al. 2022): only the user's data says which. Without two examples of every
   class, or for a backbone without pretrained weights, the linear probe, the cheapest.
2. From :data:`FEW_SHOT_MAX` to :data:`LARGE_DATA_MIN` labels per class: lp-ft, which fine-tunes from the probe's
   head and keeps the features near the pretrained ones (Kumar et al. 2022), also where the probe loses to raw
   inputs: finetune from a new head matched or lost to it in every setting measured at this size
   (``benchmarks/results/auto.json``: Fashion-MNIST 100/class 0.698 vs 0.702, VADER 0.721 / 0.728 vs 0.878 /
   0.798). lp-ft also keeps the probe as its result when no fine-tuning epoch beats it on the validation data, so
   the choice costs nothing where the probe was enough.
3. From :data:`LARGE_DATA_MIN` labels per class: finetune, enough labels to move every weight and to train a new
   head (Fashion-MNIST 1,000/class: finetune 0.838 against lp-ft 0.811, 3 seeds); lora instead for backbones of
   more than :data:`LORA_MIN_PARAMETERS` parameters (low-rank adapters match full fine-tuning on large transformers
   at a fraction of the trainable parameters; Hu et al. 2021).
4. A backbone without pretrained weights (``random:...``): finetune; there are no pretrained features to keep
   and a probe on random features is no head to start from.
5. The budget: a training strategy gets as many epochs (up to ``epochs``) as its estimated cost allows in the time
   left after planning (halved when the from-scratch baseline also runs). If not even :data:`MIN_EPOCHS` fit,
   the planner falls back to the linear probe, whose cost it has already paid (the features are cached). Training
   also stops when the time is spent (a time limit on the engine), so an estimate that was off cannot overrun it.
6. Enough updates: fine-tuning from a new head that can take fewer than :data:`MIN_TRAINING_STEPS` optimiser steps
   in all (epochs allowed x steps per epoch) barely trains that head, let alone the backbone (the warm-up alone
   takes a tenth of them); finetune and lora then give way to lp-ft, whose head starts as the converged probe, so
   that the few updates only refine it.

The choice and its reasons are one paragraph, printed and saved in the run config (``plan``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.strategies.registry import get_strategy

log = logging.getLogger("transferkit")

FEW_SHOT_MAX = 20
LARGE_DATA_MIN = 300
LORA_MIN_PARAMETERS = 60_000_000
MIN_EPOCHS = 2
MIN_TRAINING_STEPS = 60
#: The planner's probe, raw baseline and LogME run on at most this many examples per class (a seeded sample).
PLANNER_SHOTS = 200
TIMED_STEPS = 2


@dataclass
class StrategyPlan:
    """The planner's decision: a strategy, the epochs it may train, why, and the facts behind it."""

    strategy: str
    epochs: int | None
    explanation: str
    facts: dict[str, Any] = field(default_factory=dict)
    estimates_s: dict[str, float] = field(default_factory=dict)
    budget_s: float | None = None
    planning_s: float = 0.0
    training_time_limit_s: float | None = None
    #: Options the chosen strategy runs with (the label-name prior of the probe, chosen by measurement).
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_training_step(backbone, train: Dataset, classes: list[str], batch_size: int, device: str = "cpu",
                       steps: int = TIMED_STEPS, strategy: Any = None) -> float:
    """Seconds of one training step (forward, loss, backward, AdamW update) on a batch of real training examples,
    median of ``steps`` timed steps after one warm-up, on a copy of ``backbone`` (BatchNorm statistics and weights
    of the original stay untouched). Without ``strategy``: every parameter trains on the cross-entropy; with a
    :class:`~transferkit.strategies.base.TrainingStrategy`: its own trainable parameters and loss terms (a strategy
    that trains the top layers only backpropagates through those)."""
    import torch

    from transferkit.features.extract import resolve_device
    from transferkit.models.heads import LinearHead

    device_t = resolve_device(device)
    copy_ = copy.deepcopy(backbone).to(device_t).train()
    head = LinearHead(copy_.num_features, len(classes)).to(device_t)
    n = min(batch_size, len(train))
    items = [copy_.prepare(train.items[i]) for i in range(n)]
    batch = copy_.batch_to(copy_.collate(items), device_t)
    labels = torch.as_tensor(train.label_array(classes)[:n], device=device_t)
    model = torch.nn.Sequential()  # what a strategy's step trains: head(backbone.forward_features(x))
    model.backbone, model.head = copy_, head
    model.forward = lambda inputs: head(copy_.forward_features(inputs))
    if strategy is not None:
        strategy.prepare(model, {})
    params = [p for p in [*copy_.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        loss = (torch.nn.functional.cross_entropy(head(copy_.forward_features(batch)), labels) if strategy is None
                else sum(strategy.loss_terms(model, batch, labels).values()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device_t.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - start)
    del copy_, head, model, optimizer
    return float(np.median(times)) * batch_size / n  # a partial batch is scaled to a full one


def _cv_accuracy(probe) -> float:
    return float(max(probe.validation_scores_.values())) if probe.validation_scores_ else float("nan")


def plan_strategy(train: Dataset, config: Any, backbone, *, budget_s: float | None = None, cache=None,
                  ranking_facts: dict[str, Any] | None = None, started: float | None = None,
                  scratch_runs: bool = False, lora_min_parameters: int = LORA_MIN_PARAMETERS,
                  label_prototypes: np.ndarray | None = None, backbone_name: str | None = None) -> StrategyPlan:
    """Choose a strategy for ``train`` with ``backbone`` (see the module docstring for the rules).

    ``started`` is when the run began (``time.perf_counter()``), so that loading and planning count against
    ``budget_s``; ``scratch_runs`` says whether the from-scratch baseline will train too (it takes as long).
    Few labels per class: the candidates are measured on folds of ``train``
    (:mod:`transferkit.strategies.selection_by_cv`; ``label_prototypes``: the class texts' embedding, ``(classes,
    features)``, for the label-name probe; ``backbone_name``: what each fold's fresh backbone is built from).
    """
    started = time.perf_counter() if started is None else started
    t0 = time.perf_counter()
    classes = train.classes
    counts = np.bincount(train.label_array(classes), minlength=len(classes))
    per_class_min, per_class_median = int(counts.min()), float(np.median(counts))
    n_params = int(sum(p.numel() for p in backbone.parameters()))
    facts: dict[str, Any] = {"n_train": len(train), "n_classes": len(classes), "modality": train.modality,
                             "per_class_min": per_class_min, "per_class_median": per_class_median,
                             "backbone": backbone.name, "backbone_parameters": n_params}
    if ranking_facts and "backbone_ranking" in ranking_facts:
        ranked = ranking_facts["backbone_ranking"]["candidates"]
        facts["ranking"] = [r["name"] for r in ranked]
    probed = _probe_against_raw(train, counts, config, backbone, cache, facts)
    sample, X, y_sample = probed.sample, probed.features, probed.labels
    probe_acc, raw_acc = probed.probe_accuracy, probed.raw_accuracy

    # cost estimates (seconds)
    probe_cost = probed.cost_s
    estimates: dict[str, float] = {"linear-probe": round(probe_cost, 2)}
    measured = None
    if per_class_median < FEW_SHOT_MAX and per_class_min >= 2 and not backbone.name.startswith("random:"):
        measured = _measure_few_shot(sample, X, y_sample, config, backbone, backbone_name, label_prototypes,
                                     budget_s - (time.perf_counter() - started) if budget_s is not None else None)
        facts["measured"] = measured[2]
    wants_training = per_class_median >= FEW_SHOT_MAX or (measured is not None and measured[0] != "linear-probe")
    epoch_s = _training_estimates(train, config, backbone, probe_cost, estimates, facts) if wants_training else None

    # the rules
    if measured is not None:
        strategy, reason = measured[0], measured[1]
    elif not wants_training:
        strategy = "linear-probe"
        reason = (f"with fewer than {FEW_SHOT_MAX} labels per class, updating the backbone's weights overfits and "
                  "distorts its features, so the linear probe on cached features is used")
    elif backbone.name.startswith("random:"):
        strategy = "finetune"
        reason = ("the backbone has no pretrained weights, so there are no pretrained features to keep and a probe "
                  "on its random features is no head to start from: the whole network is trained")
    elif per_class_median >= LARGE_DATA_MIN and n_params > lora_min_parameters:
        strategy = "lora"
        reason = (f"with {LARGE_DATA_MIN} or more labels per class the network should adapt, and for a backbone of "
                  f"{n_params / 1e6:.0f}M parameters low-rank adapters get close to full fine-tuning while training "
                  "a small fraction of the weights")
    elif per_class_median >= LARGE_DATA_MIN:
        strategy = "finetune"
        reason = (f"with {LARGE_DATA_MIN} or more labels per class there is enough data to move every weight and to "
                  "train a new head, so the whole network is fine-tuned")
    else:
        strategy = "lp-ft"
        features = ("the pretrained features are worth keeping" if probe_acc >= raw_acc else
                    "even where the probe loses to raw inputs the probe's head is a better start than a new one")
        reason = (f"with {FEW_SHOT_MAX} to {LARGE_DATA_MIN} labels per class fine-tuning can help, and starting "
                  f"from the probe's head (lp-ft) keeps the first gradients from tearing the features apart "
                  f"({features}); if no fine-tuning epoch beats the probe on the validation data, the probe is kept")

    planning_s = time.perf_counter() - t0
    fitted = _fit_to_budget(strategy, reason, config, budget_s, time.perf_counter() - started, scratch_runs,
                            epoch_s, facts)
    strategy, epochs, limit = fitted.strategy, fitted.epochs, fitted.limit_s
    explanation = _explanation(fitted, facts, estimates, config, budget_s)
    return StrategyPlan(strategy=strategy, epochs=epochs, explanation=explanation, facts=facts,
                        estimates_s=estimates, budget_s=budget_s, planning_s=round(planning_s, 3),
                        training_time_limit_s=round(limit, 2) if limit is not None else None,
                        options=measured[3] if measured is not None and strategy == measured[0] else {})


@dataclass
class _ProbeMeasurement:
    """The probe and the raw baseline cross-validated on (a sample of) the training data."""

    sample: Dataset
    features: np.ndarray
    labels: np.ndarray
    probe_accuracy: float
    raw_accuracy: float
    cost_s: float  # the probe's features and fit on the whole training data, estimated (seconds)


def _probe_against_raw(train: Dataset, counts: np.ndarray, config: Any, backbone, cache,
                       facts: dict[str, Any]) -> _ProbeMeasurement:
    """The probe and the raw baseline, cross-validated on (a sample of) the training data (features through the
    cache); on large data the sample keeps planning short, and its costs are scaled up to the whole set. Their
    accuracies, the features' cost and LogME go into ``facts``."""
    from transferkit.data.splits import sample_per_class
    from transferkit.estimators.linear_probe import LinearProbe
    from transferkit.evaluation.baselines import RawInputEncoder
    from transferkit.features.extract import ExtractionStats, extract_features
    from transferkit.selection.scores import logme_score

    classes = train.classes
    sample = sample_per_class(train, PLANNER_SHOTS, config.seed) if counts.max() > PLANNER_SHOTS else train
    y_sample = sample.label_array(classes)
    scale = len(train) / len(sample)
    stats = ExtractionStats()
    X = extract_features(backbone, sample, cache=cache, batch_size=config.batch_size, device=config.device,
                         num_workers=config.num_workers, progress=config.progress, stats=stats)
    start = time.perf_counter()
    probe = LinearProbe(random_state=config.seed).fit(X, y_sample)
    probe_fit_s = time.perf_counter() - start
    encoder = RawInputEncoder().fit(sample)
    raw = LinearProbe(standardize=encoder.standardize, random_state=config.seed).fit(encoder.transform(sample),
                                                                                    y_sample)
    probe_acc, raw_acc = _cv_accuracy(probe), _cv_accuracy(raw)
    facts.update(probe_cv_accuracy=probe_acc, raw_cv_accuracy=raw_acc, probe_minus_raw=probe_acc - raw_acc,
                 measured_on=len(sample), feature_seconds=round(stats.seconds, 3),
                 features_from_cache=stats.from_cache)
    try:
        facts["logme"] = float(logme_score(X, y_sample))
    except Exception as exc:  # a score is informative only; the plan does not depend on it
        facts["logme"] = None
        log.debug("planner: LogME failed (%s)", exc)
    # (the probe's search is about linear in the examples)
    return _ProbeMeasurement(sample, X, y_sample, probe_acc, raw_acc, (stats.seconds + probe_fit_s) * scale)


def _explanation(fitted: "_BudgetFit", facts: dict[str, Any], estimates: dict[str, float], config: Any,
                 budget_s: float | None) -> str:
    """The plan in words: the data's size, the probe against raw inputs, the reason, the budget and the costs."""
    size = (f"{facts['per_class_median']:g} labelled examples per class (median; smallest {facts['per_class_min']}) "
            f"in {facts['n_classes']} classes of {facts['modality']} data")
    probe_acc, raw_acc = facts["probe_cv_accuracy"], facts["raw_cv_accuracy"]
    gap_text = (f"the linear probe on {facts['backbone']}'s frozen features reaches {probe_acc:.3f} cross-validated "
                f"accuracy against {raw_acc:.3f} for raw inputs ({100 * (probe_acc - raw_acc):+.1f} points)")
    logme_text = f" (LogME {facts['logme']:.3f})" if facts.get("logme") is not None else ""
    costs = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in estimates.items())
    return (f"Strategy {fitted.strategy}: the training data has {size}; {gap_text}"
            f"{logme_text}. "
            f"{fitted.reason[0].upper() + fitted.reason[1:]}.{fitted.budget_text}"
            f"{f' Estimated costs at {config.epochs} epochs: {costs}.' if len(estimates) > 1 else ''}"
            f"{f' Budget {budget_s:.0f} s.' if budget_s is not None else ''}")


def _training_estimates(train: Dataset, config: Any, backbone, probe_cost: float, estimates: dict[str, float],
                        facts: dict[str, Any]) -> float:
    """The seconds of one training epoch, from a timed training step; the training strategies' costs go into
    ``estimates`` and the step's figures into ``facts``."""
    step_s = time_training_step(backbone, train, train.classes, config.batch_size, config.device)
    n_fit = len(train) * (1 - config.val_fraction)
    n_val = len(train) * config.val_fraction
    steps = math.ceil(n_fit / config.batch_size)
    infer_s = step_s / 3 / config.batch_size  # a forward pass is about a third of a training step
    epoch_s = steps * step_s + n_val * infer_s
    facts.update(step_seconds=round(step_s, 4), steps_per_epoch=steps, epoch_seconds_estimate=round(epoch_s, 2))
    test_s = len(train) * config.test_fraction / (1 - config.test_fraction) * infer_s
    per_epochs = config.epochs
    estimates["finetune"] = round(per_epochs * epoch_s + test_s, 2)
    estimates["lp-ft"] = round(probe_cost + per_epochs * epoch_s + test_s, 2)
    estimates["lora"] = round(per_epochs * epoch_s * get_strategy("lora").step_cost + test_s, 2)
    return epoch_s


@dataclass
class _BudgetFit:
    """The strategy and epochs that fit the budget, the time limit of training, and the reason's additions."""

    strategy: str
    reason: str
    epochs: int | None = None
    limit_s: float | None = None
    budget_text: str = ""


def _fit_to_budget(strategy: str, reason: str, config: Any, budget_s: float | None, elapsed: float,
                   scratch_runs: bool, epoch_s: float | None, facts: dict[str, Any]) -> _BudgetFit:
    """The epochs of a training strategy that fit in what the budget leaves (the linear probe when not even
    :data:`MIN_EPOCHS` fit; lp-ft when a new head would get fewer than :data:`MIN_TRAINING_STEPS` updates)."""
    fit = _BudgetFit(strategy, reason)
    if not get_strategy(strategy).trains_network:
        return fit
    fit.epochs = config.epochs
    if budget_s is not None:
        left = max(budget_s - elapsed, 0.0)
        share = left / 2 if scratch_runs else left
        per_epoch = epoch_s * get_strategy(strategy).step_cost
        fit_epochs = int(share // per_epoch) if per_epoch > 0 else config.epochs
        if fit_epochs < MIN_EPOCHS:
            fit.budget_text = (f" That would need about {MIN_EPOCHS * per_epoch:.0f} s for {MIN_EPOCHS} epochs"
                               f"{' (and as long again for the from-scratch baseline)' if scratch_runs else ''}, but "
                               f"the budget leaves {left:.0f} s, so the linear probe is used, whose features are "
                               "already computed.")
            fit.reason += "; but the budget is too small for it"
            fit.strategy, fit.epochs = "linear-probe", None
        else:
            fit.epochs = min(config.epochs, fit_epochs)
            fit.limit_s = share
            fit.budget_text = (f" Each epoch is estimated at {per_epoch:.1f} s from a timed training step, so "
                               f"{fit.epochs} epoch{'s' if fit.epochs != 1 else ''} fit in the {left:.0f} s the budget "
                               f"leaves{' (shared with the from-scratch baseline)' if scratch_runs else ''}; "
                               f"training stops at {share:.0f} s in any case.")
    epochs = fit.epochs
    total_steps = epochs * math.ceil(facts["steps_per_epoch"] / config.accumulate) if epochs is not None else None
    if total_steps is not None and total_steps < MIN_TRAINING_STEPS and get_strategy(fit.strategy).new_head:
        fit.budget_text += (f" But {epochs} epoch{'s' if epochs != 1 else ''} of {facts['steps_per_epoch']} steps "
                            f"make only {total_steps} optimiser updates (fewer than {MIN_TRAINING_STEPS}): too few to "
                            f"train a new head, so lp-ft is used instead, whose head starts as the converged probe.")
        fit.strategy = "lp-ft"
    return fit


def _measure_few_shot(train: Dataset, X: np.ndarray, y: np.ndarray, config: Any, backbone, backbone_name: str | None,
                      prototypes: np.ndarray | None, time_left_s: float | None
                      ) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """The candidates measured on folds of the training data: (strategy, reason, facts, options of the choice)."""
    from transferkit.modalities import get_modality
    from transferkit.strategies.selection_by_cv import choose, measure_candidates, measured_facts

    candidates, folds = measure_candidates(
        train, X, y, config, backbone=backbone, backbone_name=backbone_name or backbone.name, prototypes=prototypes,
        strategies=get_modality(train.modality).few_shot_strategies, time_left_s=time_left_s,
        time_step=time_training_step)
    best, reason = choose(candidates, folds)
    return best.strategy, reason, measured_facts(candidates, folds), best.options
