"""The accuracy / size / latency trade-off of a model and its compressed variants, measured side by side.

:func:`compress_model` (``transferkit compress MODEL --data TEST``) makes the variants of a saved model and
measures every one on the same test examples, with the same thread count, in one run:

==================  ==============  =====================================================================
variant             runtime         what it is
==================  ==============  =====================================================================
``float``           PyTorch eager   the model as saved
``onnx``            ONNX Runtime    the float32 export (parity-checked against PyTorch on the test inputs)
``int8``            ONNX Runtime    int8 quantization of the export (dynamic for text, static QDQ with
                                    calibration data for images; :mod:`transferkit.compress.quantize`)
``magnitude``       PyTorch eager   global magnitude pruning (``magnitude_amount`` of the weights zeroed),
                                    then a short recovery fine-tune when training data is given
``structured``      PyTorch eager   channels / feed-forward neurons (and ``heads``) removed, then recovery
==================  ==============  =====================================================================

Columns: test accuracy (and its difference from ``float``), file size (safetensors for PyTorch variants, the
``.onnx`` file for ONNX Runtime ones), parameters (non-zero ones for magnitude pruning, whose file does not
shrink), and the median CPU latency of one forward pass at batch 1 and batch 32 (inputs already prepared; a
warm-up run first; the variants take turns, round after round, so that a change of load on the machine affects
them alike). Every variant that is a model is saved as a model folder under ``output``
(``load_model`` loads it; ONNX variants hold their ``model.onnx`` for ``predict --runtime onnx``). The table is
returned, printed by the CLI, and saved as ``tradeoff.json`` in the model folder and in ``output``.
"""

from __future__ import annotations

import copy
import shutil
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")

VARIANTS = ("float", "onnx", "int8", "magnitude", "structured")
DEFAULT_VARIANTS = VARIANTS
LATENCY_BATCHES = (1, 32)
TRADEOFF_FILE = "tradeoff.json"


@dataclass
class VariantRow:
    """One row of the trade-off table."""

    name: str
    runtime: str
    description: str
    accuracy: float
    size_bytes: int
    parameters: int
    latency_ms: dict[str, float]
    accuracy_change: float = 0.0
    size_ratio: float = 1.0
    path: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TradeoffReport:
    """The table of :func:`compress_model` (rows in the order made) and how it was measured."""

    model: str
    test: str
    n_test: int
    threads: int
    rows: list[VariantRow]
    seconds: float = 0.0
    output: str | None = None

    def row(self, name: str) -> VariantRow:
        return next(r for r in self.rows if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "test": self.test, "n_test": self.n_test, "threads": self.threads,
                "seconds": self.seconds, "output": self.output, "rows": [r.to_dict() for r in self.rows]}

    def table(self) -> str:
        """A plain-text table: one line per variant."""
        header = (f"{'variant':<11} {'runtime':<13} {'accuracy':>8} {'change':>7} {'size MB':>8} {'size':>6} "
                  f"{'params':>11} {'ms @1':>8} {'ms @32':>8}")
        lines = [header, "-" * len(header)]
        for r in self.rows:
            lines.append(f"{r.name:<11} {r.runtime:<13} {r.accuracy:8.4f} {100 * r.accuracy_change:+6.1f}p "
                         f"{r.size_bytes / 1e6:8.2f} {100 * r.size_ratio:5.0f}% {r.parameters:>11,} "
                         f"{r.latency_ms.get('1', float('nan')):8.2f} {r.latency_ms.get('32', float('nan')):8.2f}")
        lines.append(f"({self.n_test} test examples of {self.test}; latency: median over interleaved rounds, "
                     f"{self.threads} thread{'s' if self.threads != 1 else ''}; size relative to float)")
        return "\n".join(lines)


def latency_batches(backbone: Any, data: Dataset, sizes: Sequence[int] = LATENCY_BATCHES) -> dict[int, Any]:
    """Collated batches of each size from ``data``'s first examples (repeated when there are fewer)."""
    out = {}
    for size in sizes:
        items = [data.items[i % len(data)] for i in range(size)]
        out[size] = backbone.collate([backbone.prepare(item) for item in items])
    return out


def pytorch_calls(model: torch.nn.Module, batches: dict[int, Any]) -> dict[str, Callable[[], Any]]:
    """One eager PyTorch forward pass per batch size: ``model(batch)`` in inference mode."""
    model.eval()

    def call(batch: Any) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return model(batch)
        return run

    return {str(size): call(batch) for size, batch in batches.items()}


def onnx_calls(session: Any, batches: dict[int, Any], modality: str) -> dict[str, Callable[[], Any]]:
    """One ONNX Runtime ``session.run`` per batch size."""
    from transferkit.backbones.onnx_graph import onnx_feed

    feeds = {str(size): onnx_feed(batch, modality) for size, batch in batches.items()}
    return {size: (lambda feed=feed: session.run(None, feed)) for size, feed in feeds.items()}


def interleaved_latency(timers: dict[str, dict[str, Callable[[], Any]]], *, min_rounds: int = 5,
                        min_seconds: float = 2.0, max_rounds: int = 50) -> dict[str, dict[str, float]]:
    """Median milliseconds of every call, measured in rounds that run each variant and batch size once in turn
    (after one warm-up call each), so that a change of machine load affects every variant alike; at least
    ``min_rounds`` rounds and ``min_seconds`` in all, at most ``max_rounds``."""
    for calls in timers.values():
        for call in calls.values():
            call()
    times: dict[str, dict[str, list[float]]] = {n: {size: [] for size in calls} for n, calls in timers.items()}
    start, rounds = time.perf_counter(), 0
    while rounds < min_rounds or (time.perf_counter() - start < min_seconds and rounds < max_rounds):
        for name, calls in timers.items():
            for size, call in calls.items():
                begin = time.perf_counter()
                call()
                times[name][size].append(time.perf_counter() - begin)
        rounds += 1
    return {name: {size: round(1000.0 * statistics.median(values), 3) for size, values in sizes.items()}
            for name, sizes in times.items()}


def state_size_bytes(model: torch.nn.Module, *, include_source_classifier: bool = False) -> int:
    """Bytes of the model's weights as one safetensors file (the backbone's unused source classifier left out
    unless asked for)."""
    from safetensors.torch import save

    skip: set[str] = set()
    if not include_source_classifier:
        inner = getattr(model.backbone, "model", None)
        classifier = inner.get_classifier() if inner is not None and hasattr(inner, "get_classifier") else None
        if isinstance(classifier, torch.nn.Module):
            names = {id(p) for p in classifier.parameters()}
            skip = {f"backbone.{n}" for n, p in model.backbone.named_parameters() if id(p) in names}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in skip}
    return len(save(tensors))


def _accuracy(proba: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(proba.argmax(axis=1) == y)) if len(y) else float("nan")


def _load(source: Any, role: str, *, unlabelled: bool = False, **options: Any) -> Dataset:
    from transferkit.data.sources import load_data
    from transferkit.data.validation import validate_dataset

    dataset = load_data(source, unlabelled=unlabelled, **{k: v for k, v in options.items() if v is not None})
    if not unlabelled:
        validate_dataset(dataset, role=role)
    return dataset


def compress_model(model_dir: str | Path, data: Any, *, train: Any = None, calibration: Any = None,
                   output: str | Path | None = None, variants: Sequence[str] = DEFAULT_VARIANTS,
                   magnitude_amount: float = 0.5, structured_amount: float = 0.3, heads: float = 0.0,
                   quantization: str = "auto", recovery_epochs: int = 1, recovery_lr: float = 1e-4,
                   batch_size: int = 32, threads: int | None = None, seed: int = 0, tolerance: float = 1e-3,
                   overwrite: bool = False, max_calibration: int = 256, signed_activations: bool = False,
                   progress: bool = False,
                   label_column: str | None = None, text_column: str | None = None, path_column: str | None = None,
                   encoding: str = "utf-8") -> TradeoffReport:
    """Make the compressed ``variants`` of the model folder ``model_dir`` and measure them all on labelled
    ``data`` (module docstring). ``train`` (labelled) drives the pruning recovery fine-tune and, when
    ``calibration`` is not given, static quantization's calibration. Everything is checked before any work."""
    from transferkit._io import atomic_write_json, staged_folder
    from transferkit.models.artifacts import load_model, save_model
    from transferkit.compress.prune import count_parameters

    start_all = time.perf_counter()
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"--variants: {', '.join(unknown) or '(none)'} not known; choose from {', '.join(VARIANTS)}.")
    variants = ["float", *[v for v in variants if v != "float"]]  # the reference row always comes first
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
    model_dir = Path(model_dir)
    output = check_compress_output(Path(output) if output is not None else model_dir / "compressed", overwrite,
                                   model_dir=model_dir, inputs=[("--data", data), ("--train", train),
                                                                ("--calibration", calibration)])
    options = dict(text_column=text_column, path_column=path_column, encoding=encoding)
    model = load_model(model_dir)
    test = _load(data, "evaluation", label_column=label_column, **options)
    from transferkit.data.validation import check_modality

    check_modality(test, model.modality, f"the model in {model_dir}")
    y = test.label_array(model.classes)
    train_ds = _load(train, "training", label_column=label_column, **options) if train is not None else None
    calib_ds = _load(calibration, "calibration", unlabelled=True, **options) if calibration is not None else train_ds
    wants_int8 = "int8" in variants
    if wants_int8:
        from transferkit.compress.quantize import resolve_method

        quantization = resolve_method(quantization, model.modality, calib_ds is not None)
    threads = int(threads or torch.get_num_threads())
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    batches = latency_batches(model.backbone, test)
    predict = dict(batch_size=batch_size, device="cpu", progress=progress)
    rows: list[VariantRow] = []
    # Every variant is written into a staging folder that replaces the output folder once all are complete: an
    # interrupted run leaves the earlier variants as they were, and no half-made variant looks finished.
    with staged_folder(output, what="--output") as staging:  # replaces the output folder when the block ends
        try:
            float_params = count_parameters(model.backbone)[0] + sum(p.numel() for p in model.head.parameters())
            float_size = state_size_bytes(model)
            proba = model.predict_proba(test, cache=None, **predict)
            rows.append(VariantRow("float", "pytorch", "the model as saved (float32, eager)", _accuracy(proba, y),
                                   float_size, float_params, {}, path=str(model_dir)))
            timers = {"float": pytorch_calls(model, batches)}
            log.info("float: accuracy %.4f", rows[-1].accuracy)
            float_onnx = None
            if "onnx" in variants or wants_int8:
                from transferkit.backbones.onnx_graph import onnx_session
                from transferkit.compress.onnx import export_model
                from transferkit.compress.runtime import OnnxClassifier

                folder = staging / "onnx"
                save_model(model, folder, include_backbone=True, overwrite=True,
                           metrics={"compression": {"variant": "onnx"}})
                exported = export_model(model, folder / "model.onnx", tolerance=tolerance, data=test)
                float_onnx = exported.path
                runner = OnnxClassifier(model, float_onnx, threads=threads)
                if "onnx" in variants:
                    rows.append(VariantRow("onnx", "onnxruntime", "float32 ONNX export (parity-checked)",
                                           _accuracy(runner.predict_proba(test, batch_size=batch_size), y),
                                           float_onnx.stat().st_size, float_params,
                                           {}, path=str(output / "onnx"), facts={"parity": exported.parity.to_dict()}))
                    timers["onnx"] = onnx_calls(onnx_session(float_onnx, threads), batches, model.modality)
            if wants_int8:
                from transferkit.compress.quantize import quantize_model

                folder = staging / "int8"
                save_model(model, folder, include_backbone=True, overwrite=True,
                           metrics={"compression": {"variant": "int8", "method": quantization}})
                report = quantize_model(model, folder / "model.onnx", method=quantization, calibration=calib_ds,
                                        check=test, float_path=float_onnx, max_calibration=max_calibration,
                                        signed_activations=signed_activations, seed=seed)
                runner = OnnxClassifier(model, folder / "model.onnx", threads=threads)
                rows.append(VariantRow("int8", "onnxruntime", f"int8 {quantization} quantization (ONNX Runtime)",
                                       _accuracy(runner.predict_proba(test, batch_size=batch_size), y),
                                       report.size_bytes, float_params,
                                       {}, path=str(output / "int8"),
                                       facts={**report.to_dict(), "path": str(output / "int8" / "model.onnx"),
                                              "float_path": str(output / "onnx" / "model.onnx")}))
                timers["int8"] = onnx_calls(onnx_session(folder / "model.onnx", threads), batches, model.modality)
            for kind in ("magnitude", "structured"):
                if kind not in variants:
                    continue
                from transferkit.compress.prune import prune_magnitude, prune_structured, recover

                pruned = copy.deepcopy(model)
                amount = magnitude_amount if kind == "magnitude" else structured_amount
                report = prune_magnitude(pruned, amount) if kind == "magnitude" else \
                    prune_structured(pruned, amount, heads=heads)
                facts: dict[str, Any] = {"pruning": report.to_dict()}
                if train_ds is not None and recovery_epochs > 0:
                    run_dir = staging / f".{kind}-run"
                    facts["recovery"] = recover(pruned, train_ds, epochs=recovery_epochs, lr=recovery_lr,
                                                batch_size=batch_size, seed=seed, work_dir=str(run_dir))
                    shutil.rmtree(run_dir, ignore_errors=True)
                    facts["pruning_after_recovery"] = {"nonzero": count_parameters(pruned.backbone)[1]}
                else:
                    facts["recovery"] = "none (no --train data)"
                folder = staging / kind
                save_model(pruned, folder, include_backbone=True, overwrite=True,
                           metrics={"compression": {"variant": kind, **facts}})
                params, nonzero = count_parameters(pruned.backbone)
                head = sum(p.numel() for p in pruned.head.parameters())
                described = (f"magnitude pruning, {amount:.0%} of weights zeroed" if kind == "magnitude" else
                             f"structured pruning, {amount:.0%} of channels / neurons removed"
                             + (f", {heads:.0%} of heads" if heads else ""))
                described += ", recovery fine-tune" if isinstance(facts["recovery"], dict) else ", no recovery"
                rows.append(VariantRow(kind, "pytorch", described,
                                       _accuracy(pruned.predict_proba(test, cache=None, **predict), y),
                                       state_size_bytes(pruned), (nonzero if kind == "magnitude" else params) + head,
                                       {}, path=str(output / kind), facts=facts))
                timers[kind] = pytorch_calls(pruned, batches)
            latencies = interleaved_latency(timers)
            for row in rows:
                row.latency_ms = latencies[row.name]
            reference = rows[0]
            for row in rows:
                row.accuracy_change = row.accuracy - reference.accuracy
                row.size_ratio = row.size_bytes / max(1, reference.size_bytes)
            result = TradeoffReport(str(model_dir), test.origin, len(test), threads, rows,
                                    round(time.perf_counter() - start_all, 1), str(output))
            atomic_write_json(staging / TRADEOFF_FILE, result.to_dict())
        finally:
            torch.set_num_threads(previous_threads)
    from transferkit.models.folder import late_step

    late_step(f"copying the table into {model_dir}", lambda: atomic_write_json(model_dir / TRADEOFF_FILE,
                                                                               result.to_dict()),
              [], saved="the variants are saved")
    return result


def check_compress_output(output: Path, overwrite: bool, *, model_dir: Path,
                          inputs: Sequence[tuple[str, Any]] = ()) -> Path:
    """The variants' folder, checked before any work (a :class:`ConfigError` naming ``--output`` otherwise): not a
    file, not the model folder itself nor one of the data inputs, writable; a folder that holds earlier variants
    (a ``tradeoff.json``) is replaced only with ``overwrite``, a folder holding anything else is never written."""
    from transferkit._io import check_location, check_not_input, folder_is_empty
    from transferkit.models.folder import describe_folder, is_model_folder

    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} exists and is a file; give a folder path (a new or empty folder).")
    check_not_input(output, [("model folder", model_dir), *inputs], allow_inside=("model folder",))
    check_location(output)
    if not folder_is_empty(output):
        if is_model_folder(output) or not (output / TRADEOFF_FILE).is_file():
            raise ConfigError(f"--output {output} is not empty: it holds {describe_folder(output)}, not compressed "
                              "variants; nothing in it is replaced, even with --overwrite. Choose a new folder.")
        if not overwrite:
            raise ConfigError(f"--output {output} already holds compressed variants (it is not empty); pass "
                              "--overwrite to replace them (the old ones stay until the new ones are complete), or "
                              "choose another --output.")
    return output


def read_tradeoff(model_dir: str | Path) -> dict[str, Any] | None:
    """The trade-off table saved in a model folder by :func:`compress_model` (for reports), or ``None``."""
    import json

    path = Path(model_dir) / TRADEOFF_FILE
    return json.loads(path.read_text()) if path.is_file() else None


