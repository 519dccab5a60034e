"""``transferkit tune``: hyper-parameter search over a strategy's options (Optuna). Thin: parse, call, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import TransferkitError


@app.command()
def tune(
    data: Optional[str] = typer.Argument(None, help="Labelled data: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="Strategy whose options are searched: linear-probe (default), finetune, lp-ft, lora, l2sp, contrastive, distill (give --teacher)."),
    teacher: Optional[list[str]] = typer.Option(None, "--teacher", "-t", help="distill: a teacher model folder; repeat for an ensemble. --backbone is the student (default: the teacher's architecture)."),
    unlabelled: Optional[str] = typer.Option(None, "--unlabelled", help="distill: unlabelled data for the soft-target term."),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Backbone (as for fit)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of the run's options (as for fit); flags given here override it."),
    space: Optional[Path] = typer.Option(None, "--space", help="YAML file of the search space: option: {low: .., high: .., log: true} or option: [choice, ...]; nested options as section.option (lora.rank). Default: per strategy."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", "-n", help="Trials the study should have finished in total (default 20); a resumed study runs only the missing ones."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting new trials after this many seconds."),
    objective: Optional[str] = typer.Option(None, "--objective", help="val (accuracy on a stratified validation part; default) or cv (mean over --folds stratified folds)."),
    folds: Optional[int] = typer.Option(None, "--folds", help="--objective cv: number of folds (default 3)."),
    val_fraction: Optional[float] = typer.Option(None, "--tune-val-fraction", help="--objective val: part of each class held out for scoring (default 0.2)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage shared by every worker: a database URL (sqlite:///study.db, postgresql://...) or journal:PATH (a log file that processes on one file system share, no database server). Default: sqlite:///OUTPUT/study.db."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Study name in the storage (default: strategy, backbone and data fingerprint)."),
    no_pruning: bool = typer.Option(False, "--no-pruning", help="Run every trial to the end."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Top trials listed and saved as configs (default 5)."),
    keep_models: bool = typer.Option(False, "--keep-models", help="Keep the top trials' weights as model folders in OUTPUT/trials/trial-N/ (--objective val, training strategies)."),
    soup: bool = typer.Option(False, "--soup", help="After the search, a greedy soup of the top trials' weights on the validation part, saved in OUTPUT/soup (implies --keep-models)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder for study.db, best_config.yaml, top_trials.json and trials/; a folder holding the same study continues it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the results of another study in --output (that study stays in its storage)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training strategies: maximum epochs per trial."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Examples per batch."),
    shots: Optional[int] = typer.Option(None, "--shots", help="Keep at most N examples per class."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the splits and of the sampler (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Feature cache folder."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI for the trials' training runs (off to disable)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of table files (default utf-8)."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="Delimiter of CSV/TSV tables (default: detected)."),
    normalize_labels: Optional[bool] = typer.Option(None, "--normalize-labels", help="Fold labels that differ only in case, whitespace or Unicode form into their most frequent spelling."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Search the options of a strategy on DATA (Optuna; resumable study), save the best as a config for fit."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file, merge_config
        from transferkit.tuning.search import make_tune_config, run_config as build_config, tune as tune_fn

        file_values = load_config_file(config) if config is not None else {}
        flags = dict(data=data, strategy=strategy, teacher=list(teacher) if teacher else None, unlabelled=unlabelled,
                     backbone=backbone, epochs=epochs, batch_size=batch_size,
                     shots=shots, seed=seed, device=device, cache_dir=cache_dir, tracking_uri=tracking_uri,
                     label_column=label_column, text_column=text_column, path_column=path_column,
                     encoding=encoding, delimiter=delimiter, normalize_labels=normalize_labels,
                     progress=False if (quiet or as_json) else None)
        run_config = merge_config(file_values, flags, str(config) if config else "options", build=build_config)
        space_values = load_config_file(space) if space is not None else None
        if space_values is not None:
            space_values = {k.replace("-", "_"): v for k, v in space_values.items()}
        tune_values = dict(n_trials=n_trials, timeout=timeout, objective=objective, folds=folds,
                           val_fraction=val_fraction, storage=storage, study_name=study_name,
                           pruning=False if no_pruning else None, top_k=top_k, keep_models=keep_models or None,
                           soup=soup or None, output=output, overwrite=overwrite or None, space=space_values)
        tune_config = make_tune_config(**{k: v for k, v in tune_values.items() if v is not None})
        result = tune_fn(config=run_config, tune_config=tune_config)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.table())
