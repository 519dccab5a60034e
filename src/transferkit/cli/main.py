"""The ``transferkit`` command. Thin: parse, build the config, call the Python function, print.

Heavy libraries load inside the commands, so ``transferkit --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from transferkit._version import __version__
from transferkit.errors import TransferkitError

app = typer.Typer(
    name="transferkit",
    help="Transfer learning for small labelled datasets: adapt a pretrained backbone to your images or texts, "
    "and learn honestly whether transfer helped.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


@app.command()
def fit(
    data: Optional[str] = typer.Argument(None, help="Training data: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet) with a label column and a text or image-path column."),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Backbone: a name from `transferkit models`, timm:ARCH, hf:MODEL_ID, or a local model folder. Default: efficientnet_lite0 for images, all-MiniLM-L6-v2 for text. auto: rank the installed backbones by LogME on the training data and use the best."),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="How to adapt the backbone: linear-probe (frozen features, cached)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder to save the model in (weights, config, metrics, run config, model card)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (the same names as these flags, with _ or -); flags given here override it."),
    val: Optional[str] = typer.Option(None, "--val", help="Validation data (same form as DATA). Default: C is chosen by cross-validation on the training data."),
    test: Optional[str] = typer.Option(None, "--test", help="Test data (same form as DATA). Default: a stratified part of DATA is held out (--test-fraction)."),
    shots: Optional[int] = typer.Option(None, "--shots", help="Keep at most this many training examples per class (few-shot experiments)."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="Part of each class held out for testing when --test is not given (default 0.2)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table (default: label, class, category or target)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table (default: text, sentence, review or content)."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table (default: path, image, filepath or file); relative paths are relative to the table."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of table files (default utf-8)."),
    baselines: Optional[str] = typer.Option(None, "--baselines", help="Comma-separated baselines run on the same split: raw (pixels or TF-IDF + logistic regression)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random choice (default 0)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Examples per backbone forward pass (default 64)."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="Data-loader processes decoding images (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (default auto)."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Feature cache folder (default ~/.cache/transferkit/features, or $TRANSFERKIT_CACHE/features)."),
    no_cache: Optional[bool] = typer.Option(None, "--no-cache", help="Neither read nor write the feature cache."),
    probe_c: Optional[float] = typer.Option(None, "--probe-c", help="Fixed inverse regularisation of the probe (default: chosen on validation data)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Text backbones: maximum tokens per text (default 256)."),
    overwrite: Optional[bool] = typer.Option(None, "--overwrite", help="Replace a model already in the output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of a table."),
) -> None:
    """Adapt a pretrained backbone to DATA, evaluate it on held-out data beside the baselines, save it."""
    _setup(quiet)
    try:
        from transferkit.config import load_config_file, merge_config

        file_values = load_config_file(config) if config is not None else {}
        flags = dict(data=data, backbone=backbone, strategy=strategy, output=output, val=val, test=test, shots=shots,
                     test_fraction=test_fraction, label_column=label_column, text_column=text_column,
                     path_column=path_column, encoding=encoding, seed=seed, batch_size=batch_size,
                     num_workers=num_workers, device=device, cache_dir=cache_dir, no_cache=no_cache,
                     probe_c=probe_c, max_length=max_length, overwrite=overwrite,
                     baselines=[b.strip() for b in baselines.split(",") if b.strip()] if baselines else None,
                     progress=False if quiet else None)
        cfg = merge_config(file_values, flags, str(config) if config else "options")
        from transferkit.api import fit as fit_fn

        result = fit_fn(config=cfg)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({"test": result.metrics, "baselines": result.baselines,
                               "comparisons": [c.to_dict() for c in result.comparisons]}, indent=2))
    else:
        typer.echo(result.summary())
        if result.output is not None:
            typer.echo(f"saved: {result.output}")


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit`."),
    data: str = typer.Argument(..., help="Labelled data (image folder or table) to evaluate on."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of table files."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Examples per forward pass."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
) -> None:
    """Print accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix of MODEL on DATA."""
    _setup(quiet)
    try:
        from transferkit.api import evaluate as evaluate_fn
        from transferkit.evaluation.metrics import format_metrics

        metrics = evaluate_fn(model, data, batch_size=batch_size, device=device, label_column=label_column,
                              text_column=text_column, path_column=path_column, encoding=encoding, progress=not quiet)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(metrics, indent=2) if as_json else format_metrics(metrics, f"{model} on {data}"))


@app.command()
def predict(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit`."),
    inputs: list[str] = typer.Argument(..., help="A folder of images, a table (with a text or path column), image files, or (for text models) one or more texts."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Probabilities of the K most likely classes per input."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of table files."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Examples per forward pass."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the predictions to this file (.jsonl or .csv) instead of printing them."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
) -> None:
    """Predict the class of each input with MODEL; prints one JSON line per input (label and probabilities)."""
    _setup(quiet)
    try:
        from transferkit.api import _as_model, predict as predict_fn

        loaded = _as_model(model)
        source: object
        if len(inputs) == 1 and Path(inputs[0]).exists():
            source = inputs[0]
        elif all(Path(i).is_file() for i in inputs) and loaded.modality == "image":
            from transferkit.data.dataset import Dataset

            source = Dataset("image", list(inputs), None, "command line", list(inputs))
        elif loaded.modality == "text":
            source = list(inputs)
        else:
            missing = next(i for i in inputs if not Path(i).exists())
            raise TransferkitError(f"{missing}: no such file or folder.")
        rows = predict_fn(loaded, source, top_k=top_k, batch_size=batch_size, device=device, text_column=text_column,
                          path_column=path_column, encoding=encoding, progress=not quiet)
    except TransferkitError as exc:
        _fail(exc)
    if output is not None:
        _write_predictions(rows, output, loaded.classes)
        typer.echo(f"wrote {len(rows)} predictions to {output}")
    else:
        for row in rows:
            typer.echo(json.dumps(row))


def _write_predictions(rows: list[dict], path: Path, classes: list[str]) -> None:
    from transferkit._io import atomic_write_text

    if path.suffix.lower() == ".csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["input", "label", *[f"p_{c}" for c in classes]])
        for row in rows:
            writer.writerow([row["input"], row["label"], *[_cell(row["probabilities"].get(c)) for c in classes]])
        atomic_write_text(path, buffer.getvalue())
    else:
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def _cell(probability: float | None) -> str:
    return "" if probability is None else f"{probability:.6f}"


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
) -> None:
    """The main job end to end on packaged weights and data: few labels per class, transfer vs the baselines."""
    _setup(False)
    try:
        from transferkit.demo import run_demo

        run_demo(output, shots=shots, quick=quick)
    except TransferkitError as exc:
        _fail(exc)


# Commands that live in their own modules register themselves on `app` when imported (keep them light at import).
COMMAND_MODULES: list[str] = ["transferkit.cli.rank"]


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
