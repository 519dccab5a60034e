"""``transferkit serve``: an HTTP service for a model folder. Thin: parse, build the settings, call, run."""

from __future__ import annotations

import math
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import ConfigError, TransferkitError


@app.command()
def serve(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit --output`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port (0: any free port, printed at start)."),
    workers: int = typer.Option(1, "--workers", help="Worker processes, each with its own copy of the model."),
    runtime: str = typer.Option("torch", "--runtime", help="torch, or onnx (ONNX Runtime on the CPU; MODEL/model.onnx if `transferkit export` wrote it, else exported and checked once at start)."),
    device: str = typer.Option("cpu", "--device", help="torch runtime: cpu, cuda, cuda:N or auto."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Intra-op threads per worker (default: the library's own)."),
    max_batch: int = typer.Option(32, "--max-batch", help="Most images or texts in one request."),
    max_file_mb: float = typer.Option(10.0, "--max-file-mb", help="Largest uploaded image file, in MB."),
    max_image_pixels: int = typer.Option(40_000_000, "--max-image-pixels", help="Largest image, width x height."),
    max_text_chars: int = typer.Option(10_000, "--max-text-chars", help="Longest text, in characters."),
    max_audio_seconds: float = typer.Option(600.0, "--max-audio-seconds", help="Longest uploaded audio clip, in seconds."),
    top_k: int = typer.Option(5, "--top-k", help="Classes listed per prediction unless a request asks otherwise."),
    batch_wait_ms: float = typer.Option(0.0, "--batch-wait-ms", help="Micro-batching: wait up to this many ms for concurrent requests to share a forward pass (0 = off)."),
    max_batch_items: int = typer.Option(32, "--max-batch-items", help="Micro-batching: most inputs in one forward pass."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No start-up messages."),
) -> None:
    """Serve MODEL over HTTP: POST /predict (images as multipart `files`, or JSON {"texts": [...]}), GET /health,
    GET /info, OpenAPI description at /docs and /openapi.json."""
    _setup(quiet)
    try:
        from transferkit.workflows.serve import serve as serve_fn

        if not math.isfinite(max_file_mb) or max_file_mb * 1024 * 1024 < 1 or max_file_mb > 1024 * 1024:
            raise ConfigError(f"--max-file-mb must be a size in MB above 0 (at most 1,048,576); got {max_file_mb}.")
        serve_fn(model, host=host, port=port, workers=workers, runtime=runtime, device=device, threads=threads,
                 max_batch=max_batch, max_file_bytes=int(max_file_mb * 1024 * 1024),
                 max_image_pixels=max_image_pixels, max_text_chars=max_text_chars,
                 max_audio_seconds=max_audio_seconds, top_k=top_k,
                 batch_wait_ms=batch_wait_ms, max_batch_items=max_batch_items)
    except TransferkitError as exc:
        _fail(exc)
