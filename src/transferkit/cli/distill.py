"""``transferkit distill``: train a small student from saved teacher models. Thin: parse, build the config, call
:func:`transferkit.workflows.distill.distill`, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import TransferkitError

PANEL = "Distillation"


@app.command()
def distill(
    data: Optional[str] = typer.Argument(None, help="Labelled training data: a folder with one sub-folder per class, or a table with a label column and a text or image-path column."),
    teacher: Optional[list[str]] = typer.Option(None, "--teacher", "-t", help="A teacher model folder written by `transferkit fit`; repeat for an ensemble (averaged probabilities).", rich_help_panel=PANEL),
    student: Optional[str] = typer.Option(None, "--student", "-b", help="The student backbone: a name from `transferkit models`, timm:ARCH, random:timm:ARCH (a small CNN from scratch), hf:MODEL_ID or a local folder. Default: the teacher's backbone.", rich_help_panel=PANEL),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder to save the student in (an ordinary model folder)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (the same names as these flags); flags override it."),
    unlabelled: Optional[str] = typer.Option(None, "--unlabelled", help="Unlabelled data (image folder or table) for the soft-target term.", rich_help_panel=PANEL),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Softmax temperature of the soft targets (default 4).", rich_help_panel=PANEL),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Weight of the soft-target term on labelled examples, in [0, 1] (default 0.9; the rest goes to the labels' cross-entropy).", rich_help_panel=PANEL),
    feature_weight: Optional[float] = typer.Option(None, "--feature-weight", help="Weight of feature matching between student and teacher features through a learnable projection (default 0 = off).", rich_help_panel=PANEL),
    mixup: Optional[float] = typer.Option(None, "--mixup", help="Images: mixup alpha of the training batches, the teachers running on the mixed images (function matching; teachers with the student's preprocessing). Default 0 = off.", rich_help_panel=PANEL),
    variants: Optional[int] = typer.Option(None, "--variants", help="Text: word-dropout copies of each labelled text whose teacher outputs are cached; the student reads one at random each time (augmentation a teacher with another tokenizer can follow). Default 0 = off.", rich_help_panel=PANEL),
    word_dropout: Optional[float] = typer.Option(None, "--word-dropout", help="Text variants: probability of dropping each word (default 0.1).", rich_help_panel=PANEL),
    no_teacher_cache: bool = typer.Option(False, "--no-teacher-cache", help="Recompute the teachers' outputs instead of reading them from the feature cache.", rich_help_panel=PANEL),
    compare_plain: bool = typer.Option(False, "--compare-plain", help="Also train the same student without distillation (same data and budget) and report the paired difference.", rich_help_panel=PANEL),
    val: Optional[str] = typer.Option(None, "--val", help="Validation data (default: a part of DATA)."),
    test: Optional[str] = typer.Option(None, "--test", help="Test data (default: a stratified part of DATA)."),
    shots: Optional[int] = typer.Option(None, "--shots", help="Keep at most this many labelled examples per class."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="Part of each class held out for testing when --test is not given (default 0.2)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of table files (default utf-8)."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="Delimiter of CSV/TSV tables (default: detected)."),
    normalize_labels: Optional[bool] = typer.Option(None, "--normalize-labels", help="Fold labels that differ only in case, whitespace or Unicode form into their most frequent spelling."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default 10)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of the student's backbone (default 1e-4)."),
    head_lr: Optional[float] = typer.Option(None, "--head-lr", help="Learning rate of the student's head (default 10 x lr)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Training batch (default 64)."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early stopping patience in epochs (default 3; 0 = off)."),
    augment: Optional[str] = typer.Option(None, "--augment", help="Augmentation preset none, light (default), medium or heavy."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Image students: input resolution in pixels."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Text students: maximum tokens per text (default 256)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random choice (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Feature cache folder (teacher outputs are kept there)."),
    work_dir: Optional[str] = typer.Option(None, "--work-dir", help="Folder for checkpoints and logs."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (off to disable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model already in the output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Distil TEACHER (one or several saved models) into a smaller STUDENT on DATA; evaluate both, save the student."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file
        from transferkit.strategies.distill_setup import make_distill_config
        from transferkit.workflows.distill import distill as distill_fn

        values = load_config_file(config) if config is not None else {}
        flags = dict(data=data, teacher=list(teacher) if teacher else None, backbone=student, output=output,
                     unlabelled=unlabelled, compare_plain=compare_plain or None, val=val, test=test, shots=shots,
                     test_fraction=test_fraction, label_column=label_column, text_column=text_column,
                     path_column=path_column, encoding=encoding, delimiter=delimiter, normalize_labels=normalize_labels, epochs=epochs, lr=lr, head_lr=head_lr,
                     batch_size=batch_size, patience=patience, augment=augment, image_size=image_size,
                     max_length=max_length, seed=seed, device=device, cache_dir=cache_dir, work_dir=work_dir,
                     tracking_uri=tracking_uri, overwrite=overwrite or None,
                     progress=False if (quiet or as_json) else None)
        values.update({k: v for k, v in flags.items() if v is not None})
        loss = dict(values.get("distill") or {})
        loss.update({k: v for k, v in dict(temperature=temperature, alpha=alpha, feature_weight=feature_weight, mixup=mixup,
                                           variants=variants, word_dropout=word_dropout,
                                           cache_teacher=False if no_teacher_cache else None).items() if v is not None})
        if loss:
            values["distill"] = loss
        cfg = make_distill_config(str(config) if config else "options", **values)
        result = distill_fn(config=cfg)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({"test": result.metrics, "teachers": result.teachers, "plain_student": result.plain,
                               "comparison": result.comparison.to_dict() if result.comparison else None}, indent=2))
        return
    typer.echo(result.summary())
    if result.output is not None:
        typer.echo(f"saved: {result.output}")
