"""``transferkit distill``: train a small student from saved teacher models. Thin: parse, build the config, call
:func:`transferkit.workflows.distill.distill`, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from transferkit.cli.main import _fail, _setup, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.config import option_users
from transferkit.errors import TransferkitError
from transferkit.strategies.distill_setup import DistillConfig

PANEL = "Distillation"


#: distill's flags: every DistillConfig field that a distillation run uses (the teachers are declared below).
DISTILL_FLAGS = ConfigFlags(
    DistillConfig, declared=("data", "teacher"),
    exclude={"progress": "set by --quiet and --json", "strategy": "always distill",
             "budget": "fit --strategy auto only; bound distillation with --epochs",
             "mixup": "mixes labels, which cached soft targets cannot follow; --mixup is distillation's own",
             "cutmix": "mixes labels, which cached soft targets cannot follow",
             **{name: f"used by {', '.join(users)} only" for name, users in option_users().items()
                if "distill" not in users}},
    names={"backbone": "--student", "distill.cache_teacher": "--teacher-cache"},
    help={"backbone": "the student backbone: a name from `transferkit models`, timm:ARCH, random:timm:ARCH (a small "
                      "CNN from scratch), hf:MODEL_ID or a local folder; default: the teacher's backbone",
          "output": "folder to save the student in (an ordinary model folder)"},
    panels={"distill": PANEL, "unlabelled": PANEL, "compare_plain": PANEL, "backbone": PANEL},
)


@app.command()
@config_flags(DISTILL_FLAGS)
def distill(
    data: Optional[str] = typer.Argument(None, help="Labelled training data: a folder with one sub-folder per class, or a table with a label column and a text or image-path column."),
    teacher: Optional[list[str]] = typer.Option(None, "--teacher", "-t", help="A teacher model folder written by `transferkit fit`; repeat for an ensemble (averaged probabilities).", rich_help_panel=PANEL),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (the same names as these flags); flags override it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the result table."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    options: dict[str, Any] = None,  # type: ignore[assignment]  # the flags given, from DISTILL_FLAGS
) -> None:
    """Distil TEACHER (one or several saved models) into a smaller STUDENT on DATA; evaluate both, save the student."""
    _setup(quiet or as_json)
    try:
        from transferkit.config import load_config_file, merge_config
        from transferkit.strategies.distill_setup import make_distill_config
        from transferkit.workflows.distill import distill as distill_fn

        file_values = load_config_file(config) if config is not None else {}
        flags = dict(options, data=data, teacher=list(teacher) if teacher else None,
                     progress=False if (quiet or as_json) else None)
        cfg = merge_config(file_values, flags, str(config) if config else "options", build=make_distill_config)
        result = distill_fn(config=cfg)
    except TransferkitError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({"test": result.metrics, "teachers": result.teachers, "plain_student": result.plain,
                               "comparison": result.comparison.to_dict() if result.comparison else None}, indent=2))
        return
    typer.echo(result.summary())
    if result.output is not None:
        typer.echo(f"saved: {result.output}")
