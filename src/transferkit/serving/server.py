"""``serve``: check the options, the address and the model (loaded and run once), then run uvicorn with one or
more worker processes on the socket bound here."""

from __future__ import annotations

import errno
import gc
import logging
import socket
from pathlib import Path
from typing import Any

from transferkit.errors import ArtifactError, ConfigError
from transferkit.serving.settings import ServeConfig, make_serve_config

log = logging.getLogger("transferkit")


def check_serve_config(config: ServeConfig) -> None:
    """Everything that can fail before the service starts: the model folder (complete, checksums), the runtime's
    installation, and the ONNX file of the ``onnx`` runtime (exported once here, not by every worker)."""
    from transferkit.models.folder import read_config

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


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), as uvicorn binds it; a :class:`ConfigError` naming
    ``--host`` or ``--port`` and the fix when the address cannot be used (port taken, not an address of this
    machine, a privileged port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port}: {host}:{port} is already in use by another program; stop it, or "
                              "choose another --port (--port 0 picks a free one).") from None
        if isinstance(exc, OSError) and exc.errno == errno.EACCES:
            raise ConfigError(f"--port {port}: this user may not listen on {host}:{port} ({reason}); ports below "
                              "1024 need administrator rights: choose a --port from 1024 to 65535.") from None
        if isinstance(exc, OverflowError):
            raise ConfigError(f"--port {port}: a port is from 0 to 65535.") from None
        raise ConfigError(f"--host {host}: cannot listen on this address ({reason}); give an address of this "
                          "machine: 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or one of its "
                          "network addresses.") from None
    sock.set_inheritable(True)
    return sock


def serve(model: str | Path, **options: Any) -> None:
    """Serve ``model`` over HTTP until interrupted. ``options`` are those of
    :class:`~transferkit.serving.settings.ServeConfig` (host, port, workers, runtime, limits, micro-batching).

    Everything that can fail is checked before the service accepts a connection: the options, the installation,
    the address (port free, host of this machine), and the model itself (loaded, and run once on a synthetic input:
    a folder whose class list disagrees with its head, or whose weights are not safetensors or give NaN, raises
    :class:`~transferkit.errors.ArtifactError` here instead of failing every request)."""
    import uvicorn

    from transferkit.serving.app import STARTUP_FAILURE, create_app, load_predictor

    config = make_serve_config(model=str(Path(model).resolve()), **options)
    check_serve_config(config)
    sock = bind_socket(config.host, config.port)
    try:
        predictor = load_predictor(config)
        port = sock.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        log.info("serving %s on http://%s:%d with %d worker(s), runtime %s (Ctrl+C to stop)", config.model, host,
                 port, config.workers, config.runtime)
        options = dict(host=config.host, port=port, log_level="warning", access_log=False,
                       timeout_graceful_shutdown=10)
        if config.workers == 1:
            server = uvicorn.Server(uvicorn.Config(create_app(config, predictor), **options))
            server.run(sockets=[sock])
            return
        # Each worker process loads its own model: the one checked here is not needed any more.
        del predictor
        gc.collect()
        config.to_environment()
        from uvicorn.supervisors import Multiprocess

        supervisor = Multiprocess(uvicorn.Config("transferkit.serving.app:app_from_environment", factory=True,
                                                 workers=config.workers, **options), sockets=[sock])
        supervisor.run()
        if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
            raise ArtifactError(f"{config.model}: a worker process could not load the model (the reason is above); "
                                "the service stopped. Check the folder and start it again.")
    finally:
        sock.close()
