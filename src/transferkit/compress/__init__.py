"""Making an adapted model cheaper to deploy: ONNX export with parity checks (:mod:`.onnx`), int8 quantization
(:mod:`.quantize`), pruning (:mod:`.prune`), ONNX Runtime predictions (:mod:`.runtime`) and the accuracy / size /
latency trade-off of the variants (:mod:`.tradeoff`).

Heavy libraries (onnx, onnxruntime) load only when a function here is called.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DEFAULT_TOLERANCE": "onnx",
    "OnnxExport": "onnx",
    "OnnxFeatureExtractor": "onnx",
    "ParityReport": "onnx",
    "check_parity": "onnx",
    "export_backbone": "onnx",
    "export_model": "onnx",
    "QuantizationReport": "quantize",
    "quantize_model": "quantize",
    "quantize_onnx": "quantize",
    "PruneReport": "prune",
    "prune_magnitude": "prune",
    "prune_structured": "prune",
    "recover": "prune",
    "OnnxClassifier": "runtime",
    "TradeoffReport": "tradeoff",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"transferkit.compress.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'transferkit.compress' has no attribute '{name}'")
