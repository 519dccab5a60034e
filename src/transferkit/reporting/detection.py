"""A detector's work in pictures and on the report page: images with predicted boxes (``predict --draw``),
predicted beside true boxes for the examples and the hardest misses of a detection model folder (``examples/``
and ``misses/``, drawn by ``fit``), and the report's sections of a detection run (:func:`detection_sections`: the
mAP figures and verdict, per-class AP, the examples, the hardest misses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from transferkit.reporting._html import escape, image_tag, table

#: Colours: predicted boxes, true boxes, true boxes no detection found.
PREDICTED, TRUE, MISSED = "orangered", "lime", "magenta"
#: The model folder's hardest misses (``fit`` writes it beside ``examples.json``).
MISSES_FILE = "hardest_misses.json"


def draw_boxes(image_path: str | Path, out_path: str | Path, predicted: Sequence[dict[str, Any]],
               true: Sequence[dict[str, Any]] = (), missed: Sequence[dict[str, Any]] = ()) -> Path:
    """Write ``image_path`` with its ``predicted`` boxes (``label``, ``score``, ``box``) in red, ``true`` boxes
    (``label``, ``box``) in green and the ``missed`` true boxes in magenta over them to ``out_path`` (PNG)."""
    import torch
    from torchvision.utils import draw_bounding_boxes

    from transferkit.models.detector import load_images

    image = (load_images([image_path])[0] * 255).to(torch.uint8)
    for records, colour, caption in ((true, TRUE, lambda r: r["label"]),
                                     (missed, MISSED, lambda r: r["label"]),
                                     (predicted, PREDICTED, lambda r: f"{r['label']} {r['score']:.2f}")):
        if records:
            boxes = torch.tensor([r["box"] for r in records], dtype=torch.float32)
            image = draw_bounding_boxes(image, boxes, labels=[caption(r) for r in records], colors=colour, width=2)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(image.permute(1, 2, 0).numpy()).save(out_path)
    return out_path


def draw_records(records: Sequence[dict[str, Any]], folder: str | Path) -> list[Path]:
    """``predict --draw FOLDER``: each record's image with its detections, as ``FOLDER/<image name>.png`` (a
    number added when two inputs share a name)."""
    folder = Path(folder)
    written: list[Path] = []
    names: set[str] = set()
    for record in records:
        stem = Path(record["input"]).stem
        name, n = stem, 1
        while name in names:
            n += 1
            name = f"{stem}_{n}"
        names.add(name)
        written.append(draw_boxes(record["input"], folder / f"{name}.png", record["detections"]))
    return written


# --- the report's sections -------------------------------------------------------------------------------------

def is_detection_run(metrics: Any) -> bool:
    """Whether ``metrics.json`` holds a detector's test figures (COCO mAP)."""
    test = metrics.get("test") if isinstance(metrics, dict) else None
    return isinstance(test, dict) and "map_50" in test


def detection_sections(folder: Path, metrics: dict[str, Any], examples: Any,
                       notes: list[str]) -> list[tuple[str, str, str]]:
    """``(anchor, heading, HTML)`` of each section of a detection run: the mAP figures of the model and its
    baselines with the verdict, per-class AP, the examples with predicted and true boxes (``examples/``) and the
    hardest misses (``hardest_misses.json`` and ``misses/``, else the examples' own). A picture the folder lacks is
    left out with a line in ``notes``."""
    examples = [e for e in examples if isinstance(e, dict)] if isinstance(examples, list) else []
    sections = [("detection-metrics", "Detection results and verdict", _results(metrics)),
                ("per-class-ap", "Average precision per class", _per_class(metrics))]
    if examples:
        sections.append(("detection-examples", "Examples: predicted and true boxes",
                         _examples(folder, examples, notes)))
    misses_path = folder / MISSES_FILE
    if misses_path.is_file() or examples:
        sections.append(("hardest-misses", "Hardest misses", _misses(folder, misses_path, examples, notes)))
    return sections


def _figure(value: Any) -> Any:
    return value if isinstance(value, (int, float)) else "-"


def _results(metrics: dict[str, Any]) -> str:
    from transferkit.evaluation.verdict import HELPED, HURT, Comparison
    from transferkit.reporting import plots

    test = metrics.get("test") or {}
    entries = [("model", test, metrics.get("training") or {})]
    entries += [(f"baseline: {name}", m, m.get("training") or {})
                for name, m in (metrics.get("baselines") or {}).items() if isinstance(m, dict)]
    rows = [[name, *[_figure(m.get(k)) for k in ("map_50", "map", "map_75", "mar_100")], _figure(m.get("images")),
             _figure(m.get("boxes")), _figure(t.get("epochs")), _figure(t.get("seconds_per_epoch"))]
            for name, m, t in entries]
    cards = "".join(f'<div class="card"><span class="muted">{label}</span><b>{_cell(test.get(key))}</b></div>'
                    for label, key in (("mAP@0.5", "map_50"), ("mAP@[.5:.95]", "map")))
    parts = [f'<div class="cards">{cards}</div>',
             table(["", "mAP@0.5", "mAP@[.5:.95]", "mAP@0.75", "recall@100", "test images", "true boxes", "epochs",
                    "s / epoch"], rows),
             "<p class='muted'>COCO evaluation (pycocotools through torchmetrics) on the held-out test images; "
             "recall@100: with up to 100 detections per image.</p>"]
    comparisons = [c for c in metrics.get("comparisons") or [] if isinstance(c, dict)]
    if comparisons:
        parts.append("<h3>verdict: transfer against the baselines</h3>")
        parts.append(image_tag(plots.verdict_intervals(comparisons, measure="mAP@0.5"),
                               "mAP@0.5 difference against each baseline"))
        for c in comparisons:
            try:
                sentence = Comparison(**c).sentence()
            except TypeError:
                sentence = f"{c.get('baseline')}: {c.get('verdict')}"
            css = {HELPED: "helped", HURT: "hurt"}.get(c.get("verdict"), "same")
            parts.append(f'<div class="verdict {css}">{escape(sentence)}</div>')
        parts.append("<p class='muted'>Differences of mAP@0.5 with a 95% percentile bootstrap interval over test "
                     "images (both detectors scored on the same resamples).</p>")
    return "".join(parts)


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _per_class(metrics: dict[str, Any]) -> str:
    per_class = (metrics.get("test") or {}).get("per_class") or {}
    baselines = {name: (m.get("per_class") or {}) for name, m in (metrics.get("baselines") or {}).items()
                 if isinstance(m, dict)}
    columns = ["class", "AP@0.5", "AP@[.5:.95]", "true boxes (test)", *[f"{n}: AP@0.5" for n in baselines]]
    rows = [[name, _figure(v.get("ap_50")), _figure(v.get("ap")), _figure(v.get("boxes")),
             *[_figure((b.get(name) or {}).get("ap_50")) for b in baselines.values()]]
            for name, v in per_class.items() if isinstance(v, dict)]
    if not rows:
        return ""
    return table(columns, rows) + "<p class='muted'>-: no true box of that class among the test images.</p>"


def _drawing(folder: Path, sub: str, image: Any, notes: list[str]) -> str:
    """The drawing ``fit`` wrote of ``image`` in ``folder/sub`` as an embedded image, or a note."""
    path = folder / sub / f"{Path(str(image)).stem}.png"
    if not path.is_file():
        notes.append(f"{sub}/{path.name} is missing; that picture is left out.")
        return ""
    return image_tag(path.read_bytes(), f"{Path(str(image)).name}: predicted and true boxes", css="boxes")


_LEGEND = ("<p class='muted'>Green: true boxes; red: detections scoring at least 0.3 (with their scores); "
           "magenta: true boxes no such detection found (IoU at least 0.5, same class).</p>")
_GRID = '<div style="display:flex;flex-wrap:wrap;gap:10px">{}</div>'
_CSS = "<style>img.boxes{width:240px;height:auto;image-rendering:pixelated;border:1px solid #e5e7eb}</style>"


def _examples(folder: Path, examples: list[dict[str, Any]], notes: list[str]) -> str:
    figures = []
    for e in examples:
        drawn = _drawing(folder, "examples", e.get("image"), notes)
        if drawn:
            found = sum(1 for p in e.get("predicted") or [] if (p.get("score") or 0) >= 0.3)
            figures.append(f"<figure>{drawn}<figcaption>{escape(Path(str(e.get('image'))).name)}: "
                           f"{len(e.get('true') or [])} true, {found} detected</figcaption></figure>")
    return _CSS + _LEGEND + _GRID.format("".join(figures)) if figures else ""


def _misses(folder: Path, path: Path, examples: list[dict[str, Any]], notes: list[str]) -> str:
    if path.is_file():
        try:
            misses = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            notes.append(f"{path.name} is not valid JSON ({exc}); the hardest misses are left out.")
            return ""
        sub, scope = "misses", "test images"
    else:
        misses, sub, scope = _misses_of_examples(examples), "examples", f"examples (of {len(examples)}; this " \
            f"folder has no {MISSES_FILE}: fit it again for every test image)"
    misses = [m for m in misses if isinstance(m, dict)] if isinstance(misses, list) else []
    if not misses:
        return f"<p>No box of the {escape(scope)} was missed (IoU 0.5, detections scoring at least 0.3).</p>"
    rows = []
    for m in misses:
        missed = ", ".join(f"{r.get('label')} ({_size(r.get('box'))})" for r in m.get("missed") or [])
        rows.append(f"<tr><td>{_drawing(folder, sub, m.get('image'), notes)}</td>"
                    f"<td>{escape(Path(str(m.get('image'))).name)}</td><td class='num'>{_cell(m.get('recall'))}</td>"
                    f"<td class='num'>{len(m.get('true') or [])}</td><td>{escape(missed)}</td>"
                    f"<td class='num'>{escape(m.get('false_detections', '-'))}</td></tr>")
    return (_CSS + f"<p>The {len(misses)} {escape(scope)} whose true boxes the detections (score at least 0.3) "
            "missed most: lowest recall at IoU 0.5 first, then the largest missed box.</p>" + _LEGEND +
            "<table><thead><tr><th>drawing</th><th>image</th><th>recall</th><th>true boxes</th>"
            "<th>missed (width x height px)</th><th>false detections</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _size(box: Any) -> str:
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return "?"
    return f"{x2 - x1:.0f} x {y2 - y1:.0f}"


def _misses_of_examples(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hardest misses among the examples of ``examples.json`` (folders fitted before ``hardest_misses.json``)."""
    import numpy as np

    from transferkit.evaluation.detection_metrics import hardest_misses

    names = sorted({r.get("label") for e in examples for r in (e.get("true") or []) + (e.get("predicted") or [])},
                   key=str)
    index = {name: i for i, name in enumerate(names)}

    def arrays(records: list[dict[str, Any]], scored: bool) -> dict[str, Any]:
        out = {"boxes": np.array([r["box"] for r in records], np.float32).reshape(-1, 4),
               "labels": np.array([index[r.get("label")] for r in records], np.int64)}
        if scored:
            out["scores"] = np.array([r.get("score", 0.0) for r in records], np.float32)
        return out

    rows = hardest_misses([arrays(e.get("predicted") or [], True) for e in examples],
                          [arrays(e.get("true") or [], False) for e in examples], count=len(examples))
    return [{**examples[r["index"]], "recall": r["recall"], "false_detections": r["false_detections"],
             "missed": [examples[r["index"]]["true"][i] for i in r["missed"]]} for r in rows]
