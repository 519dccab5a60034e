"""``recommend``: recommendations from interactions, with items described by a pretrained backbone's frozen features,
so that items nobody has interacted with yet (cold starts) can be recommended too.

``recommend_fit`` steps: check the options, the libraries and the output folder; read and check the item table and
the interactions (:mod:`transferkit.data.interactions`); the backbone's features of every item through the feature
cache; with ``evaluate``, hold out cold items and each user's latest interactions, train on the rest and score
popularity, id-only, content-only and hybrid (:mod:`transferkit.recommendation.evaluation`); train the saved model
on every interaction (:mod:`transferkit.recommendation.training`); write the model folder (kind ``recommender``)
with ``results.txt``. ``recommend_evaluate`` scores a saved model on new interactions; ``recommend_top`` lists the
best items for a user, or the items nearest an item's content (a catalogue item, or a new one from its text or file).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.data.interactions import Catalogue, Interactions, load_catalogue, load_interactions
from transferkit.errors import ConfigError, DataError
from transferkit.models.recommender import Recommender, check_scorer
from transferkit.recommendation.config import RecommendConfig, make_recommend_config
from transferkit.recommendation.evaluation import (RecommendEvaluation, Split, evaluate_recommender,
                                                   split_interactions)
from transferkit.workflows.steps import (backbone_name, build_backbone, build_config, check_runtime, feature_cache,
                                         yaml_text)

log = logging.getLogger("transferkit")

#: The file of a model folder that holds the evaluation as a table and sentences.
RESULTS_FILE = "results.txt"
#: The report's extra sections (``transferkit report`` reads them; :mod:`transferkit.reporting.report`).
REPORT_SECTIONS = "report_sections.json"


@dataclass
class RecommendResult:
    """What ``recommend_fit`` made: the model trained on every interaction, the held-out evaluation (None
    without ``evaluate``), where it was saved, and the run's facts."""

    model: Recommender
    evaluation: RecommendEvaluation | None
    folder: Path | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        facts = self.facts
        lines = [f"recommender: {facts['items']} items ({facts['modality']} content, backbone {facts['backbone']}), "
                 f"{facts['users']} users, {facts['interactions']} interactions"]
        if self.evaluation is not None:
            ev = self.evaluation.facts
            lines += ["", f"held out: {ev['cold_items']} cold items and {ev['test_interactions']} interactions "
                          f"(trained on {ev['train_interactions']})", self.evaluation.table(), ""]
            lines += [s for s in self.evaluation.sentences() if "@k" not in s or "recall" in s or "coverage" in s]
        if self.folder is not None:
            lines += ["", f"saved to {self.folder}"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"facts": self.facts, "folder": None if self.folder is None else str(self.folder),
                "evaluation": None if self.evaluation is None else self.evaluation.to_dict()}


def recommend_fit(interactions: str | Path, *, items: str | Path | None = None,
                  config: RecommendConfig | None = None, **options: Any) -> RecommendResult:
    """Train (and, with ``evaluate``, score on held-out data) a recommender from the ``interactions`` table and
    the item table ``items``; options are those of :class:`~transferkit.recommendation.config.RecommendConfig`.
    Every check runs before the backbone does."""
    if items is not None:
        options = {"items": str(items), **options}
    config = build_config(make_recommend_config, config, {}, options)
    start = time.perf_counter()
    output = _check_before_work(interactions, config)
    catalogue = load_catalogue(config.items, config)
    data = load_interactions(interactions, catalogue.item_ids, catalogue.origin, config)
    _check_enough(data, catalogue, config)
    name, _ = backbone_name(config, catalogue.content)
    backbone = build_backbone(name, config, catalogue.content)
    features = _item_features(backbone, catalogue.content, config)
    spec = {"name": name, "options": config.backbone_options(catalogue.content.modality), "seed": config.seed}
    evaluation = None
    if config.evaluate:
        evaluation = _held_out_evaluation(data, catalogue, features, spec, config)
    model = _train(data, np.arange(len(data)), catalogue, features, spec, config, "recommend (all interactions)")
    facts = {"items": len(catalogue.item_ids), "users": len(data.user_ids), "interactions": len(data),
             "modality": catalogue.content.modality, "backbone": name, "feature_width": int(features.shape[1]),
             "seconds": round(time.perf_counter() - start, 2)}
    result = RecommendResult(model, evaluation, facts=facts)
    if output is not None:
        result.folder = _save(result, config, output)
    return result


def _check_before_work(interactions: Any, config: RecommendConfig) -> Path | None:
    from transferkit.models.folder import check_output_folder
    from transferkit.recommendation.training import check_recommend_installed

    if config.items is None:
        raise ConfigError("recommend fit: no item table; give --items ITEMS (a table of item ids and their content: "
                          "title or description text, or image or audio paths).")
    for role, path in (("interactions", interactions), ("--items", config.items)):
        if not Path(path).is_file():
            raise DataError(f"{path}: no such file ({role}); give a CSV/TSV/JSONL/Parquet table.")
    check_recommend_installed()
    check_runtime(config.device)
    if config.output is None:
        return None
    return check_output_folder(config.output, config.overwrite,
                               inputs=[("interactions", interactions), ("items", config.items)])


def _check_enough(data: Interactions, catalogue: Catalogue, config: RecommendConfig) -> None:
    """Enough users and items to learn vectors of ``factors`` width and to hold some out."""
    items = np.unique(data.items).size
    if len(data.user_ids) < 2 or items < 2:
        raise DataError(f"{data.origin}: {len(data.user_ids)} user(s) and {items} item(s) with interactions; a "
                        "recommender needs at least two of each.")
    never = len(catalogue.item_ids) - items
    if never:
        log.info("%d of %d items have no interactions: they are recommended from their content alone", never,
                 len(catalogue.item_ids))
    if config.evaluate and config.cold_items > 0 and round(items * config.cold_items) == 0:
        warnings.warn(f"{data.origin}: {items} items with interactions hold out no cold item at --cold-items "
                      f"{config.cold_items}; the cold view is not scored.", stacklevel=3)


def _item_features(backbone: Any, content: Dataset, config: RecommendConfig) -> np.ndarray:
    from transferkit.features.sharded import extract_features_sharded

    features = extract_features_sharded(backbone, content, cache=feature_cache(config), batch_size=config.batch_size,
                                        device=config.device, num_workers=config.num_workers,
                                        progress=config.progress, runtime=config.runtime,
                                        processes=config.processes)
    return np.asarray(features, dtype=np.float32)


def _train(data: Interactions, rows: np.ndarray, catalogue: Catalogue, features: np.ndarray, spec: dict[str, Any],
           config: RecommendConfig, run_name: str) -> Recommender:
    from transferkit.recommendation.training import build_recommender

    return build_recommender(data, rows, catalogue.item_ids, features, spec, catalogue.content.modality, config,
                             run_name=run_name)


def _held_out_evaluation(data: Interactions, catalogue: Catalogue, features: np.ndarray, spec: dict[str, Any],
                         config: RecommendConfig) -> RecommendEvaluation:
    split = split_interactions(data, len(catalogue.item_ids), config, config.seed)
    if split.test.size == 0:
        raise DataError(f"{data.origin}: nothing is left to hold out (every user has a single interaction and no "
                        "cold item was drawn); give more interactions, or pass --no-evaluate.")
    held_out_model = _train(data, split.train, catalogue, features, spec, config, "recommend (held-out run)")
    return evaluate_recommender(held_out_model, data, split, config.k, seed=config.seed)


def _save(result: RecommendResult, config: RecommendConfig, output: Path) -> Path:
    """The model folder (kind ``recommender``) with ``results.txt`` and the report's section; then, with
    ``config.report``, ``report.html`` (a failure there is a warning: the model is saved)."""
    from transferkit.models.artifacts import save_any
    from transferkit.models.folder import late_step

    evaluation = result.evaluation
    metrics: dict[str, Any] = {"facts": result.facts}
    extra = {RESULTS_FILE: result.summary() + "\n"}
    if evaluation is not None:
        metrics["recommendation"] = evaluation.to_dict()
        metrics["summary"] = {f"{view}.{scorer}.{m}": v for view, rows in evaluation.views.items()
                              for scorer, row in rows.items() for m, v in row.items()
                              if scorer == "hybrid" and isinstance(v, float)}
        extra[REPORT_SECTIONS] = json.dumps({"sections": [_report_section(result)]}, indent=2)
    run_config = {**config.model_dump(mode="json"), "resolved": result.facts}
    folder = save_any(result.model, output, metrics=metrics, run_config=run_config, overwrite=config.overwrite,
                      extra_files=extra)
    if config.report:
        from transferkit.reporting.report import write_report

        late_step("the report", lambda: write_report(folder, overwrite=True), notes=[])
    return folder


def _report_section(result: RecommendResult) -> dict[str, Any]:
    """The report's "Recommendation" section: the held-out figures as a table, the split and the verdicts."""
    evaluation = result.evaluation
    k, facts = evaluation.k, evaluation.facts
    columns = ["view", "model", f"recall@{k}", f"NDCG@{k}", f"MAP@{k}", "coverage", "cold share", "users"]
    rows = [[view, scorer, *(None if row.get(m) is None else round(row[m], 4)
                             for m in ("recall", "ndcg", "map", "coverage", "cold_share")), row.get("users")]
            for view, scorers in evaluation.views.items() for scorer, row in scorers.items()]
    text = (f"{result.facts['items']} items described by {result.facts['backbone']} ({result.facts['modality']}), "
            f"{result.facts['users']} users, {result.facts['interactions']} interactions. Held out: "
            f"{facts['cold_items']} cold items, {facts['cold_users']} cold users and {facts['test_interactions']} "
            f"interactions of the other users (trained on {facts['train_interactions']}).\n\n"
            + "\n\n".join(s for s in evaluation.sentences() if "recall" in s or "coverage" in s))
    return {"title": "Recommendation", "text": text, "table": {"columns": columns, "rows": rows}}


# --- a saved model ------------------------------------------------------------------------------------------------


def _recommender(model: Any) -> Recommender:
    from transferkit.models.artifacts import load_model

    loaded = load_model(model) if isinstance(model, (str, Path)) else model
    if not isinstance(loaded, Recommender):
        raise ConfigError(f"{model}: is a {type(loaded).__name__}, not a recommender; give a folder that "
                          "`transferkit recommend fit` saved.")
    return loaded


def recommend_evaluate(model: Any, interactions: str | Path | None = None, *, k: int = 10, seed: int = 0,
                       **table_options: Any) -> RecommendEvaluation:
    """Score a saved recommender on an ``interactions`` table of later interactions (users the model does not know
    are left out, with a warning; pairs it was trained on are not counted; items without history are its cold
    items); without ``interactions``, the held-out evaluation saved when the folder ``model`` was fitted."""

    recommender = _recommender(model)
    if interactions is None:
        if not isinstance(model, (str, Path)):
            raise ConfigError("recommend evaluate: give an interactions table (the saved evaluation is read from a "
                              "model folder, and a loaded model was given).")
        saved = json.loads((Path(model) / "metrics.json").read_text(encoding="utf-8")).get("recommendation")
        if not isinstance(saved, dict):
            raise ConfigError(f"{model}: was fitted without a held-out evaluation (--no-evaluate); give an "
                              "interactions table to score it on.")
        return RecommendEvaluation(saved["k"], saved["views"], saved["comparisons"], saved.get("facts", {}))
    config = make_recommend_config("recommend evaluate", k=k, seed=seed, **table_options)
    data = load_interactions(interactions, recommender.item_ids, str(model), config)
    data = _as_model_users(data, recommender)
    split = Split(train=np.zeros(0, dtype=np.int64), test=np.arange(len(data)), cold=~recommender.has_history)
    return evaluate_recommender(recommender, data, split, k, seed=seed)


def _as_model_users(data: Interactions, recommender: Recommender) -> Interactions:
    known = {u: i for i, u in enumerate(recommender.user_ids)}
    mapped = np.array([known.get(data.user_ids[u], -1) for u in data.users], dtype=np.int64)
    keep = mapped >= 0
    for n in np.flatnonzero(keep):  # a pair seen in training is never recommended again: not a test pair
        keep[n] = data.items[n] not in recommender.seen(int(mapped[n]))
    if not (mapped >= 0).any():
        raise DataError(f"{data.origin}: none of its users is known to the model; score it on interactions of the "
                        "users it was trained on.")
    if not (mapped >= 0).all():
        warnings.warn(f"{data.origin}: {int((mapped < 0).sum())} interactions of users the model does not know are "
                      "left out.", stacklevel=3)
    if not keep.any():
        raise DataError(f"{data.origin}: every interaction of a known user was already in the training data; "
                        "score the model on later interactions.")
    return Interactions(mapped[keep], data.items[keep], None if data.times is None else data.times[keep],
                        recommender.user_ids, data.origin)


def recommend_top(model: Any, *, user: str | None = None, likes: list[str] | None = None, item: str | None = None,
                  content: str | None = None, k: int = 10, scorer: str = "hybrid",
                  device: str = "auto") -> list[dict[str, Any]]:
    """The ``k`` best items for ``user`` or for a new user who liked the items ``likes`` (by ``scorer``), or the
    ``k`` items whose content is nearest ``item`` (a catalogue item) or ``content`` (a new item: its text, or its
    image or audio file, as the catalogue's items; embedded by the model's backbone). Each row: ``item``, ``score``
    and ``cold`` (the item has no history)."""
    given = [name for name, value in (("user", user), ("likes", likes), ("item", item), ("content", content))
             if value is not None]
    if len(given) != 1:
        raise ConfigError("recommend top: give exactly one of --user, --likes, --item or --content"
                          + (f" (got {', '.join('--' + g for g in given)})." if given else "."))
    if k < 1:
        raise ConfigError(f"option 'k' (-k): must be at least 1 (got {k}).")
    check_scorer(scorer)
    recommender = _recommender(model)
    if user is not None:
        return recommender.recommend(str(user), k, scorer)
    if likes is not None:
        return recommender.recommend_for_items(likes, k, scorer)
    if item is not None:
        index = recommender.item_index(str(item))
        return recommender.similar(recommender.item_content_vectors[index], k, exclude=index)
    return recommender.similar_to_content(str(content), k, device)


__all__ = ["RESULTS_FILE", "RecommendResult", "recommend_evaluate", "recommend_fit", "recommend_top"]
