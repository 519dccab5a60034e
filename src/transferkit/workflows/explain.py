"""``explain``: why a saved model predicts what it does, for each input: attributions drawn as heat maps (images,
spectrograms) or highlighted words (texts), each method checked for faithfulness against random orders.

The steps: the options; the model (the loading ``predict`` uses; ``task`` picks one task of a multi-task model);
the modality's explainer and the differentiable network of the model's kind; the methods and the target class;
the inputs as a checked dataset; the output folder; then per input: prepare, predict, attribute with each method,
measure its deletion and insertion curves; the summary per method; the folder (``explanations.json``, a PNG per
input and method for images and audio, ``index.html``) written at once, atomically.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ConfigError
from transferkit.workflows.steps import check_model_input, resolve_model


@dataclass
class ExplainResult:
    """``records``: one dict per input (``input``, ``label``, ``target``, ``probability``, and per method its
    ``file`` / ``tokens`` and ``faithfulness``); ``attributions``: per input, method -> the attribution array;
    ``faithfulness``: method -> summary over inputs (areas, gains over random with intervals, ``verdict``)."""

    methods: list[str]
    records: list[dict[str, Any]]
    attributions: list[dict[str, np.ndarray]]
    faithfulness: dict[str, dict[str, Any]]
    output: Path | None = None
    renderings: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"methods": self.methods, "faithfulness": self.faithfulness, "inputs": self.records}

    def summary(self) -> str:
        lines = [f"explained {len(self.records)} input(s) with {', '.join(self.methods)}"]
        for record in self.records[:20]:
            lines.append(f"  {record['input']}: predicted {record['label']}, explained {record['target']} "
                         f"(p={record['probability']:.3f})")
        for method, summary in self.faithfulness.items():
            if "deletion" in summary:
                d = summary["deletion"]
                lines.append(f"{method}: deletion area {d['area']:.3f} vs random {d['random_area']:.3f}, gain "
                             f"{d['gain']:+.3f} [{d['interval'][0]:+.3f}, {d['interval'][1]:+.3f}]: "
                             f"{summary['verdict']}")
            else:
                lines.append(f"{method}: faithfulness {summary['verdict']}")
        return "\n".join(lines)


def explain(model: Any, inputs: Any, *, config: Any = None, model_folder: str | None = None,
            **options: Any) -> ExplainResult:
    """Explain ``model``'s predictions for ``inputs`` (what ``predict`` takes: a folder, a table, files, texts, an
    array). Options are :class:`~transferkit.explanations.config.ExplainConfig` fields (``method``, ``target``,
    ``task``, ``output``, ``faithfulness``, ...); ``config`` gives them all at once, keyword options laid over it.
    ``model_folder`` names the folder of a model given loaded (the output may not replace it)."""
    from transferkit.explanations.network import explained_network
    from transferkit.modalities import get_modality

    config = _options(config, options)
    _check_output(config, model if isinstance(model, (str, Path)) else model_folder, inputs)
    loaded = resolve_model(model, config.task)
    explainer = get_modality(loaded.modality).explainer()
    network = explained_network(loaded)
    methods = _methods(config, explainer, network, loaded.modality)
    target = _target(config, loaded)
    dataset = _dataset(inputs, loaded, config)
    device = _device(config)
    network.to(device).eval()
    records, attributions, renderings, measures = [], [], [], {m: [] for m in methods}
    for row, item in zip(dataset.row_ids, dataset.items):
        record, maps, drawn = _explain_one(explainer, network, item, row, target, methods, config, device, loaded,
                                           measures)
        records.append(record)
        attributions.append(maps)
        renderings.append(drawn)
    faithfulness = _summaries(measures, config)
    result = ExplainResult(methods, records, attributions, faithfulness, renderings=renderings)
    if config.output is not None:
        result.output = _write(result, Path(config.output))
    return result


def _options(config: Any, options: dict[str, Any]) -> Any:
    from transferkit.explanations.config import ExplainConfig, make_explain_config

    if config is None:
        return make_explain_config(**options)
    if not isinstance(config, ExplainConfig):
        raise ConfigError(f"explain: config must be an ExplainConfig; got {type(config).__name__}.")
    return make_explain_config(**{**config.model_dump(), **options})


def _check_output(config: Any, model: Any, inputs: Any) -> None:
    """Before any work: the output folder can be written, is not an input, and holds nothing unless --overwrite."""
    if config.output is None:
        return
    from transferkit._io import check_location, check_not_input, folder_is_empty

    path = Path(config.output)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output {path} is a file; give a folder for the explanations (it is created).")
    sources = [("model folder", model),
               ("input", inputs if isinstance(inputs, (str, Path)) else None)]
    check_not_input(path, sources)
    if not folder_is_empty(path) and not config.overwrite:
        raise ConfigError(f"--output {path} already holds files; pass --overwrite to replace the folder, or choose "
                          "another one.")
    check_location(path)


def _methods(config: Any, explainer: Any, network: Any, modality: str) -> list[str]:
    from transferkit.explanations.choices import choose_methods

    return choose_methods(config.method, explainer, network, modality)


def _target(config: Any, model: Any) -> int | None:
    from transferkit.explanations.choices import target_index

    return target_index(config.target, model.classes)


def _dataset(inputs: Any, model: Any, config: Any) -> Any:
    from transferkit.data.validation import validate_dataset
    from transferkit.workflows.predict import _inputs_dataset

    dataset = _inputs_dataset(inputs, model, text_column=config.text_column, path_column=config.path_column,
                              encoding=config.encoding, delimiter=config.delimiter)
    check_model_input(model, dataset)
    validate_dataset(dataset, role="prediction")
    if len(dataset) > config.max_inputs:
        raise ConfigError(f"option 'max_inputs': {len(dataset)} inputs were given, more than {config.max_inputs} "
                          "(each costs tens of forward and backward passes); explain a sample, or raise --max-inputs.")
    return dataset


def _device(config: Any) -> Any:
    from transferkit.features.extract import resolve_device

    return resolve_device(config.device)


def _explain_one(explainer: Any, network: Any, item: Any, row: Any, target: int | None, methods: list[str],
                 config: Any, device: Any, model: Any, measures: dict[str, list]) -> tuple[dict, dict, dict]:
    """One input: its prediction, each method's attribution, drawing and faithfulness measures."""
    from transferkit.explanations import faithfulness

    prepared = explainer.prepare(network.backbone, item)
    prepared.batch = explainer.to(prepared.batch, device)
    proba = network.predict(prepared.batch)[0]
    predicted = int(np.argmax(proba))
    chosen = predicted if target is None else target
    record = {"input": row, "label": str(model.classes[predicted]), "target": str(model.classes[chosen]),
              "probability": float(proba[chosen]), "methods": {}}
    maps, drawn = {}, {}
    for method in methods:
        attribution = explainer.attribute(network, prepared, chosen, method, config)
        maps[method] = attribution
        rendering = explainer.render(prepared, attribution, f"{row}: {record['target']} ({method})")
        drawn[method] = rendering
        entry: dict[str, Any] = dict(rendering.extra)
        if config.faithfulness:
            measured = faithfulness.measure(network.predict, explainer.units(prepared, attribution), chosen,
                                            random_orders=config.random_orders, seed=config.seed,
                                            batch_size=config.batch_size)
            measures[method].append(measured)
            entry["faithfulness"] = _input_figures(measured)
        record["methods"][method] = entry
    return record, maps, drawn


def _input_figures(measured: dict[str, Any]) -> dict[str, Any]:
    figures = {"units": measured["units"]}
    for name in ("deletion", "insertion"):
        figures[name] = measured[name]
        figures[f"random_{name}"] = float(np.mean(measured[f"random_{name}"])) if measured[f"random_{name}"] else None
    return figures


def _summaries(measures: dict[str, list], config: Any) -> dict[str, dict[str, Any]]:
    from transferkit.explanations.faithfulness import summarise

    if not config.faithfulness:
        return {}
    out = {method: summarise(values, seed=config.seed) for method, values in measures.items()}
    for method, summary in out.items():
        if summary.get("better_than_random") is False:
            interval = summary["deletion"]["interval"]
            warnings.warn(f"explain: {method} is no better than random orders of the same parts of the input on these "
                          f"{summary['inputs']} input(s) (deletion gain interval [{interval[0]:+.3f}, "
                          f"{interval[1]:+.3f}] reaches 0); do not read its maps as what the model relies on.",
                          stacklevel=3)
    return out


def _file_stem(index: int, row: Any) -> str:
    name = Path(str(row)).stem if isinstance(row, (str, Path)) else str(row)
    return f"{index:04d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:60]}"


def _write(result: ExplainResult, folder: Path) -> Path:
    """``explanations.json``, one PNG per input and method where drawn, ``index.html``; the folder atomically."""
    from transferkit._io import staged_folder

    with staged_folder(folder, what="--output") as staging:
        for index, (record, drawn) in enumerate(zip(result.records, result.renderings)):
            for method, rendering in drawn.items():
                if rendering.png is not None:
                    name = f"{_file_stem(index, record['input'])}-{method}.png"
                    (staging / name).write_bytes(rendering.png)
                    record["methods"][method]["file"] = name
        (staging / "explanations.json").write_text(json.dumps(result.to_dict(), indent=2, default=str),
                                                   encoding="utf-8")
        (staging / "index.html").write_text(_index_html(result), encoding="utf-8")
    return folder


def _index_html(result: ExplainResult) -> str:
    import html

    rows = []
    for record, drawn in zip(result.records, result.renderings):
        cells = []
        for method, rendering in drawn.items():
            entry = record["methods"][method]
            body = f'<img src="{html.escape(entry["file"])}" alt="{html.escape(method)}">' if entry.get("file") \
                else rendering.html
            cells.append(f"<td>{body}</td>")
        rows.append(f"<tr><th>{html.escape(str(record['input']))}<br><small>predicted "
                    f"{html.escape(record['label'])}; explained {html.escape(record['target'])} "
                    f"(p={record['probability']:.3f})</small></th>{''.join(cells)}</tr>")
    verdicts = "".join(f"<li>{html.escape(m)}: {html.escape(s.get('verdict', ''))}</li>"
                       for m, s in result.faithfulness.items())
    header = "".join(f"<th>{html.escape(m)}</th>" for m in result.methods)
    return (f"<!doctype html><meta charset='utf-8'><title>explanations</title><h1>Explanations</h1>"
            f"<ul>{verdicts}</ul><table><tr><th>input</th>{header}</tr>{''.join(rows)}</table>")
