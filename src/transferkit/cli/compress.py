"""``transferkit compress``: quantized and pruned variants of a saved model, and their accuracy / size / latency
table. Thin: parse, call :func:`transferkit.workflows.compress.compress_model`, print."""

from __future__ import annotations

import json
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import TransferkitError


@app.command()
def compress(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit` or `transferkit distill`."),
    data: str = typer.Option(..., "--data", help="Labelled test data (image folder or table): every variant's accuracy is measured on it."),
    train: Optional[str] = typer.Option(None, "--train", help="Labelled training data: the pruned variants' recovery fine-tune, and calibration for static int8 when --calibration is not given."),
    calibration: Optional[str] = typer.Option(None, "--calibration", help="Examples (labels not needed) whose activation ranges calibrate static int8 quantization."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder for the variants (default MODEL/compressed); the table is also saved as MODEL/tradeoff.json."),
    variants: str = typer.Option("float,onnx,int8,magnitude,structured", "--variants", help="Comma-separated: float, onnx, int8, magnitude, structured."),
    quantization: str = typer.Option("auto", "--quantization", help="int8 method: auto (dynamic for text, static for images with calibration data), dynamic or static."),
    signed_activations: bool = typer.Option(False, "--signed-activations", help="Static int8: signed symmetric activations (S8S8) instead of U8S8; often a little more accurate, slower on many x86 CPUs."),
    magnitude_amount: float = typer.Option(0.5, "--magnitude-amount", help="Fraction of weights zeroed by magnitude pruning."),
    structured_amount: float = typer.Option(0.3, "--structured-amount", help="Fraction of channels / feed-forward neurons removed by structured pruning."),
    heads: float = typer.Option(0.0, "--heads", help="Structured pruning of BERT-style encoders: fraction of attention heads removed per layer."),
    recovery_epochs: int = typer.Option(1, "--recovery-epochs", help="Epochs of recovery fine-tuning after pruning (needs --train; 0 = none)."),
    recovery_lr: float = typer.Option(1e-4, "--recovery-lr", help="Learning rate of the recovery fine-tune."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Examples per forward pass for accuracy and recovery."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for every latency measurement (default: PyTorch's current count)."),
    tolerance: float = typer.Option(1e-3, "--tolerance", help="Largest logit difference allowed between PyTorch and the float ONNX export."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table."),
    seed: int = typer.Option(0, "--seed", help="Seed of the calibration sample and the recovery fine-tune."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the variants in a non-empty output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the table."),
) -> None:
    """Make int8 and pruned variants of MODEL and print accuracy, file size, parameters and CPU latency (batch 1 and
    32) of each, side by side, measured on DATA."""
    _setup(quiet or as_json)
    try:
        from transferkit.workflows.compress import compress_model

        chosen = [v.strip() for v in variants.split(",") if v.strip()]
        report = compress_model(model, data, train=train, calibration=calibration, output=output, variants=chosen,
                                magnitude_amount=magnitude_amount, structured_amount=structured_amount, heads=heads,
                                quantization=quantization, recovery_epochs=recovery_epochs, recovery_lr=recovery_lr,
                                batch_size=batch_size, threads=threads, seed=seed, tolerance=tolerance,
                                overwrite=overwrite, signed_activations=signed_activations,
                                label_column=label_column, text_column=text_column,
                                path_column=path_column)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(report.table())
    typer.echo(f"variants saved in {report.output}; table in {report.output}/tradeoff.json and {model}/tradeoff.json")
