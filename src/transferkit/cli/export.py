"""``transferkit export``: write a saved model as an ONNX file and check it against PyTorch. Thin: parse, call
:func:`transferkit.workflows.export.export_model_folder`, print. The flags are generated from
:class:`~transferkit.compress.options.ExportConfig`."""

from __future__ import annotations

import json
from typing import Any

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.compress.options import ExportConfig
from transferkit.errors import TransferkitError

#: export's flags: every ExportConfig option (--format keeps its short -f).
EXPORT_FLAGS = ConfigFlags(ExportConfig, short={"format": "-f"},
                           exclude={"normalize_labels": "the parity check compares outputs, not labels"})


@app.command()
@config_flags(EXPORT_FLAGS)
def export(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit`."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from EXPORT_FLAGS
) -> None:
    """Export MODEL to ONNX (logits, dynamic batch) and check that ONNX Runtime matches PyTorch on real inputs."""
    _setup(quiet)
    try:
        from transferkit.workflows.export import export_model_folder

        result = export_model_folder(model, **options)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(f"exported: {result.path} ({result.path.stat().st_size / 1e6:.1f} MB, {result.output}, inputs "
               f"{', '.join(result.inputs)}, dynamic batch)")
    if result.parity is not None:
        p = result.parity
        typer.echo(f"parity: max difference {p.max_abs_diff:.2e} <= tolerance {p.tolerance:g} on {p.examples} "
                   f"examples ({p.input_source}; batch sizes {', '.join(map(str, p.batch_sizes))})")
