"""The ``transferkit`` command. Thin: parse, build the config, call the Python function, print.

Heavy libraries load inside the commands, so ``transferkit --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import typer

from transferkit._version import __version__
from transferkit.cli.options import ConfigFlags, config_flags, sections
from transferkit.config import EvaluateConfig, FitConfig, PredictConfig
from transferkit.strategies.options import TRAINING_OPTIONS
from transferkit.errors import TransferkitError

app = typer.Typer(
    name="transferkit",
    help="Transfer learning for small labelled datasets: adapt a pretrained backbone to your images or texts, "
    "and learn honestly whether transfer helped.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


#: The help panel of the options only training strategies use.
TRAINING_PANEL = "Training (finetune, lp-ft, lora, l2sp)"


def _setup(quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("transferkit").setLevel(logging.WARNING if quiet else logging.INFO)

    def show(message, category, filename, lineno, file=None, line=None):  # one line, no source excerpt
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    for noisy in ("sklearn", "torch", "timm", "transformers", "PIL"):
        warnings.filterwarnings("ignore", module=noisy)


def _fail(exc: BaseException) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"transferkit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """transferkit command line."""


#: fit's flags: every FitConfig field (the DATA argument declared below).
FIT_FLAGS = ConfigFlags(
    FitConfig, declared=("data",),
    exclude={"progress": "set by --quiet"},
    panels={name: TRAINING_PANEL for name in (*TRAINING_OPTIONS, *sections(FitConfig))},
)


@app.command()
@config_flags(FIT_FLAGS)
def fit(
    data: Optional[str] = typer.Argument(None, help="Training data: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet) with a label column and a text or image-path column."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (the same names as these flags, with _ or -); flags given here override it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of a table."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from FIT_FLAGS
) -> None:
    """Adapt a pretrained backbone to DATA, evaluate it on held-out data beside the baselines, save it."""
    _setup(quiet)
    try:
        from transferkit.config import load_config_file, merge_config

        file_values = load_config_file(config) if config is not None else {}
        flags = dict(options, data=data, progress=False if quiet else None)
        cfg = merge_config(file_values, flags, str(config) if config else "options")
        from transferkit.workflows.fit import fit as fit_fn

        result = fit_fn(config=cfg)
    except TransferkitError as exc:
        _fail(exc)
    if not result.is_main_process:
        return  # the other processes of a multi-process run train; the main one reports
    if as_json:
        typer.echo(json.dumps({"test": result.metrics, "baselines": result.baselines,
                               "comparisons": [c.to_dict() for c in result.comparisons]}, indent=2))
    else:
        typer.echo(result.summary())
        if result.output is not None:
            typer.echo(f"saved: {result.output}")


#: evaluate's flags: every EvaluateConfig option (--task picks a multi-task model's head; the task type is the
#: model's own).
EVALUATE_FLAGS = ConfigFlags(EvaluateConfig, names={"task": "--task"}, exclude={"progress": "set by --quiet"})


@app.command()
@config_flags(EVALUATE_FLAGS)
def evaluate(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit`."),
    data: str = typer.Argument(..., help="Labelled data (image folder or table) to evaluate on."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from EVALUATE_FLAGS
) -> None:
    """Print accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix of MODEL on DATA."""
    _setup(quiet)
    try:
        from transferkit.evaluation.metrics import format_metrics
        from transferkit.options import build_options
        from transferkit.workflows.evaluate import evaluate as evaluate_fn

        config = build_options(EvaluateConfig, **options, progress=not quiet)
        metrics = evaluate_fn(model, data, **config.model_dump())
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(metrics, indent=2) if as_json else format_metrics(metrics, f"{model} on {data}"))


#: predict's flags: every PredictConfig option that applies to unlabelled inputs.
PREDICT_FLAGS = ConfigFlags(
    PredictConfig, names={"task": "--task"},
    exclude={"progress": "set by --quiet", "label_column": "predict reads no labels",
             "normalize_labels": "predict reads no labels"},
)


@app.command()
@config_flags(PREDICT_FLAGS)
def predict(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit`."),
    inputs: list[str] = typer.Argument(..., help="A folder of images, a table (with a text or path column), image files, or (for text models) one or more texts."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from PREDICT_FLAGS
) -> None:
    """Predict the class of each input with MODEL (a detector: its boxes); prints one JSON line per input."""
    _setup(quiet)
    try:
        from transferkit.options import build_options
        from transferkit.workflows.predict import check_predictions_output, command_line_inputs, predict as predict_fn
        from transferkit.workflows.steps import resolve_model

        config = build_options(PredictConfig, **options, progress=not quiet)
        output = Path(config.output) if config.output is not None else None
        if output is not None:
            check_predictions_output(output, config.overwrite, [("model folder", model), *[("input", i) for i in inputs]])
        loaded = resolve_model(model, config.task)
        source = command_line_inputs(inputs, loaded)
        read = config.model_dump(include={"text_column", "path_column", "encoding", "delimiter"})
        rows = predict_fn(loaded, source, top_k=config.top_k, batch_size=config.batch_size, device=config.device,
                          progress=config.progress, runtime=config.runtime, score_threshold=config.score_threshold,
                          draw=config.draw, onnx_file=config.onnx_file, model_dir=model, processes=config.processes,
                          **read)
    except TransferkitError as exc:
        _fail(exc)
    if output is not None:
        from transferkit.workflows.predict import write_predictions

        write_predictions(rows, output, loaded)
        typer.echo(f"wrote {len(rows)} predictions to {output}")
    else:
        for row in rows:
            typer.echo(json.dumps(row, allow_nan=False))  # strict JSON: predict_fn refuses non-finite values


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the named backbones and whether their weights are installed here."""
    from transferkit.backbones.registry import list_backbones

    entries = list_backbones()
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    width = max(len(e["name"]) for e in entries)
    for e in entries:
        state = "installed" if e["available"] else f"not installed ({e['install']})"
        typer.echo(f"{e['name']:<{width}}  {e['modality']:<5}  {e['description']}  [{state}]")
    typer.echo("\nAlso: timm:ARCH (any timm model), hf:MODEL_ID (any transformers encoder), a local model folder, "
               "and random:NAME for the same architecture with random weights.")


@app.command()
def demo(
    output: Path = typer.Option(Path("demo-output"), "--output", "-o", help="Folder for the saved models and the summary."),
    shots: int = typer.Option(20, "--shots", min=1, help="Labelled training examples per class."),
    quick: bool = typer.Option(False, "--quick", help="Smaller test sets (for a fast check)."),
    audio: bool = typer.Option(False, "--audio", help="Sound instead: drum hits of the Hydrogen kits (`make "
                               "audio-data`), the packaged aiSFX network, tested on kits it never heard."),
) -> None:
    """The main job end to end on packaged weights and data: few labels per class, transfer vs the baselines."""
    _setup(False)
    try:
        from transferkit.workflows.demo import run_demo

        run_demo(output, shots=shots, quick=quick, audio=audio)
    except TransferkitError as exc:
        _fail(exc)


# Commands that live in their own modules register themselves on `app` when imported (keep them light at import).
COMMAND_MODULES: list[str] = ["transferkit.cli.rank", "transferkit.cli.export", "transferkit.cli.report", "transferkit.cli.serve",
                              "transferkit.cli.cv", "transferkit.cli.tune", "transferkit.cli.multitask",
                              "transferkit.cli.fuse", "transferkit.cli.adapt", "transferkit.cli.distill",
                              "transferkit.cli.compress", "transferkit.cli.explain", "transferkit.cli.explore",
                              "transferkit.cli.recommend"]


def _register_commands() -> None:
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)


def main() -> None:
    _register_commands()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    # Run the imported module's app: command modules register on `transferkit.cli.main.app`, not on `__main__`.
    from transferkit.cli.main import main as _main

    _main()
