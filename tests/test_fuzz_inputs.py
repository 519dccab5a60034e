"""Property-based tests of the input boundary: whatever a table, a list of texts or a config holds, loading either
succeeds with a consistent dataset or fails with a transferkit error (never another exception, never a hang)."""

from __future__ import annotations

import csv
import io
import json
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transferkit.config import load_config_file, make_config
from transferkit.data.sources import from_arrays, load_data
from transferkit.data.validation import validate_dataset
from transferkit.errors import ConfigError, TransferkitError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cells = st.one_of(st.text(max_size=40), st.just(""), st.just("   "), st.just("nan"), st.just("NULL"),
                  st.text(alphabet=",\"\n\r\t;", max_size=5))
labels = st.one_of(st.sampled_from(["pos", "neg", "neutral", "", " ", "nan"]), st.integers(-3, 3).map(str),
                   st.text(max_size=6))


def _check_loaded(dataset, n_rows: int) -> None:
    assert dataset.modality == "text"
    assert len(dataset.items) == len(dataset.labels) == len(dataset.row_ids) <= n_rows
    for text, label in zip(dataset.items, dataset.labels):
        assert isinstance(text, str) and text.strip()
        assert isinstance(label, str) and label.strip()
    try:
        validate_dataset(dataset, role="training")
    except TransferkitError:
        pass


@FUZZ
@given(rows=st.lists(st.tuples(cells, labels), min_size=0, max_size=12),
       header=st.sampled_from([("text", "label"), ("review", "class"), ("sentence", "target"), ("a", "b"),
                               ("text", "text")]))
def test_csv_tables_load_or_fail_with_a_transferkit_error(rows, header) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        try:
            dataset = load_data(str(path))
        except TransferkitError as exc:
            assert str(path.name) in str(exc) or "data.csv" in str(exc) or "column" in str(exc), str(exc)
            return
        _check_loaded(dataset, len(rows))


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                                     st.text(max_size=20)),
                           lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                               children, max_size=3),
                           max_leaves=6)


@FUZZ
@given(records=st.lists(st.fixed_dictionaries({"text": json_values, "label": json_values}), max_size=10),
       garbage=st.booleans())
def test_jsonl_tables_load_or_fail_with_a_transferkit_error(records, garbage) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        lines = [json.dumps(r) for r in records]
        if garbage:
            lines.insert(len(lines) // 2, "{not json")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            dataset = load_data(str(path))
        except TransferkitError:
            return
        _check_loaded(dataset, len(records))


@FUZZ
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_as_a_table(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        path.write_bytes(data)
        try:
            dataset = load_data(str(path))
        except TransferkitError:
            return
        _check_loaded(dataset, len(data))


@FUZZ
@given(texts=st.lists(st.one_of(st.text(max_size=30), st.just(""), st.integers(), st.none()), max_size=10))
def test_lists_of_texts(texts) -> None:
    try:
        dataset = from_arrays(texts, ["a" if i % 2 else "b" for i in range(len(texts))])
        validate_dataset(dataset, role="training")
    except TransferkitError:
        return
    assert all(isinstance(t, str) and t.strip() for t in dataset.items)


option_names = st.sampled_from(["epochs", "lr", "batch_size", "strategy", "backbone", "seed", "shots", "augment",
                                "test_fraction", "patience", "unknown_option", "lora", "finetune", "precision"])
option_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                          st.text(max_size=8), st.lists(st.integers(), max_size=2),
                          st.dictionaries(st.sampled_from(["rank", "alpha", "freeze", "bogus"]), st.integers(-2, 4),
                                          max_size=2))


@FUZZ
@given(values=st.dictionaries(option_names, option_values, max_size=5))
def test_config_values_build_a_config_or_name_the_option(values) -> None:
    try:
        config = make_config("run.yaml", **values)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("run.yaml: ")
        assert any(name in message for name in values), message
        return
    assert config.epochs > 0 and config.batch_size > 0 and 0 < config.test_fraction < 1


@FUZZ
@given(text=st.one_of(st.text(max_size=80),
                      st.text(alphabet=string.ascii_letters + ":-[]{}\n '\"#&*!|>", max_size=80)))
def test_yaml_files_parse_or_fail_naming_the_file(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            values = load_config_file(path)
        except ConfigError as exc:
            assert "run.yaml" in str(exc)
            return
        assert isinstance(values, dict)
        try:
            make_config(str(path), **values)
        except ConfigError as exc:
            assert "run.yaml" in str(exc)
        except TypeError:  # keys that are not strings cannot be options
            pytest.fail(f"a config key that is not a string surfaced as a TypeError: {values!r}")


def test_the_fuzzers_reach_both_outcomes() -> None:
    """The properties above are not vacuous: the same generators give tables that load and tables that fail."""
    good = io.StringIO()
    csv.writer(good).writerows([("text", "label"), ("fine", "a"), ("bad", "b")])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_text(good.getvalue(), encoding="utf-8")
        assert len(load_data(str(path))) == 2
        path.write_text("text,label\n,a\n", encoding="utf-8")
        with pytest.raises(TransferkitError):
            load_data(str(path))
