"""``transferkit fuse``: combine models (interpolation, soups, ensembles) or backbones' features (stacking).
Thin: parse, call :func:`transferkit.workflows.fuse.fuse_from_command`, print."""

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


def _alphas(text: str) -> list[float]:
    """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]``; anything that is not a number is a ConfigError naming --alphas."""
    from transferkit.errors import ConfigError

    values = []
    for part in _split(text) or []:
        try:
            values.append(float(part))
        except ValueError:
            raise ConfigError(f"--alphas: {part!r} is not a number; give comma-separated numbers in [0, 1], e.g. "
                              "0,0.25,0.5,0.75,1.") from None
    return values


@app.command()
def fuse(
    models: Optional[list[str]] = typer.Argument(None, help="Model folders: the fine-tuned model (interpolate), several fine-tuned runs of one architecture (soup), or any models of one label set (ensemble). Not used by stack."),
    method: str = typer.Option(..., "--method", "-m", help="interpolate (pretrained <-> fine-tuned weights, alpha chosen on --val), soup (average fine-tuned runs), ensemble (average probabilities), stack (concatenate several backbones' features, then a linear probe)."),
    val: Optional[str] = typer.Option(None, "--val", help="Validation data (image folder or table): chooses alpha, the greedy soup, the ensemble weights, the probe's C."),
    train: Optional[str] = typer.Option(None, "--train", help="Training data: interpolate fits the pretrained end's linear probe on it (unless --pretrained); stack fits its probe on it."),
    test: Optional[str] = typer.Option(None, "--test", help="Extra labelled data evaluated at every step and reported (never used for choices), e.g. a shifted domain."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder to save the fused model in."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="interpolate: the pretrained end as a linear-probe model folder (default: the fine-tuned model's backbone, pretrained, with a probe fitted on --train)."),
    alphas: Optional[str] = typer.Option(None, "--alphas", help="interpolate: comma-separated alphas to try (default 0, 0.1, ..., 1)."),
    soup: str = typer.Option("greedy", "--soup", help="soup: greedy (add a run only if validation accuracy improves) or uniform."),
    weighting: str = typer.Option("fitted", "--weighting", help="ensemble: fitted (weights minimising validation log-loss) or uniform."),
    backbones: Optional[str] = typer.Option(None, "--backbones", help="stack: comma-separated backbone names."),
    from_rank: Optional[str] = typer.Option(None, "--from-rank", help="stack: take the backbones from a ranking saved by `transferkit rank DATA --json > ranking.json`."),
    top: Optional[int] = typer.Option(None, "--top", help="stack: use the best N backbones of the ranking (or the first N of --backbones)."),
    reduce: Optional[int] = typer.Option(None, "--reduce", help="stack: keep N PCA components of each backbone's features (default: all features)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of table files."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Examples per forward pass."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    seed: int = typer.Option(0, "--seed", help="Seed of the probes' folds and of PCA."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model already in the output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fuse models: weight interpolation, greedy or uniform soups, ensembles, or stacked backbone features."""
    _setup(quiet or as_json)
    try:
        from transferkit.workflows.fuse import fuse_from_command

        columns = dict(label_column=label_column, text_column=text_column, path_column=path_column, encoding=encoding)
        common = dict(output=output, overwrite=overwrite, batch_size=batch_size, device=device, **columns)
        values = dict(models=models, val=val, train=train, pretrained=pretrained, soup=soup, weighting=weighting,
                      backbones=_split(backbones), ranking=from_rank, top=top, reduce=reduce, seed=seed,
                      alphas=lambda: _alphas(alphas) if alphas else None,  # parsed by the methods that take them
                      eval_sets={"test": test} if test else None, common=common)
        result = fuse_from_command(method, values)
    except (TransferkitError, ValueError) as exc:
        _fail(exc)
    typer.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.summary())
    if result.output is not None and not as_json:
        typer.echo(f"saved: {result.output}")
