"""``transferkit multitask CONFIG``: one backbone trained for several tasks. Thin: parse, call, print.

The flags are generated from :class:`~transferkit.strategies.multitask_options.MultiTaskConfig` (a flag per option,
the same name as its YAML key); the tasks themselves are given in the YAML file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from transferkit.cli.main import TRAINING_PANEL, _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.errors import TransferkitError
from transferkit.strategies.multitask_options import MultiTaskConfig

#: multitask's flags: every MultiTaskConfig option but the tasks.
MULTITASK_FLAGS = ConfigFlags(
    MultiTaskConfig,
    exclude={"tasks": "a list of tasks (name, data, columns, shots, weight), given in the YAML file",
             "progress": "set by --quiet and --json"},
    panels={"finetune": TRAINING_PANEL},
)


@app.command()
@config_flags(MULTITASK_FLAGS)
def multitask(
    config: Path = typer.Argument(..., help="YAML file: backbone, training options, and tasks (a list of {name, data, val, test, label_column, text_column, path_column, encoding, delimiter, normalize_labels, shots, weight}; relative data paths are relative to the file)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print each task's test metrics as JSON."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from MULTITASK_FLAGS
) -> None:
    """Train one backbone with a head per task (each task its own data and labels), evaluate every task, save.
    Flags given here override the file's options."""
    _setup(quiet or as_json)
    try:
        from transferkit.strategies.multitask_options import load_multitask_config
        from transferkit.workflows.multitask import multitask as multitask_fn

        cfg = load_multitask_config(config, **options, progress=False if (quiet or as_json) else None)
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
