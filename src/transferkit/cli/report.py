"""``transferkit report``: one self-contained HTML page for a run folder. Thin: parse, call, print. The flags are
generated from :class:`~transferkit.reporting.options.ReportConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.errors import TransferkitError
from transferkit.reporting.options import ReportConfig

#: report's flags: every ReportConfig option.
REPORT_FLAGS = ConfigFlags(ReportConfig)


@app.command()
@config_flags(REPORT_FLAGS)
def report(
    run_dir: Path = typer.Argument(..., help="A run folder: the model folder `transferkit fit --output` wrote, or any folder with the files listed in docs/reports.md."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the path."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from REPORT_FLAGS
) -> None:
    """Write a self-contained HTML report of RUN_DIR (plots embedded, opens offline): configuration, data,
    learning curves, metrics and verdict, confusion matrix, hardest mistakes and the explanations of those the
    model was surest of, and the optional sections the folder
    has files for (ranking, domain adaptation, weight interpolation, compressed variants, extra sections)."""
    _setup(quiet)
    try:
        from transferkit.options import build_options
        from transferkit.reporting.report import write_report

        config = build_options(ReportConfig, **options)
        path = write_report(run_dir, config.output, overwrite=config.overwrite,
                            explain_mistakes=config.explain_mistakes)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(str(path) if quiet else f"report: {path} ({path.stat().st_size / 1e6:.2f} MB)")
