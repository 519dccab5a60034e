"""``transferkit cv``: k-fold cross-validation of a strategy beside its baselines, with spread and a verdict.
Thin: parse, build the config, call :func:`transferkit.cross_validate`, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from transferkit.cli.main import TRAINING_PANEL, _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags, sections
from transferkit.config import FitConfig
from transferkit.errors import TransferkitError
from transferkit.strategies.options import TRAINING_OPTIONS


#: cv's flags: every FitConfig field that applies to cross-validation.
CV_FLAGS = ConfigFlags(
    FitConfig, declared=("data",),
    exclude={"progress": "set by --quiet and --json",
             "val": "each fold is tested in turn; the training folds hold out val_fraction for early stopping",
             "test": "each fold is tested in turn", "test_fraction": "each fold is tested in turn",
             "budget": "fit --strategy auto only; cv trains each fold for --epochs",
             "resume": "a fold is retrained, not resumed (its features are cached)",
             "devices": "the folds train one after another in one process",
             "num_nodes": "the folds train one after another in one process",
             "distributed": "the folds train one after another in one process",
             "report": "cv writes cv.json and summary.txt, not report.html",
             "unlabelled": "semi-supervised fitting (pseudo-labels) is fit's; folds and trials use the labelled data"},
    help={"output": "folder for cv.json, summary.txt, run_config.yaml and reliability.png",
          "overwrite": "replace cross-validation results already in the output folder",
          "calibrate": "temperature-scale each fold's model on its own held-out training data"},
    panels={name: TRAINING_PANEL for name in (*TRAINING_OPTIONS, *sections(FitConfig))},
)


@app.command()
@config_flags(CV_FLAGS)
def cv(
    data: Optional[str] = typer.Argument(None, help="Labelled data: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet)."),
    folds: int = typer.Option(5, "--folds", "-k", min=2, help="Stratified folds (default 5)."),
    repeats: int = typer.Option(1, "--repeats", "-r", min=1, help="Repeats of the k folds, each shuffled by another seed (default 1)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Level of the intervals (default 0.95)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (as for fit, e.g. a best_config.yaml from tune); flags given here override it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from CV_FLAGS
) -> None:
    """Cross-validate a strategy on DATA: mean, spread and interval per metric, and a paired verdict against the
    baselines on the same folds."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file, merge_config
        from transferkit.workflows.cv import cross_validate

        file_values = load_config_file(config) if config is not None else {}
        flags = dict(options, data=data, progress=False if (quiet or as_json) else None)
        cfg = merge_config(file_values, flags, str(config) if config else "options")
        result = cross_validate(config=cfg, folds=folds, repeats=repeats, confidence=confidence)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        typer.echo(result.table())
        if result.output is not None:
            typer.echo(f"saved: {result.output}")
