"""``transferkit adapt``: domain adaptation with unlabelled target data. Thin: parse, build the config, call, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import ConfigError, TransferkitError


def _class_mix(text: str) -> dict[str, float]:
    """``"a=0.7,b=0.3"`` -> ``{"a": 0.7, "b": 0.3}``; a malformed part is a ConfigError that names it."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.rpartition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            mix[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--target-prior: cannot read {part!r}; write CLASS=FRACTION for every class, "
                              "comma-separated, e.g. positive=0.68,negative=0.32.") from None
    return mix


@app.command()
def adapt(
    source: Optional[str] = typer.Option(None, "--source", help="Labelled source data: a folder with one sub-folder per class, or a table with a label column and a text or image-path column."),
    target: Optional[str] = typer.Option(None, "--target", help="Unlabelled target data: a folder of images, or a table with a text or image-path column (a label column, if any, is ignored)."),
    target_labels: Optional[str] = typer.Option(None, "--target-labels", help="For the report only: the label column of the target table, or a labelled copy of the target data. The result then says how far the label-free choice is from the best in hindsight; no choice reads these labels."),
    config_file: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (the names of AdaptConfig: tradeoffs, warm_start, adapt_epochs, threshold_start, ... as well as these flags); flags given here override it."),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="dann, cdan, dan, coral, mcc, entropy, self-train, probe-mcc (MCC on the plain probe's linear head), iw (instance weighting), source-probe (the plain linear probe, no alignment), coral-features (CORAL re-colouring + probe), subspace (subspace alignment + probe), source-only, or auto (default: try them and keep the validator's choice)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder for the adapted model (load_model / predict read it), with adaptation.json and embedding.png."),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Backbone name (`transferkit models`) or local model folder. Default: efficientnet_lite0 for images, all-MiniLM-L6-v2 for text."),
    validator: Optional[str] = typer.Option(None, "--validator", help="Label-free score that picks method, trade-off and checkpoint: im (default), im-cal (im after temperature scaling on held-out source data), snd, dev, entropy, ensv (agreement with the ensemble of all candidates; checkpoints by im)."),
    candidates: Optional[str] = typer.Option(None, "--candidates", help="With --method auto: comma-separated methods to try (default: all)."),
    target_prior: Optional[str] = typer.Option(None, "--target-prior", help="The target's class mix, if known: CLASS=FRACTION for every class, comma-separated (e.g. positive=0.68,negative=0.32). Predictions are moved from the source's class mix to it, and im / im-cal measure balance against it."),
    tradeoff: Optional[float] = typer.Option(None, "--tradeoff", help="Weight of the adaptation loss (default: a small grid per method, chosen by the validator)."),
    weighting: Optional[str] = typer.Option(None, "--weighting", help="iw: density-ratio (default), kmm or selection."),
    train_backbone: bool = typer.Option(False, "--train-backbone", help="Fine-tune the backbone too (slower); default: frozen backbone, cached features, a trained bottleneck head."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs per candidate (default 10)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Examples per domain in a batch (default 64)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default 1e-3 on frozen features, 1e-4 with --train-backbone)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of the source table (default: label, class, category or target)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of the tables (default: text, sentence, review or content)."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of the tables (default: path, image, filepath or file)."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of table files (default utf-8)."),
    embedding: Optional[str] = typer.Option(None, "--embedding", help="2-D embedding of the before/after plot: pca (default), tsne, none."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random choice (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (default auto)."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Feature cache folder."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the feature cache."),
    work_dir: Optional[str] = typer.Option(None, "--work-dir", help="Folder for the candidates' checkpoints and logs (default: a temporary folder)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI of the run (default: SQLite in the transferkit cache, or $TRANSFERKIT_TRACKING_URI; off to disable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model already in the output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the adaptation report as JSON."),
) -> None:
    """Adapt a model trained on labelled SOURCE data to unlabelled TARGET data; a label-free validator picks the
    method, its weight and the checkpoint."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file
        from transferkit.strategies.adaptation.config import make_adapt_config
        from transferkit.workflows.adapt import adapt as adapt_fn

        options = dict(source=source, target=target, target_labels=target_labels, method=method, output=output,
                       backbone=backbone, validator=validator, tradeoff=tradeoff, weighting=weighting,
                       train_backbone=train_backbone or None, epochs=epochs, batch_size=batch_size, lr=lr,
                       label_column=label_column, text_column=text_column, path_column=path_column,
                       encoding=encoding, embedding=embedding, seed=seed, device=device, cache_dir=cache_dir,
                       no_cache=no_cache or None, overwrite=overwrite or None, work_dir=work_dir,
                       tracking_uri=tracking_uri,
                       progress=False if (quiet or as_json) else None,
                       candidates=[c.strip() for c in candidates.split(",") if c.strip()] if candidates else None,
                       target_prior=_class_mix(target_prior) if target_prior else None)
        values = load_config_file(config_file) if config_file is not None else {}
        values.update({k: v for k, v in options.items() if v is not None})
        config = make_adapt_config(**values)
        result = adapt_fn(config=config)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(result.report, indent=2, default=str))
        return
    typer.echo(result.summary())
    if result.output is not None:
        typer.echo(f"saved: {result.output}")
