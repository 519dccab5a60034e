"""The ``transferkit`` command. Thin: parse, build the config, call the Python function, print.

Heavy libraries load inside the commands, so ``transferkit --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from transferkit._version import __version__
from transferkit.errors import TransferkitError

app = typer.Typer(
    name="transferkit",
    help="Transfer learning for small labelled datasets: adapt a pretrained backbone to your images or texts, "
    "and learn honestly whether transfer helped.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _setup(quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("transferkit").setLevel(logging.WARNING if quiet else logging.INFO)

    def show(message, category, filename, lineno, file=None, line=None):  # one line, no source excerpt
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    for noisy in ("sklearn", "torch", "timm", "transformers", "PIL"):
        warnings.filterwarnings("ignore", module=noisy)


def _fail(exc: BaseException) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"transferkit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """transferkit command line."""


@app.command()
def fit(
    data: Optional[str] = typer.Argument(None, help="Training data: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet) with a label column and a text or image-path column."),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Backbone: a name from `transferkit models`, timm:ARCH, hf:MODEL_ID, or a local model folder. Default: efficientnet_lite0 for images, all-MiniLM-L6-v2 for text. auto: rank the installed backbones by LogME on the training data and use the best."),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="How to adapt the backbone: linear-probe (frozen features, cached; default), finetune (full or partial), lp-ft (probe, then fine-tune from it), lora (low-rank adapters), l2sp (fine-tune held near the pretrained weights), contrastive (top layers tuned so same-class examples are close, then the probe; few examples per class), auto (a planner chooses from the data and --budget, and explains why)."),
    budget: Optional[str] = typer.Option(None, "--budget", help="--strategy auto: time budget of the run: seconds (600) or 90s, 20m, 1.5h; the planner's choice and its epochs fit in it."),
    calibrate: Optional[bool] = typer.Option(None, "--calibrate", help="Fit a temperature on validation data (saved with the model, applied by predict) and save reliability.png."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder to save the model in (weights, config, metrics, run config, model card)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (the same names as these flags, with _ or -); flags given here override it."),
    val: Optional[str] = typer.Option(None, "--val", help="Validation data (same form as DATA). Default: C is chosen by cross-validation on the training data."),
    test: Optional[str] = typer.Option(None, "--test", help="Test data (same form as DATA). Default: a stratified part of DATA is held out (--test-fraction)."),
    shots: Optional[int] = typer.Option(None, "--shots", help="Keep at most this many training examples per class (few-shot experiments)."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="Part of each class held out for testing when --test is not given (default 0.2)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table (default: label, class, category or target)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table (default: text, sentence, review or content)."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table (default: path, image, filepath or file); relative paths are relative to the table."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of table files (default utf-8)."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="Delimiter of CSV/TSV tables: one character, or tab (default: detected among , ; tab |)."),
    normalize_labels: Optional[bool] = typer.Option(None, "--normalize-labels", help="Fold labels that differ only in case, whitespace or Unicode form (Positive / positive) into their most frequent spelling instead of stopping."),
    baselines: Optional[str] = typer.Option(None, "--baselines", help="Comma-separated baselines run on the same split: raw (pixels or TF-IDF + logistic regression), scratch (the same architecture from random weights, same training budget). Default: raw, plus scratch for training strategies on up to 2,000 examples."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random choice (default 0)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Examples per backbone forward pass (default 64)."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="Data-loader processes decoding images (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (default auto)."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Feature cache folder (default ~/.cache/transferkit/features, or $TRANSFERKIT_CACHE/features)."),
    no_cache: Optional[bool] = typer.Option(None, "--no-cache", help="Neither read nor write the feature cache."),
    probe_c: Optional[float] = typer.Option(None, "--probe-c", help="Fixed inverse regularisation of the probe (default: chosen on validation data)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Text backbones: maximum tokens per text (default 256)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Image backbones: input resolution in pixels instead of the pretrained one (e.g. 112 for 28x28 images: a quarter of 224's compute)."),
    overwrite: Optional[bool] = typer.Option(None, "--overwrite", help="Replace a model already in the output folder."),
    report: Optional[bool] = typer.Option(None, "--report/--no-report", help="Write report.html into the output folder at the end (default: on)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training: maximum epochs (default 10; early stopping may end sooner).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Training: learning rate of the backbone (default 1e-4; lora 1e-3).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    head_lr: Optional[float] = typer.Option(None, "--head-lr", help="Training: learning rate of the head (default 10 x lr for a new head, lr for lp-ft and lora).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Training: AdamW weight decay (default 0.01).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    warmup: Optional[float] = typer.Option(None, "--warmup", help="Training: part of the steps with learning-rate warm-up (default 0.1).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    accumulate: Optional[int] = typer.Option(None, "--accumulate", help="Training: gradient accumulation, batches per optimiser step (default 1).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    precision: Optional[str] = typer.Option(None, "--precision", help="Training: auto (bf16/fp16 mixed on GPUs, fp32 on CPU), 32, 16-mixed or bf16-mixed.", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    patience: Optional[int] = typer.Option(None, "--patience", help="Training: early stopping after N epochs without better validation accuracy (default 3; 0 = off).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Training: part of each class held out for early stopping when --val is not given (default 0.15).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    augment: Optional[str] = typer.Option(None, "--augment", help="Training: augmentation preset none, light (default), medium or heavy (images: flips, crops, rotation, colour jitter, TrivialAugment, erasing; text: token masking and dropout).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    auto_augment: Optional[str] = typer.Option(None, "--auto-augment", help="Training, images: randaugment, trivialaugment or none instead of the preset's choice.", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    mixup: Optional[float] = typer.Option(None, "--mixup", help="Training, images: mixup alpha (default 0 = off).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    cutmix: Optional[float] = typer.Option(None, "--cutmix", help="Training, images: cutmix alpha (default 0 = off).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    freeze: Optional[int] = typer.Option(None, "--freeze", help="finetune, lp-ft, l2sp: freeze the first K layer groups (from the input) for the whole run.", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    layer_lr_decay: Optional[float] = typer.Option(None, "--layer-lr-decay", help="finetune, lp-ft, l2sp: per-layer learning-rate decay from the top (e.g. 0.7; default 1 = off).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    unfreeze_every: Optional[int] = typer.Option(None, "--unfreeze-every", help="finetune, lp-ft, l2sp: gradual unfreezing, one more layer group from the top every N epochs (default 0 = off).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    bn_statistics: Optional[str] = typer.Option(None, "--bn-statistics", help="finetune, lp-ft, l2sp: BatchNorm statistics while training: update, frozen (pretrained, layers in eval mode), or auto (frozen for lp-ft and for a pretrained backbone on up to 10,000 examples, update otherwise).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    keep_probe: Optional[bool] = typer.Option(None, "--keep-probe/--no-keep-probe", help="lp-ft: keep the probe as the result when no fine-tuning epoch beats it on the validation data (default: on).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    lora_rank: Optional[int] = typer.Option(None, "--lora-rank", help="lora: adapter rank (default 8).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    lora_alpha: Optional[float] = typer.Option(None, "--lora-alpha", help="lora: scaling alpha (update x alpha / rank; default 16).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    lora_dropout: Optional[float] = typer.Option(None, "--lora-dropout", help="lora: dropout on the adapters' input (default 0.05).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    lora_targets: Optional[str] = typer.Option(None, "--lora-targets", help="lora: comma-separated layer names or suffixes to adapt (default: attention query/value; CNN linear and 1x1 convolutions).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    l2sp_alpha: Optional[float] = typer.Option(None, "--l2sp-alpha", help="l2sp: pull towards the pretrained weights (default 0.1).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    l2sp_beta: Optional[float] = typer.Option(None, "--l2sp-beta", help="l2sp: weight decay of the new head (default 0.01).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    contrastive_loss: Optional[str] = typer.Option(None, "--contrastive-loss", help="contrastive: pair loss over every pair of a batch, supcon (default) or cosent.", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="contrastive: temperature of the supcon loss (default 0.1).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    top_layers: Optional[int] = typer.Option(None, "--top-layers", help="contrastive: layer groups trained, from the top (default 2; 0 = all).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Training: initialise the backbone from a checkpoint (.safetensors, .pt, or a model folder); what matches loads, the rest is reported.", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    resume: Optional[bool] = typer.Option(None, "--resume", help="Training: continue an interrupted run from its last checkpoint (give the same options and --output or --work-dir).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    work_dir: Optional[str] = typer.Option(None, "--work-dir", help="Training: folder for checkpoints and logs (default: in the transferkit cache, one per --output).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Training: MLflow tracking URI (default: SQLite in the transferkit cache; off to disable).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    devices: Optional[int] = typer.Option(None, "--devices", help="Training: processes / GPUs (default 1).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    activation_checkpointing: Optional[bool] = typer.Option(None, "--activation-checkpointing", help="Training: recompute activations in the backward pass (much less memory for long inputs, about a third more compute).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    num_nodes: Optional[int] = typer.Option(None, "--num-nodes", help="Training: machines in a multi-node run (each runs --devices processes; start it with torchrun or a cluster scheduler).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    distributed: Optional[str] = typer.Option(None, "--distributed", help="Training: auto, ddp, ddp_spawn or fsdp (Lightning strategies; ddp with --devices N or under torchrun).", rich_help_panel="Training (finetune, lp-ft, lora, l2sp)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of a table."),
) -> None:
    """Adapt a pretrained backbone to DATA, evaluate it on held-out data beside the baselines, save it."""
    _setup(quiet)
    try:
        from transferkit.config import load_config_file, merge_config

        file_values = load_config_file(config) if config is not None else {}
        flags = dict(data=data, backbone=backbone, strategy=strategy, budget=budget, calibrate=calibrate, output=output, val=val, test=test, shots=shots,
                     test_fraction=test_fraction, label_column=label_column, text_column=text_column,
                     path_column=path_column, encoding=encoding, delimiter=delimiter,
                     normalize_labels=normalize_labels, seed=seed, batch_size=batch_size,
                     num_workers=num_workers, device=device, cache_dir=cache_dir, no_cache=no_cache,
                     probe_c=probe_c, max_length=max_length, image_size=image_size, overwrite=overwrite, report=report,
                     baselines=[b.strip() for b in baselines.split(",") if b.strip()] if baselines else None,
                     progress=False if quiet else None, epochs=epochs, lr=lr, head_lr=head_lr,
                     weight_decay=weight_decay, warmup=warmup, accumulate=accumulate, precision=precision,
                     patience=patience, val_fraction=val_fraction, augment=augment, auto_augment=auto_augment,
                     mixup=mixup, cutmix=cutmix, init_from=init_from, resume=resume, work_dir=work_dir,
                     tracking_uri=tracking_uri, devices=devices, num_nodes=num_nodes, distributed=distributed,
                     activation_checkpointing=activation_checkpointing,
                     finetune=dict(freeze=freeze, layer_lr_decay=layer_lr_decay, unfreeze_every=unfreeze_every,
                                   bn_statistics=bn_statistics, keep_probe=keep_probe),
                     lora=dict(rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout,
                               targets=[t.strip() for t in lora_targets.split(",") if t.strip()] if lora_targets else None),
                     l2sp=dict(alpha=l2sp_alpha, beta=l2sp_beta),
                     contrastive=dict(loss=contrastive_loss, temperature=temperature, top_layers=top_layers))
        cfg = merge_config(file_values, flags, str(config) if config else "options")
        from transferkit.api import fit as fit_fn

        result = fit_fn(config=cfg)
    except TransferkitError as exc:
        _fail(exc)
    if not result.is_main_process:
        return  # the other processes of a multi-process run train; the main one reports
    if as_json:
        typer.echo(json.dumps({"test": result.metrics, "baselines": result.baselines,
                               "comparisons": [c.to_dict() for c in result.comparisons]}, indent=2))
    else:
        typer.echo(result.summary())
        if result.output is not None:
            typer.echo(f"saved: {result.output}")


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit`."),
    data: str = typer.Argument(..., help="Labelled data (image folder or table) to evaluate on."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of a table."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of table files."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="Delimiter of CSV/TSV tables (default: detected)."),
    normalize_labels: bool = typer.Option(False, "--normalize-labels", help="Labels that differ from the model's classes only in case, whitespace or Unicode form count as those classes."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Examples per forward pass."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    task: Optional[str] = typer.Option(None, "--task", help="The task to evaluate, for a multi-task model."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
) -> None:
    """Print accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix of MODEL on DATA."""
    _setup(quiet)
    try:
        from transferkit.api import evaluate as evaluate_fn
        from transferkit.evaluation.metrics import format_metrics

        metrics = evaluate_fn(model, data, batch_size=batch_size, device=device, label_column=label_column,
                              text_column=text_column, path_column=path_column, encoding=encoding, progress=not quiet,
                              task=task, delimiter=delimiter, normalize_labels=normalize_labels)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(metrics, indent=2) if as_json else format_metrics(metrics, f"{model} on {data}"))


@app.command()
def predict(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit`."),
    inputs: list[str] = typer.Argument(..., help="A folder of images, a table (with a text or path column), image files, or (for text models) one or more texts."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Probabilities of the K most likely classes per input."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a table."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of table files."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="Delimiter of CSV/TSV tables (default: detected)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Examples per forward pass."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the predictions to this file (.jsonl or .csv) instead of printing them."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the --output file if it exists."),
    runtime: str = typer.Option("torch", "--runtime", help="torch, or onnx: ONNX Runtime on the CPU with MODEL/model.onnx (from `transferkit export`, or int8 from `transferkit compress`)."),
    onnx_file: Optional[str] = typer.Option(None, "--onnx-file", help="With --runtime onnx: this ONNX file instead of MODEL/model.onnx."),
    task: Optional[str] = typer.Option(None, "--task", help="The task to predict, for a multi-task model."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
) -> None:
    """Predict the class of each input with MODEL; prints one JSON line per input (label and probabilities)."""
    _setup(quiet)
    try:
        from transferkit.api import _as_model, predict as predict_fn
        from transferkit.modalities import get_modality

        if output is not None:
            _check_predictions_output(output, overwrite, [("model folder", model), *[("input", i) for i in inputs]])
        loaded = _as_model(model, task)
        source: object
        if len(inputs) == 1 and Path(inputs[0]).exists():
            source = inputs[0]
        elif all(Path(i).is_file() for i in inputs) and get_modality(loaded.modality).items_are_files:
            from transferkit.data.dataset import Dataset

            source = Dataset(loaded.modality, list(inputs), None, "command line", list(inputs))
        elif get_modality(loaded.modality).strings_are_items:
            source = list(inputs)
        else:
            missing = next((i for i in inputs if not Path(i).exists()), None)
            if missing is not None:
                raise TransferkitError(f"{missing}: no such file or folder.")
            folder = next(i for i in inputs if Path(i).is_dir())
            raise TransferkitError(f"{folder}: a folder among several inputs; give one folder alone, or files only.")
        rows = predict_fn(loaded, source, top_k=top_k, batch_size=batch_size, device=device, text_column=text_column,
                          path_column=path_column, encoding=encoding, delimiter=delimiter, progress=not quiet,
                          runtime=runtime,
                          onnx_file=onnx_file, model_dir=model)
    except TransferkitError as exc:
        _fail(exc)
    if output is not None:
        from transferkit.tasks import task_of

        _write_predictions(rows, output, task_of(loaded).prediction_table(rows, loaded.classes))
        typer.echo(f"wrote {len(rows)} predictions to {output}")
    else:
        for row in rows:
            typer.echo(json.dumps(row, allow_nan=False))  # strict JSON: predict_fn refuses non-finite values


def _check_predictions_output(path: Path, overwrite: bool, inputs: list[tuple[str, str]]) -> None:
    """Before predicting: --output is a file that can be written, is none of the inputs, and is replaced only
    with --overwrite."""
    from transferkit._io import check_location, check_not_input
    from transferkit.errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"--output {path} is a folder; give a file path such as {path / 'predictions.jsonl'}.")
    check_not_input(path, inputs, allow_inside=("model folder",))
    if path.exists() and not overwrite:
        raise ConfigError(f"--output {path} already exists; pass --overwrite to replace it, or choose another file.")
    check_location(path)


def _write_predictions(rows: list[dict], path: Path, table: list[list[str]]) -> None:
    """The predictions as JSON lines, or, for a ``.csv`` path, as ``table`` (the task's header and rows)."""
    from transferkit._io import atomic_write_text

    if path.suffix.lower() == ".csv":
        import csv
        import io

        buffer = io.StringIO()
        csv.writer(buffer).writerows(table)
        atomic_write_text(path, buffer.getvalue())
    else:
        atomic_write_text(path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the named backbones and whether their weights are installed here."""
    from transferkit.backbones.registry import list_backbones

    entries = list_backbones()
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    width = max(len(e["name"]) for e in entries)
    for e in entries:
        state = "installed" if e["available"] else f"not installed ({e['install']})"
        typer.echo(f"{e['name']:<{width}}  {e['modality']:<5}  {e['description']}  [{state}]")
    typer.echo("\nAlso: timm:ARCH (any timm model), hf:MODEL_ID (any transformers encoder), a local model folder, "
               "and random:NAME for the same architecture with random weights.")


@app.command()
def demo(
    output: Path = typer.Option(Path("demo-output"), "--output", "-o", help="Folder for the saved models and the summary."),
    shots: int = typer.Option(20, "--shots", min=1, help="Labelled training examples per class."),
    quick: bool = typer.Option(False, "--quick", help="Smaller test sets (for a fast check)."),
) -> None:
    """The main job end to end on packaged weights and data: few labels per class, transfer vs the baselines."""
    _setup(False)
    try:
        from transferkit.demo import run_demo

        run_demo(output, shots=shots, quick=quick)
    except TransferkitError as exc:
        _fail(exc)


# Commands that live in their own modules register themselves on `app` when imported (keep them light at import).
COMMAND_MODULES: list[str] = ["transferkit.cli.rank", "transferkit.cli.export", "transferkit.cli.report", "transferkit.cli.serve",
                              "transferkit.cli.cv", "transferkit.cli.tune", "transferkit.cli.multitask",
                              "transferkit.cli.fuse", "transferkit.cli.adapt", "transferkit.cli.distill",
                              "transferkit.cli.compress"]


def _register_commands() -> None:
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)


def main() -> None:
    _register_commands()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    # Run the imported module's app: command modules register on `transferkit.cli.main.app`, not on `__main__`.
    from transferkit.cli.main import main as _main

    _main()
