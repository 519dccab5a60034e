"""``transferkit explain``: why a saved model predicts what it does, per input. Thin: parse, call, print."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.errors import TransferkitError
from transferkit.explanations.config import ExplainConfig

#: Where the CLI writes when --output is not given (the Python API writes nothing then).
DEFAULT_OUTPUT = "explanations"

#: explain's flags: every ExplainConfig field but those that do not apply (MODEL and INPUT declared below).
EXPLAIN_FLAGS = ConfigFlags(
    ExplainConfig,
    exclude={"progress": "set by --quiet", "label_column": "inputs are explained unlabelled",
             "normalize_labels": "inputs are explained unlabelled", "report": "explain writes its own index.html",
             "num_workers": "inputs are prepared one at a time", "cache_dir": "no features are cached: every "
             "explanation runs the backbone with gradients", "no_cache": "no features are cached"},
    names={"task": "--task"},  # picks one task of a multi-task model, as in predict and evaluate
    help={"output": f"folder for explanations.json, index.html and the heat maps (default: ./{DEFAULT_OUTPUT})",
          "overwrite": "replace the --output folder if it holds files"},
)


@app.command()
@config_flags(EXPLAIN_FLAGS)
def explain(
    model: str = typer.Argument(..., help="A model folder (fit, distill, multitask with --task, fuse)."),
    inputs: list[str] = typer.Argument(..., help="A folder of images or clips, a table (with a text or path column), files, or (for text models) one or more texts."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary."),
    as_json: bool = typer.Option(False, "--json", help="Print explanations.json instead of the summary."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from EXPLAIN_FLAGS
) -> None:
    """Explain MODEL's prediction for each INPUT: heat maps (images, spectrograms) or highlighted words (texts) per
    method, each checked against random orders by deletion and insertion curves."""
    _setup(quiet or as_json)
    try:
        from transferkit.explanations.config import make_explain_config
        from transferkit.workflows.explain import explain as explain_fn
        from transferkit.workflows.predict import command_line_inputs
        from transferkit.workflows.steps import resolve_model

        values = {k: v for k, v in options.items() if v is not None}
        values.setdefault("output", DEFAULT_OUTPUT)
        config = make_explain_config(**values, **({"progress": False} if (quiet or as_json) else {}))
        loaded = resolve_model(model, config.task)
        source = command_line_inputs(inputs, loaded)
        result = explain_fn(loaded, source, config=config.model_copy(update={"task": None}), model_folder=model)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        typer.echo(result.summary())
        typer.echo(f"saved: {result.output}")
