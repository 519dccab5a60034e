"""``transferkit compress``: quantized and pruned variants of a saved model, and their accuracy / size / latency
table. Thin: parse, call :func:`transferkit.workflows.compress.compress_model`, print. The flags are generated from
:class:`~transferkit.compress.options.CompressConfig`."""

from __future__ import annotations

import json
from typing import Any

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.compress.options import CompressConfig
from transferkit.errors import TransferkitError

#: compress's flags: every CompressConfig option.
COMPRESS_FLAGS = ConfigFlags(CompressConfig, exclude={"progress": "compress prints only its table"})


@app.command()
@config_flags(COMPRESS_FLAGS)
def compress(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit` or `transferkit distill`."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the table."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from COMPRESS_FLAGS
) -> None:
    """Make int8 and pruned variants of MODEL and print accuracy, file size, parameters and CPU latency (batch 1 and
    32) of each, side by side, measured on DATA."""
    _setup(quiet or as_json)
    try:
        from transferkit.options import build_options
        from transferkit.workflows.compress import compress_model

        config = build_options(CompressConfig, **options)
        report = compress_model(model, **config.model_dump())
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(report.table())
    typer.echo(f"variants saved in {report.output}; table in {report.output}/tradeoff.json and {model}/tradeoff.json")
