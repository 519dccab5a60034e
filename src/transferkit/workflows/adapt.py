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

import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, DataError
from transferkit.strategies.adaptation.config import AdaptConfig, make_adapt_config
from transferkit.strategies.adaptation.candidates import (
    AdaptContext,
    Candidate,
    add_pool_scores,
    candidate_grid,
    class_fractions,
    shifted_head,
    try_candidates,
)
from transferkit.strategies.adaptation.registry import TRAINED, get_adaptation_method

log = logging.getLogger("transferkit")

REPORT_FILE = "adaptation.json"
PLOT_FILE = "embedding.png"


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
    from transferkit.data.splits import stratified_split

    backbone_object = backbone if backbone is not None and not isinstance(backbone, str) else None
    config, source, target, target_labels = _adapt_config(config, source, target, target_labels, backbone, options)
    _check_before_work(config, source, target, target_labels)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    domains = _load_domains(source, target, target_labels, config)
    backbone_object = _backbone(backbone_object, config, domains.source.modality)
    train, val = stratified_split(domains.source, config.val_fraction, config.seed, names=("train", "validation"))
    timings["load"] = time.perf_counter() - start

    start = time.perf_counter()
    X_train, X_val, X_target, X_eval = _features(backbone_object, train, val, domains, config)
    timings["features"] = time.perf_counter() - start

    start = time.perf_counter()
    grid = candidate_grid(config)
    y_train, y_val = train.label_array(domains.classes), val.label_array(domains.classes)
    val_weights, train_weights = _importance_weights(X_train, X_val, X_target, y_train, domains.classes, grid,
                                                     config)
    timings["weights"] = time.perf_counter() - start

    owned_work_dir = config.work_dir is None
    work_dir = Path(config.work_dir) if config.work_dir else Path(tempfile.mkdtemp(prefix="transferkit-adapt-"))
    ctx = AdaptContext(config, backbone_object, domains.classes, train, val, domains.target, domains.evaluation,
                       domains.eval_is_target, y_train, y_val, X_train, X_val, X_target, X_eval, val_weights,
                       train_weights, work_dir, domains.target_prior)
    start = time.perf_counter()
    try:
        candidates = try_candidates(ctx, grid)
    finally:
        if owned_work_dir:
            import shutil

            shutil.rmtree(work_dir, ignore_errors=True)
    timings["candidates"] = time.perf_counter() - start
    add_pool_scores(candidates)

    pool = candidates if config.tries_candidates else [c for c in candidates if c.method == config.method]
    chosen = max(pool, key=lambda c: c.scores[config.validator])
    report = _report(ctx, candidates, chosen, pool, domains.eval_labels, timings)
    result = AdaptResult(_chosen_model(ctx, chosen), chosen, candidates, report)
    if config.output is not None:
        result.output = _save(result, ctx, config)
    return result


def _adapt_config(config: AdaptConfig | None, source: Any, target: Any, target_labels: Any, backbone: Any,
                  options: dict[str, Any]) -> tuple[AdaptConfig, Any, Any, Any]:
    """The run's config (the arguments over ``config``'s fields) and its source, target and target labels."""
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
    return config, source, target, target_labels


def _check_before_work(config: AdaptConfig, source: Any, target: Any, target_labels: Any) -> None:
    """Checks that need no data read: unused options, the output folder, the plotting and training extras, the
    device."""
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
    if config.train_backbone or any(get_adaptation_method(m).kind == TRAINED for m, _ in candidate_grid(config)):
        from transferkit.strategies.requirements import check_training_installed

        check_training_installed("adapt")
    from transferkit.features.extract import resolve_device

    resolve_device(config.device)  # a device that is not here fails now, not after the features


@dataclass
class _Domains:
    """The loaded and checked data of one ``adapt`` run."""

    source: Dataset
    target: Dataset
    evaluation: Dataset | None
    eval_labels: np.ndarray | None
    eval_is_target: bool
    target_prior: np.ndarray | None

    @property
    def classes(self) -> list[str]:
        return self.source.classes


def _load_domains(source: Any, target: Any, target_labels: Any, config: AdaptConfig) -> _Domains:
    """The labelled source, the unlabelled target and the optional labelled target data, loaded and validated:
    one modality for all, the target class mix checked against the source classes."""
    from transferkit.data.validation import validate_dataset

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
    return _Domains(source_ds, target_ds, evaluation, eval_labels, eval_is_target, target_prior)


def _backbone(backbone_object: Any, config: AdaptConfig, modality: str) -> Any:
    """The given backbone object, or the one ``config`` names (the modality's default when none), checked to take
    the data's modality."""
    if backbone_object is None:
        from transferkit.backbones import create_backbone
        from transferkit.modalities import get_modality

        import torch

        torch.manual_seed(config.seed)
        entry = get_modality(modality)
        name = config.backbone or entry.default_backbone
        backbone_object = create_backbone(name, **entry.backbone_options(max_length=config.max_length))
    if backbone_object.modality != modality:
        raise ConfigError(f"backbone '{backbone_object.name}' takes {backbone_object.modality} input but the data "
                          f"is {modality}; choose a {modality} backbone (`transferkit models`).")
    return backbone_object


def _features(backbone: Any, train: Dataset, val: Dataset, domains: _Domains,
              config: AdaptConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The backbone's features ``(N, D)`` of the source training and validation rows, the target and the
    labelled target data (cached unless ``no_cache``)."""
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features

    if config.no_cache:
        cache = None
    else:
        from transferkit.features.cache import default_cache_dir

        cache = FeatureCache(config.cache_dir or default_cache_dir())
    extract = dict(cache=cache, batch_size=config.batch_size, device=config.device, num_workers=config.num_workers,
                   progress=config.progress)
    X_train = extract_features(backbone, train, **extract)
    X_val = extract_features(backbone, val, **extract)
    X_target = extract_features(backbone, domains.target, **extract)
    X_eval = None
    if domains.evaluation is not None:
        X_eval = X_target if domains.eval_is_target else extract_features(backbone, domains.evaluation, **extract)
    return X_train, X_val, X_target, X_eval


def _importance_weights(X_train: np.ndarray, X_val: np.ndarray, X_target: np.ndarray, y_train: np.ndarray,
                        classes: list[str], grid: list[tuple[str, float | None]],
                        config: AdaptConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Density-ratio weights of the held-out source rows (for DEV), and the training rows' weights when a method of
    ``grid`` weighs the source (a warning names the classes that get no weight)."""
    from transferkit.strategies.adaptation.instance_weights import classes_kept, density_ratio_weights, \
        instance_weights

    ratio = density_ratio_weights(np.vstack([X_train, X_val]), X_target, seed=config.seed)
    val_weights = ratio[len(X_train):]
    train_weights = None
    if any(get_adaptation_method(m).weights_source for m, _ in grid):
        train_weights = ratio[: len(X_train)] if config.weighting == "density-ratio" else \
            instance_weights(config.weighting, X_train, X_target, fraction=config.selection_fraction,
                             seed=config.seed)
        kept = classes_kept(train_weights, y_train, len(classes))
        if len(kept) < len(classes):
            warnings.warn(f"instance weighting ({config.weighting}) gives no weight to the source classes "
                          f"{[classes[c] for c in range(len(classes)) if c not in kept]}; the iw model will not "
                          "predict them.", stacklevel=3)
    return val_weights, train_weights


def _chosen_model(ctx: AdaptContext, chosen: Candidate) -> Any:
    """The chosen candidate as a model: its backbone (the shared one when it trained none) and its head, whose
    logits include the move to a known target class mix."""
    from transferkit.models.model import TransferModel

    final_backbone = chosen.backbone if chosen.backbone is not None else ctx.backbone
    head = shifted_head(chosen.head, chosen.logit_shift).eval()
    return TransferModel(final_backbone, head, ctx.classes, strategy=f"adapt:{chosen.method}").eval()


def _report(ctx: AdaptContext, candidates: list[Candidate], chosen: Candidate, pool: list[Candidate],
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
        "classes": ctx.classes, "source_class_fractions": class_fractions(ctx.y_train, ctx.classes),
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


def _save(result: AdaptResult, ctx: AdaptContext, config: AdaptConfig) -> Path:
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
