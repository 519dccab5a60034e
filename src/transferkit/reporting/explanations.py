"""The report's explanations section: the test mistakes the model was surest of, each with what its prediction rests
on (a heat map over the image or spectrogram, highlighted words of a text) and whether that explanation is faithful.

Which mistakes: among those ``fit`` keeps in ``examples.json`` (``hardest``: up to 12, lowest probability of the true
class), the ``count`` with the highest probability of the wrongly predicted class. Each is explained for the
predicted class by the model's default method (the modality's first that can explain it: integrated gradients for
images, audio and texts), and its deletion curve is compared with :data:`RANDOM_ORDERS` random orders; the verdict
over the examples is :func:`~transferkit.explanations.faithfulness.summarise`'s.

Time is bounded by ``count`` (``transferkit report --explain-mistakes N``, default
:data:`~transferkit.reporting.options.EXPLAINED_MISTAKES`, at most 12; 0 leaves the section a line saying how to
get it): each example costs tens of forward and backward passes. Inputs are read again from their files (a path
relative to the working directory too); an image that moved is explained from the thumbnail kept in
``examples.json``, a clip that moved is left out with a note. Without captum, or for a model that cannot be
explained (a detector, an ensemble of differently prepared backbones), the section is one line saying why.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any

from transferkit.errors import TransferkitError

#: Random orders each example's deletion curve is compared with (fewer than explain's 5: a report is awaited).
RANDOM_ORDERS = 3


class _Unexplained(Exception):
    """Why no example of this run folder can be explained (the section says it in one line)."""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def most_confident_mistakes(examples: dict, count: int) -> list[dict[str, Any]]:
    """The ``count`` mistakes of ``examples.json`` with the highest probability of the predicted class."""
    mistakes = [h for h in examples.get("hardest") or [] if isinstance(h, dict)]
    return sorted(mistakes, key=lambda h: -float(h.get("p_predicted") or 0.0))[:max(0, count)]


def explanations_html(folder: Path, examples: dict, count: int) -> str:
    """The section's HTML for the run folder ``folder`` (a model folder) and its ``examples.json`` mapping."""
    if count <= 0:
        return ("<p class='muted'>Not computed for this page. <code>transferkit report RUN_DIR --explain-mistakes "
                "N</code> explains the N mistakes the model was surest of.</p>")
    mistakes = most_confident_mistakes(examples, count)
    if not mistakes:
        return "<p>No test example was misclassified; there is no mistake to explain.</p>"
    try:
        model, explainer, network, method = _explainer_of(folder)
    except _Unexplained as exc:
        return f"<p class='muted'>No explanations: {_e(exc)}</p>"
    from transferkit.explanations.config import ExplainConfig

    options = ExplainConfig(random_orders=RANDOM_ORDERS, seed=0)
    started = time.perf_counter()
    rows, measures, notes = [], [], []
    for entry in mistakes:
        row = _explained_row(entry, folder, model, explainer, network, method, options, measures, notes)
        if row:
            rows.append(row)
    seconds = time.perf_counter() - started
    return _page(rows, measures, notes, method, len(mistakes), examples, seconds)


def _explainer_of(folder: Path) -> tuple[Any, Any, Any, str]:
    """The model of ``folder``, its modality's explainer, its differentiable network and the default method."""
    try:
        import captum  # noqa: F401
    except ImportError:
        raise _Unexplained("captum is not installed; `pip install 'transferkit[explain]'` adds heat maps and "
                           "highlighted words of the hardest mistakes to this section.") from None
    from transferkit.explanations.choices import choose_methods
    from transferkit.explanations.network import explained_network
    from transferkit.models.artifacts import load_model
    from transferkit.modalities import get_modality

    try:
        model = load_model(folder)
    except TransferkitError as exc:
        raise _Unexplained(f"the model of this folder cannot be loaded ({exc}).") from None
    try:
        explainer = get_modality(model.modality).explainer()
        network = explained_network(model).eval()
        methods = choose_methods(None, explainer, network, model.modality)
    except TransferkitError as exc:
        raise _Unexplained(f"this model cannot be explained ({exc}).") from None
    if not methods:
        raise _Unexplained("no attribution method can explain this model.")
    return model, explainer, network, methods[0]


def _item(entry: dict, folder: Path, notes: list[str]) -> Any:
    """The input of an ``examples.json`` entry: its text, its file, else the image of its thumbnail, else None."""
    if isinstance(entry.get("text"), str):
        return entry["text"]
    row = str(entry.get("row_id", ""))
    for path in (Path(row), Path.cwd() / row, folder / row):
        if row and path.is_file():
            return str(path)
    thumbnail = entry.get("thumbnail")
    if isinstance(thumbnail, str) and thumbnail.startswith("data:image/") and ";base64," in thumbnail:
        from PIL import Image

        notes.append(f"{row}: the file is no longer there; explained from the report's thumbnail.")
        return Image.open(io.BytesIO(base64.b64decode(thumbnail.split(",", 1)[1]))).convert("RGB")
    notes.append(f"{row}: the input is no longer there (moved or deleted); left out.")
    return None


def _explained_row(entry: dict, folder: Path, model: Any, explainer: Any, network: Any, method: str, options: Any,
                   measures: list, notes: list[str]) -> str:
    from transferkit.explanations.item import explain_item

    item = _item(entry, folder, notes)
    if item is None:
        return ""
    row = str(entry.get("row_id", ""))
    try:
        explained = explain_item(explainer, network, item, method, options, title=row)
    except (TransferkitError, OSError, ValueError) as exc:
        notes.append(f"{row}: could not be explained ({exc}); left out.")
        return ""
    if explained.measured is not None and explained.measured.get("deletion") is not None:
        measures.append(explained.measured)
    figures = explained.faithfulness_figures() or {}
    rendering = explained.rendering
    shown = (f'<img class="explained" alt="{_e(method)} for {_e(row)}" src="data:image/png;base64,'
             f'{base64.b64encode(rendering.png).decode("ascii")}">' if rendering.png is not None else rendering.html)
    predicted = str(model.classes[explained.predicted])
    deletion, random = figures.get("deletion"), figures.get("random_deletion")
    faithful = ("" if deletion is None or random is None else
                f"{deletion:.3f} vs {random:.3f} ({'better' if deletion < random else 'not better'} than random)")
    return (f"<tr><td>{shown}</td><td>{_e(entry.get('true'))}</td><td>{_e(predicted)}</td>"
            f"<td class='num'>{float(explained.proba[explained.predicted]):.3f}</td><td>{_e(faithful)}</td>"
            f"<td class='muted'>{_e(row)}</td></tr>")


def _page(rows: list[str], measures: list, notes: list[str], method: str, asked: int, examples: dict,
          seconds: float) -> str:
    from transferkit.explanations.faithfulness import summarise

    total = examples.get("n_misclassified", len(examples.get("hardest") or []))
    parts = [f"<p>The {asked} test mistake(s) the model was surest of (of {_e(total)} misclassified), each explained "
             f"for the class it wrongly predicted by <b>{_e(method)}</b>: the parts of the input that pushed the "
             "model towards its mistake. A spurious cue (a background, a watermark, a word unrelated to the class) "
             f"shows up here. Explained in {seconds:.1f} s.</p>"]
    if measures:
        summary = summarise(measures)
        d = summary["deletion"]
        parts.append(f"<p class='verdict {'helped' if summary['better_than_random'] else 'hurt'}'>Faithfulness "
                     f"({summary['inputs']} example(s)): removing the most-attributed parts first, the predicted "
                     f"class's deletion area is {d['area']:.3f} against {d['random_area']:.3f} for random orders; "
                     f"gain {d['gain']:+.3f} [{d['interval'][0]:+.3f}, {d['interval'][1]:+.3f}]: "
                     f"<b>{_e(summary['verdict'])}</b>"
                     + ("" if summary["better_than_random"] else "; do not read these maps as what the model relies "
                        "on.") + "</p>")
    if rows:
        parts.append("<table><thead><tr><th>explanation</th><th>true</th><th>predicted</th><th>p(predicted)</th>"
                     "<th>deletion area (vs random)</th><th>row</th></tr></thead><tbody>" + "".join(rows)
                     + "</tbody></table>")
    if notes:
        parts.append("<ul class='muted'>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    return "".join(parts)
