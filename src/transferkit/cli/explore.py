"""``transferkit explore``: map, clusters, duplicates, outliers and label issues of a dataset. Thin: parse, call,
print."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.errors import TransferkitError
from transferkit.exploration.config import ExploreConfig

#: explore's flags: every ExploreConfig field.
EXPLORE_FLAGS = ConfigFlags(ExploreConfig, exclude={"progress": "set by --quiet and --json"},
                            help={"output": "folder for explore.html, explore.csv (+ explore.parquet) and summary.json. Default: ./explore"})

#: Where the CLI writes when no --output is given.
DEFAULT_OUTPUT = "explore"


@app.command()
@config_flags(EXPLORE_FLAGS)
def explore(
    data: str = typer.Argument(..., help="The data: a folder of images or clips (one sub-folder per class when labelled), or a table (CSV/TSV/JSONL/Parquet) with a text or path column and, when labelled, a label column."),
    config_file: Optional[str] = typer.Option(None, "--config", "-c", help="YAML file of options; flags given override it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from EXPLORE_FLAGS
) -> None:
    """Explore DATA through a backbone's frozen features: a 2-D map, clusters with their summaries, near-duplicates
    within and across splits, outliers, label issues (labelled data) and suggested labels (--suggest-labels), written
    as one HTML page and a table per example."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file, merge_config
        from transferkit.exploration.config import make_explore_config
        from transferkit.workflows.explore import explore as explore_fn

        values = load_config_file(config_file) if config_file else {}
        values.setdefault("output", DEFAULT_OUTPUT)
        if quiet or as_json:
            values["progress"] = False
        config = merge_config(values, options, "explore", build=make_explore_config)
        result = explore_fn(data, config=config)
    except TransferkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.summary())
