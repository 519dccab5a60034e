"""Building blocks of ``adapt``: the candidates it tries and the context they read.

A candidate is one adapted model: a method of :mod:`transferkit.strategies.adaptation` with one trade-off weight,
trained on the shared engine (:func:`train_candidate`) or fitted on cached features (:func:`probe_candidate`), and
scored by every label-free validator. The verb that tries them, chooses and saves is
:func:`transferkit.workflows.adapt.adapt`.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.strategies.adaptation.config import AdaptConfig
from transferkit.strategies.adaptation.registry import TRAINED, get_adaptation_method, reference_method

log = logging.getLogger("transferkit")

@dataclass
class Candidate:
    """One adapted model that ``adapt`` considered: its method, trade-off, validator scores and predictions."""

    name: str
    method: str
    tradeoff: float | None
    head: Any
    backbone: Any
    scores: dict[str, float]
    target_proba: np.ndarray
    source_val_accuracy: float
    seconds: float
    best_epoch: int | None = None
    epoch_scores: list[tuple[int, float]] = field(default_factory=list)
    eval_proba: np.ndarray | None = None
    aligned: tuple[np.ndarray, np.ndarray] | None = None  # (source, target) features after adaptation
    facts: dict[str, Any] = field(default_factory=dict)
    logit_shift: np.ndarray | None = None  # added to its target logits: the move to a known target class mix

    def to_dict(self, eval_labels: np.ndarray | None, classes: list[str]) -> dict[str, Any]:
        row = {"name": self.name, "method": self.method, "tradeoff": self.tradeoff,
               "scores": {k: round(v, 6) for k, v in self.scores.items()},
               "target_predicted_fractions": class_fractions(self.target_proba.argmax(1), classes),
               "source_val_accuracy": round(self.source_val_accuracy, 4), "best_epoch": self.best_epoch,
               "seconds": round(self.seconds, 2), **self.facts}
        if self.logit_shift is not None:
            row["logit_shift"] = [round(float(v), 6) for v in self.logit_shift]
        if self.epoch_scores:
            row["epoch_scores"] = [[e, round(s, 6)] for e, s in self.epoch_scores]
        if eval_labels is not None and self.eval_proba is not None:
            row["target_accuracy"] = round(float(np.mean(self.eval_proba.argmax(1) == eval_labels)), 4)
        return row


def class_fractions(labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Share of each class among ``labels`` (class indices): compared between the source labels and the target
    predictions, it shows a shift of the class mix (label shift), which aligning the features does not correct."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    return {name: round(float(count) / max(len(labels), 1), 4) for name, count in zip(classes, counts)}


def candidate_grid(config: AdaptConfig) -> list[tuple[str, float | None]]:
    grid: list[tuple[str, float | None]] = []
    for method in config.methods_tried():
        entry = get_adaptation_method(method)
        if entry.starts_from is not None and config.train_backbone:
            if config.tries_candidates and config.candidates is None:
                continue  # the default candidates: only the methods that fine-tune
            raise ConfigError(f"method {method!r} starts from the linear probe on cached (frozen) features, so it "
                              "cannot run with train_backbone; drop one of them.")
        if entry.reference:
            values: Sequence[float] = (0.0,)
        elif not entry.tradeoffs:  # no target term to weigh (iw, the feature methods)
            grid.append((method, None))
            continue
        elif config.tradeoff is not None:
            values = (config.tradeoff,)
        else:
            values = (config.tradeoffs or {}).get(method, entry.tradeoffs)
        grid += [(method, float(v)) for v in values]
    reference = reference_method()
    if not any(m == reference for m, _ in grid):
        grid.insert(0, (reference, 0.0))  # always trained: the reference every method is compared with
    return grid


def candidate_name(method: str, tradeoff: float | None) -> str:
    return method if tradeoff is None or get_adaptation_method(method).reference else f"{method}@{tradeoff:g}"


# --- the context every candidate reads ----------------------------------------------------------------------------

@dataclass
class AdaptContext:
    config: AdaptConfig
    backbone: Any
    classes: list[str]
    train: Dataset
    val: Dataset
    target: Dataset
    evaluation: Dataset | None
    eval_is_target: bool
    y_train: np.ndarray
    y_val: np.ndarray
    X_train: np.ndarray
    X_val: np.ndarray
    X_target: np.ndarray
    X_eval: np.ndarray | None
    val_weights: np.ndarray
    train_weights: np.ndarray | None
    work_dir: Path
    target_prior: np.ndarray | None = None  # the target's class mix, when the user knows it

    def validation(self, target_proba: np.ndarray, val_proba: np.ndarray):
        from transferkit.evaluation.validators import ValidationData

        return ValidationData(target_proba, val_proba, self.y_val, self.val_weights, self.target_prior)

    def logit_shift(self, weights: np.ndarray | None = None) -> np.ndarray | None:
        """``log pi_target - log pi_source`` ``(C,)``: added to a model's logits, it moves its predictions from the
        class mix it was trained on (the source training rows, weighted as in training) to the known target mix
        (Bayes' rule for a change of class priors; Saerens et al. 2002). ``None`` without a known target mix."""
        if self.target_prior is None:
            return None
        counts = np.bincount(self.y_train, weights=weights, minlength=len(self.classes)).astype(np.float64)
        source = np.clip(counts / counts.sum(), 1e-12, None)
        return np.log(self.target_prior) - np.log(source)

    def all_scores(self, target_proba: np.ndarray, val_proba: np.ndarray) -> dict[str, float]:
        from transferkit.evaluation.validators import VALIDATORS, validate

        data = self.validation(target_proba, val_proba)
        return {name: validate(name, data) for name in VALIDATORS}


def softmax_numpy(logits) -> np.ndarray:
    return logits.float().softmax(dim=1).cpu().numpy()


def on_target(proba: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """Target-domain probabilities moved to the known target class mix (``shift`` from ``logit_shift``)."""
    if shift is None:
        return proba
    moved = np.asarray(proba, dtype=np.float64) * np.exp(shift)
    return (moved / moved.sum(axis=1, keepdims=True)).astype(np.float32)


def shifted_head(head, shift: np.ndarray | None):
    """A copy of ``head`` whose logits include ``shift`` (the bias of its last layer moved), so that the saved,
    exported and served model predicts what the validator scored."""
    if shift is None:
        return head
    import torch

    head = copy.deepcopy(head)
    last = head.classifier if hasattr(head, "classifier") else head.linear
    with torch.no_grad():
        last.bias += torch.as_tensor(shift, dtype=last.bias.dtype, device=last.bias.device)
    return head


def network_outputs(ctx: AdaptContext, network, which: str, what: str = "proba",
                     shift: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities (``what="proba"``) or bottleneck features (``"embed"``) of ``network`` on the source
    training / validation rows, the target, or the evaluation data; target-domain probabilities moved by
    ``shift`` (see :meth:`AdaptContext.logit_shift`)."""
    if shift is not None and what == "proba" and which in ("target", "eval"):
        return on_target(network_outputs(ctx, network, which, what), shift)
    import torch

    if network.backbone is None:
        features = {"train": ctx.X_train, "val": ctx.X_val, "target": ctx.X_target, "eval": ctx.X_eval}[which]
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            device = next(network.head.parameters()).device
            x = x.to(device)
            if what == "embed":
                embedded = network.head.embed(x) if hasattr(network.head, "embed") else x  # linear head: features
                return embedded.float().cpu().numpy()
            return softmax_numpy(network.head(x))
    from transferkit.features.extract import run_backbone

    dataset = {"train": ctx.train, "val": ctx.val, "target": ctx.target, "eval": ctx.evaluation}[which]
    head = network.head
    if what == "embed":
        def output(backbone, batch):
            features = backbone.forward_features(batch)
            return head.embed(features) if hasattr(head, "embed") else features
    else:
        def output(backbone, batch):
            return head(backbone.forward_features(batch)).float().softmax(dim=1)
    head_device = next(head.parameters()).device
    return run_backbone(network.backbone, dataset, batch_size=ctx.config.batch_size, device=head_device,
                        num_workers=ctx.config.num_workers, progress=False, output=output)


def train_candidate(ctx: AdaptContext, method: str, tradeoff: float | None,
                    start_from: Candidate | None = None) -> Candidate:
    """One trained method with one trade-off weight: its network built (warm-started from ``start_from`` when
    given), trained on the shared engine with the checkpoint the validator prefers kept, and scored."""
    config = ctx.config
    start = time.perf_counter()
    lr = config.lr or (1e-4 if config.train_backbone else 1e-3)
    head_lr = config.head_lr or (10 * lr if config.train_backbone else lr)
    entry = get_adaptation_method(method)
    network, plan, epochs = _candidate_network(ctx, method, tradeoff, start_from, head_lr / lr)
    weights = ctx.train_weights if entry.weights_source else None
    shift = ctx.logit_shift(weights)
    name = candidate_name(method, tradeoff)
    scored, outcome = _train_network(ctx, network, plan, name, epochs, lr, weights, shift)
    facts: dict[str, Any] = {"epochs_run": outcome.epochs_run, "lr": lr, "head_lr": head_lr,
                             "warm_start": start_from is not None}
    if entry.starts_from is not None:
        facts["started_from"] = start_from.name
    return _scored_candidate(ctx, network, method, tradeoff, name, scored, facts, weights, shift, start)


def _candidate_network(ctx: AdaptContext, method: str, tradeoff: float | None, start_from: Candidate | None,
                       head_lr_multiplier: float) -> tuple[Any, Any, int]:
    """The network a trained candidate starts from (head, the backbone when it is trained, the method's auxiliary
    modules), its plan and its number of epochs."""
    import torch

    from transferkit.models.heads.bottleneck import BottleneckHead
    from transferkit.strategies.adaptation.plan import AdaptationNetwork, AdaptationPlan

    config = ctx.config
    train_backbone = config.train_backbone
    plan = AdaptationPlan(method, tradeoff if tradeoff is not None else 0.0, backbone_trainable=train_backbone,
                          head_lr_multiplier=head_lr_multiplier,
                          threshold_start=config.threshold_start, threshold_end=config.threshold_end)
    torch.manual_seed(config.seed)  # every candidate starts from the same head (and backbone)
    probe_started = get_adaptation_method(method).starts_from is not None
    if probe_started:  # the source probe's linear head (standardisation built in), trained from where it is
        head = copy.deepcopy(start_from.head).train()
        for parameter in head.parameters():
            parameter.requires_grad_(True)
    else:
        head = BottleneckHead(ctx.X_train.shape[1], len(ctx.classes), hidden=config.hidden, dropout=config.dropout)
    if not train_backbone and not probe_started:
        # Frozen features: standardised once. A trained backbone's features move (and a random one's start near
        # zero, whose tiny deviations would scale every later change up), so the LayerNorm alone scales them.
        head.set_standardization(torch.from_numpy(np.vstack([ctx.X_train, ctx.X_target])))
    backbone = copy.deepcopy(ctx.backbone) if train_backbone else None
    if backbone is not None:
        backbone.invalidate_digest()
        for parameter in backbone.parameters():
            parameter.requires_grad_(True)
    epochs = config.epochs
    if start_from is not None and not probe_started:  # warm start: the source-only model's weights
        head.load_state_dict(start_from.head.state_dict())
        if backbone is not None:
            backbone.load_state_dict(start_from.backbone.state_dict())
        epochs = config.adapt_epochs or config.epochs
    network = AdaptationNetwork(head, backbone, plan.auxiliary_modules(config.hidden, len(ctx.classes), head))
    return network, plan, epochs


def _candidate_examples(ctx: AdaptContext, backbone: Any, weights: np.ndarray | None) -> tuple[Any, Any, Any]:
    """Paired (source, target) training examples, labelled source validation examples and their collate: cached
    features when the backbone is frozen, raw items prepared by the backbone when it is trained."""
    from transferkit.engine.data import LabelledExamples
    from transferkit.strategies.adaptation.plan import PairedExamples, identity, stack_rows

    config = ctx.config
    min_length = config.min_steps_per_epoch * config.batch_size
    if backbone is None:
        train_set = PairedExamples(ctx.X_train, ctx.y_train, ctx.X_target, identity, weights, seed=config.seed,
                                   min_length=min_length)
        return train_set, LabelledExamples(ctx.X_val, ctx.y_val, identity), stack_rows
    train_set = PairedExamples(ctx.train.items, ctx.y_train, ctx.target.items, backbone.prepare, weights,
                               seed=config.seed, min_length=min_length)
    return train_set, LabelledExamples(ctx.val.items, ctx.y_val, backbone.prepare), backbone.collate


def _train_network(ctx: AdaptContext, network: Any, plan: Any, name: str, epochs: int, lr: float,
                   weights: np.ndarray | None, shift: np.ndarray | None) -> tuple[Any, Any]:
    """Trains ``network`` by ``plan`` on the engine, every epoch scored by the checkpoint validator; the best
    epoch's weights restored. Returns the scored checkpoint (its history) and the engine's outcome."""
    from transferkit.engine.data import LabelledCollate
    from transferkit.engine.scoring import ProgressHook, ScoredCheckpoint
    from transferkit.engine.settings import EngineSettings
    from transferkit.engine.trainer import run_training
    from transferkit.evaluation.validators import POOL_CHECKPOINT_VALIDATOR, POOL_VALIDATORS, validate
    from transferkit.strategies.adaptation.plan import PairedCollate

    config = ctx.config
    train_set, val_set, collate = _candidate_examples(ctx, network.backbone, weights)
    checkpoint_validator = POOL_CHECKPOINT_VALIDATOR if config.validator in POOL_VALIDATORS else config.validator

    def score(model) -> float:
        return validate(checkpoint_validator, ctx.validation(network_outputs(ctx, model, "target", shift=shift),
                                                             network_outputs(ctx, model, "val")))

    scored = ScoredCheckpoint(score, name=checkpoint_validator)
    settings = EngineSettings(
        work_dir=ctx.work_dir / name.replace("@", "-"), epochs=epochs, batch_size=config.batch_size, lr=lr,
        weight_decay=config.weight_decay, warmup_fraction=0.0, patience=0, seed=config.seed, device=config.device,
        num_workers=config.num_workers, tracking_uri="off", run_name=f"adapt {name}", progress=config.progress,
        log_every_n_steps=50)
    outcome = run_training(network, plan, train_set, val_set, settings, train_collate=PairedCollate(collate),
                           val_collate=LabelledCollate(collate), callbacks=[ProgressHook(plan.set_progress), scored])
    scored.restore(network)
    network.eval()
    return scored, outcome


def _scored_candidate(ctx: AdaptContext, network: Any, method: str, tradeoff: float | None, name: str, scored: Any,
                      facts: dict[str, Any], weights: np.ndarray | None, shift: np.ndarray | None,
                      start: float) -> Candidate:
    """The trained network's predictions on both domains, its aligned features and its validator scores."""
    config = ctx.config
    target_proba = network_outputs(ctx, network, "target", shift=shift)
    val_proba = network_outputs(ctx, network, "val")
    eval_proba = None
    if ctx.evaluation is not None:
        eval_proba = target_proba if ctx.eval_is_target else network_outputs(ctx, network, "eval", shift=shift)
    aligned = (network_outputs(ctx, network, "train", "embed"), network_outputs(ctx, network, "target", "embed"))
    if weights is not None:
        from transferkit.strategies.adaptation.instance_weights import effective_sample_size

        # what the weighted source looks like: rows drawn in proportion to their weights
        aligned = (weighted_resample(aligned[0], weights, config.seed), aligned[1])
        facts.update(weighting=config.weighting, effective_sample_size=round(effective_sample_size(weights), 1))
    backbone = network.backbone
    if backbone is not None:
        backbone.invalidate_digest()
    return Candidate(
        name=name, method=method, tradeoff=tradeoff, head=network.head, backbone=backbone,
        scores=ctx.all_scores(target_proba, val_proba),
        target_proba=target_proba, source_val_accuracy=float(np.mean(val_proba.argmax(1) == ctx.y_val)),
        seconds=time.perf_counter() - start, best_epoch=scored.best_epoch, epoch_scores=scored.history,
        eval_proba=eval_proba, aligned=aligned, facts=facts, logit_shift=shift,
    )


def probe_candidate(ctx: AdaptContext, method: str) -> Candidate:
    """``source-probe``, ``coral-features`` and ``subspace``: the linear probe on (aligned) cached source features;
    its head reads raw target features."""
    import torch

    from transferkit.strategies.adaptation.registry import feature_aligner
    from transferkit.estimators.linear_probe import LinearProbe

    config = ctx.config
    start = time.perf_counter()
    probe = LinearProbe(random_state=config.seed)
    aligner = feature_aligner(method).fit(np.vstack([ctx.X_train, ctx.X_val]), ctx.X_target)
    probe.fit(aligner.transform(ctx.X_train), ctx.y_train)
    head = aligner.head_from_probe(probe.to_head())
    source_aligned = aligner.transform(ctx.X_train)
    target_aligned = aligner.transform_target(ctx.X_target) if hasattr(aligner, "transform_target") else ctx.X_target
    val_proba = probe.predict_proba(aligner.transform(ctx.X_val))
    facts = {"probe_C": probe.C_}
    shift = ctx.logit_shift()
    head.eval()

    def proba(features: np.ndarray) -> np.ndarray:  # on the target domain
        with torch.no_grad():
            logits = head(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
        return on_target(softmax_numpy(logits), shift)

    target_proba = proba(ctx.X_target)
    eval_proba = None
    if ctx.evaluation is not None:
        eval_proba = target_proba if ctx.eval_is_target else proba(ctx.X_eval)
    return Candidate(
        name=method, method=method, tradeoff=None, head=head, backbone=None,
        scores=ctx.all_scores(target_proba, val_proba), target_proba=target_proba,
        source_val_accuracy=float(np.mean(val_proba.argmax(1) == ctx.y_val)), seconds=time.perf_counter() - start,
        eval_proba=eval_proba, aligned=(source_aligned, target_aligned), facts=facts, logit_shift=shift,
    )


def add_pool_scores(candidates: list[Candidate]) -> None:
    """Each candidate's score under every pool validator (EnsV: agreement with the ensemble of all of them)."""
    from transferkit.evaluation.validators import POOL_VALIDATORS

    for name, scores_of in POOL_VALIDATORS.items():
        for candidate, value in zip(candidates, scores_of([c.target_proba for c in candidates])):
            candidate.scores[name] = float(value)


def weighted_resample(features: np.ndarray, weights: np.ndarray, seed: int) -> np.ndarray:
    """Source rows drawn with probability proportional to their weight (what the weighted source looks like)."""
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    return features[np.random.default_rng(seed).choice(len(features), size=len(features), replace=True, p=p)]



def try_candidates(ctx: AdaptContext, grid: list[tuple[str, float | None]]) -> list[Candidate]:
    """Every candidate of ``grid`` in order: trained methods on the engine (warm-started from the reference when
    asked, or from the feature candidate they start from), feature methods fitted once and shared."""
    candidates: list[Candidate] = []
    feature_candidates: dict[str, Candidate] = {}  # fitted once: probe-mcc starts from source-probe's, a candidate too

    def feature_candidate(method: str) -> Candidate:
        if method not in feature_candidates:
            feature_candidates[method] = probe_candidate(ctx, method)
        return feature_candidates[method]

    for method, tradeoff in grid:
        log.info("adapt: candidate %s", candidate_name(method, tradeoff))
        entry = get_adaptation_method(method)
        if entry.kind == TRAINED:
            start_from = None
            if entry.starts_from is not None:
                start_from = feature_candidate(entry.starts_from)
            elif ctx.config.warm_start and not entry.reference:
                start_from = next(c for c in candidates if get_adaptation_method(c.method).reference)
            candidates.append(train_candidate(ctx, method, tradeoff, start_from))
        else:
            candidates.append(feature_candidate(method))
    return candidates
