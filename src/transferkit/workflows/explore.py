"""``explore``: understand a pile of data before (or after) labelling it, from a backbone's frozen features.

Steps: check the options and the output folder; read DATA (labelled when it has labels: class sub-folders or a
label column) and the optional ``test`` and ``unlabelled`` splits; refuse data that cannot be explored (fewer than
three examples, every example identical); the backbone's features of every example through the feature cache
(streamed in chunks, never every decoded image at once); then, on those features, the 2-D map, the clusters and
their summaries, near-duplicates within and across splits, outliers, label issues of the labelled examples and,
with ``suggest_labels``, a label for each unlabelled example; last, ``explore.csv`` (+ ``explore.parquet``),
``summary.json`` and the self-contained page ``explore.html``. The analyses are in :mod:`transferkit.exploration`.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, DataError
from transferkit.exploration.config import ExploreConfig, make_explore_config
from transferkit.exploration.result import ExploreResult
from transferkit.modalities import get_modality
from transferkit.workflows.steps import backbone_name, build_backbone, build_config, check_runtime, feature_cache

log = logging.getLogger("transferkit")

#: Examples nearest each cluster's centre shown in its summary.
CENTRAL_EXAMPLES = 6
#: The fewest examples explore takes (two clusters and a silhouette score need three).
MIN_EXAMPLES = 3


def explore(data: Any, *, config: ExploreConfig | None = None, **options: Any) -> ExploreResult:
    """Explore ``data`` (a folder, a table or a :class:`~transferkit.data.Dataset`; labelled or not) through the
    frozen features of a backbone: map, clusters, duplicates, outliers, label issues, suggested labels.

    Options are those of :class:`~transferkit.exploration.config.ExploreConfig` (``backbone``, ``unlabelled``,
    ``test``, ``output``, ``map``, ``clusters``, ``suggest_labels``, ...). Every option, the output folder and the
    data are checked before the backbone runs. Returns an :class:`~transferkit.exploration.result.ExploreResult`; with
    ``output``, its tables and page are written there.
    """
    config = build_config(make_explore_config, config, {}, options)
    start = time.perf_counter()
    output = _check_before_work(data, config)
    splits = _load_splits(data, config)
    joined, split_of, labels = _join(splits)
    _check_explorable(joined, labels, config)
    name, _ = backbone_name(config, joined)
    backbone = build_backbone(name, config, joined)
    features = _features(backbone, joined, config)
    result = _analyse(joined, split_of, labels, features, config)
    result.facts.update(backbone=name, splits={s: len(d) for s, d in splits},
                        seconds=time.perf_counter() - start)
    if output is not None:
        _write(result, joined, features.shape[0], output, config)
    return result


# --- checks and data ---------------------------------------------------------------------------------------------


def _check_before_work(data: Any, config: ExploreConfig) -> Path | None:
    """The device exists; the output folder (when given) can take the outputs without replacing an earlier
    explore's unless ``overwrite``, and is not inside the data."""
    if data is None:
        raise ConfigError("explore: no data; give a folder of images or clips, or a table file, or a Dataset.")
    check_runtime(config.device)
    if config.output is None:
        return None
    from transferkit.exploration.outputs import check_explore_output

    return check_explore_output(config.output, config.overwrite,
                                inputs=[s for s in (data, config.test, config.unlabelled) if isinstance(s, (str, Path))])


def _load_splits(data: Any, config: ExploreConfig) -> list[tuple[str, Dataset]]:
    """``[(split name, dataset)]``: DATA (labelled when it has labels), then ``test`` (labelled) and ``unlabelled``
    when given; one modality for all."""
    from transferkit.data.sources import load_data
    from transferkit.data.validation import validate_dataset

    splits = [("data", _load_maybe_labelled(data, config))]
    if config.test is not None:
        splits.append(("test", load_data(config.test, config)))
    if config.unlabelled is not None:
        splits.append(("unlabelled", load_data(config.unlabelled, config, unlabelled=True)))
    for split, dataset in splits:
        if len(dataset) == 0:
            raise DataError(f"{dataset.origin}: the {split} data has no examples; give a folder or table with examples.")
        validate_dataset(dataset, role="evaluation")
        if dataset.modality != splits[0][1].modality:
            raise ConfigError(f"explore: {dataset.origin} ({split}) holds {dataset.modality} data but "
                              f"{splits[0][1].origin} holds {splits[0][1].modality} data; explore one kind at a time.")
    return splits


def _load_maybe_labelled(source: Any, config: ExploreConfig) -> Dataset:
    """DATA with its labels when it has them (class sub-folders, a label column), else without."""
    from transferkit.data.sources import load_data

    if isinstance(source, Dataset):
        return source
    path = Path(source).expanduser() if isinstance(source, (str, Path)) else None
    if path is not None and path.is_dir():
        has_classes = any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
        return load_data(source, config, unlabelled=not has_classes)
    if path is not None and path.is_file() and config.label_column is None:
        try:
            return load_data(source, config)
        except DataError as exc:
            if "no label column" not in str(exc):
                raise
            log.info("explore: %s has no label column; explored without labels", path)
            return load_data(source, config, unlabelled=True)
    return load_data(source, config)


def _join(splits: list[tuple[str, Dataset]]) -> tuple[Dataset, list[str], list[str | None]]:
    """One dataset of every split's examples, the split of each and its label (``None`` when unlabelled)."""
    from transferkit.data.dataset import concat

    first = splits[0][1]
    joined = concat([d for _, d in splits], origin=first.origin) if len(splits) > 1 else first
    split_of = [name for name, d in splits for _ in range(len(d))]
    labels = [lab for _, d in splits for lab in (d.labels if d.labels is not None else [None] * len(d))]
    return joined, split_of, labels


def _check_explorable(joined: Dataset, labels: list[str | None], config: ExploreConfig) -> None:
    """Refused before the backbone runs: fewer than :data:`MIN_EXAMPLES` examples, every example identical,
    ``suggest_labels`` without both labelled and unlabelled examples."""
    if len(joined) < MIN_EXAMPLES:
        raise DataError(f"{joined.origin}: {len(joined)} example(s); explore needs at least {MIN_EXAMPLES} (a map, "
                        "two clusters and neighbours need several). Give more examples.")
    if len(set(joined.item_keys())) == 1:
        raise DataError(f"{joined.origin}: all {len(joined)} examples have the same content; there is nothing to "
                        "map, cluster or compare. Give varied examples.")
    if config.suggest_labels:
        labelled = sum(lab is not None for lab in labels)
        if labelled == 0 or labelled == len(labels):
            missing = "labelled examples (DATA with class sub-folders or a label column)" if labelled == 0 else \
                "unlabelled examples (--unlabelled DATA)"
            raise ConfigError(f"option 'suggest_labels': suggestions need both labelled and unlabelled examples; "
                              f"this run has no {missing}.")


def _features(backbone: Any, joined: Dataset, config: ExploreConfig) -> np.ndarray:
    from transferkit.exploration.analysis import check_spread
    from transferkit.features.sharded import extract_features_sharded

    features = extract_features_sharded(backbone, joined, cache=feature_cache(config), batch_size=config.batch_size,
                                        device=config.device, num_workers=config.num_workers,
                                        progress=config.progress, runtime=config.runtime,
                                        processes=config.processes)
    check_spread(features, joined.origin)
    return features


# --- analyses ----------------------------------------------------------------------------------------------------


def _analyse(joined: Dataset, split_of: list[str], labels: list[str | None], features: np.ndarray,
             config: ExploreConfig) -> ExploreResult:
    """Map, clusters, duplicates and outliers of every example; label issues and suggestions where labels allow."""
    from transferkit.exploration import analysis as an

    n = len(joined)
    unit = an.unit_rows(features)
    reduced = an.reduce(unit, config.seed)
    neighbours = an.nearest_neighbours(unit, config.neighbours, exact_limit=config.exact_search_limit,
                                       seed=config.seed)
    coords, map_text = an.two_d_map(reduced, an.map_method(config.map, n), config.seed)
    ids, cluster_text, silhouettes = an.cluster(reduced, config.cluster_method, clusters=config.clusters,
                                                max_clusters=config.max_clusters, seed=config.seed)
    group, kinds = an.duplicate_groups(joined.item_keys(), neighbours, config.duplicate_similarity)
    score, flagged, threshold = an.outlier_scores(neighbours)
    table: dict[str, list[Any]] = {
        "split": split_of, "row_id": list(joined.row_ids), "label": labels, "cluster": ids.tolist(),
        "map_x": coords[:, 0].tolist(), "map_y": coords[:, 1].tolist(), "duplicate_group": group.tolist(),
        "duplicate_kind": kinds, "outlier_score": score.tolist(), "outlier": flagged.tolist(),
        "label_issue_score": [None] * n, "label_issue": [None] * n, "suggested_label": [None] * n,
        "suggested_probability": [None] * n}
    facts: dict[str, Any] = {
        "examples": n, "map_method": map_text, "cluster_method": cluster_text,
        "cluster_count": len(set(ids.tolist()) - {-1}),
        "silhouette": {str(k): round(v, 4) for k, v in silhouettes.items()}, "neighbour_search": neighbours.method,
        "duplicate_similarity": config.duplicate_similarity, "exact_duplicates": kinds.count("exact"),
        "near_duplicates": kinds.count("near"), "cross_split_groups": _cross_split_groups(group, split_of),
        "outliers": int(flagged.sum()), "outlier_threshold": threshold,
        "outlier_rule": f"mean cosine distance to the {neighbours.indices.shape[1]} nearest neighbours above the "
                        "larger of the median + 3 robust standard deviations and 1.5 x the median"}
    _label_checks(features, labels, joined, table, facts, config)
    clusters = _cluster_summaries(joined, reduced, ids, labels)
    return ExploreResult(table=table, clusters=clusters, facts=facts)


def _cross_split_groups(group: np.ndarray, split_of: list[str]) -> int:
    seen: dict[int, set[str]] = {}
    for g, split in zip(group.tolist(), split_of):
        if g >= 0:
            seen.setdefault(g, set()).add(split)
    return sum(len(s) > 1 for s in seen.values())


def _label_checks(features: np.ndarray, labels: list[str | None], joined: Dataset, table: dict[str, list[Any]],
                  facts: dict[str, Any], config: ExploreConfig) -> None:
    """Label issues of the labelled examples (out-of-fold probe probabilities, confident learning) and, with
    ``suggest_labels``, the probe's label for each unlabelled example; into ``table`` and ``facts``."""
    from transferkit.data.dataset import sort_labels
    from transferkit.exploration import analysis as an
    from transferkit.tasks import get_task

    rows = np.asarray([i for i, lab in enumerate(labels) if lab is not None], dtype=np.int64)
    classes = sort_labels([labels[i] for i in rows]) if len(rows) else []
    facts.update(labelled=len(rows), label_method=None, label_issues=0)
    if len(classes) < 2:
        if len(rows):
            warnings.warn(f"explore: {joined.origin}: the labelled examples hold one class; label issues need two "
                          "or more.", stacklevel=3)
        return
    task = get_task(joined.task)
    index = {c: i for i, c in enumerate(classes)}
    targets = np.asarray([index[labels[i]] for i in rows], dtype=np.int64)
    proba, chosen_c = an.out_of_fold_probabilities(features[rows], targets, task, folds=config.folds, seed=config.seed)
    score, flagged, method = an.label_issues(targets, proba)
    for r, s, f in zip(rows.tolist(), score.tolist(), flagged.tolist()):
        table["label_issue_score"][r], table["label_issue"][r] = float(s), bool(f)
    facts.update(label_method=f"{method}; out-of-fold probabilities of a {config.folds}-fold probe (C={chosen_c:g})",
                 label_issues=int(flagged.sum()), classes=classes)
    others = np.asarray([i for i, lab in enumerate(labels) if lab is None], dtype=np.int64)
    if config.suggest_labels and len(others):
        suggested = an.suggested_labels(features[rows], targets, features[others], task, seed=config.seed)
        for r, p in zip(others.tolist(), suggested):
            table["suggested_label"][r] = classes[int(p.argmax())]
            table["suggested_probability"][r] = float(p.max())
        facts["suggested"] = len(others)


def _cluster_summaries(joined: Dataset, reduced: np.ndarray, ids: np.ndarray,
                       labels: list[str | None]) -> list[dict[str, Any]]:
    """Per cluster: size, label counts, the examples nearest its centre (as the modality shows them) and, where
    the modality has them, distinctive terms."""
    from collections import Counter

    from transferkit.exploration.analysis import central_examples

    modality = get_modality(joined.modality)
    central = central_examples(reduced, ids, CENTRAL_EXAMPLES)
    terms = modality.distinctive_terms(joined.items, ids)
    summaries = []
    for cid in sorted(set(ids.tolist())):
        members = np.flatnonzero(ids == cid)
        counts = Counter(labels[i] for i in members if labels[i] is not None)
        shown = central.get(cid, members[:CENTRAL_EXAMPLES].tolist())
        summaries.append({"id": cid, "size": len(members), "labels": dict(counts.most_common()),
                          "central": [joined.row_ids[i] for i in shown],
                          "examples": [{"row_id": joined.row_ids[i], **modality.example(joined.items[i])} for i in shown],
                          "terms": terms.get(cid, [])})
    return summaries


# --- outputs -----------------------------------------------------------------------------------------------------


def _write(result: ExploreResult, joined: Dataset, n: int, output: Path, config: ExploreConfig) -> None:
    """``explore.csv`` (+ ``explore.parquet``), ``summary.json`` and ``explore.html`` in ``output``."""
    from transferkit.exploration.outputs import write_tables
    from transferkit.reporting.explore_page import write_explore_page

    result.files.update(write_tables(result, output))
    result.files["page"] = str(write_explore_page(result, joined, output, max_points=config.map_points,
                                                  seed=config.seed))
    from transferkit.exploration.outputs import write_summary

    result.files["summary"] = str(write_summary(result, output, config))
