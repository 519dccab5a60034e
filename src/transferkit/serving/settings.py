"""The service's settings: one typed object, validated at construction, passed to every worker process."""

from __future__ import annotations

import json
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transferkit.errors import ConfigError

#: Environment variable that carries the settings (JSON) from ``transferkit serve`` to uvicorn's worker processes.
ENV_SETTINGS = "TRANSFERKIT_SERVE_SETTINGS"


class ServeConfig(BaseModel):
    """What ``transferkit serve`` runs and the limits it enforces on every request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(..., description="model folder written by `transferkit fit --output`")
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    workers: int = Field(1, ge=1, le=64, description="worker processes, each with its own copy of the model")
    runtime: Literal["torch", "onnx"] = Field("torch", description="torch, or onnx (ONNX Runtime on the CPU)")
    device: str = Field("cpu", description="torch runtime: cpu, cuda, cuda:N or auto")
    threads: int | None = Field(None, ge=1, description="intra-op threads per worker (default: the library's own)")
    max_batch: int = Field(32, ge=1, le=4096, description="most images or texts in one request")
    max_file_bytes: int = Field(10 * 1024 * 1024, ge=1, description="largest uploaded image file, in bytes")
    max_image_pixels: int = Field(40_000_000, ge=1, description="largest image, width x height in pixels")
    max_text_chars: int = Field(10_000, ge=1, description="longest text, in characters")
    max_audio_seconds: float = Field(600.0, gt=0, description="longest uploaded audio clip, in seconds")
    top_k: int = Field(5, ge=1, description="classes listed per prediction unless the request says otherwise")
    batch_wait_ms: float = Field(0.0, ge=0, le=1000, description="micro-batching: wait up to this long for other requests to join a batch (0: off, each request runs alone)")
    max_batch_items: int = Field(32, ge=1, le=4096, description="micro-batching: most inputs in one model batch")

    @property
    def max_request_bytes(self) -> int:
        """Largest image request body accepted: a full batch of the largest files, plus room for the multipart
        framing."""
        return self.max_batch * self.max_file_bytes + 64 * 1024

    @property
    def max_json_bytes(self) -> int:
        """Largest text request body accepted: a full batch of the longest texts, each character written the
        longest way JSON allows (a ``\\uXXXX\\uXXXX`` surrogate pair: 12 bytes), plus room for the rest."""
        return self.max_batch * (12 * self.max_text_chars + 64) + 64 * 1024

    def request_limit(self, modality: str) -> int:
        """The request-body limit of a model of this modality, in bytes: that of file uploads or of a JSON body, as
        the modality's requests are sent."""
        from transferkit.modalities import get_modality

        return self.max_request_bytes if get_modality(modality).service_request == "files" else self.max_json_bytes

    def to_environment(self) -> None:
        os.environ[ENV_SETTINGS] = self.model_dump_json()


def make_serve_config(**values) -> ServeConfig:
    """Build a ServeConfig, turning validation problems into one ConfigError that names each option."""
    try:
        return ServeConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(f"option {_option(e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                             for e in exc.errors())
        raise ConfigError(f"serve: {problems}") from None


def _option(loc: tuple) -> str:
    """A settings field as the Python API and the command line name it: ``port (--port)``."""
    name = ".".join(map(str, loc))
    flag = {"max_file_bytes": "--max-file-mb", "model": "MODEL"}.get(name, "--" + name.replace("_", "-"))
    return f"{name} ({flag})"


def from_environment() -> ServeConfig:
    text = os.environ.get(ENV_SETTINGS)
    if not text:
        raise ConfigError(f"serve: no settings in ${ENV_SETTINGS}; start the service with `transferkit serve MODEL`.")
    return make_serve_config(**json.loads(text))
