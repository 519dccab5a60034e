"""``transferkit multitask CONFIG``: one backbone trained for several tasks. Thin: parse, call, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import TransferkitError


@app.command()
def multitask(
    config: Path = typer.Argument(..., help="YAML file: backbone, training options, and tasks (a list of {name, data, val, test, label_column, text_column, shots, weight}; relative data paths are relative to the file)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder to save the multi-task model in (overrides the file's output)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Backbone shared by every task (overrides the file)."),
    sampling: Optional[str] = typer.Option(None, "--sampling", help="Share of each step's batch per task: proportional, uniform or temperature."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="sampling temperature (1 = proportional, large = uniform; default 2)."),
    weighting: Optional[str] = typer.Option(None, "--weighting", help="Loss weighting: fixed (each task's weight), uncertainty (learned, Kendall et al.), pcgrad (gradient surgery)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (overrides the file)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random choice (overrides the file)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    overwrite: Optional[bool] = typer.Option(None, "--overwrite", help="Replace a model already in the output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print each task's test metrics as JSON."),
) -> None:
    """Train one backbone with a head per task (each task its own data and labels), evaluate every task, save."""
    _setup(quiet or as_json)
    try:
        from transferkit.workflows.multitask import multitask as multitask_fn
        from transferkit.strategies.multitask_options import load_multitask_config

        cfg = load_multitask_config(config, output=output, backbone=backbone, sampling=sampling,
                                    temperature=temperature, weighting=weighting, epochs=epochs, seed=seed,
                                    device=device, overwrite=overwrite,
                                    progress=False if (quiet or as_json) else None)
        result = multitask_fn(cfg)
    except TransferkitError as exc:
        _fail(exc)
    if not result.is_main_process:
        return
    if as_json:
        typer.echo(json.dumps({"test": result.metrics, "mean_accuracy": result.mean_accuracy}, indent=2))
    else:
        typer.echo(result.summary())
        if result.output is not None:
            typer.echo(f"saved: {result.output}")
