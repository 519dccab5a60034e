"""``serve``: check the model folder and the options, then run uvicorn with one or more worker processes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transferkit.errors import ConfigError
from transferkit.serving.settings import ServeConfig, make_serve_config

log = logging.getLogger("transferkit")


def check_serve_config(config: ServeConfig) -> None:
    """Everything that can fail before the service starts: the model folder (complete, checksums), the runtime's
    installation, and the ONNX file of the ``onnx`` runtime (exported once here, not by every worker)."""
    from transferkit.artifacts import read_config

    read_config(config.model)
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401  (python-multipart: file uploads)
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"serve needs fastapi, python-multipart and uvicorn ({exc.name} is missing): "
                          "`pip install 'transferkit[serve]'`.") from None
    if config.runtime == "onnx":
        if config.device not in ("cpu", "auto"):
            raise ConfigError(f"--runtime onnx runs on the CPU; got --device {config.device}. Use --runtime torch.")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ConfigError("--runtime onnx needs onnxruntime: `pip install 'transferkit[export]'`.") from None
        from transferkit.serving.predictor import prepare_onnx

        prepare_onnx(config.model)


def serve(model: str | Path, **options: Any) -> None:
    """Serve ``model`` over HTTP until interrupted. ``options`` are those of
    :class:`~transferkit.serving.settings.ServeConfig` (host, port, workers, runtime, limits, micro-batching)."""
    import uvicorn

    config = make_serve_config(model=str(Path(model).resolve()), **options)
    check_serve_config(config)
    config.to_environment()
    log.info("serving %s on http://%s:%d with %d worker(s), runtime %s", config.model, config.host, config.port,
             config.workers, config.runtime)
    uvicorn.run("transferkit.serving.app:app_from_environment", factory=True, host=config.host, port=config.port,
                workers=config.workers, log_level="warning", access_log=False, timeout_graceful_shutdown=10)
