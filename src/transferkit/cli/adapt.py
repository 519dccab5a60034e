"""``transferkit adapt``: domain adaptation with unlabelled target data. Thin: parse, build the config, call, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.errors import ConfigError, TransferkitError
from transferkit.strategies.adaptation.config import AdaptConfig


def _class_mix(text: str) -> dict[str, float]:
    """``"a=0.7,b=0.3"`` -> ``{"a": 0.7, "b": 0.3}``; a malformed part is a ConfigError that names it."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.rpartition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            mix[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--target-prior: cannot read {part!r}; write CLASS=FRACTION for every class, "
                              "comma-separated, e.g. positive=0.68,negative=0.32.") from None
    return mix


#: adapt's flags: every AdaptConfig field (the target's class mix parsed from CLASS=FRACTION below).
ADAPT_FLAGS = ConfigFlags(
    AdaptConfig, declared=("target_prior",), short={"method": "-m"},
    exclude={"progress": "set by --quiet and --json",
             "tradeoffs": "a list of weights per method, given in a YAML config ({dann: [0.1, 1.0]})"},
)


@app.command()
@config_flags(ADAPT_FLAGS)
def adapt(
    config_file: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (the names of these flags, with _ or -, and tradeoffs: {METHOD: [weights]}); flags given here override it."),
    target_prior: Optional[str] = typer.Option(None, "--target-prior", help="The target's class mix, if known: CLASS=FRACTION for every class, comma-separated (e.g. positive=0.68,negative=0.32). Predictions are moved from the source's class mix to it, and im / im-cal measure balance against it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the adaptation report as JSON."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from ADAPT_FLAGS
) -> None:
    """Adapt a model trained on labelled SOURCE data to unlabelled TARGET data; a label-free validator picks the
    method, its weight and the checkpoint."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file
        from transferkit.strategies.adaptation.config import make_adapt_config
        from transferkit.workflows.adapt import adapt as adapt_fn

        options = dict(options, progress=False if (quiet or as_json) else None,
                       target_prior=_class_mix(target_prior) if target_prior else None)
        values = load_config_file(config_file) if config_file is not None else {}
        values.update({k: v for k, v in options.items() if v is not None})
        config = make_adapt_config(**values)
        result = adapt_fn(config=config)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(result.report, indent=2, default=str))
        return
    typer.echo(result.summary())
    if result.output is not None:
        typer.echo(f"saved: {result.output}")
