"""Multi-label tables with one 0/1 column per label: ``--label-column a,b,c`` reads each row's label set from the
columns holding 1; every other cell value is refused naming its row and column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from test_task_types import ROWS, _table
from transferkit.cli.main import _register_commands, app
from transferkit.data.sources import load_data
from transferkit.errors import ConfigError, DataError

_register_commands()

LABELS = ("acting", "negative", "positive", "time")


def _flags_table(path: Path, change=None) -> Path:
    """ROWS' label sets as one 0/1 column per label (``change(rows)`` edits the cells before writing)."""
    rows = [[text, *("1" if name in tags.split("|") else "0" for name in LABELS)] for text, _, tags in ROWS]
    if change is not None:
        change(rows)
    return _table(path, rows, header=("text", *LABELS))


def test_the_label_set_of_a_row_is_the_columns_holding_one(tmp_path: Path) -> None:
    data = load_data(_flags_table(tmp_path / "flags.csv"), label_column="acting,negative,positive,time",
                     task="multilabel")
    expected = [json.dumps(sorted(tags.split("|"))) for _, _, tags in ROWS]
    assert data.labels == expected


def test_fit_and_predict_a_multilabel_model_from_label_columns(tiny_text_model: Path, tmp_path: Path) -> None:
    table = _flags_table(tmp_path / "flags.csv")
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["fit", str(table), "--task-type", "multilabel", "--label-column",
                                      "positive,negative,acting,time", "--backbone", str(tiny_text_model),
                                      "--output", str(out), "--no-report", "--baselines", "", "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "multilabel" and config["classes"] == list(LABELS)


@pytest.mark.parametrize("value, shown", [("yes", "'yes'"), ("2", "'2'"), ("", "empty")])
def test_a_cell_that_is_not_zero_or_one_is_refused_naming_row_and_column(value: str, shown: str,
                                                                         tmp_path: Path) -> None:
    def spoil(rows):
        rows[2][3] = value  # the third data row (line 4), column 'positive'

    table = _flags_table(tmp_path / "flags.csv", spoil)
    with pytest.raises(DataError) as error:
        load_data(table, label_column="acting,negative,positive,time", task="multilabel")
    message = str(error.value)
    assert "line 4" in message and "label column 'positive'" in message and shown in message
    assert "0 when not" in message


def test_several_label_columns_need_the_multilabel_task_and_existing_columns(tmp_path: Path) -> None:
    table = _flags_table(tmp_path / "flags.csv")
    with pytest.raises(ConfigError, match=r"--label-column acting,time.*add --task-type multilabel"):
        load_data(table, label_column="acting,time")
    with pytest.raises(DataError, match=r"no column 'drama' \(--label-column acting,drama\); the columns are"):
        load_data(table, label_column="acting,drama", task="multilabel")
    with pytest.raises(DataError, match="names a column twice"):
        load_data(table, label_column="acting,Acting", task="multilabel")
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["fit", str(table), "--label-column", "acting,time", "--output", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output and "--task-type multilabel" in result.output
    assert not out.exists()


def test_a_label_column_with_no_positive_row_is_a_warning_naming_it(tmp_path: Path) -> None:
    from transferkit.data.validation import DataWarning

    def clear(rows):
        for row in rows:
            row[4] = "0"  # 'time' never holds 1

    table = _flags_table(tmp_path / "flags.csv", clear)
    with pytest.warns(DataWarning, match=r"\['time'\] hold 0 on every row"):
        load_data(table, label_column="acting,negative,positive,time", task="multilabel")
