"""Making an adapted model cheaper to deploy: ONNX export with parity checks (quantization and pruning to come).

Heavy libraries (onnx, onnxruntime) load only when a function here is called.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_TOLERANCE",
    "OnnxExport",
    "OnnxFeatureExtractor",
    "ParityReport",
    "check_parity",
    "export_backbone",
    "export_model",
    "export_model_folder",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from transferkit.compress import onnx

        return getattr(onnx, name)
    raise AttributeError(f"module 'transferkit.compress' has no attribute '{name}'")
