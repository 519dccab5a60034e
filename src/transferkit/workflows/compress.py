"""``compress``: the compressed variants of a saved model (ONNX, int8, pruned) made and measured side by side.

The variants, the latency timers and the table are in :mod:`transferkit.compress` (the table's columns are
described in :mod:`transferkit.compress.tradeoff`); this module is the verb: check the options and the output
folder, load the model and the data, make each asked variant in a staging folder and score it on the same test
examples, time them in turns, save the table.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from transferkit.compress.tradeoff import (
    DEFAULT_VARIANTS,
    TRADEOFF_FILE,
    VARIANTS,
    TradeoffReport,
    VariantRow,
    check_compress_output,
    interleaved_latency,
    latency_batches,
    onnx_calls,
    pytorch_calls,
    state_size_bytes,
)
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")


def compress_model(model_dir: str | Path, data: Any, *, train: Any = None, calibration: Any = None,
                   output: str | Path | None = None, variants: Sequence[str] = DEFAULT_VARIANTS,
                   magnitude_amount: float = 0.5, structured_amount: float = 0.3, heads: float = 0.0,
                   quantization: str = "auto", recovery_epochs: int = 1, recovery_lr: float = 1e-4,
                   batch_size: int = 32, threads: int | None = None, seed: int = 0, tolerance: float = 1e-3,
                   overwrite: bool = False, max_calibration: int = 256, signed_activations: bool = False,
                   progress: bool = False,
                   label_column: str | None = None, text_column: str | None = None, path_column: str | None = None,
                   encoding: str = "utf-8", delimiter: str | None = None,
                   normalize_labels: bool = False) -> TradeoffReport:
    """Make the compressed ``variants`` of the model folder ``model_dir`` and measure them all on labelled
    ``data`` (see :mod:`transferkit.compress.tradeoff`). ``train`` (labelled) drives the pruning recovery fine-tune
    and, when ``calibration`` is not given, static quantization's calibration. The table options (those of
    :class:`~transferkit.options.DataOptions`) read all three. Everything is checked before any work."""
    from transferkit._io import atomic_write_json, staged_folder
    from transferkit.models.folder import late_step
    from transferkit.tasks import task_of

    start_all = time.perf_counter()
    if data is None:
        raise ConfigError("--data: give the labelled test data (an image folder or a table) that every variant is "
                          "measured on.")
    variants = _check_options(variants, magnitude_amount, structured_amount, heads, recovery_epochs, recovery_lr,
                              tolerance, threads, seed)
    model_dir = Path(model_dir)
    output = check_compress_output(Path(output) if output is not None else model_dir / "compressed", overwrite,
                                   model_dir=model_dir, inputs=[("--data", data), ("--train", train),
                                                                ("--calibration", calibration)])
    read = dict(label_column=label_column, text_column=text_column, path_column=path_column, encoding=encoding,
                delimiter=delimiter, normalize_labels=normalize_labels)
    model, test, y, train_ds, calib_ds = _load_inputs(model_dir, data, train, calibration, read)
    if "structured" in variants:
        from transferkit.compress.prune import STRUCTURED_REFUSAL, structured_units

        if not structured_units(model.backbone):
            raise ConfigError(STRUCTURED_REFUSAL.format(name=model.backbone.name))
    if "int8" in variants:
        from transferkit.compress.quantize import resolve_method

        quantization = resolve_method(quantization, model.modality, calib_ds is not None)
    threads = int(threads or torch.get_num_threads())
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    # Every variant is written into a staging folder that replaces the output folder once all are complete: an
    # interrupted run leaves the earlier variants as they were, and no half-made variant looks finished.
    with staged_folder(output, what="--output") as staging:  # replaces the output folder when the block ends
        try:
            run = _Run(model, model_dir, test, y, staging, output,
                       latency_batches(model.backbone, test), batch_size, threads, progress)
            _float_variant(run)
            float_onnx = _onnx_variant(run, variants, tolerance) if "onnx" in variants or "int8" in variants \
                else None
            if "int8" in variants:
                _int8_variant(run, quantization, calib_ds, float_onnx, max_calibration, signed_activations, seed)
            for kind in ("magnitude", "structured"):
                if kind in variants:
                    amount = magnitude_amount if kind == "magnitude" else structured_amount
                    _pruned_variant(run, kind, amount, heads, train_ds, recovery_epochs, recovery_lr, seed)
            _measure_latency(run)
            result = TradeoffReport(str(model_dir), test.origin, len(test), threads, run.rows,
                                    round(time.perf_counter() - start_all, 1), str(output),
                                    measure=task_of(model).measure)
            atomic_write_json(staging / TRADEOFF_FILE, result.to_dict())
        finally:
            torch.set_num_threads(previous_threads)
    late_step(f"copying the table into {model_dir}", lambda: atomic_write_json(model_dir / TRADEOFF_FILE,
                                                                               result.to_dict()),
              [], saved="the variants are saved")
    return result


def _check_options(variants: Sequence[str], magnitude_amount: float, structured_amount: float, heads: float,
                   recovery_epochs: int, recovery_lr: float, tolerance: float, threads: int | None,
                   seed: int) -> list[str]:
    """Every option checked before any work; the variants returned with ``float`` (the reference row) first."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"--variants: {', '.join(unknown) or '(none)'} not known; choose from {', '.join(VARIANTS)}.")
    if not 0 < magnitude_amount < 1 or not 0 < structured_amount < 1 or not 0 <= heads < 1:
        raise ConfigError("--magnitude-amount and --structured-amount must be fractions in (0, 1), --heads in [0, 1).")
    if recovery_epochs < 0:
        raise ConfigError(f"--recovery-epochs must be 0 or more; got {recovery_epochs}.")
    if not 0 < recovery_lr < float("inf"):
        raise ConfigError(f"--recovery-lr must be a finite positive learning rate (e.g. 1e-4); got {recovery_lr}.")
    if not 0 < tolerance < float("inf"):
        raise ConfigError(f"--tolerance must be a finite positive logit difference (e.g. 1e-3); got {tolerance}.")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1; got {threads}.")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"--seed must be in [0, 2**32); got {seed}.")
    return ["float", *[v for v in variants if v != "float"]]


def _load(source: Any, role: str, *, unlabelled: bool = False, **options: Any) -> Dataset:
    from transferkit.data.sources import load_data
    from transferkit.data.validation import validate_dataset

    dataset = load_data(source, unlabelled=unlabelled, **{k: v for k, v in options.items() if v is not None})
    if not unlabelled:
        validate_dataset(dataset, role=role)
    return dataset


def _load_inputs(model_dir: Path, data: Any, train: Any, calibration: Any,
                 read: dict[str, Any]) -> tuple[Any, Dataset, np.ndarray, Dataset | None, Dataset | None]:
    """The saved model, the labelled test data (of the model's modality) and its labels as the model's class
    indices, the optional training data and the calibration data (the training data when none is given)."""
    from transferkit.data.validation import check_modality
    from transferkit.models.artifacts import load_model
    from transferkit.tasks import task_of

    label_column = read.pop("label_column")
    model = load_model(model_dir)
    task = task_of(model)
    test = _load(data, "evaluation", label_column=label_column, task=task.name, **read)
    check_modality(test, model.modality, f"the model in {model_dir}")
    y = task.targets(test, model.classes, normalize=bool(read.get("normalize_labels")))
    train_ds = _load(train, "training", label_column=label_column, task=task.name, **read) \
        if train is not None else None
    calib_ds = _load(calibration, "calibration", unlabelled=True, **read) if calibration is not None else train_ds
    return model, test, y, train_ds, calib_ds


@dataclass
class _Run:
    """What every variant of one run reads, and the rows and latency timers they add."""

    model: Any
    model_dir: Path
    test: Dataset
    y: np.ndarray
    staging: Path
    output: Path
    batches: dict[int, Any]
    batch_size: int
    threads: int
    progress: bool
    rows: list[VariantRow] = field(default_factory=list)
    timers: dict[str, dict[str, Callable[[], Any]]] = field(default_factory=dict)
    float_params: int = 0

    def accuracy(self, proba: np.ndarray) -> float:
        """The model task's measure (accuracy; R² for regression; example F1 for multi-label) of ``proba``."""
        from transferkit.tasks import task_of

        task = task_of(self.model)
        return float(np.mean(task.per_example_scores(self.y, task.predictions(proba)))) if len(self.y) \
            else float("nan")

    def pytorch_proba(self, model: Any) -> np.ndarray:
        return model.predict_proba(self.test, cache=None, batch_size=self.batch_size, device="cpu",
                                   progress=self.progress)

    def save(self, model: Any, name: str, metrics: dict[str, Any]) -> Path:
        from transferkit.models.artifacts import save_model

        folder = self.staging / name
        save_model(model, folder, include_backbone=True, overwrite=True, metrics=metrics)
        return folder


def _float_variant(run: _Run) -> None:
    """The reference row: the model as saved."""
    from transferkit.compress.prune import count_parameters

    model = run.model
    run.float_params = count_parameters(model.backbone)[0] + sum(p.numel() for p in model.head.parameters())
    run.rows.append(VariantRow("float", "pytorch", "the model as saved (float32, eager)",
                               run.accuracy(run.pytorch_proba(model)), state_size_bytes(model), run.float_params, {},
                               path=str(run.model_dir)))
    run.timers["float"] = pytorch_calls(model, run.batches)
    log.info("float: accuracy %.4f", run.rows[-1].accuracy)


def _onnx_variant(run: _Run, variants: list[str], tolerance: float) -> Path:
    """The float32 ONNX export (parity-checked), which int8 quantizes; a row when ``onnx`` was asked for."""
    from transferkit.backbones.onnx_graph import onnx_session
    from transferkit.compress.onnx import export_model
    from transferkit.compress.runtime import OnnxClassifier

    folder = run.save(run.model, "onnx", {"compression": {"variant": "onnx"}})
    exported = export_model(run.model, folder / "model.onnx", tolerance=tolerance, data=run.test)
    if "onnx" in variants:
        runner = OnnxClassifier(run.model, exported.path, threads=run.threads)
        run.rows.append(VariantRow("onnx", "onnxruntime", "float32 ONNX export (parity-checked)",
                                   run.accuracy(runner.predict_proba(run.test, batch_size=run.batch_size)),
                                   exported.path.stat().st_size, run.float_params, {}, path=str(run.output / "onnx"),
                                   facts={"parity": exported.parity.to_dict()}))
        run.timers["onnx"] = onnx_calls(onnx_session(exported.path, run.threads), run.batches, run.model.modality)
    return exported.path


def _int8_variant(run: _Run, quantization: str, calibration: Dataset | None, float_onnx: Path,
                  max_calibration: int, signed_activations: bool, seed: int) -> None:
    """int8 quantization of the export, run by ONNX Runtime."""
    from transferkit.backbones.onnx_graph import onnx_session
    from transferkit.compress.quantize import quantize_model
    from transferkit.compress.runtime import OnnxClassifier

    folder = run.save(run.model, "int8", {"compression": {"variant": "int8", "method": quantization}})
    report = quantize_model(run.model, folder / "model.onnx", method=quantization, calibration=calibration,
                            check=run.test, float_path=float_onnx, max_calibration=max_calibration,
                            signed_activations=signed_activations, seed=seed)
    runner = OnnxClassifier(run.model, folder / "model.onnx", threads=run.threads)
    run.rows.append(VariantRow("int8", "onnxruntime", f"int8 {quantization} quantization (ONNX Runtime)",
                               run.accuracy(runner.predict_proba(run.test, batch_size=run.batch_size)),
                               report.size_bytes, run.float_params, {}, path=str(run.output / "int8"),
                               facts={**report.to_dict(), "path": str(run.output / "int8" / "model.onnx"),
                                      "float_path": str(run.output / "onnx" / "model.onnx")}))
    run.timers["int8"] = onnx_calls(onnx_session(folder / "model.onnx", run.threads), run.batches, run.model.modality)


def _pruned_variant(run: _Run, kind: str, amount: float, heads: float, train: Dataset | None, recovery_epochs: int,
                    recovery_lr: float, seed: int) -> None:
    """Magnitude (weights zeroed) or structured (channels, neurons, heads removed) pruning of a copy of the model,
    then a short recovery fine-tune on ``train`` when given."""
    from transferkit.compress.prune import count_parameters, prune_magnitude, prune_structured, recover

    pruned = copy.deepcopy(run.model)
    report = prune_magnitude(pruned, amount) if kind == "magnitude" else \
        prune_structured(pruned, amount, heads=heads)
    facts: dict[str, Any] = {"pruning": report.to_dict()}
    if train is not None and recovery_epochs > 0:
        run_dir = run.staging / f".{kind}-run"
        facts["recovery"] = recover(pruned, train, epochs=recovery_epochs, lr=recovery_lr,
                                    batch_size=run.batch_size, seed=seed, work_dir=str(run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)
        facts["pruning_after_recovery"] = {"nonzero": count_parameters(pruned.backbone)[1]}
    else:
        facts["recovery"] = "none (no --train data)"
    run.save(pruned, kind, {"compression": {"variant": kind, **facts}})
    params, nonzero = count_parameters(pruned.backbone)
    head = sum(p.numel() for p in pruned.head.parameters())
    described = (f"magnitude pruning, {amount:.0%} of weights zeroed" if kind == "magnitude" else
                 f"structured pruning, {amount:.0%} of channels / neurons removed"
                 + (f", {heads:.0%} of heads" if heads else ""))
    described += ", recovery fine-tune" if isinstance(facts["recovery"], dict) else ", no recovery"
    run.rows.append(VariantRow(kind, "pytorch", described, run.accuracy(run.pytorch_proba(pruned)),
                               state_size_bytes(pruned), (nonzero if kind == "magnitude" else params) + head,
                               {}, path=str(run.output / kind), facts=facts))
    run.timers[kind] = pytorch_calls(pruned, run.batches)


def _measure_latency(run: _Run) -> None:
    """The variants timed in turns, round after round; each row's latency and its change from the reference."""
    latencies = interleaved_latency(run.timers)
    for row in run.rows:
        row.latency_ms = latencies[row.name]
    reference = run.rows[0]
    for row in run.rows:
        row.accuracy_change = row.accuracy - reference.accuracy
        row.size_ratio = row.size_bytes / max(1, reference.size_bytes)
