"""``adapt``: labelled source data + unlabelled target data -> a model for the target, chosen without target labels.

The methods are in :mod:`transferkit.strategies.adaptation`; this module is the verb (as ``api.fit`` and
``distillation.distill`` are): it runs them, chooses, saves the model folder, writes the report and tracks the run.

Order of work: every check that can fail (options, data, modalities, output folder), then the backbone's features
of both domains (cached), importance weights of the held-out source examples (for DEV), the candidates (each
method with each trade-off weight of its grid; every trained candidate's checkpoint chosen by the validator),
the choice among them by the validator, the diagnostics (proxy A-distance before / after, a 2-D embedding plot),
and the saved model folder with its adaptation report. Target labels, when given, are read only to report how
good the label-free choice was against the best candidate in hindsight.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, DataError
from transferkit.strategies.adaptation.config import AdaptConfig, make_adapt_config
from transferkit.strategies.adaptation.registry import TRAINED, get_adaptation_method, reference_method

log = logging.getLogger("transferkit")

REPORT_FILE = "adaptation.json"
PLOT_FILE = "embedding.png"


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
               "target_predicted_fractions": _class_fractions(self.target_proba.argmax(1), classes),
               "source_val_accuracy": round(self.source_val_accuracy, 4), "best_epoch": self.best_epoch,
               "seconds": round(self.seconds, 2), **self.facts}
        if self.logit_shift is not None:
            row["logit_shift"] = [round(float(v), 6) for v in self.logit_shift]
        if self.epoch_scores:
            row["epoch_scores"] = [[e, round(s, 6)] for e, s in self.epoch_scores]
        if eval_labels is not None and self.eval_proba is not None:
            row["target_accuracy"] = round(float(np.mean(self.eval_proba.argmax(1) == eval_labels)), 4)
        return row


def _class_fractions(labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Share of each class among ``labels`` (class indices): compared between the source labels and the target
    predictions, it shows a shift of the class mix (label shift), which aligning the features does not correct."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    return {name: round(float(count) / max(len(labels), 1), 4) for name, count in zip(classes, counts)}


@dataclass
class AdaptResult:
    """What ``adapt`` produced: the chosen model, the candidates and the report (also saved as JSON)."""

    model: Any
    chosen: Candidate
    candidates: list[Candidate]
    report: dict[str, Any]
    output: Path | None = None

    @property
    def target_accuracy(self) -> float | None:
        return self.report.get("target_labels", {}).get("chosen_accuracy")

    def summary(self) -> str:
        rows = self.report["candidates"]
        has_acc = any("target_accuracy" in r for r in rows)
        validator = self.report["validator"]
        width = max(len(r["name"]) for r in rows)
        head = f"{'candidate':<{width}}  {validator:>9}  src-val  A-dist" + ("  target-acc" if has_acc else "")
        lines = [head, "-" * len(head)]
        for r in rows:
            mark = " <- chosen" if r["name"] == self.chosen.name else ""
            acc = f"  {r['target_accuracy']:10.4f}" if has_acc and "target_accuracy" in r else ""
            lines.append(f"{r['name']:<{width}}  {r['scores'][validator]:9.4f}  {r['source_val_accuracy']:7.4f}"
                         f"  {r['proxy_a_distance']:6.3f}{acc}{mark}")
        gap = self.report["domain_gap"]
        lines.append(f"proxy A-distance: {gap['before']:.3f} before, {gap['after']:.3f} after ({self.chosen.name})")
        prior = self.report.get("target_prior")
        if prior:
            source = self.report["source_class_fractions"]
            lines.append("target class mix given: " + ", ".join(f"{c} {v:.2f}" for c, v in prior.items())
                         + "; predictions moved to it from the source's "
                         + ", ".join(f"{c} {source[c]:.2f}" for c in prior))
        labels = self.report.get("target_labels")
        if labels:
            probe = (f" (source-probe {labels['source_probe_accuracy']:.4f})"
                     if "source_probe_accuracy" in labels else "")
            lines.append(f"target accuracy of the label-free choice {labels['chosen_accuracy']:.4f}; source-only "
                         f"{labels['source_only_accuracy']:.4f}{probe}; best in hindsight {labels['best_accuracy']:.4f} "
                         f"({labels['best']}), {100 * labels['gap_to_best']:.1f} points away")
        return "\n".join(lines)


# --- data --------------------------------------------------------------------------------------------------------

def _load(source: Any, config: AdaptConfig, *, unlabelled: bool, label_column: str | None = None) -> Dataset:
    from transferkit.data.sources import load_data

    return load_data(source, label_column=label_column, text_column=config.text_column,
                     path_column=config.path_column, encoding=config.encoding, unlabelled=unlabelled)


def _evaluation_data(target_labels: Any, target: Dataset, target_source: Any, config: AdaptConfig) -> Dataset | None:
    """The labelled target data used only for the report: a label column of the target table, a labelled
    dataset (path or Dataset), or one label per target example."""
    from transferkit.data.sources import load_data

    if target_labels is None:
        return None
    if isinstance(target_labels, Dataset):
        return target_labels
    if isinstance(target_labels, (str, os.PathLike)) and os.path.exists(target_labels):
        return load_data(target_labels, text_column=config.text_column, path_column=config.path_column,
                         encoding=config.encoding)
    if isinstance(target_labels, str):
        if not isinstance(target_source, (str, os.PathLike)) or Path(target_source).is_dir():
            raise DataError(f"--target-labels {target_labels!r}: not a path, so it must name a label column of the "
                            "target table; but the target is not a table. Give a labelled copy of the target data "
                            "(a folder per class or a table) instead.")
        try:
            labelled = _load(target_source, config, unlabelled=False, label_column=target_labels)
        except DataError as exc:
            raise DataError(f"--target-labels {target_labels!r}: {exc}") from None
        return labelled
    labels = list(target_labels)
    if len(labels) != len(target):
        raise DataError(f"target_labels: {len(labels)} labels for {len(target)} target examples; give one each.")
    return Dataset(target.modality, target.items, [str(v) for v in labels], f"{target.origin} (labels given)",
                   list(target.row_ids))


def _target_prior(config: AdaptConfig, classes: list[str], origin: str) -> np.ndarray | None:
    """The known target class mix as an array in the order of ``classes``; an error names what does not match."""
    if config.target_prior is None:
        return None
    given = config.target_prior
    problems = [f"missing {[c for c in classes if c not in given]}" if set(classes) - set(given) else "",
                f"not a source class: {[c for c in given if c not in classes]}" if set(given) - set(classes) else ""]
    if any(problems):
        raise ConfigError(f"target_prior: give a fraction for every class of the source {origin} "
                          f"({', '.join(classes)}); {'; '.join(p for p in problems if p)}.")
    return np.array([given[c] for c in classes], dtype=np.float64)


def _candidate_grid(config: AdaptConfig) -> list[tuple[str, float | None]]:
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


def _name(method: str, tradeoff: float | None) -> str:
    return method if tradeoff is None or get_adaptation_method(method).reference else f"{method}@{tradeoff:g}"


# --- the context every candidate reads ----------------------------------------------------------------------------

@dataclass
class _Context:
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


def _softmax_numpy(logits) -> np.ndarray:
    return logits.float().softmax(dim=1).cpu().numpy()


def _on_target(proba: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """Target-domain probabilities moved to the known target class mix (``shift`` from ``logit_shift``)."""
    if shift is None:
        return proba
    moved = np.asarray(proba, dtype=np.float64) * np.exp(shift)
    return (moved / moved.sum(axis=1, keepdims=True)).astype(np.float32)


def _shifted_head(head, shift: np.ndarray | None):
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


def _network_outputs(ctx: _Context, network, which: str, what: str = "proba",
                     shift: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities (``what="proba"``) or bottleneck features (``"embed"``) of ``network`` on the source
    training / validation rows, the target, or the evaluation data; target-domain probabilities moved by
    ``shift`` (see :meth:`_Context.logit_shift`)."""
    if shift is not None and what == "proba" and which in ("target", "eval"):
        return _on_target(_network_outputs(ctx, network, which, what), shift)
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
            return _softmax_numpy(network.head(x))
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


def _train_candidate(ctx: _Context, method: str, tradeoff: float | None, start_from: Candidate | None = None) -> Candidate:
    import torch

    from transferkit.engine.data import LabelledCollate, LabelledExamples
    from transferkit.engine.scoring import ProgressHook, ScoredCheckpoint
    from transferkit.engine.settings import EngineSettings
    from transferkit.engine.trainer import run_training
    from transferkit.evaluation.validators import POOL_CHECKPOINT_VALIDATOR, POOL_VALIDATORS, validate
    from transferkit.models.heads.bottleneck import BottleneckHead
    from transferkit.strategies.adaptation.plan import (
        AdaptationNetwork,
        AdaptationPlan,
        PairedCollate,
        PairedExamples,
        identity,
        stack_rows,
    )

    config = ctx.config
    start = time.perf_counter()
    train_backbone = config.train_backbone
    lr = config.lr or (1e-4 if train_backbone else 1e-3)
    head_lr = config.head_lr or (10 * lr if train_backbone else lr)
    entry = get_adaptation_method(method)
    plan = AdaptationPlan(method, tradeoff if tradeoff is not None else 0.0, backbone_trainable=train_backbone,
                          head_lr_multiplier=head_lr / lr,
                          threshold_start=config.threshold_start, threshold_end=config.threshold_end)
    torch.manual_seed(config.seed)  # every candidate starts from the same head (and backbone)
    probe_started = entry.starts_from is not None
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
    weights = ctx.train_weights if entry.weights_source else None
    min_length = config.min_steps_per_epoch * config.batch_size
    if backbone is None:
        train_set = PairedExamples(ctx.X_train, ctx.y_train, ctx.X_target, identity, weights, seed=config.seed,
                                   min_length=min_length)
        val_set = LabelledExamples(ctx.X_val, ctx.y_val, identity)
        collate = stack_rows
    else:
        train_set = PairedExamples(ctx.train.items, ctx.y_train, ctx.target.items, backbone.prepare, weights,
                                   seed=config.seed, min_length=min_length)
        val_set = LabelledExamples(ctx.val.items, ctx.y_val, backbone.prepare)
        collate = backbone.collate

    shift = ctx.logit_shift(weights)
    checkpoint_validator = POOL_CHECKPOINT_VALIDATOR if config.validator in POOL_VALIDATORS else config.validator

    def score(model) -> float:
        return validate(checkpoint_validator, ctx.validation(_network_outputs(ctx, model, "target", shift=shift),
                                                         _network_outputs(ctx, model, "val")))

    scored = ScoredCheckpoint(score, name=checkpoint_validator)
    name = _name(method, tradeoff)
    settings = EngineSettings(
        work_dir=ctx.work_dir / name.replace("@", "-"), epochs=epochs, batch_size=config.batch_size, lr=lr,
        weight_decay=config.weight_decay, warmup_fraction=0.0, patience=0, seed=config.seed, device=config.device,
        num_workers=config.num_workers, tracking_uri="off", run_name=f"adapt {name}", progress=config.progress,
        log_every_n_steps=50)
    outcome = run_training(network, plan, train_set, val_set, settings, train_collate=PairedCollate(collate),
                           val_collate=LabelledCollate(collate), callbacks=[ProgressHook(plan.set_progress), scored])
    scored.restore(network)
    network.eval()
    target_proba = _network_outputs(ctx, network, "target", shift=shift)
    val_proba = _network_outputs(ctx, network, "val")
    eval_proba = None
    if ctx.evaluation is not None:
        eval_proba = target_proba if ctx.eval_is_target else _network_outputs(ctx, network, "eval", shift=shift)
    aligned = (_network_outputs(ctx, network, "train", "embed"), _network_outputs(ctx, network, "target", "embed"))
    facts: dict[str, Any] = {"epochs_run": outcome.epochs_run, "lr": lr, "head_lr": head_lr,
                             "warm_start": start_from is not None}
    if probe_started:
        facts["started_from"] = start_from.name
    if entry.weights_source:
        from transferkit.strategies.adaptation.instance_weights import effective_sample_size

        # what the weighted source looks like: rows drawn in proportion to their weights
        aligned = (_weighted_resample(aligned[0], weights, config.seed), aligned[1])
        facts.update(weighting=config.weighting, effective_sample_size=round(effective_sample_size(weights), 1))
    if backbone is not None:
        backbone.invalidate_digest()
    return Candidate(
        name=name, method=method, tradeoff=tradeoff, head=network.head, backbone=backbone,
        scores=ctx.all_scores(target_proba, val_proba),
        target_proba=target_proba, source_val_accuracy=float(np.mean(val_proba.argmax(1) == ctx.y_val)),
        seconds=time.perf_counter() - start, best_epoch=scored.best_epoch, epoch_scores=scored.history,
        eval_proba=eval_proba, aligned=aligned, facts=facts, logit_shift=shift,
    )


def _probe_candidate(ctx: _Context, method: str) -> Candidate:
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
        return _on_target(_softmax_numpy(logits), shift)

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


def _add_pool_scores(candidates: list[Candidate]) -> None:
    """Each candidate's score under every pool validator (EnsV: agreement with the ensemble of all of them)."""
    from transferkit.evaluation.validators import POOL_VALIDATORS

    for name, scores_of in POOL_VALIDATORS.items():
        for candidate, value in zip(candidates, scores_of([c.target_proba for c in candidates])):
            candidate.scores[name] = float(value)


def _weighted_resample(features: np.ndarray, weights: np.ndarray, seed: int) -> np.ndarray:
    """Source rows drawn with probability proportional to their weight (what the weighted source looks like)."""
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    return features[np.random.default_rng(seed).choice(len(features), size=len(features), replace=True, p=p)]


# --- the verb -----------------------------------------------------------------------------------------------------

def adapt(source: Any = None, target: Any = None, *, config: AdaptConfig | None = None, backbone: Any = None,
          target_labels: Any = None, **options: Any) -> AdaptResult:
    """Adapt a backbone trained on labelled ``source`` data to unlabelled ``target`` data.

    ``source`` and ``target`` are paths (an image folder, a table) or :class:`~transferkit.data.Dataset` objects;
    ``backbone`` a name or a :class:`~transferkit.backbones.Backbone` (default by modality); ``target_labels``
    (optional, for the report only) a label column of the target table, a labelled dataset, or one label per
    target example. Other options are those of :class:`AdaptConfig` (``method``, ``validator``, ``output``, ...).
    Everything is checked before any backbone runs.
    """
    from transferkit.modalities import get_modality
    from transferkit.data.splits import stratified_split
    from transferkit.data.validation import validate_dataset

    backbone_object = backbone if backbone is not None and not isinstance(backbone, str) else None
    if isinstance(backbone, str):
        options["backbone"] = backbone
    if isinstance(target_labels, (str, os.PathLike)):
        options["target_labels"] = str(target_labels)
    for key, value in (("source", source), ("target", target)):
        if isinstance(value, (str, os.PathLike)):
            options[key] = str(value)
    config = make_adapt_config(**{**(config.model_dump() if config is not None else {}), **options})
    source = source if source is not None else config.source
    target = target if target is not None else config.target
    target_labels = target_labels if target_labels is not None else config.target_labels
    if source is None or target is None:
        raise ConfigError("adapt needs labelled source data (--source) and unlabelled target data (--target).")
    config.warn_unused_options()
    if config.output is not None:
        from transferkit.models.folder import check_output_folder

        check_output_folder(config.output, config.overwrite, inputs=[
            ("source data", source), ("target data", target), ("target labels", target_labels),
            ("backbone", config.backbone), ("--work-dir", config.work_dir)])
    if config.output is not None and config.embedding != "none":
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise ConfigError("the before/after embedding plot needs matplotlib: pip install 'transferkit[report]', "
                              "or pass --embedding none.")
    if config.train_backbone or any(get_adaptation_method(m).kind == TRAINED for m, _ in _candidate_grid(config)):
        from transferkit.strategies.requirements import check_training_installed

        check_training_installed("adapt")
    from transferkit.features.extract import resolve_device

    resolve_device(config.device)  # a device that is not here fails now, not after the features
    timings: dict[str, float] = {}
    start = time.perf_counter()
    source_ds = _load(source, config, unlabelled=False, label_column=config.label_column)
    validate_dataset(source_ds, role="training")
    target_ds = _load(target, config, unlabelled=True)
    validate_dataset(target_ds, role="prediction")
    if source_ds.modality != target_ds.modality:
        raise DataError(f"the source {source_ds.origin} holds {source_ds.modality} data but the target "
                        f"{target_ds.origin} holds {target_ds.modality} data; both domains must be of one modality.")
    evaluation = _evaluation_data(target_labels, target_ds, target, config)
    classes = source_ds.classes
    target_prior = _target_prior(config, classes, source_ds.origin)
    eval_labels = None
    if evaluation is not None:
        validate_dataset(evaluation, role="evaluation", min_classes=1)
        if evaluation.modality != source_ds.modality:
            raise DataError(f"the labelled target data {evaluation.origin} holds {evaluation.modality} data, not "
                            f"{source_ds.modality}.")
        eval_labels = evaluation.label_array(classes)
    eval_is_target = evaluation is not None and evaluation.item_keys() == target_ds.item_keys()

    if backbone_object is None:
        from transferkit.backbones import create_backbone

        import torch

        torch.manual_seed(config.seed)
        modality = get_modality(source_ds.modality)
        name = config.backbone or modality.default_backbone
        backbone_object = create_backbone(name, **modality.backbone_options(max_length=config.max_length))
    if backbone_object.modality != source_ds.modality:
        raise ConfigError(f"backbone '{backbone_object.name}' takes {backbone_object.modality} input but the data "
                          f"is {source_ds.modality}; choose a {source_ds.modality} backbone (`transferkit models`).")
    train, val = stratified_split(source_ds, config.val_fraction, config.seed, names=("train", "validation"))
    timings["load"] = time.perf_counter() - start

    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features

    start = time.perf_counter()
    if config.no_cache:
        cache = None
    else:
        from transferkit.features.cache import default_cache_dir

        cache = FeatureCache(config.cache_dir or default_cache_dir())
    extract = dict(cache=cache, batch_size=config.batch_size, device=config.device, num_workers=config.num_workers,
                   progress=config.progress)
    X_train = extract_features(backbone_object, train, **extract)
    X_val = extract_features(backbone_object, val, **extract)
    X_target = extract_features(backbone_object, target_ds, **extract)
    X_eval = None
    if evaluation is not None:
        X_eval = X_target if eval_is_target else extract_features(backbone_object, evaluation, **extract)
    timings["features"] = time.perf_counter() - start

    from transferkit.strategies.adaptation.instance_weights import classes_kept, density_ratio_weights, \
        instance_weights

    start = time.perf_counter()
    X_source = np.vstack([X_train, X_val])
    ratio = density_ratio_weights(X_source, X_target, seed=config.seed)
    val_weights = ratio[len(X_train):]
    grid = _candidate_grid(config)
    y_train, y_val = train.label_array(classes), val.label_array(classes)
    train_weights = None
    if any(get_adaptation_method(m).weights_source for m, _ in grid):
        train_weights = ratio[: len(X_train)] if config.weighting == "density-ratio" else \
            instance_weights(config.weighting, X_train, X_target, fraction=config.selection_fraction,
                             seed=config.seed)
        kept = classes_kept(train_weights, y_train, len(classes))
        if len(kept) < len(classes):
            warnings.warn(f"instance weighting ({config.weighting}) gives no weight to the source classes "
                          f"{[classes[c] for c in range(len(classes)) if c not in kept]}; the iw model will not "
                          "predict them.", stacklevel=2)
    timings["weights"] = time.perf_counter() - start

    owned_work_dir = config.work_dir is None
    work_dir = Path(config.work_dir) if config.work_dir else Path(tempfile.mkdtemp(prefix="transferkit-adapt-"))
    ctx = _Context(config, backbone_object, classes, train, val, target_ds, evaluation, eval_is_target, y_train,
                   y_val, X_train, X_val, X_target, X_eval, val_weights, train_weights, work_dir, target_prior)
    candidates: list[Candidate] = []
    feature_candidates: dict[str, Candidate] = {}  # fitted once: probe-mcc starts from source-probe's, a candidate too

    def feature_candidate(method: str) -> Candidate:
        if method not in feature_candidates:
            feature_candidates[method] = _probe_candidate(ctx, method)
        return feature_candidates[method]

    start = time.perf_counter()
    try:
        for method, tradeoff in grid:
            log.info("adapt: candidate %s", _name(method, tradeoff))
            entry = get_adaptation_method(method)
            if entry.kind == TRAINED:
                start_from = None
                if entry.starts_from is not None:
                    start_from = feature_candidate(entry.starts_from)
                elif config.warm_start and not entry.reference:
                    start_from = next(c for c in candidates if get_adaptation_method(c.method).reference)
                candidates.append(_train_candidate(ctx, method, tradeoff, start_from))
            else:
                candidates.append(feature_candidate(method))
    finally:
        if owned_work_dir:
            import shutil

            shutil.rmtree(work_dir, ignore_errors=True)
    timings["candidates"] = time.perf_counter() - start
    _add_pool_scores(candidates)

    pool = candidates if config.tries_candidates else [c for c in candidates if c.method == config.method]
    chosen = max(pool, key=lambda c: c.scores[config.validator])
    report = _report(ctx, candidates, chosen, pool, eval_labels, timings)

    from transferkit.models.model import TransferModel

    final_backbone = chosen.backbone if chosen.backbone is not None else backbone_object
    head = _shifted_head(chosen.head, chosen.logit_shift).eval()
    model = TransferModel(final_backbone, head, classes, strategy=f"adapt:{chosen.method}").eval()
    result = AdaptResult(model, chosen, candidates, report)
    if config.output is not None:
        result.output = _save(result, ctx, config)
    return result


def _report(ctx: _Context, candidates: list[Candidate], chosen: Candidate, pool: list[Candidate],
            eval_labels: np.ndarray | None, timings: dict[str, float]) -> dict[str, Any]:
    from transferkit.evaluation.domain_gap import proxy_a_distance

    config = ctx.config
    rows = [c.to_dict(eval_labels, ctx.classes) for c in candidates]
    before = proxy_a_distance(ctx.X_train, ctx.X_target, seed=config.seed)
    for row, candidate in zip(rows, candidates):
        row["proxy_a_distance"] = round(proxy_a_distance(*candidate.aligned, seed=config.seed), 4)
    after = next(r["proxy_a_distance"] for r in rows if r["name"] == chosen.name)
    source_only = next(c for c in candidates if get_adaptation_method(c.method).reference)
    source_only_after = next(r["proxy_a_distance"] for r in rows if r["name"] == source_only.name)
    report: dict[str, Any] = {
        "method": config.method, "validator": config.validator,
        "chosen": {"name": chosen.name, "method": chosen.method, "tradeoff": chosen.tradeoff,
                   "score": chosen.scores[config.validator]},
        "candidates": rows,
        "domain_gap": {"measure": "proxy A-distance (0: indistinguishable, 2: separable)",
                       "before": round(before, 4), "after": round(after, 4),
                       "source_only_bottleneck": round(source_only_after, 4),
                       "before_features": "backbone features", "after_features": f"{chosen.name}'s aligned features"},
        "n_source_train": len(ctx.train), "n_source_val": len(ctx.val), "n_target": len(ctx.target),
        "classes": ctx.classes, "source_class_fractions": _class_fractions(ctx.y_train, ctx.classes),
        **({"target_prior": dict(zip(ctx.classes, (round(float(v), 4) for v in ctx.target_prior)))}
           if ctx.target_prior is not None else {}),
        "backbone": ctx.backbone.name, "train_backbone": config.train_backbone,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    if eval_labels is not None:
        accuracy = {r["name"]: r["target_accuracy"] for r in rows}
        pool_names = [c.name for c in pool]
        best = max(pool_names, key=lambda n: accuracy[n])
        choices = {}
        for validator in chosen.scores:
            pick = max(pool, key=lambda c: c.scores[validator]).name
            choices[validator] = {"choice": pick, "target_accuracy": accuracy[pick]}
        report["target_labels"] = {
            "used_for": "this report only; no choice read them", "n": int(len(eval_labels)),
            "transductive": ctx.eval_is_target,
            "chosen_accuracy": accuracy[chosen.name], "source_only_accuracy": accuracy[source_only.name],
            "best": best, "best_accuracy": accuracy[best],
            "gap_to_best": round(accuracy[best] - accuracy[chosen.name], 4),
            "improvement_over_source_only": round(accuracy[chosen.name] - accuracy[source_only.name], 4),
            "choice_by_validator": choices,
        }
        if "source-probe" in accuracy:  # the stronger source-only reference on frozen features, when tried
            report["target_labels"].update(
                source_probe_accuracy=accuracy["source-probe"],
                improvement_over_source_probe=round(accuracy[chosen.name] - accuracy["source-probe"], 4))
    return report


def _save(result: AdaptResult, ctx: _Context, config: AdaptConfig) -> Path:
    import json

    from transferkit.models.artifacts import save_model
    from transferkit.models.folder import late_step, update_model_folder
    from transferkit.evaluation.domain_gap import plot_domain_embedding

    report = result.report
    chosen = result.chosen
    resolved = config.resolved(backbone=ctx.backbone.name, classes=ctx.classes, modality=ctx.train.modality,
                               chosen=chosen.name, source_fingerprint=ctx.train.fingerprint(),
                               target_fingerprint=ctx.target.fingerprint())
    metrics = {"adaptation": {k: v for k, v in report.items() if k != "candidates"}}
    include_backbone = chosen.backbone is not None or ctx.backbone.name.startswith("random:")
    folder = save_model(result.model, config.output, metrics=metrics, run_config=resolved,
                        include_backbone=include_backbone, overwrite=config.overwrite, keep_beside=True,
                        extra_files={REPORT_FILE: json.dumps(report, indent=2, default=str) + "\n",
                                     "summary.txt": result.summary() + "\n"})
    notes: list[str] = []  # the plot, the report and tracking come after the save: their failures are notes
    if config.embedding != "none":
        def plot() -> None:
            panels = [("before: backbone features", ctx.X_train, ctx.X_target)]
            if chosen.aligned is not None:
                panels.append((f"after: {chosen.name}", *chosen.aligned))
            plot_domain_embedding(panels, folder / PLOT_FILE, method=config.embedding, seed=config.seed,
                                  title=f"source vs target ({config.embedding.upper()})")
            report["embedding_plot"] = PLOT_FILE
            from transferkit._io import atomic_write_json

            atomic_write_json(folder / REPORT_FILE, json.loads(json.dumps(report, default=str)))

        late_step("the before/after embedding plot", plot, notes)
    from transferkit.reporting.tracking import report_and_track

    report_and_track(folder, params=resolved, metrics=metrics, tracking_uri=config.tracking_uri,
                     run_name=f"adapt {chosen.name}",
                     tags={"transferkit.strategy": f"adapt:{chosen.name}"}, notes=notes)
    if notes:
        report["notes"] = notes
        late_step("writing the notes", lambda: update_model_folder(
            folder, metrics={**metrics, "notes": notes},
            files={"summary.txt": result.summary() + "\n" + "".join(f"note: {n}\n" for n in notes)}), [])
    return folder
