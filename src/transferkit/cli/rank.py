"""``transferkit rank``: score candidate backbones on the user's data before training. Thin: parse, call, print."""

from __future__ import annotations

import json
from typing import Any

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.errors import TransferkitError
from transferkit.selection.config import RankConfig


#: rank's flags: every RankConfig field (DATA declared below).
RANK_FLAGS = ConfigFlags(
    RankConfig, exclude={"progress": "set by --quiet and --json"},
    names={"raw_baseline": "--raw"},  # --no-raw leaves the raw-input row out
)


@app.command()
@config_flags(RANK_FLAGS)
def rank(
    data: str = typer.Argument(..., help="Labelled data: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet) with a label column and a text or image-path column."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the table."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON instead of a table."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from RANK_FLAGS
) -> None:
    """Rank candidate backbones on DATA by transferability scores (LogME, LEEP, NCE, H-score), best first, with the
    raw input as a row; no training unless --validate."""
    _setup(quiet or as_json)
    try:
        from transferkit.selection.config import make_rank_config
        from transferkit.workflows.rank import rank as rank_fn

        config = make_rank_config(**options, **({"progress": False} if (quiet or as_json) else {}))
        result = rank_fn(data, config=config)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.table())
