"""``transferkit rank``: score candidate backbones on the user's data before training. Thin: parse, call, print."""

from __future__ import annotations

import json
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import TransferkitError


def _split(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


@app.command()
def rank(
    data: str = typer.Argument(..., help="Labelled data: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet) with a label column and a text or image-path column."),
    candidates: Optional[str] = typer.Option(None, "--candidates", help="Comma-separated backbones to rank: names from `transferkit models`, timm:ARCH, hf:MODEL_ID, random:NAME, local folders. Default: every installed backbone of the data's modality."),
    scores: Optional[str] = typer.Option(None, "--scores", help="Comma-separated scores: logme, leep, nce, hscore, shrinkage_hscore (the default), logme_no_intercept (LogME exactly as published, without an intercept). LEEP and NCE need a backbone that kept its source classifier."),
    sort_by: Optional[str] = typer.Option(None, "--sort-by", help="Score that orders the table (default: the first of --scores)."),
    validate: bool = typer.Option(False, "--validate", help="Also measure each candidate's held-out accuracy (linear probe; one-epoch fine-tune when available) and the weighted Kendall tau between every score and every accuracy."),
    test: Optional[str] = typer.Option(None, "--test", help="Held-out data for --validate (same form as DATA). Default: a stratified part of DATA (--test-fraction)."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="Part of each class held out for --validate when --test is not given (default 0.2)."),
    shots: Optional[int] = typer.Option(None, "--shots", help="Keep at most N labelled examples per class for scoring (and training, with --validate)."),
    no_raw: bool = typer.Option(False, "--no-raw", help="Leave out the raw-input row (pixels or TF-IDF)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table (default: label, class, category or target)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table (default: text, sentence, review or content)."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table (default: path, image, filepath or file)."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of table files (default utf-8)."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="Delimiter of CSV/TSV tables (default: detected)."),
    normalize_labels: Optional[bool] = typer.Option(None, "--normalize-labels", help="Fold labels that differ only in case, whitespace or Unicode form into their most frequent spelling."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random choice (default 0)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Examples per backbone forward pass (default 64)."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="Data-loader processes decoding images (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (default auto)."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Feature cache folder (default ~/.cache/transferkit/features, or $TRANSFERKIT_CACHE/features)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the feature cache."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Text backbones: maximum tokens per text (default 256)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the table."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON instead of a table."),
) -> None:
    """Rank candidate backbones on DATA by transferability scores (LogME, LEEP, NCE, H-score), best first, with the
    raw input as a row; no training unless --validate."""
    _setup(quiet or as_json)
    try:
        from transferkit.selection.config import make_rank_config
        from transferkit.selection.ranking import rank as rank_fn

        options = dict(candidates=_split(candidates), scores=_split(scores), sort_by=sort_by, validate=validate,
                       test=test, test_fraction=test_fraction, shots=shots, raw_baseline=not no_raw,
                       label_column=label_column, text_column=text_column, path_column=path_column,
                       encoding=encoding, delimiter=delimiter, normalize_labels=normalize_labels, seed=seed,
                       batch_size=batch_size, num_workers=num_workers, device=device,
                       cache_dir=cache_dir, no_cache=no_cache, max_length=max_length,
                       progress=False if (quiet or as_json) else None)
        config = make_rank_config(**{k: v for k, v in options.items() if v is not None})
        result = rank_fn(data, config=config)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.table())
