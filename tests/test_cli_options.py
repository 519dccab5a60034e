"""Flags generated from config fields: every option of a converted verb has a flag named as its YAML key, with the
field's help, or is listed as not applying with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import click
import pytest
import typer
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from transferkit.cli.main import _register_commands, app
from transferkit.cli.options import ConfigFlags, config_flags
from transferkit.config import FitConfig, load_config_file, merge_config
from transferkit.options import RENAMED_FLAGS, Options, flag_name

_register_commands()
from transferkit.cli.adapt import ADAPT_FLAGS  # noqa: E402
from transferkit.cli.compress import COMPRESS_FLAGS  # noqa: E402
from transferkit.cli.cv import CV_FLAGS  # noqa: E402
from transferkit.cli.distill import DISTILL_FLAGS  # noqa: E402  (registered above)
from transferkit.cli.explain import EXPLAIN_FLAGS  # noqa: E402
from transferkit.cli.explore import EXPLORE_FLAGS  # noqa: E402
from transferkit.cli.export import EXPORT_FLAGS  # noqa: E402
from transferkit.cli.fuse import FUSE_FLAGS  # noqa: E402
from transferkit.cli.main import EVALUATE_FLAGS, FIT_FLAGS, PREDICT_FLAGS  # noqa: E402
from transferkit.cli.multitask import MULTITASK_FLAGS  # noqa: E402
from transferkit.cli.rank import RANK_FLAGS  # noqa: E402
from transferkit.cli.recommend import RECOMMEND_FLAGS  # noqa: E402
from transferkit.cli.report import REPORT_FLAGS  # noqa: E402
from transferkit.cli.serve import SERVE_FLAGS  # noqa: E402
from transferkit.cli.tune import TUNE_FLAGS, TUNE_RUN_FLAGS  # noqa: E402

CONVERTED = {"fit": [FIT_FLAGS], "cv": [CV_FLAGS], "tune": [TUNE_RUN_FLAGS, TUNE_FLAGS], "rank": [RANK_FLAGS],
             "adapt": [ADAPT_FLAGS], "distill": [DISTILL_FLAGS], "multitask": [MULTITASK_FLAGS],
             "serve": [SERVE_FLAGS], "export": [EXPORT_FLAGS],
             "compress": [COMPRESS_FLAGS], "fuse": [FUSE_FLAGS], "evaluate": [EVALUATE_FLAGS],
             "predict": [PREDICT_FLAGS], "report": [REPORT_FLAGS], "explore": [EXPLORE_FLAGS],
             "explain": [EXPLAIN_FLAGS], "recommend fit": [RECOMMEND_FLAGS]}


def _options(config: type, section: str = "") -> list[str]:
    """Every option of ``config``, a section's as ``section.option``."""
    names = []
    for name, info in config.model_fields.items():
        key = info.alias or name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and not section:
            names += _options(annotation, key)
        else:
            names.append(f"{section}.{key}" if section else key)
    return names


def _command(name: str) -> click.Command:
    """The command ``name``; a sub-command as ``"group command"`` (``recommend fit``)."""
    command = typer.main.get_command(app)
    for part in name.split():
        command = command.commands[part]  # type: ignore[attr-defined]
    return command


@pytest.mark.parametrize("verb", sorted(CONVERTED))
def test_every_option_of_a_converted_verb_has_a_flag_or_a_listed_reason(verb: str) -> None:
    command = _command(verb)
    own_params = {p.name for p in command.params}
    for spec in CONVERTED[verb]:
        flagged = {flag.option for flag in spec.flags()}
        for option in _options(spec.config):
            section = option.partition(".")[0] if "." in option else ""
            if option in flagged:
                continue
            reason = spec.exclude.get(option) or spec.exclude.get(section)
            if option in spec.declared:
                assert option.replace(".", "_") in own_params, f"{verb}: {option} is declared but has no parameter"
            else:
                assert reason and reason.strip(), f"{verb}: option {option} has no flag and no reason listed"


@pytest.mark.parametrize("verb", sorted(CONVERTED))
def test_flags_are_the_yaml_keys_and_carry_the_fields_help(verb: str) -> None:
    command = _command(verb)
    by_flag = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    for spec in CONVERTED[verb]:
        for flag in spec.flags():
            expected = spec.names.get(flag.option, flag_name(flag.option))
            assert flag.name == expected
            if "." not in flag.option and flag.option not in spec.names and flag.option not in RENAMED_FLAGS:
                assert expected == "--" + flag.option.replace("_", "-")  # a top-level YAML key is the flag
            param = by_flag[flag.name]
            assert param.help and len(param.help) > 10, f"{verb} {flag.name}: no help"


def test_cv_offers_the_strategy_options_of_fit() -> None:
    result = CliRunner().invoke(app, ["cv", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--freeze", "--layer-lr-decay", "--lora-rank", "--lora-targets", "--l2sp-alpha", "--head-lr"):
        assert flag in result.output, flag
    assert "--test-fraction" not in result.output  # each fold is tested in turn


def _echo_app() -> typer.Typer:
    echo = typer.Typer()

    @echo.command()
    @config_flags(ConfigFlags(FitConfig, declared=("data",)))
    def show(data: Optional[str] = typer.Argument(None), options: dict[str, Any] = None) -> None:  # type: ignore[assignment]
        typer.echo(json.dumps(options))

    return echo


def test_given_flags_reach_the_config_as_their_yaml_keys_would(tmp_path: Path) -> None:
    args = ["--lora-targets", "query, value", "--freeze", "2", "--no-report", "--baselines", "raw", "--budget",
            "20m", "--batch-size", "8", "--calibrate", "--no-keep-probe", "-s", "lp-ft"]
    result = CliRunner().invoke(_echo_app(), args)
    assert result.exit_code == 0, result.output
    given = json.loads(result.output)
    assert given == {"lora": {"targets": ["query", "value"]}, "finetune": {"freeze": 2, "keep_probe": False},
                     "report": False, "baselines": ["raw"], "budget": "20m", "batch_size": 8, "calibrate": True,
                     "strategy": "lp-ft"}
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("lora: {targets: [query, value]}\nfinetune: {freeze: 2, keep_probe: false}\nreport: false\n"
                         "baselines: [raw]\nbudget: 20m\nbatch-size: 8\ncalibrate: true\nstrategy: lp-ft\n")
    from_flags = merge_config({}, given, "options")
    from_yaml = merge_config(load_config_file(yaml_file), {}, str(yaml_file))
    assert from_flags == from_yaml and from_flags.budget == 1200 and from_flags.finetune.freeze == 2


def test_flags_not_given_leave_the_config_files_values() -> None:
    result = CliRunner().invoke(_echo_app(), [])
    assert result.exit_code == 0 and json.loads(result.output) == {}


def test_a_bad_flag_value_names_the_option_before_any_work(text_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["fit", str(text_csv), "--lora-rank", "0", "--output", str(out)])
    assert result.exit_code == 2
    assert "lora.rank" in result.output and "greater than 0" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_a_field_without_a_flag_type_must_be_listed_with_its_reason() -> None:
    class Mapped(Options):
        weights: dict[str, float] = Field(default_factory=dict, description="weight per class")

    with pytest.raises(TypeError, match="weights"):
        config_flags(ConfigFlags(Mapped))(lambda options=None: None)
    config_flags(ConfigFlags(Mapped, exclude={"weights": "a mapping: given in a YAML config"}))(lambda options=None: None)


def _multitask_file(tmp_path: Path, text_csv: Path) -> Path:
    config = tmp_path / "multitask.yaml"
    config.write_text(f"tasks:\n  - name: sentiment\n    data: {text_csv}\nfinetune:\n  layer_lr_decay: 0.5\n"
                      "epochs: 3\n", encoding="utf-8")
    return config


def test_multitask_flags_merge_into_the_files_sections(tmp_path: Path, text_csv: Path) -> None:
    from transferkit.strategies.multitask_options import load_multitask_config

    config = load_multitask_config(_multitask_file(tmp_path, text_csv), finetune={"freeze": 1}, epochs=None,
                                   sampling="uniform")
    assert config.finetune.freeze == 1 and config.finetune.layer_lr_decay == 0.5  # the file's section kept
    assert config.epochs == 3 and config.sampling == "uniform"


def test_multitask_refuses_a_bad_flag_naming_the_option_before_any_work(tmp_path: Path, text_csv: Path) -> None:
    out = tmp_path / "multi"
    config = _multitask_file(tmp_path, text_csv)
    before = config.read_text(encoding="utf-8")
    result = CliRunner().invoke(app, ["multitask", str(config), "--temperature", "0", "--freeze", "1",
                                      "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert "option 'temperature'" in result.output and "greater than 0" in result.output
    assert str(config) in result.output  # the file the values were merged into
    assert "Traceback" not in result.output and not out.exists()
    assert config.read_text(encoding="utf-8") == before


def test_serve_refuses_a_bad_generated_flag_before_starting(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "no-model"), "--top-k", "0"])
    assert result.exit_code == 2, result.output
    assert "top_k (--top-k)" in result.output and "greater than or equal to 1" in result.output
    assert "Traceback" not in result.output
