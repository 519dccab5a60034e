"""``serve``: an HTTP service for a model folder.

The steps: build and check the settings, check the model folder and the installation (and export the ONNX file
once for the ``onnx`` runtime), bind the address, load the model and run it once on a synthetic input, then run
uvicorn with one worker in this process or several worker processes on the socket bound here. The building
blocks (the application, the predictor, the address checks) are in :mod:`transferkit.serving`.
"""

from __future__ import annotations

import gc
import logging
import socket
from pathlib import Path
from typing import Any

from transferkit.errors import ArtifactError
from transferkit.serving.server import bind_socket, check_serve_config
from transferkit.serving.settings import ServeConfig, make_serve_config

log = logging.getLogger("transferkit")


def serve(model: str | Path, **options: Any) -> None:
    """Serve ``model`` over HTTP until interrupted. ``options`` are those of
    :class:`~transferkit.serving.settings.ServeConfig` (host, port, workers, runtime, limits, micro-batching).

    Everything that can fail is checked before the service accepts a connection: the options, the installation,
    the address (port free, host of this machine), and the model itself (loaded, and run once on a synthetic input:
    a folder whose class list disagrees with its head, or whose weights are not safetensors or give NaN, raises
    :class:`~transferkit.errors.ArtifactError` here instead of failing every request)."""
    from transferkit.serving.app import load_predictor

    config = make_serve_config(model=str(Path(model).resolve()), **options)
    check_serve_config(config)
    sock = bind_socket(config.host, config.port)
    try:
        predictor = load_predictor(config)
        port = sock.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        log.info("serving %s on http://%s:%d with %d worker(s), runtime %s (Ctrl+C to stop)", config.model, host,
                 port, config.workers, config.runtime)
        uvicorn_options = dict(host=config.host, port=port, log_level="warning", access_log=False,
                               timeout_graceful_shutdown=10)
        if config.workers == 1:
            _run_in_process(config, predictor, sock, uvicorn_options)
            return
        del predictor  # each worker process loads its own model: the one checked here is not needed any more
        gc.collect()
        _run_workers(config, sock, uvicorn_options)
    finally:
        sock.close()


def _run_in_process(config: ServeConfig, predictor: Any, sock: socket.socket, options: dict[str, Any]) -> None:
    """One worker: the application of the checked predictor, served in this process."""
    import uvicorn

    from transferkit.serving.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(config, predictor), **options))
    server.run(sockets=[sock])


def _run_workers(config: ServeConfig, sock: socket.socket, options: dict[str, Any]) -> None:
    """Several worker processes, each building the application from the settings passed in its environment; a
    worker that cannot load the model stops the service with an error naming the folder."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from transferkit.serving.app import STARTUP_FAILURE

    config.to_environment()
    supervisor = Multiprocess(uvicorn.Config("transferkit.serving.app:app_from_environment", factory=True,
                                             workers=config.workers, **options), sockets=[sock])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise ArtifactError(f"{config.model}: a worker process could not load the model (the reason is above); "
                            "the service stopped. Check the folder and start it again.")
