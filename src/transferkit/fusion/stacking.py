"""Stacking features of several pretrained backbones: each backbone's cached features, optionally reduced by PCA
(fitted on the training features, per backbone, so that a wide backbone does not drown a narrow one), are
concatenated and the task's probe is fitted on them (the meta model: for classification
:class:`~transferkit.estimators.linear_probe.LinearProbe`, C chosen on the validation data; for regression ridge
regression, for multi-label per-label logistic regression with thresholds from the validation data). The backbone set can be given by name or taken from a ranking (``rank``):
its best ``top`` pretrained rows.

Features come from the feature cache, so stacking backbones that were ranked or probed before costs no backbone
pass; the single backbones' probes are fitted beside it on the same features for comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from transferkit.errors import ConfigError
from transferkit.modalities import get_modality
from transferkit.fusion._common import as_dataset, score_and_loss


def backbones_from_ranking(ranking: Any, top: int | None = None) -> list[str]:
    """Pretrained backbone names, best first, from a :class:`~transferkit.selection.ranking.Ranking`, its
    ``to_dict()`` / ``transferkit rank --json`` output, or the path of such a JSON file."""
    if isinstance(ranking, (str, Path)):
        path = Path(ranking)
        if not path.is_file():
            raise ConfigError(f"stack: ranking file {path} does not exist; save one with `transferkit rank DATA "
                              "--json > ranking.json`.")
        try:
            ranking = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"stack: {path} is not a JSON ranking ({exc}).") from exc
    rows = ranking.get("rows") if isinstance(ranking, dict) else [vars(r) for r in getattr(ranking, "rows", [])]
    if not rows:
        raise ConfigError("stack: the ranking has no rows.")
    names = [row["name"] for row in rows if row.get("kind") != "raw"]
    if top is not None:
        if top < 1:
            raise ConfigError(f"stack: top must be at least 1; got {top}.")
        names = names[:top]
    if not names:
        raise ConfigError("stack: the ranking holds no pretrained backbone.")
    return names


@dataclass
class StackResult:
    model: Any
    backbones: list[str]
    reduce: int | None
    probe_C: float
    val: dict[str, Any] = field(default_factory=dict)
    single: dict[str, dict[str, Any]] = field(default_factory=dict)
    output: Path | None = None
    #: The task's measure the figures hold (accuracy for classifiers).
    measure: str = "accuracy"

    def to_dict(self) -> dict[str, Any]:
        return {"method": "stack", "measure": self.measure, "backbones": self.backbones, "reduce": self.reduce,
                "probe_C": self.probe_C, "val": self.val, "single_backbones": self.single}

    def summary(self) -> str:
        sets = list(self.val)
        short = "acc" if self.measure == "accuracy" else self.measure
        lines = [f"{'features':<44}" + "".join(f"  {s + ' ' + short:>12}" for s in sets)]
        for name, figures in self.single.items():
            lines.append(f"{name[-44:]:<44}" + "".join(f"  {figures[s][self.measure]:12.4f}" for s in sets))
        label = " + ".join(self.backbones) + (f" (PCA {self.reduce} each)" if self.reduce else "")
        lines.append(f"{label[-44:]:<44}" + "".join(f"  {self.val[s][self.measure]:12.4f}" for s in sets))
        return "\n".join(lines)


def stack(backbones: Sequence[str] | None, train: Any, val: Any = None, *, ranking: Any = None,
          top: int | None = None, reduce: int | None = None, eval_sets: dict[str, Any] | None = None,
          output: str | Path | None = None, overwrite: bool = False, probe_c: float | None = None, seed: int = 0,
          batch_size: int = 64, device: str = "auto", cache_dir: str | None = None, no_cache: bool = False,
          max_length: int = 256, compare_single: bool = True, label_column: str | None = None,
          text_column: str | None = None, path_column: str | None = None, encoding: str = "utf-8",
          delimiter: str | None = None, normalize_labels: bool = False, task: str | None = None,
          progress: bool = False) -> StackResult:
    """Fit the ``task``'s probe (default: single-label classification) on the concatenated features of
    ``backbones`` (or the ``top`` rows of ``ranking``).

    ``reduce`` keeps that many PCA components per backbone. ``val`` chooses the probe's C (cross-validation on
    ``train`` when not given); ``eval_sets`` (name -> data) are only evaluated. With ``compare_single``, each
    backbone's own probe is evaluated beside the stack.
    """
    from transferkit.features.extract import resolve_device
    from transferkit.models.combined import StackedModel
    from transferkit.tasks import DEFAULT_TASK, get_task

    task_entry = get_task(task or DEFAULT_TASK)
    backbones = _chosen_backbones(backbones, ranking, top, reduce)
    resolve_device(device)
    if output is not None:
        from transferkit.models.folder import check_output_folder

        check_output_folder(output, overwrite, inputs=[
            ("training data", train), ("validation data", val), ("ranking", ranking),
            *[("backbone", b) for b in backbones], *[(f"{name} data", d) for name, d in (eval_sets or {}).items()]])
    columns = dict(label_column=label_column, text_column=text_column, path_column=path_column, encoding=encoding,
                   delimiter=delimiter, normalize_labels=normalize_labels, task=task_entry)
    train_ds = as_dataset(train, "training", **columns)
    val_ds = as_dataset(val, "validation", **columns, required=False)
    sets = {**({"val": val_ds} if val_ds is not None else {}),
            **{name: as_dataset(d, name, **columns) for name, d in (eval_sets or {}).items()}}
    classes = task_entry.label_space(train_ds)
    built = _build_backbones(backbones, train_ds.modality, seed, max_length)
    extract = dict(cache=_cache(cache_dir, no_cache), batch_size=batch_size, device=device, progress=progress)
    train_features, set_features = _features(built, train_ds, sets, extract)
    y_train = task_entry.targets(train_ds, classes)
    labels = {s: task_entry.targets(d, classes) for s, d in sets.items()}

    reducers = _reducers(train_features, reduce, seed)
    holder = StackedModel(built, reducers, torch.nn.Identity(), classes, task=task_entry.name)
    X_train = holder.transform(train_features)
    X_val = holder.transform(set_features["val"]) if val_ds is not None else None
    probe = task_entry.new_probe(C=probe_c, seed=seed).fit(X_train, y_train, X_val,
                                                           labels["val"] if val_ds is not None else None)
    model = StackedModel(built, reducers, probe.to_head(), classes, task=task_entry.name).eval()
    figures = {}
    for s in sets:
        score, loss = score_and_loss(task_entry, model.head_proba(holder.transform(set_features[s])), labels[s])
        figures[s] = {task_entry.measure: score, task_entry.output_loss_name: loss}
    single = _single_probes(backbones, train_features, y_train, set_features, labels, probe_c, seed, task_entry) \
        if compare_single and sets else {}
    result = StackResult(model, list(backbones), reduce, _penalty(probe), figures, single, measure=task_entry.measure)
    if output is not None:
        from transferkit.models.artifact_kinds import save_stacked

        result.output = save_stacked(model, output, metrics={"fusion": result.to_dict()}, run_config=result.to_dict(),
                                     overwrite=overwrite, keep_beside=True,
                                     extra_files={"stack.json": json.dumps(result.to_dict(), indent=2) + "\n",
                                                  "summary.txt": result.summary() + "\n"})
    return result


def _chosen_backbones(backbones: Sequence[str] | None, ranking: Any, top: int | None,
                      reduce: int | None) -> list[str]:
    """The backbones to stack (given, or the ``top`` rows of ``ranking``), checked with the other options before
    any backbone runs: at least one, none repeated, every name known."""
    from transferkit.selection.ranking import check_candidate_names

    if top is not None and top < 1:
        raise ConfigError(f"stack: --top must be at least 1 (the number of backbones kept); got {top}.")
    if ranking is not None:
        if backbones:
            raise ConfigError("stack: give the backbones or a ranking, not both.")
        backbones = backbones_from_ranking(ranking, top)
    elif top is not None and backbones:
        backbones = list(backbones)[:top]
    if not backbones:
        raise ConfigError("stack: give at least one backbone (names, or a ranking from `transferkit rank`).")
    if len(set(backbones)) != len(backbones):
        raise ConfigError(f"stack: backbones repeat: {list(backbones)}.")
    if reduce is not None and reduce < 1:
        raise ConfigError(f"stack: reduce (PCA components per backbone) must be at least 1; got {reduce}.")
    check_candidate_names(list(backbones), option="stack --backbones")  # every name, before any backbone runs
    return list(backbones)


def _build_backbones(names: Sequence[str], modality: str, seed: int, max_length: int) -> list[Any]:
    """Each backbone built (random parts seeded); one that takes another kind of input than the data is an error."""
    from transferkit.backbones import create_backbone

    built = []
    for name in names:
        torch.manual_seed(seed)
        backbone = create_backbone(name, **get_modality(modality).backbone_options(max_length=max_length))
        if backbone.modality != modality:
            raise ConfigError(f"stack: backbone '{name}' takes {backbone.modality} input but the data is "
                              f"{modality}.")
        built.append(backbone)
    return built


def _cache(cache_dir: str | None, no_cache: bool) -> Any:
    if no_cache:
        return None
    from transferkit.features.cache import FeatureCache, default_cache_dir

    return FeatureCache(cache_dir or default_cache_dir())


def _features(built: list[Any], train: Any, sets: dict[str, Any],
              extract: dict[str, Any]) -> tuple[list[Any], dict[str, list[Any]]]:
    """Each backbone's features of the training data and of every evaluated set (through the cache)."""
    from transferkit.features.extract import extract_features

    train_features = [extract_features(b, train, **extract) for b in built]
    set_features = {s: [extract_features(b, d, **extract) for b in built] for s, d in sets.items()}
    return train_features, set_features


def _reducers(train_features: list[Any], reduce: int | None, seed: int) -> list[dict[str, torch.Tensor] | None]:
    """Per backbone, the PCA (mean and components) fitted on its training features, or ``None`` without ``reduce``."""
    from sklearn.decomposition import PCA

    reducers: list[dict[str, torch.Tensor] | None] = []
    for features in train_features:
        if reduce is None:
            reducers.append(None)
            continue
        components = min(reduce, features.shape[1], len(features))
        pca = PCA(n_components=components, random_state=seed).fit(features)
        reducers.append({"mean": torch.as_tensor(pca.mean_, dtype=torch.float32),
                         "components": torch.as_tensor(pca.components_, dtype=torch.float32)})
    return reducers


def _penalty(probe: Any) -> float:
    """The probe's chosen inverse penalty ``C`` (ridge: ``1 / alpha``; one-vs-rest: their mean)."""
    return float(np.mean(probe.C_))


def _single_probes(backbones: Sequence[str], train_features: list[Any], y_train: Any,
                   set_features: dict[str, list[Any]], labels: dict[str, Any], probe_c: float | None,
                   seed: int, task: Any) -> dict[str, dict[str, Any]]:
    """Each backbone's own probe on the same features, scored on every evaluated set (the stack's comparison)."""
    has_val = "val" in set_features
    single: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(backbones):
        own = task.new_probe(C=probe_c, seed=seed).fit(
            train_features[index], y_train, set_features["val"][index] if has_val else None,
            labels["val"] if has_val else None)
        single[name] = {}
        for s in set_features:
            score, loss = score_and_loss(task, own.predict_proba(set_features[s][index]), labels[s])
            single[name][s] = {task.measure: score, task.output_loss_name: loss}
    return single
