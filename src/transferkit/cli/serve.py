"""``transferkit serve``: an HTTP service for a model folder. Thin: parse, build the settings, call, run.

The flags are generated from :class:`~transferkit.serving.settings.ServeConfig` (a flag per setting, the same name
as the setting), but for the largest upload, given in MB (``--max-file-mb``)."""

from __future__ import annotations

import math
from typing import Any, Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.errors import ConfigError, TransferkitError
from transferkit.serving.settings import ServeConfig

#: serve's flags: every ServeConfig setting but the model (the MODEL argument) and the upload limit in bytes.
SERVE_FLAGS = ConfigFlags(
    ServeConfig, declared=("model",),
    exclude={"max_file_bytes": "given in MB by --max-file-mb"},
)


@app.command()
@config_flags(SERVE_FLAGS)
def serve(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit --output`."),
    max_file_mb: Optional[float] = typer.Option(None, "--max-file-mb", help="Largest uploaded image file, in MB. Default: 10."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No start-up messages."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from SERVE_FLAGS
) -> None:
    """Serve MODEL over HTTP: POST /predict (images as multipart `files`, or JSON {"texts": [...]}; a detector
    answers boxes, classes and scores, ?score_threshold=S), GET /health, GET /info, OpenAPI description at /docs and
    /openapi.json."""
    _setup(quiet)
    try:
        from transferkit.workflows.serve import serve as serve_fn

        if max_file_mb is not None:
            if not math.isfinite(max_file_mb) or max_file_mb * 1024 * 1024 < 1 or max_file_mb > 1024 * 1024:
                raise ConfigError(f"--max-file-mb must be a size in MB above 0 (at most 1,048,576); got {max_file_mb}.")
            options["max_file_bytes"] = int(max_file_mb * 1024 * 1024)
        serve_fn(model, **options)
    except TransferkitError as exc:
        _fail(exc)
