"""``transferkit cv``: k-fold cross-validation of a strategy beside its baselines, with spread and a verdict.
Thin: parse, build the config, call :func:`transferkit.cross_validate`, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import TransferkitError


@app.command()
def cv(
    data: Optional[str] = typer.Argument(None, help="Labelled data: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet)."),
    folds: int = typer.Option(5, "--folds", "-k", min=2, help="Stratified folds (default 5)."),
    repeats: int = typer.Option(1, "--repeats", "-r", min=1, help="Repeats of the k folds, each shuffled by another seed (default 1)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Level of the intervals (default 0.95)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="linear-probe (default), finetune, lp-ft, lora, l2sp or contrastive."),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Backbone (as for fit)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (as for fit, e.g. a best_config.yaml from tune); flags given here override it."),
    baselines: Optional[str] = typer.Option(None, "--baselines", help="Comma-separated: raw, scratch. Default: raw, plus scratch for training strategies on small data; the linear probe is a baseline of every training strategy."),
    shots: Optional[int] = typer.Option(None, "--shots", help="Keep at most N examples per class before splitting."),
    calibrate: Optional[bool] = typer.Option(None, "--calibrate", help="Temperature-scale each fold's model on its own held-out training data."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the folds and of training (default 0)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training strategies: maximum epochs per fold."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Training strategies: learning rate of the backbone."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Examples per batch (default 64)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Feature cache folder."),
    no_cache: Optional[bool] = typer.Option(None, "--no-cache", help="Keep features only for this run (in a temporary cache)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI of the folds' training runs (off to disable)."),
    work_dir: Optional[str] = typer.Option(None, "--work-dir", help="Folder for the folds' checkpoints and logs."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of table files (default utf-8)."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="Delimiter of CSV/TSV tables (default: detected)."),
    normalize_labels: Optional[bool] = typer.Option(None, "--normalize-labels", help="Fold labels that differ only in case, whitespace or Unicode form into their most frequent spelling."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder for cv.json, summary.txt, run_config.yaml and reliability.png."),
    overwrite: Optional[bool] = typer.Option(None, "--overwrite", help="Write into a non-empty output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Cross-validate a strategy on DATA: mean, spread and interval per metric, and a paired verdict against the
    baselines on the same folds."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file, merge_config
        from transferkit.evaluation.cross_validation import cross_validate

        file_values = load_config_file(config) if config is not None else {}
        flags = dict(data=data, strategy=strategy, backbone=backbone, shots=shots, calibrate=calibrate, seed=seed,
                     epochs=epochs, lr=lr, batch_size=batch_size, device=device, cache_dir=cache_dir,
                     no_cache=no_cache, tracking_uri=tracking_uri, work_dir=work_dir, label_column=label_column,
                     text_column=text_column, path_column=path_column, encoding=encoding, delimiter=delimiter,
                     normalize_labels=normalize_labels, output=output, overwrite=overwrite,
                     baselines=[b.strip() for b in baselines.split(",") if b.strip()] if baselines else None,
                     progress=False if (quiet or as_json) else None)
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
