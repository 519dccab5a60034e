"""ONNX export of a backbone (pooled features) or an adapted model (logits), checked against PyTorch.

The graph takes what the backbone's ``collate`` produces:

- images: ``pixels`` ``(batch, 3, H, W)`` float32, already resized and normalised (the preprocessing is written into
  the file's metadata); H and W are fixed, the batch is dynamic;
- texts: ``input_ids`` and ``attention_mask`` ``(batch, sequence)`` int64, both dynamic.

It returns ``features`` ``(batch, num_features)`` or ``logits`` ``(batch, classes)``. Export uses
``torch.onnx.export(dynamo=True)`` with the weights inside the one file. Every export is followed by a parity check:
PyTorch and ONNX Runtime run the same inputs at several batch sizes (and text lengths) and the largest absolute
difference must stay within a tolerance, else :class:`~transferkit.errors.ExportError`.

:class:`OnnxFeatureExtractor` runs an exported backbone over a dataset with ONNX Runtime, in the role of
:func:`transferkit.features.extract.run_backbone`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from transferkit._io import keep_mode, temporary_path
from transferkit._version import __version__
from transferkit.backbones.onnx_graph import (  # noqa: F401  (re-exported: part of this module's API)
    IMAGE_INPUTS,
    TEXT_INPUTS,
    batch_inputs,
    export_graph,
    input_names,
    onnx_feed,
    onnx_session,
    sample_batches,
)
from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, ExportError
from transferkit.features.extract import restore_training_modes, training_modes

log = logging.getLogger("transferkit")

# Largest absolute difference allowed between PyTorch and ONNX Runtime outputs (features or logits). Float32
# kernels differ in summation order; for the models here the difference is about 1e-5.
DEFAULT_TOLERANCE = 1e-3


@dataclass
class ParityReport:
    """The outcome of running PyTorch and ONNX Runtime on the same inputs.

    ``max_abs_diff`` is the largest absolute difference over every output value of every checked batch.
    """

    max_abs_diff: float
    tolerance: float
    examples: int
    batch_sizes: list[int]
    input_source: str

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_diff <= self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass
class OnnxExport:
    """Where an export went, what it computes, and its parity check."""

    path: Path
    output: str
    inputs: list[str]
    parity: ParityReport | None
    seconds: float
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "output": self.output, "inputs": self.inputs, "seconds": self.seconds,
                "size_bytes": self.path.stat().st_size if self.path.exists() else None,
                "parity": self.parity.to_dict() if self.parity else None}


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    partial = temporary_path(path)
    try:
        onnx.save(model, str(partial))
        keep_mode(path, partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file written here (output kind, preprocessing, classes, version); an
    :class:`~transferkit.errors.ExportError` naming the file when it cannot be read as ONNX."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors have no common public base
        raise ExportError(f"{path}: cannot be read as an ONNX file ({type(exc).__name__}); it is damaged or not an "
                          "export. Export the model again: transferkit export MODEL --overwrite.") from None
    return {entry.key: entry.value for entry in model.metadata_props}


def check_parity(reference: Callable[[Any], torch.Tensor], path: str | Path, batches: Sequence[Any], modality: str,
                 *, tolerance: float = DEFAULT_TOLERANCE, input_source: str = "given batches",
                 session: Any = None, destination: str | Path | None = None) -> ParityReport:
    """Run ``reference(batch)`` (PyTorch) and the ONNX file on every batch; raise if they differ by more than
    ``tolerance`` (largest absolute difference of any output value).

    Returns the :class:`ParityReport` when the check passes; raises :class:`~transferkit.errors.ExportError` naming
    the file and the difference when it fails. ``destination``: where a file being checked before it is put in
    place would go (it is then not put there, and the message says so).
    """
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be a non-negative number; got {tolerance}.")
    session = session if session is not None else onnx_session(path)
    worst, examples, sizes = 0.0, 0, []
    for batch in batches:
        with torch.inference_mode():
            expected = reference(batch).float().cpu().numpy()
        got = session.run(None, onnx_feed(batch, modality))[0]
        if got.shape != expected.shape:
            raise ExportError(f"{path}: output shape {got.shape} differs from PyTorch's {expected.shape} for a batch "
                              f"of {len(expected)}; the export did not keep the dynamic dimensions.")
        difference = float(np.max(np.abs(got.astype(np.float64) - expected))) if expected.size else 0.0
        if not np.isfinite(difference):
            difference = float("inf")
        worst = max(worst, difference)
        examples += len(expected)
        sizes.append(len(expected))
    report = ParityReport(worst, float(tolerance), examples, sizes, input_source)
    if not report.passed:
        fate = (f"Nothing was written to {destination}." if destination is not None else
                "Do not deploy this file.")
        raise ExportError(
            f"{destination or path}: ONNX Runtime's outputs differ from PyTorch's by up to {worst:.3g} on {examples} "
            f"examples ({input_source}), more than the tolerance {tolerance:g}. {fate} If a difference this size is "
            "acceptable for your use, raise the tolerance (--tolerance)."
        )
    return report


def export_backbone(backbone: Backbone, path: str | Path, *, check: bool = True,
                    tolerance: float = DEFAULT_TOLERANCE, data: Dataset | None = None,
                    opset_version: int | None = None) -> OnnxExport:
    """Write ``backbone`` as an ONNX graph that returns pooled features ``(batch, num_features)``.

    Inputs are described in the module docstring. With ``check`` (default), PyTorch and ONNX Runtime are run on
    batches of 1, 3 and 4 examples (from ``data`` when given) and must agree within ``tolerance``.
    """
    return _export(backbone, backbone, lambda module, batch: module.forward_features(batch), path, "features",
                   check=check, tolerance=tolerance, data=data, opset_version=opset_version,
                   extra={"num_features": str(backbone.num_features)})


def export_model(model: nn.Module, path: str | Path, *, check: bool = True, tolerance: float = DEFAULT_TOLERANCE,
                 data: Dataset | None = None, opset_version: int | None = None) -> OnnxExport:
    """Write an adapted model (:class:`~transferkit.models.model.TransferModel`) as an ONNX graph returning logits
    ``(batch, classes)``, in the order of ``model.classes`` (also stored in the file's metadata)."""
    return _export(model, model.backbone, lambda module, batch: module(batch), path, "logits", check=check,
                   tolerance=tolerance, data=data, opset_version=opset_version,
                   extra={"classes": json.dumps(list(model.classes)), "strategy": str(model.strategy)})


def _export(module: nn.Module, backbone: Backbone, fn: Callable[[nn.Module, Any], torch.Tensor], path: str | Path,
            output_name: str, *, check: bool, tolerance: float, data: Dataset | None, opset_version: int | None,
            extra: dict[str, str]) -> OnnxExport:
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be a non-negative number; got {tolerance}.")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"output {path} is a folder; give a file path such as {path / 'model.onnx'}.")
    start = time.perf_counter()
    modality = backbone.modality
    check_export_data(data, modality)
    names = input_names(modality)
    modes = training_modes(module)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    module.eval().to("cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_path(path)  # put in place only once it has passed the parity check
    try:
        export_graph(module, fn, backbone, partial, output_name, opset_version=opset_version)
        metadata = {"producer": f"transferkit {__version__}", "output": output_name, "modality": modality,
                    "inputs": json.dumps(list(names)), "backbone": backbone.name,
                    "preprocessing": json.dumps(backbone.preprocessing, sort_keys=True), **extra}
        _add_metadata(partial, metadata)
        parity = None
        if check:
            batches, source = sample_batches(backbone, data)
            parity = check_parity(lambda batch: fn(module, batch), partial, batches, modality, tolerance=tolerance,
                                  input_source=source, destination=path)
        keep_mode(path, partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
        restore_training_modes(modes)
        module.to(device)
    seconds = time.perf_counter() - start
    log.info("exported %s to %s in %.1f s%s", output_name, path, seconds,
             f" (max difference {parity.max_abs_diff:.2e})" if parity else "")
    return OnnxExport(path, output_name, list(names), parity, seconds, metadata)


def check_export_data(data: Dataset | None, modality: str) -> None:
    """The parity-check data fits the model (checked before anything is exported)."""
    if data is None:
        return
    if data.modality != modality:
        raise ConfigError(f"--data {data.origin}: holds {data.modality} data, but the model takes {modality} input; "
                          f"give {modality} data of the model's kind to check the export on (or leave --data out).")
    if len(data) == 0:
        raise ConfigError(f"--data {data.origin}: no examples to check the export on.")


def check_export_output(path: str | Path, overwrite: bool, *, model_folder: str | Path | None = None,
                        inputs: Sequence[tuple[str, Any]] = ()) -> Path:
    """Where an ONNX file goes, checked before the export: not a folder, writable, not one of the ``inputs``, and
    not over an existing file without ``overwrite`` (never over a file of the model folder the model is read
    from other than an earlier export)."""
    from transferkit._io import check_location, check_not_input

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--output {path} is a folder; give a file path such as {path / 'model.onnx'}.")
    check_not_input(path, inputs, "--output", allow_inside=("model folder",))
    if model_folder is not None and path.exists() and path.resolve().parent == Path(model_folder).resolve() \
            and path.suffix.lower() != ".onnx":
        raise ConfigError(f"--output {path} is a file of the model folder, not an ONNX export; it is never "
                          "replaced. Choose a .onnx file name.")
    if path.exists() and not overwrite:
        raise ConfigError(f"--output {path} already exists; pass --overwrite to replace it or choose another "
                          "--output.")
    check_location(path)
    return path


class OnnxFeatureExtractor:
    """Pooled features from an exported backbone, computed by ONNX Runtime.

    The same role as :func:`~transferkit.features.extract.run_backbone`: ``run(dataset)`` prepares every example
    with ``backbone``'s own preprocessing and returns ``(N, num_features)`` float32 in the dataset's order.
    ``threads`` is ONNX Runtime's intra-op thread count (default: PyTorch's current one).
    """

    def __init__(self, path: str | Path, backbone: Backbone, *, threads: int | None = None) -> None:
        self.path = Path(path)
        self.backbone = backbone
        self.threads = threads
        self._session = None

    @classmethod
    def from_backbone(cls, backbone: Backbone, path: str | Path, *, threads: int | None = None,
                      tolerance: float = DEFAULT_TOLERANCE) -> "OnnxFeatureExtractor":
        """Export ``backbone`` to ``path`` (checked) and return an extractor for it."""
        export_backbone(backbone, path, tolerance=tolerance)
        return cls(path, backbone, threads=threads)

    @property
    def session(self):
        if self._session is None:
            if not self.path.is_file():
                raise ExportError(f"{self.path}: no such ONNX file; export the backbone first (export_backbone).")
            self._session = onnx_session(self.path, self.threads)
        return self._session

    def features_of_batch(self, batch: Any) -> np.ndarray:
        """Features ``(n, num_features)`` of one collated batch."""
        return self.session.run(None, onnx_feed(batch, self.backbone.modality))[0]

    def run(self, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0) -> np.ndarray:
        """Features of every example of ``dataset``, ``(N, num_features)`` float32, in the dataset's order."""
        from transferkit.features.extract import batches_in_order, restore_order

        if dataset.modality != self.backbone.modality:
            raise ConfigError(f"{dataset.origin}: holds {dataset.modality} data, but this extractor takes "
                              f"{self.backbone.modality} input.")
        loader, order = batches_in_order(self.backbone, dataset, batch_size=batch_size, num_workers=num_workers)
        chunks = [self.features_of_batch(batch) for batch in loader]
        width = self.session.get_outputs()[0].shape[-1]
        features = np.concatenate(chunks) if chunks else np.zeros((0, int(width) if isinstance(width, int) else 0),
                                                                     np.float32)
        return restore_order(features, order).astype(np.float32, copy=False)
