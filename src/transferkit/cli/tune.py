"""``transferkit tune``: hyper-parameter search over a strategy's options (Optuna). Thin: parse, call, print."""

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
from transferkit.tuning.search import TuneConfig


_NOT_FOR_TRIALS = "trials are scored on the objective's validation part (--tune-val-fraction) or folds"
#: tune's flags: the run being tuned (FitConfig) and the search (TuneConfig).
TUNE_RUN_FLAGS = ConfigFlags(
    FitConfig, declared=("data",),
    exclude={"progress": "set by --quiet and --json", "val": _NOT_FOR_TRIALS, "test": _NOT_FOR_TRIALS,
             "test_fraction": _NOT_FOR_TRIALS,
             "budget": "fit --strategy auto only; bound each trial with --epochs and the search with --timeout",
             "resume": "a trial is rerun, not resumed; the study itself resumes from its storage",
             "output": "the study's --output (TuneConfig)", "overwrite": "the study's --overwrite (TuneConfig)",
             "unlabelled": "semi-supervised fitting (pseudo-labels) is fit's; folds and trials use the labelled data"},
    panels={name: TRAINING_PANEL for name in (*TRAINING_OPTIONS, *sections(FitConfig))},
)
TUNE_FLAGS = ConfigFlags(
    TuneConfig, into="search", declared=("space",), names={"val_fraction": "--tune-val-fraction"},
    short={"n_trials": "-n"}, panels={name: "Search" for name in TuneConfig.model_fields},
    help={"output": "folder for study.db, best_config.yaml, top_trials.json and trials/; a folder holding the same "
                    "study continues it"},
)


@app.command()
@config_flags(TUNE_RUN_FLAGS, TUNE_FLAGS)
def tune(
    data: Optional[str] = typer.Argument(None, help="Labelled data: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet)."),
    teacher: Optional[list[str]] = typer.Option(None, "--teacher", "-t", help="distill: a teacher model folder; repeat for an ensemble. --backbone is the student (default: the teacher's architecture)."),
    unlabelled: Optional[str] = typer.Option(None, "--unlabelled", help="distill: unlabelled data for the soft-target term."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of the run's options (as for fit); flags given here override it."),
    space: Optional[Path] = typer.Option(None, "--space", help="YAML file of the search space: option: {low: .., high: .., log: true} or option: [choice, ...]; nested options as section.option (lora.rank). Default: per strategy.", rich_help_panel="Search"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the run's flags given, from TUNE_RUN_FLAGS
    search: dict[str, Any] = None,  # type: ignore[assignment]  # the search's flags given, from TUNE_FLAGS
) -> None:
    """Search the options of a strategy on DATA (Optuna; resumable study), save the best as a config for fit."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file, merge_config
        from transferkit.tuning.search import make_tune_config, run_config as build_config
        from transferkit.workflows.tune import tune as tune_fn

        file_values = load_config_file(config) if config is not None else {}
        flags = dict(options, data=data, teacher=list(teacher) if teacher else None, unlabelled=unlabelled,
                     progress=False if (quiet or as_json) else None)
        run_config = merge_config(file_values, flags, str(config) if config else "options", build=build_config)
        space_values = load_config_file(space) if space is not None else None
        if space_values is not None:
            space_values = {k.replace("-", "_"): v for k, v in space_values.items()}
        tune_config = make_tune_config(**search, **({"space": space_values} if space_values is not None else {}))
        result = tune_fn(config=run_config, tune_config=tune_config)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.table())
