"""``transferkit report``: one self-contained HTML page for a run folder. Thin: parse, call, print."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.errors import TransferkitError


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run folder: the model folder `transferkit fit --output` wrote, or any folder with the files listed in docs/reports.md."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write (default: RUN_DIR/report.html, written again each time)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the --output file if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the path."),
) -> None:
    """Write a self-contained HTML report of RUN_DIR (plots embedded, opens offline): configuration, data,
    learning curves, metrics and verdict, confusion matrix, hardest mistakes, and the optional sections the folder
    has files for (ranking, domain adaptation, weight interpolation, compressed variants, extra sections)."""
    _setup(quiet)
    try:
        from transferkit.reporting.report import write_report

        path = write_report(run_dir, output, overwrite=overwrite)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(str(path) if quiet else f"report: {path} ({path.stat().st_size / 1e6:.2f} MB)")
