"""``transferkit fuse``: combine models (interpolation, soups, ensembles) or backbones' features (stacking).
Thin: parse, call :func:`transferkit.workflows.fuse.fuse_from_command`, print. The flags are generated from
:class:`~transferkit.fusion.options.FuseConfig`."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.errors import TransferkitError
from transferkit.fusion.options import FuseConfig

#: fuse's flags: every FuseConfig option (--method keeps its short -m).
FUSE_FLAGS = ConfigFlags(FuseConfig, short={"method": "-m"})


@app.command()
@config_flags(FUSE_FLAGS)
def fuse(
    models: Optional[list[str]] = typer.Argument(None, help="Model folders: the fine-tuned model (interpolate), several fine-tuned runs of one architecture (soup), or any models of one label set (ensemble). Not used by stack."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from FUSE_FLAGS
) -> None:
    """Fuse models: weight interpolation, greedy or uniform soups, ensembles, or stacked backbone features."""
    _setup(quiet or as_json)
    try:
        from transferkit.options import build_options
        from transferkit.workflows.fuse import fuse_from_command

        result = fuse_from_command(models, build_options(FuseConfig, **options))
    except (TransferkitError, ValueError) as exc:
        _fail(exc)
    typer.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.summary())
    if result.output is not None and not as_json:
        typer.echo(f"saved: {result.output}")
