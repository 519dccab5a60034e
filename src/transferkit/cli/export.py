"""``transferkit export``: write a saved model as an ONNX file and check it against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import TransferkitError


@app.command()
def export(
    model: str = typer.Argument(..., help="A model folder written by `transferkit fit`."),
    format: str = typer.Option("onnx", "--format", "-f", help="Export format: onnx."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: MODEL/model.onnx)."),
    tolerance: float = typer.Option(1e-3, "--tolerance", help="Largest absolute difference of the logits allowed between PyTorch and ONNX Runtime on the check inputs."),
    data: Optional[str] = typer.Option(None, "--data", help="Check the export on these inputs (an image folder or a table) instead of generated ones."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a --data table."),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="Image-path column of a --data table."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
) -> None:
    """Export MODEL to ONNX (logits, dynamic batch) and check that ONNX Runtime matches PyTorch on real inputs."""
    _setup(quiet)
    try:
        from transferkit.workflows.export import export_model_folder

        result = export_model_folder(model, output, format=format, tolerance=tolerance, data=data, overwrite=overwrite,
                                     text_column=text_column, path_column=path_column)
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
