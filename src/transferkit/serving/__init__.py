"""The HTTP service of a model folder (FastAPI + uvicorn): ``transferkit serve MODEL``.

``create_app(ServeConfig(model=...))`` builds the application (for tests and embedding); the verb
(:func:`transferkit.workflows.serve.serve`) checks the options and runs uvicorn with several worker processes. See :mod:`transferkit.serving.app` for the endpoints and
the error codes, and ``docs/serving.md``.
"""

from __future__ import annotations

from transferkit._lazy import lazy_getattr
_LAZY = {
    "ServeConfig": "transferkit.serving.settings",
    "make_serve_config": "transferkit.serving.settings",
    "create_app": "transferkit.serving.app",
    "Predictor": "transferkit.serving.predictor",
    "DetectionPredictor": "transferkit.serving.detecting",
    "MicroBatcher": "transferkit.serving.batching",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
