"""The ONNX graph of a backbone: its inputs, the export call, and an ONNX Runtime session.

The low-level part of :mod:`transferkit.compress.onnx` (which adds metadata, parity reports and the model-folder
export), kept here so that feature extraction can run a backbone through ONNX Runtime without depending on the
higher-level package. Graph inputs are what the backbone's ``collate`` produces:

- images: ``pixels`` ``(batch, 3, H, W)`` float32 (H, W fixed; batch dynamic);
- texts: ``input_ids`` and ``attention_mask`` ``(batch, sequence)`` int64 (both dynamic);
- audio: ``spectrogram`` ``(batch, frames, mel bands)`` float32 (frames and bands fixed; batch dynamic).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, ExportError
from transferkit.modalities import MODALITIES, get_modality

IMAGE_INPUTS = MODALITIES["image"].onnx_inputs
TEXT_INPUTS = MODALITIES["text"].onnx_inputs


class _ImageGraph(nn.Module):
    """``fn(module, pixels)`` with the graph's input name as the argument name."""

    def __init__(self, module: nn.Module, fn: Callable[[nn.Module, Any], torch.Tensor]) -> None:
        super().__init__()
        self.module, self.fn = module, fn

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fn(self.module, pixels)


class _TextGraph(nn.Module):
    """``fn(module, {"input_ids": ..., "attention_mask": ...})`` with positional tensor inputs."""

    def __init__(self, module: nn.Module, fn: Callable[[nn.Module, Any], torch.Tensor]) -> None:
        super().__init__()
        self.module, self.fn = module, fn

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.fn(self.module, {"input_ids": input_ids, "attention_mask": attention_mask})


def input_names(modality: str) -> tuple[str, ...]:
    """Names of the graph inputs for a modality (``pixels``; or ``input_ids``, ``attention_mask``)."""
    names = MODALITIES[modality].onnx_inputs if modality in MODALITIES else ()
    if not names:
        exportable = [name for name, entry in MODALITIES.items() if entry.onnx_inputs]
        raise ExportError(f"cannot export a backbone of modality '{modality}'; {' and '.join(exportable)} backbones "
                          "are supported.")
    return names


def batch_inputs(batch: Any, modality: str) -> tuple[torch.Tensor, ...]:
    """A collated batch as the graph's positional inputs: a mapping's tensors of token ids (int64) in the order of
    :func:`input_names`, or the one tensor of values (float32)."""
    if isinstance(batch, Mapping):
        return tuple(batch[name].to(torch.int64) for name in input_names(modality))
    return (batch.float(),)


def onnx_feed(batch: Any, modality: str) -> dict[str, np.ndarray]:
    """A collated batch as ONNX Runtime input arrays (C-contiguous)."""
    return {name: np.ascontiguousarray(t.detach().cpu().numpy())
            for name, t in zip(input_names(modality), batch_inputs(batch, modality))}


def sample_batches(backbone: Backbone, data: Dataset | None = None, *, sizes: Sequence[int] = (1, 3, 4),
                   seed: int = 0) -> tuple[list[Any], str]:
    """Collated batches of the given sizes for a parity check, and where their examples came from.

    From ``data`` when given (its first examples, through the backbone's own preprocessing); otherwise random
    images of varied sizes, or texts of varied lengths.
    """
    total = int(sum(sizes))
    if data is not None:
        if data.modality != backbone.modality:
            raise ConfigError(f"{data.origin}: holds {data.modality} data, but the model takes {backbone.modality} "
                              "input; give check data of the model's kind.")
        if len(data) == 0:
            raise ConfigError(f"{data.origin}: no examples to check the export on.")
        items = [data.items[i % len(data)] for i in range(total)]
        source = f"{min(total, len(data))} examples of {data.origin}"
    else:
        items, source = get_modality(backbone.modality).sample_items(total, seed)
    batches, start = [], 0
    for size in sizes:
        batches.append(backbone.collate([backbone.prepare(item) for item in items[start:start + size]]))
        start += size
    return batches, source


def _dynamic_shapes(example: Any, modality: str, backbone: Backbone) -> dict[str, dict[int, Any]] | tuple:
    """The batch axis of every input is dynamic; so is the sequence axis of token inputs. A single tensor input's
    axes are given by position (its graph argument is named ``pixels`` whatever the modality calls it)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    names = input_names(modality)
    if isinstance(example, Mapping):
        sequence = torch.export.Dim("sequence", min=1, max=int(getattr(backbone, "max_length", 512)))
        return {name: {0: batch, 1: sequence} for name in names}
    return ({0: batch},)


def export_graph(module: nn.Module, fn: Callable[[nn.Module, Any], torch.Tensor], backbone: Backbone,
                 path: str | Path, output_name: str, *, opset_version: int | None = None) -> Path:
    """Write ``fn(module, batch)`` as an ONNX graph to ``path`` (``torch.onnx.export`` with dynamo, dynamic batch
    and text length, the weights inside the one file), atomically. ``module`` must be in eval mode on the CPU."""
    path = Path(path)
    modality = backbone.modality
    names = list(input_names(modality))
    (example,), _ = sample_batches(backbone, sizes=(2,))
    graph = _TextGraph(module, fn) if isinstance(example, Mapping) else _ImageGraph(module, fn)
    path.parent.mkdir(parents=True, exist_ok=True)
    from transferkit._io import temporary_path

    partial = str(temporary_path(path))  # created by the exporter with the umask's mode (mkstemp would make 0600)
    try:
        # The exporter reports its steps on stdout and warns about internals; neither is for the user.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, batch_inputs(example, modality), partial, dynamo=True, external_data=False,
                              dynamic_shapes=_dynamic_shapes(example, modality, backbone), input_names=names,
                              output_names=[output_name], opset_version=opset_version, verbose=False)
        os.replace(partial, path)
    except Exception as exc:
        cause = exc.__cause__ or exc
        reason = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip().splitlines()
        raise ExportError(
            f"exporting to {path} failed ({type(cause).__name__}: {reason[0] if reason else 'no message'}). "
            "The model's forward pass must be traceable by torch.export; a custom layer may need a simpler form."
        ) from exc
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (default: PyTorch's current thread count, so
    that comparisons use the same number) and one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: ONNX Runtime cannot load this file ({type(exc).__name__}: {exc}).") from exc


def feature_session(backbone: Backbone, threads: int | None = None) -> tuple[Any, Path]:
    """An ONNX Runtime session computing ``backbone``'s pooled features, and its file.

    The graph is exported once per backbone weights and preprocessing (``backbone.cache_key()``) into the
    transferkit cache folder (``TRANSFERKIT_CACHE/onnx``) and reused from there; sessions are kept per file and
    thread count for the life of the process.
    """
    from transferkit.backbones.packaged import cache_root

    threads = int(threads or torch.get_num_threads())
    path = cache_root() / "onnx" / f"{backbone.cache_key()}.onnx"
    key = (str(path), threads)
    if key not in _SESSIONS:
        if not path.is_file():
            modes = [(m, m.training) for m in backbone.modules()]
            device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
            backbone.eval().to("cpu")
            try:
                export_graph(backbone, lambda module, batch: module.forward_features(batch), backbone, path,
                             "features")
            finally:
                for module, flag in modes:
                    module.training = flag
                backbone.to(device)
        _SESSIONS[key] = onnx_session(path, threads)
    return _SESSIONS[key], path


_SESSIONS: dict[tuple[str, int], Any] = {}
