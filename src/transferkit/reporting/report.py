"""``transferkit report RUN_DIR``: one self-contained HTML file describing a run folder.

The page holds every image as a base64 data URI and its CSS inline; it loads nothing (no scripts, fonts or
styles from a network), so it opens anywhere, also offline and as an e-mail attachment. Sections appear when the
run folder has the files they read (the list, with the shapes of the JSON files, is in ``docs/reports.md``):

=====================  ==================================================================================
section                files
=====================  ==================================================================================
model and config       ``config.json`` (model folder), ``run_config.yaml`` (the resolved options)
data                   ``examples.json`` (counts per split, examples per class), ``run_config.yaml``
learning curves        ``training_log.csv`` (the engine's per-epoch log), else ``metrics.json`` training history
metrics and verdict    ``metrics.json`` (test metrics, baselines, comparisons, optional cross-validation)
confusion matrix       ``metrics.json``
hardest mistakes       ``examples.json`` (``hardest``), ``predictions.csv``
explanations           ``examples.json`` (``hardest``) and the model folder: the mistakes the model was surest of,
                       explained (:mod:`transferkit.reporting.explanations`; ``explain_mistakes`` of them)
ranking                ``ranking.json`` (:meth:`Ranking.to_dict`), or the ranking of ``--backbone auto``
domain adaptation      ``adaptation.json`` (+ the PNG files it names; also the shape ``transferkit adapt`` writes)
weight interpolation   ``interpolation.json`` (also the ``curve`` shape ``transferkit fuse`` writes)
compressed variants    ``compression.json``, else ``tradeoff.json`` (``transferkit compress``)
any other              ``report_sections.json``: titled sections of text, tables and PNG / JPEG / SVG files
=====================  ==================================================================================
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from transferkit._io import atomic_write_text
from transferkit._version import __version__
from transferkit.errors import ArtifactError, ConfigError
from transferkit.reporting._html import escape as _e, image_tag as _img, number as _num, table as _table
from transferkit.reporting.options import EXPLAINED_MISTAKES

REPORT_FILE = "report.html"
#: Marks a page as written by transferkit (an existing report at the default place is written again).
GENERATOR_MARK = '<meta name="generator" content="transferkit report">'
RANKING_FILE = "ranking.json"
#: The test figures shown for a model whose task has no accuracy, in this order where present.
TASK_FIGURES = ("r2", "mae", "rmse", "spearman", "example_f1", "micro_f1", "macro_f1", "map", "subset_accuracy")
ADAPTATION_FILE = "adaptation.json"
INTERPOLATION_FILE = "interpolation.json"
COMPRESSION_FILE = "compression.json"
TRADEOFF_FILE = "tradeoff.json"
SECTIONS_FILE = "report_sections.json"
KNOWN_FILES = ("metrics.json", "config.json", "run_config.yaml", "training_log.csv", "examples.json",
               "predictions.csv", RANKING_FILE, ADAPTATION_FILE, INTERPOLATION_FILE, COMPRESSION_FILE, TRADEOFF_FILE,
               SECTIONS_FILE)
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp", ".svg": "image/svg+xml"}
#: Larger image files named in a manifest are left out (with a note) rather than making the page huge.
MAX_EMBEDDED_IMAGE_BYTES = 8 * 1024 * 1024

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2937;background:#f8fafc}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6rem;margin:0 0 4px} h2{font-size:1.25rem;margin:0 0 12px;border-bottom:1px solid #e5e7eb;padding-bottom:6px}
h3{font-size:1.05rem;margin:16px 0 8px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px 20px;margin:16px 0}
nav a{margin-right:12px;color:#2563eb;text-decoration:none;font-size:.9rem}
table{border-collapse:collapse;margin:8px 0;font-size:.9rem} th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f5f9} td.num{text-align:right;font-variant-numeric:tabular-nums}
img.plot{max-width:100%;height:auto;display:block;margin:8px 0}
.thumbs{display:flex;flex-wrap:wrap;gap:6px} img.thumb{width:72px;height:72px;object-fit:contain;border:1px solid #e5e7eb;background:#fff;image-rendering:pixelated}
.verdict{padding:8px 12px;border-radius:6px;margin:6px 0} .helped{background:#dcfce7} .hurt{background:#fee2e2} .same{background:#f1f5f9}
.muted{color:#6b7280;font-size:.85rem} pre{background:#f1f5f9;padding:8px;overflow:auto;font-size:.8rem}
.cards{display:flex;flex-wrap:wrap;gap:12px} .card{border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px;min-width:140px}
.card b{display:block;font-size:1.3rem}
figure{margin:8px 0} figcaption{color:#6b7280;font-size:.85rem}
img.explained{max-width:420px;height:auto;display:block;image-rendering:pixelated} p.explained-text{max-width:520px}
"""


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95% score interval of a proportion (accuracy) measured on ``n`` examples."""
    if n <= 0:
        return (math.nan, math.nan)
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


class _Run:
    """The run folder's files, read once, each ``None`` when absent; a file that exists but cannot be read is an
    error naming it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.notes: list[str] = []

    def json(self, name: str) -> Any:
        path = self.folder / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path}: not valid JSON ({exc}); fix or remove the file to write the report.") from None

    def yaml(self, name: str) -> Any:
        import yaml

        path = self.folder / name
        if not path.is_file():
            return None
        try:
            return yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path}: not valid YAML ({exc}).") from None

    def csv_rows(self, name: str) -> list[dict[str, str]] | None:
        path = self.folder / name
        if not path.is_file():
            return None
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def image(self, name: Any, section: str) -> tuple[bytes, str] | None:
        """A picture file named in a JSON file, only from inside the run folder."""
        if not isinstance(name, str) or not name:
            self.notes.append(f"{section}: an image entry is not a file name ({name!r}); left out.")
            return None
        path = (self.folder / name).resolve()
        if self.folder.resolve() not in path.parents:
            self.notes.append(f"{section}: {name} is outside the run folder; left out.")
            return None
        mime = IMAGE_TYPES.get(path.suffix.lower())
        if mime is None or not path.is_file():
            self.notes.append(f"{section}: {name} " + ("is missing" if mime else "is not a PNG, JPEG, GIF, WebP or "
                                                       "SVG file") + "; left out.")
            return None
        if path.stat().st_size > MAX_EMBEDDED_IMAGE_BYTES:
            self.notes.append(f"{section}: {name} is larger than {MAX_EMBEDDED_IMAGE_BYTES >> 20} MB; left out.")
            return None
        return path.read_bytes(), mime


def _figures(run: _Run, entries: Any, section: str) -> str:
    parts = []
    for entry in entries or []:
        name, caption = (entry.get("file"), entry.get("caption", "")) if isinstance(entry, dict) else (entry, "")
        found = run.image(name, section)
        if found is not None:
            caption_html = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
            parts.append(f"<figure>{_img(found[0], caption or str(name), found[1])}{caption_html}</figure>")
    return "".join(parts)


# --- sections ----------------------------------------------------------------------------------------------------

def _overview(run: _Run, model: dict | None, options: dict | None, metrics: dict | None) -> str:
    options = options or {}
    cards = []
    test = (metrics or {}).get("test") or {}
    if "accuracy" in test:
        low, high = wilson_interval(test["accuracy"], int(test.get("n", 0)))
        cards.append(("test accuracy", f"{test['accuracy']:.3f}", f"95% interval {low:.3f} to {high:.3f}, "
                                                                   f"{test.get('n')} examples"))
    if "macro_f1" in test:
        cards.append(("macro-F1", f"{test['macro_f1']:.3f}", ""))
    backbone = (model or {}).get("backbone", {}).get("name") or options.get("backbone")
    strategy = (model or {}).get("strategy") or options.get("strategy")
    if backbone:
        cards.append(("backbone", _e(backbone), _e(strategy or "")))
    classes = (model or {}).get("classes") or options.get("classes") or []
    if classes:
        cards.append(("classes", str(len(classes)), _e(", ".join(map(str, classes[:8])) + (" ..." if len(classes) > 8 else ""))))
    html_cards = "".join(f'<div class="card"><span class="muted">{_e(t)}</span><b>{v}</b>'
                         f'<span class="muted">{s}</span></div>' for t, v, s in cards)
    verdicts = "".join(_verdict_line(c) for c in (metrics or {}).get("comparisons", []))
    return f'<div class="cards">{html_cards}</div>{verdicts}'


def _verdict_line(comparison: dict[str, Any]) -> str:
    from transferkit.evaluation.verdict import HELPED, HURT, Comparison

    try:
        sentence = Comparison(**comparison).sentence()
    except TypeError:
        sentence = f"{comparison.get('baseline')}: {comparison.get('verdict')}"
    css = {HELPED: "helped", HURT: "hurt"}.get(comparison.get("verdict"), "same")
    return f'<div class="verdict {css}">{_e(sentence)}</div>'


_HEADLINE_OPTIONS = ("data", "val", "test", "backbone", "strategy", "modality", "n_train", "n_val", "n_test", "seed",
                     "shots", "batch_size", "transferkit_version")
_TRAINING_OPTIONS = ("epochs", "lr", "head_lr", "weight_decay", "augment", "precision", "patience")


def _configuration(model: dict | None, options: dict | None, card: str | None) -> str:
    parts = []
    if options:
        from transferkit.strategies.registry import keeps_pretrained_backbone

        trained = not keeps_pretrained_backbone(options.get("strategy"))
        rows = [(k, json.dumps(options[k]) if isinstance(options[k], (dict, list)) else options[k])
                for k in (*_HEADLINE_OPTIONS, *(_TRAINING_OPTIONS if trained else ()))
                if k in options and options[k] is not None]
        parts.append(_table(["option", "value"], rows))
        import yaml

        parts.append(f"<details><summary>all resolved options (run_config.yaml)</summary><pre>"
                     f"{_e(yaml.safe_dump(options, sort_keys=False))}</pre></details>")
    if model:
        pre = model.get("backbone", {}).get("preprocessing")
        if pre:
            parts.append(f"<h3>preprocessing</h3><pre>{_e(json.dumps(pre, indent=1))}</pre>")
    if card:
        parts.append(f"<details><summary>model card (README.md)</summary><pre>{_e(card)}</pre></details>")
    return "".join(parts)


def _data(examples: dict | None, options: dict | None) -> str:
    from transferkit.reporting import plots

    parts = []
    examples = examples if isinstance(examples, dict) else None  # a detector's examples are boxes, shown later
    if examples and examples.get("counts"):
        classes = examples.get("classes") or list(next(iter(examples["counts"].values())))
        parts.append(_img(plots.class_counts(examples["counts"], classes), "examples per class and split"))
        splits = list(examples["counts"])
        rows = [[c, *[examples["counts"][s].get(c, 0) for s in splits]] for c in classes]
        rows.append(["total", *[sum(examples["counts"][s].values()) for s in splits]])
        parts.append(_table(["class", *splits], rows))
    elif options and options.get("n_train"):
        parts.append(f"<p>{options['n_train']} training, {options.get('n_test', 0)} test examples.</p>")
    if examples and examples.get("class_examples"):
        parts.append("<h3>examples of each class</h3>")
        for name, items in examples["class_examples"].items():
            parts.append(f"<h4>{_e(name)}</h4>{_examples_html(items, examples.get('modality'))}")
    return "".join(parts)


def _shown_as(modality: Any) -> Any:
    """The modality entry that shows a report's examples; examples.json files without a known modality (written
    before it was recorded) hold thumbnails, as image examples do."""
    from transferkit.modalities import MODALITIES

    return MODALITIES.get(modality) or MODALITIES["image"]


def _examples_html(items: Sequence[dict], modality: str | None) -> str:
    return _shown_as(modality).examples_html(items, _e)


def epoch_history(log_rows: list[dict[str, str]] | None, metrics: dict | None) -> list[dict[str, Any]]:
    """One row per epoch from the engine's CSV log (Lightning writes step and epoch values on separate rows:
    the last value of each column within an epoch is kept), else from ``metrics.json``'s training history."""
    if log_rows:
        by_epoch: dict[int, dict[str, Any]] = {}
        for row in log_rows:
            try:
                epoch = int(float(row.get("epoch") or "nan"))
            except ValueError:
                continue
            target = by_epoch.setdefault(epoch, {"epoch": epoch})
            for key, value in row.items():
                if key not in ("epoch", "step") and value not in (None, ""):
                    try:
                        target[key] = float(value)
                    except ValueError:
                        pass
        if by_epoch:
            return [by_epoch[e] for e in sorted(by_epoch)]
    history = ((metrics or {}).get("training") or {}).get("history")
    return list(history) if isinstance(history, list) else []


def _learning_curves(history: list[dict[str, Any]], metrics: dict | None) -> str:
    from transferkit.reporting import plots

    training = ((metrics or {}).get("training") or {}).get("training") or {}
    parts = [_img(plots.learning_curves(history), "learning curves: loss and validation accuracy per epoch")]
    facts = [(k, training[k]) for k in ("best_epoch", "best_score", "monitor", "epochs_run", "stopped_early",
                                        "global_step", "seconds", "precision") if k in training]
    if facts:
        parts.append(_table(["training", "value"], facts))
    return "".join(parts)


def _metrics(metrics: dict, predictions: list[dict[str, str]] | None) -> str:
    from transferkit.reporting import plots

    test = metrics.get("test") or {}
    rows, bars = [], []
    entries = [("model", test)] + [(f"baseline: {k}", v) for k, v in (metrics.get("baselines") or {}).items()]
    for name, m in entries:
        if "accuracy" not in m:
            continue
        low, high = wilson_interval(m["accuracy"], int(m.get("n", 0)))
        rows.append([name, m["accuracy"], f"{low:.3f} to {high:.3f}", m.get("macro_f1"), m.get("n"),
                     m.get("description", "")])
        bars.append((name, float(m["accuracy"]), low, high))
    parts = [_task_figures(metrics)]
    if bars:
        parts.append(_img(plots.accuracy_with_intervals(bars), "test accuracy of the model and the baselines"))
        parts.append(_table(["", "accuracy", "95% interval (Wilson)", "macro-F1", "examples", "what"], rows))
    if predictions:
        spread = _bootstrap_macro_f1(predictions, test.get("classes") or [])
        if spread:
            parts.append(f"<p class='muted'>macro-F1 of the model: 95% bootstrap interval {spread[0]:.3f} to "
                         f"{spread[1]:.3f} (1,000 resamples of the {len(predictions)} test predictions).</p>")
    comparisons = metrics.get("comparisons") or []
    if comparisons:
        parts.append("<h3>verdict against the baselines</h3>")
        parts.append(_img(plots.verdict_intervals(comparisons), "accuracy difference against each baseline"))
        parts.append("".join(_verdict_line(c) for c in comparisons))
    for name, why in (metrics.get("baselines_not_run") or {}).items():
        parts.append(f"<p class='muted'>not run: {_e(name)} ({_e(why)})</p>")
    cv = _cross_validation(metrics.get("cross_validation"))
    if cv:
        parts.append("<h3>cross-validation</h3>")
        parts.append(_img(plots.fold_spread(cv), "metric per cross-validation fold"))
        parts.append(_table(["metric", "mean", "std", "folds"],
                            [[k, _mean(v), _std(v), len(v)] for k, v in cv.items()]))
    per_class = test.get("per_class") or {}
    if per_class:
        parts.append("<h3>per class</h3>")
        parts.append(_table(["class", "precision", "recall", "F1", "support"],
                            [[c, r["precision"], r["recall"], r["f1"], r["support"]] for c, r in per_class.items()]))
    return "".join(parts)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _std(values: Sequence[float]) -> float:
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))


def _cross_validation(cv: Any) -> dict[str, list[float]]:
    """``{"metric": [per-fold values]}`` or ``{"folds": [{"metric": value}, ...]}`` -> ``{metric: [values]}``."""
    if not isinstance(cv, dict):
        return {}
    if isinstance(cv.get("folds"), list):
        out: dict[str, list[float]] = {}
        for fold in cv["folds"]:
            for key, value in (fold.items() if isinstance(fold, dict) else []):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.setdefault(key, []).append(float(value))
        return out
    return {k: [float(x) for x in v] for k, v in cv.items()
            if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)}


def bootstrap_macro_f1(y_true, y_pred, n_classes: int, n_boot: int = 1000, seed: int = 0,
                       confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of macro-F1 over resampled test examples (class indices ``(N,)``).

    Per resample, F1 of class c is ``2 TP_c / (true_c + predicted_c)`` (0 when the class is neither present nor
    predicted, as scikit-learn's ``zero_division=0``), averaged over all ``n_classes``; counts come from one
    ``bincount`` per chunk of resamples.
    """
    import numpy as np

    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    n = len(y_true)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_boot, 100):
        size = min(100, n_boot - start)
        index = rng.integers(0, n, size=(size, n))
        t, p = y_true[index], y_pred[index]
        offset = (np.arange(size) * n_classes)[:, None]
        length = size * n_classes
        true_count = np.bincount((t + offset).ravel(), minlength=length).reshape(size, n_classes)
        pred_count = np.bincount((p + offset).ravel(), minlength=length).reshape(size, n_classes)
        hits = np.bincount((t + offset)[t == p], minlength=length).reshape(size, n_classes)
        denominator = true_count + pred_count
        f1 = np.divide(2 * hits, denominator, out=np.zeros(denominator.shape), where=denominator > 0)
        values.append(f1.mean(axis=1))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(np.concatenate(values), [alpha, 1 - alpha])
    return float(low), float(high)


def _bootstrap_macro_f1(predictions: list[dict[str, str]], classes: Sequence[str]) -> tuple[float, float] | None:
    if not predictions or "true" not in predictions[0]:  # predictions of a task without classes
        return None
    names = list(classes) or sorted({r["true"] for r in predictions} | {r["predicted"] for r in predictions})
    index = {c: i for i, c in enumerate(names)}
    try:
        y_true = [index[r["true"]] for r in predictions]
        y_pred = [index[r["predicted"]] for r in predictions]
    except KeyError:
        return None
    return bootstrap_macro_f1(y_true, y_pred, len(names))


def _task_figures(metrics: dict) -> str:
    """The test figures of a model whose task has no accuracy (regression, multi-label), with their intervals,
    beside each baseline's."""
    test = metrics.get("test") or {}
    names = [k for k in TASK_FIGURES if isinstance(test.get(k), (int, float))]
    if not names or "accuracy" in test:
        return ""
    entries = [("model", test)] + [(f"baseline: {k}", v) for k, v in (metrics.get("baselines") or {}).items()]
    intervals = test.get("intervals") or {}
    rows = [[name, *[m.get(k) for k in names], m.get("n"), m.get("description", "")] for name, m in entries]
    spread = "".join(f"<li>{_e(k)}: {intervals[k][0]:.3f} to {intervals[k][1]:.3f}</li>" for k in names
                     if isinstance(intervals.get(k), (list, tuple)) and len(intervals[k]) == 2)
    return (_table(["", *names, "examples", "what"], rows)
            + (f"<p class='muted'>95% bootstrap intervals of the model:</p><ul>{spread}</ul>" if spread else ""))


def _interval_note(interval: dict | None) -> str:
    """The prediction interval's test figures (``metrics.json``'s ``test.interval``): the empirical coverage
    beside the nominal level, and the width."""
    if not isinstance(interval, dict) or not all(k in interval for k in ("level", "coverage", "width", "n")):
        return ""
    low, high = (interval.get("coverage_ci") or [None, None])[:2]
    spread = f" (95% interval {100 * low:.1f}% to {100 * high:.1f}%)" if low is not None and high is not None else ""
    return (f"<p>Prediction intervals ({_e(str(interval.get('method', 'split conformal')))}): predicted value "
            f"± {interval['width'] / 2:.4g}. Nominal coverage {100 * interval['level']:.0f}%; on the "
            f"{interval['n']} test examples {100 * interval['coverage']:.1f}% of the true values fall inside"
            f"{spread}.</p>")


def _regression_predictions(predictions: list[dict[str, str]], interval: dict | None = None, worst: int = 10) -> str:
    """Predicted against true values, residuals, and the largest errors (``predictions.csv`` of a regression),
    after the prediction interval's test coverage when the model has one."""
    from transferkit.reporting import plots

    try:
        rows = [(r["input"], float(r["target"]), float(r["prediction"])) for r in predictions]
    except (KeyError, ValueError):
        return ""
    if not rows:
        return ""
    image = _img(plots.predicted_against_true([t for _, t, _ in rows], [p for _, _, p in rows]),
                 "predicted against true values, and residuals")
    largest = sorted(rows, key=lambda r: -abs(r[2] - r[1]))[:worst]
    table = _table(["input", "true", "predicted", "error"],
                   [[i, f"{t:.4g}", f"{p:.4g}", f"{p - t:+.4g}"] for i, t, p in largest])
    return (_interval_note(interval) + image
            + f"<h3>largest errors ({len(largest)} of {len(rows)} test examples)</h3>" + table)


def _label_set_predictions(test: dict, predictions: list[dict[str, str]] | None, worst: int = 10) -> str:
    """Per-label precision, recall, F1 and average precision, and the test examples whose predicted label set is
    furthest from the true one (``metrics.json`` and ``predictions.csv`` of a multi-label model)."""
    per_label = test.get("per_label") or {}
    rows = [[name, v.get("precision"), v.get("recall"), v.get("f1"), v.get("average_precision"), v.get("support")]
            for name, v in sorted(per_label.items(), key=lambda kv: (kv[1].get("f1") or 0.0, kv[0]))]
    parts = [_table(["label (worst F1 first)", "precision", "recall", "F1", "average precision", "positives"], rows)]
    scored = []
    for r in predictions or []:
        truth = set(filter(None, r.get("labels", "").split("|")))
        chosen = set(filter(None, r.get("predicted", "").split("|")))
        size = len(truth) + len(chosen)
        scored.append((2 * len(truth & chosen) / size if size else 1.0, r.get("input", ""), truth, chosen))
    scored = [s for s in sorted(scored, key=lambda s: s[0]) if s[0] < 1.0][:worst]
    if scored:
        parts.append(f"<h3>worst examples by F1 of the label set ({len(scored)} shown)</h3>")
        parts.append(_table(["input", "true labels", "predicted labels", "F1"],
                            [[i, ", ".join(sorted(t)), ", ".join(sorted(c)), f"{f:.2f}"] for f, i, t, c in scored]))
    return "".join(parts)


def _result_sections(add: Callable[[str, str, Callable[[], str]], None], run: _Run, metrics: dict | None,
                     examples: Any, predictions: list[dict[str, str]] | None) -> None:
    """The metrics and verdict: a detector's (mAP, per-class AP, examples with boxes, hardest misses; see
    :mod:`transferkit.reporting.detection`), or the accuracy or task figures of the others."""
    from transferkit.reporting.detection import detection_sections, is_detection_run

    if is_detection_run(metrics):
        for key, heading, body in detection_sections(run.folder, metrics, examples, run.notes):
            add(key, heading, lambda body=body: body)
    elif metrics and (metrics.get("test") or metrics.get("baselines")):
        add("metrics", "Metrics and verdict", lambda: _metrics(metrics, predictions))


def _task_sections(add: Callable[[str, str, Callable[[], str]], None], test: dict,
                   predictions: list[dict[str, str]] | None) -> None:
    """The sections of a task without classes, chosen by what its files hold: residuals (regression), per-label
    figures (multi-label)."""
    if predictions and "residual" in predictions[0]:
        add("predictions", "Predictions and residuals",
            lambda: _regression_predictions(predictions, test.get("interval")))
    if test.get("per_label"):
        add("labels", "Per-label results and the worst examples", lambda: _label_set_predictions(test, predictions))


def _confusion(test: dict) -> str:
    from transferkit.reporting import plots

    return _img(plots.confusion_matrix(test["confusion_matrix"], test["classes"]),
                "confusion matrix (rows: true class, columns: predicted class)")


def _hardest(examples: dict) -> str:
    items = examples.get("hardest") or []
    total = examples.get("n_misclassified", len(items))
    if not items:
        return "<p>No test example was misclassified.</p>"
    rows = []
    for item in items:
        shown = _shown_as(examples.get("modality")).example_cell_html(item, _e)
        rows.append(f"<tr><td>{shown}</td><td>{_e(item.get('true'))}</td><td>{_e(item.get('predicted'))}</td>"
                    f"<td class='num'>{_num(item.get('p_true'), 3)}</td><td class='num'>{_num(item.get('p_predicted'), 3)}"
                    f"</td><td class='muted'>{_e(item.get('row_id', ''))}</td></tr>")
    return (f"<p>{len(items)} of {total} misclassified test examples, lowest probability of the true class first.</p>"
            "<table><thead><tr><th>example</th><th>true</th><th>predicted</th><th>p(true)</th><th>p(predicted)</th>"
            f"<th>row</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _mistake_sections(add: Callable[[str, str, Callable[[], str]], None], folder: Path, examples: dict,
                      explain: int | None) -> None:
    """The hardest mistakes, then (for a model folder: ``explain`` not None) the explanations of ``explain`` of
    them."""
    from transferkit.reporting.explanations import explanations_html

    add("mistakes", "Hardest misclassified examples", lambda: _hardest(examples))
    if explain is not None:
        add("explanations", "Explanations of the surest mistakes", lambda: explanations_html(folder, examples, explain))


def _ranking(ranking: dict) -> str:
    from transferkit.reporting import plots

    rows = ranking.get("rows") or []
    score = ranking.get("sort_by") or next(iter(ranking.get("scores") or []), None)
    if not rows or not score:
        return ""
    measured = next((a for a in ("linear_probe", "finetune") if any(a in (r.get("accuracy") or {}) for r in rows)), None)
    parts = [_img(plots.ranking_scores(rows, score, measured), f"candidates ranked by {score}")]
    scores = list(ranking.get("scores") or [score])
    accuracies = [a for a in ("linear_probe", "finetune") if any(a in (r.get("accuracy") or {}) for r in rows)]
    table_rows = [[i, r.get("name"), *[(r.get("scores") or {}).get(s, "n/a") for s in scores],
                   *[(r.get("accuracy") or {}).get(a, "not run") for a in accuracies]] for i, r in enumerate(rows, 1)]
    parts.append(_table(["#", "candidate", *scores, *[f"{a} accuracy" for a in accuracies]], table_rows))
    for score_name, by_accuracy in (ranking.get("correlations") or {}).items():
        for accuracy, facts in (by_accuracy or {}).items():
            tau = facts.get("weighted_tau") if isinstance(facts, dict) else facts
            parts.append(f"<p class='muted'>weighted Kendall tau of {_e(score_name)} against {_e(accuracy)} "
                         f"accuracy: {_num(tau, 3)}</p>")
    if ranking.get("best"):
        parts.append(f"<p>best candidate: <b>{_e(ranking['best'])}</b></p>")
    return "".join(parts)


def _auto_ranking(options: dict) -> dict | None:
    facts = options.get("backbone_ranking")
    if not isinstance(facts, dict) or not facts.get("candidates"):
        return None
    score = facts.get("score", "logme")
    rows = [{"name": c.get("name"), "kind": "backbone", "scores": {score: c.get(score)}} for c in facts["candidates"]]
    return {"rows": rows, "scores": [score], "sort_by": score, "best": options.get("backbone")}


def _class_mix_rows(data: dict) -> list[list]:
    """The class mix of the source labels, the known target mix (if given) and the chosen model's target
    predictions: a header row of class names, then one row each. Empty when the report has none of them."""
    chosen = data.get("chosen") if isinstance(data.get("chosen"), dict) else {}
    predicted = next((c.get("target_predicted_fractions") for c in data.get("candidates") or []
                      if isinstance(c, dict) and c.get("name") == chosen.get("name")), None)
    rows = [(label, mix) for label, mix in (("source labels", data.get("source_class_fractions")),
                                            ("target (given)", data.get("target_prior")),
                                            ("target, predicted by the chosen model", predicted))
            if isinstance(mix, dict) and mix]
    if not rows:
        return []
    classes = list(rows[0][1])
    return [classes, *([label, *(mix.get(c, "") for c in classes)] for label, mix in rows)]


def _adaptation(run: _Run, data: dict) -> str:
    from transferkit.reporting import plots

    parts = []
    if data.get("method"):
        chosen = data.get("chosen")
        chosen_text = f" (chosen: {_e(chosen.get('name'))})" if isinstance(chosen, dict) and chosen.get("name") else ""
        parts.append(f"<p>method: <b>{_e(data['method'])}</b>{chosen_text}</p>")
    distance = data.get("a_distance")
    gap = data.get("domain_gap")  # the shape `transferkit adapt` writes
    if distance is None and isinstance(gap, dict):
        distance = {k: v for k, v in gap.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if isinstance(distance, dict) and distance:
        parts.append(_table(["proxy A-distance (0: domains indistinguishable, 2: separable)", "value"],
                            [[k, v] for k, v in distance.items()]))
    elif isinstance(distance, (int, float)):
        parts.append(_table(["proxy A-distance", "value"], [["", distance]]))
    mix = _class_mix_rows(data)
    if mix:
        parts.append(_table(["class mix (share of each class)", *mix[0]], mix[1:]))
    values = data.get("metrics")
    if not isinstance(values, dict) and isinstance(data.get("target_labels"), dict):
        values = {k: v for k, v in data["target_labels"].items() if isinstance(v, (int, float, str))}
    if isinstance(values, dict) and values:
        parts.append(_table(["metric", "value"], [[k, v] for k, v in values.items()]))
    candidates = [c for c in (data.get("candidates") or []) if isinstance(c, dict)]
    if candidates:
        columns = [k for k in ("name", "method", "tradeoff", "proxy_a_distance", "target_accuracy")
                   if any(k in c for c in candidates)]
        parts.append(_table(columns, [[c.get(k, "") for k in columns] for c in candidates]))
    embeddings = data.get("embeddings")
    if isinstance(embeddings, dict):
        for name, entry in embeddings.items():
            points, groups = (entry or {}).get("points"), (entry or {}).get("groups")
            if isinstance(points, list) and isinstance(groups, list) and len(points) == len(groups) and points:
                parts.append(_img(plots.embedding(points, groups, title=f"features {name}"),
                                  f"2-D embedding of the features {name}"))
    images = list(data.get("images") or [])
    if isinstance(data.get("embedding_plot"), str):
        images.insert(0, {"file": data["embedding_plot"], "caption": "2-D embedding of source and target features"})
    parts.append(_figures(run, images, ADAPTATION_FILE))
    return "".join(parts)


def _interpolation(data: dict) -> str:
    from transferkit.reporting import plots

    alphas, values = data.get("alphas"), data.get("values")
    curve = [row for row in (data.get("curve") or []) if isinstance(row, dict) and "alpha" in row]
    if alphas is None and curve:  # the shape `transferkit fuse` writes: one row per alpha
        keys = [k for k in curve[0] if k.endswith("_accuracy")]
        main = "val_accuracy" if "val_accuracy" in keys else (keys[0] if keys else None)
        if main is not None:
            alphas = [row["alpha"] for row in curve]
            values = [row.get(main) for row in curve]
            data = {**data, "metric": main.replace("_", " "), "best_alpha": data.get("best_alpha", data.get("alpha")),
                    "extra": {k.replace("_", " "): [row.get(k) for row in curve] for k in keys if k != main}}
    if not (isinstance(alphas, list) and isinstance(values, list) and len(alphas) == len(values) and alphas):
        return ""
    metric = str(data.get("metric", "validation accuracy"))
    extra = {k: v for k, v in (data.get("extra") or {}).items() if isinstance(v, list) and len(v) == len(alphas)}
    best = data.get("best_alpha")
    parts = [_img(plots.alpha_curve(alphas, values, metric, best if isinstance(best, (int, float)) else None, extra),
                  f"{metric} against the interpolation weight alpha")]
    parts.append(_table(["alpha", metric, *extra], [[a, v, *[extra[k][i] for k in extra]]
                                                    for i, (a, v) in enumerate(zip(alphas, values))]))
    return "".join(parts)


def _compression(data: dict) -> str:
    from transferkit.reporting import plots

    variants = [v for v in (data.get("variants") or []) if isinstance(v, dict)]
    if not variants:
        return ""
    columns = list(dict.fromkeys(k for v in variants for k in v))
    parts = []
    for x in ("size_mb", "latency_ms"):
        if sum(isinstance(v.get(x), (int, float)) for v in variants) >= 1 and any("accuracy" in v for v in variants):
            parts.append(_img(plots.tradeoff(variants, x), f"accuracy against {x}"))
    parts.append(_table(columns, [[v.get(c, "") for c in columns] for v in variants]))
    if data.get("note"):
        parts.append(f"<p class='muted'>{_e(data['note'])}</p>")
    return "".join(parts)


def _from_tradeoff(data: Any) -> dict | None:
    """``tradeoff.json`` (what ``transferkit compress`` writes) as the variants of ``compression.json``."""
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return None
    variants = []
    for row in data["rows"]:
        if not isinstance(row, dict):
            continue
        latency = row.get("latency_ms") if isinstance(row.get("latency_ms"), dict) else {}
        variant = {"name": row.get("name"), "runtime": row.get("runtime"), "accuracy": row.get("accuracy"),
                   "accuracy_change": row.get("accuracy_change")}
        if isinstance(row.get("size_bytes"), (int, float)):
            variant["size_mb"] = round(row["size_bytes"] / 1e6, 3)
        variant["size_ratio"] = row.get("size_ratio")
        for batch, value in latency.items():
            variant["latency_ms" if str(batch) == "1" else f"latency_ms_batch{batch}"] = value
        variants.append({k: v for k, v in variant.items() if v is not None})
    note = f"{data.get('n_test')} test examples of {data.get('test')}; latency at batch 1 (latency_ms) and larger " \
           f"batches, median, {data.get('threads')} thread(s)"
    return {"variants": variants, "note": note}


def _custom(run: _Run, entry: dict) -> str:
    parts = []
    for paragraph in str(entry.get("text", "")).split("\n\n"):
        if paragraph.strip():
            parts.append(f"<p>{_e(paragraph.strip())}</p>")
    table = entry.get("table")
    if isinstance(table, dict) and isinstance(table.get("columns"), list) and isinstance(table.get("rows"), list):
        parts.append(_table(table["columns"], [r for r in table["rows"] if isinstance(r, list)]))
    parts.append(_figures(run, entry.get("images"), SECTIONS_FILE))
    return "".join(parts)


# --- the page ----------------------------------------------------------------------------------------------------

def build_report(run_dir: str | Path, *, title: str | None = None, explain_mistakes: int = EXPLAINED_MISTAKES) -> str:
    """The HTML text of the report of ``run_dir`` (see the module docstring for what is read); the explanations
    section explains ``explain_mistakes`` of the test mistakes (0: a line saying how to get them)."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such run folder; give the folder `transferkit fit --output` wrote.")
    if not any((folder / name).is_file() for name in KNOWN_FILES):
        raise ArtifactError(f"{folder}: holds none of the files a report is made from ({', '.join(KNOWN_FILES)}); "
                            "give a model folder written by `transferkit fit --output`, or a run folder.")
    run = _Run(folder)
    model = run.json("config.json")
    options = run.yaml("run_config.yaml")
    options = options if isinstance(options, dict) else None
    metrics = run.json("metrics.json")
    metrics = metrics if isinstance(metrics, dict) else None
    examples = run.json("examples.json")
    predictions = run.csv_rows("predictions.csv")
    card_path = folder / "README.md"
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else None

    sections: list[tuple[str, str, str]] = []

    def add(key: str, heading: str, build: Callable[[], str]) -> None:
        body = build()
        if body:
            sections.append((key, heading, body))

    add("overview", "Overview", lambda: _overview(run, model, options, metrics))
    if options or model:
        add("configuration", "Configuration", lambda: _configuration(model, options, card))
    if examples or options:
        add("data", "Data", lambda: _data(examples, options))
    history = epoch_history(run.csv_rows("training_log.csv"), metrics)
    if history:
        add("learning-curves", "Learning curves", lambda: _learning_curves(history, metrics))
    _result_sections(add, run, metrics, examples, predictions)
    test = (metrics or {}).get("test") or {}
    _task_sections(add, test, predictions)
    if test.get("confusion_matrix") and test.get("classes"):
        add("confusion-matrix", "Confusion matrix", lambda: _confusion(test))
    if isinstance(examples, dict) and "hardest" in examples:
        _mistake_sections(add, folder, examples, explain_mistakes if model else None)
    ranking = run.json(RANKING_FILE)
    if not isinstance(ranking, dict) and options:
        ranking = _auto_ranking(options)
    if isinstance(ranking, dict):
        add("ranking", "Transferability ranking", lambda: _ranking(ranking))
    adaptation = run.json(ADAPTATION_FILE)
    if isinstance(adaptation, dict):
        add("adaptation", "Domain adaptation", lambda: _adaptation(run, adaptation))
    interpolation = run.json(INTERPOLATION_FILE)
    if isinstance(interpolation, dict):
        add("interpolation", "Weight interpolation", lambda: _interpolation(interpolation))
    compression = run.json(COMPRESSION_FILE)
    if not isinstance(compression, dict):
        compression = _from_tradeoff(run.json(TRADEOFF_FILE))
    if isinstance(compression, dict):
        add("compression", "Compressed variants", lambda: _compression(compression))
    manifest = run.json(SECTIONS_FILE)
    entries = manifest.get("sections") if isinstance(manifest, dict) else manifest
    for k, entry in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(entry, dict):
            add(f"extra-{k}", str(entry.get("title") or f"section {k + 1}"), lambda entry=entry: _custom(run, entry))
    if run.notes:
        sections.append(("notes", "Notes", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in run.notes) + "</ul>"))

    if title is None:
        backbone = (model or {}).get("backbone", {}).get("name") or (options or {}).get("backbone")
        strategy = (model or {}).get("strategy") or (options or {}).get("strategy")
        title = f"transferkit report: {backbone} + {strategy}" if backbone else f"transferkit report: {folder.name}"
    nav = "".join(f'<a href="#{key}">{_e(heading)}</a>' for key, heading, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_e(heading)}</h2>{content}</section>' for key, heading, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{GENERATOR_MARK}"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
            f"<h1>{_e(title)}</h1><p class='muted'>{_e(folder.resolve())} · transferkit {_e(__version__)}</p>"
            f"<nav>{nav}</nav>{body}</main></body></html>\n")


def is_transferkit_report(path: str | Path) -> bool:
    """Whether ``path`` is an HTML report this module wrote (so that it may be written again)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return GENERATOR_MARK in head or "<title>transferkit report" in head


def check_report_output(run_dir: str | Path, output: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """Where the report of ``run_dir`` goes, checked before it is built (a :class:`ConfigError` naming ``--output``
    and the fix otherwise): not a folder, a location that can be written, and never over an existing file without
    ``overwrite``, except the report this module wrote at the default place (``RUN_DIR/report.html``), which is
    written again. A file of the run folder other than a report is never replaced."""
    from transferkit._io import check_location

    path = Path(output) if output is not None else Path(run_dir) / REPORT_FILE
    option = "--output" if output is not None else "the report"
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file path such as {path / REPORT_FILE}.")
    if path.exists():
        ours = is_transferkit_report(path)
        inside = Path(run_dir).resolve() == path.resolve().parent
        if inside and not ours:
            raise ConfigError(f"{option} {path} is a file of the run folder the report is made from, not a report; "
                              "it is never replaced. Choose another file name.")
        if not overwrite and not (output is None and ours):
            raise ConfigError(f"{option} {path} already exists; pass --overwrite to replace it, or choose another "
                              "file.")
    check_location(path, option)
    return path


def write_report(run_dir: str | Path, output: str | Path | None = None, *, overwrite: bool = False,
                 explain_mistakes: int = EXPLAINED_MISTAKES) -> Path:
    """Write the report of ``run_dir`` to ``output`` (default ``RUN_DIR/report.html``, written again on every
    call); an existing file at ``output`` is replaced only with ``overwrite`` (:func:`check_report_output`). The
    file is written atomically. ``explain_mistakes``: the mistakes explained (:func:`build_report`). Returns its
    path."""
    path = check_report_output(run_dir, output, overwrite=overwrite)
    atomic_write_text(path, build_report(run_dir, explain_mistakes=explain_mistakes))
    return path
