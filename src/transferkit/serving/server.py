"""What ``serve`` checks before the service starts: the model folder and the installation
(:func:`check_serve_config`), and the address (:func:`bind_socket`). The verb is
:func:`transferkit.workflows.serve.serve`."""

from __future__ import annotations

import errno
import socket

from transferkit.errors import ConfigError
from transferkit.serving.settings import ServeConfig


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
        from transferkit.serving.detecting import check_detector_runtime, folder_predicts_records

        if folder_predicts_records(config.model):
            check_detector_runtime(config.model, config.runtime)
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
