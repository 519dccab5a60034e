"""The HTTP service of a model folder (FastAPI + uvicorn): ``transferkit serve MODEL``.

``create_app(ServeConfig(model=...))`` builds the application (for tests and embedding); :func:`serve` checks the
options and runs uvicorn with several worker processes. See :mod:`transferkit.serving.app` for the endpoints and
the error codes, and ``docs/serving.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ServeConfig": "transferkit.serving.settings",
    "make_serve_config": "transferkit.serving.settings",
    "create_app": "transferkit.serving.app",
    "Predictor": "transferkit.serving.predictor",
    "MicroBatcher": "transferkit.serving.batching",
    "serve": "transferkit.serving.server",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'transferkit.serving' has no attribute {name!r}")
