"""Regression and multi-label classification through the verbs beyond fit / evaluate / predict / cv: rank, tune,
export, serve, report, fuse, distill and compress, each with the run's task, or refused naming the option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from test_task_types import ROWS, _table
from transferkit.cli.main import _register_commands, app

_register_commands()


@pytest.fixture
def ratings(tmp_path: Path) -> Path:
    return _table(tmp_path / "ratings.csv", [(text, f"{rating:g}") for text, rating, _ in ROWS])


@pytest.fixture
def tags(tmp_path: Path) -> Path:
    return _table(tmp_path / "tags.csv", [(text, tag) for text, _, tag in ROWS])


@pytest.fixture(scope="module")
def models(tiny_text_model: Path, tmp_path_factory) -> dict[str, Path]:
    """A linear-probe model of each task, fitted once for the module."""
    import transferkit as tk

    folder = tmp_path_factory.mktemp("task-models")
    data = {"regression": _table(folder / "ratings.csv", [(t, f"{r:g}") for t, r, _ in ROWS]),
            "multilabel": _table(folder / "tags.csv", [(t, g) for t, _, g in ROWS])}
    out = {}
    for task, table in data.items():
        out[task] = folder / f"{task}-model"
        tk.fit(str(table), task=task, backbone=str(tiny_text_model), output=str(out[task]), report=False,
               progress=False, baselines=[])
        out[f"{task}-data"] = table
    return out


def _invoke(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


# --------------------------------------------------------------------------------------------------------- rank

@pytest.mark.parametrize("task, table", [("regression", "ratings"), ("multilabel", "tags")])
def test_rank_scores_by_the_logme_form_of_the_task(task: str, table: str, tiny_text_model: Path, request) -> None:
    data = request.getfixturevalue(table)
    result = _invoke("rank", data, "--candidates", tiny_text_model, "--task-type", task, "--json")
    assert result.exit_code == 0, result.output
    ranking = json.loads(result.output[result.output.index("{"):])
    assert ranking["task"] == task and ranking["scores"] == ["logme"]
    rows = {row["kind"]: row for row in ranking["rows"]}
    assert np.isfinite(rows["backbone"]["scores"]["logme"]) and np.isfinite(rows["raw"]["scores"]["logme"])
    assert f"({task})" in _invoke("rank", data, "--candidates", tiny_text_model, "--task-type", task).output


@pytest.mark.parametrize("task, measure", [("regression", "r2"), ("multilabel", "example_f1")])
def test_rank_validates_by_the_probe_measure_of_the_task(task: str, measure: str, ratings: Path, tags: Path,
                                                         tiny_text_model: Path) -> None:
    from transferkit.data.sources import load_data
    from transferkit.data.splits import stratified_split
    from transferkit.selection.config import make_rank_config
    from transferkit.selection.ranking import rank_candidates

    config = make_rank_config(task=task, validate=True, candidates=[str(tiny_text_model)], no_cache=True)
    data = load_data(ratings if task == "regression" else tags, config, task=task)
    train, test = stratified_split(data, 0.3, 0, names=("scored", "held-out"))
    ranking = rank_candidates(train, test, [str(tiny_text_model)], config)
    assert ranking.measure == measure
    probe = {row.kind: row.accuracy["linear_probe"] for row in ranking.rows}
    # the raw TF-IDF probe reads the words the targets were made from: close to perfect on held-out rows
    assert probe["raw"] > 0.5 and -10 < probe["backbone"] <= 1
    assert f"probe {'R2' if task == 'regression' else 'ex-F1'}" in ranking.table()


@pytest.mark.parametrize("task", ["regression", "multilabel"])
def test_rank_refuses_a_score_the_task_has_no_form_of(task: str, ratings: Path, tags: Path, tiny_text_model) -> None:
    data = ratings if task == "regression" else tags
    result = _invoke("rank", data, "--candidates", tiny_text_model, "--task-type", task, "--scores", "logme,leep")
    assert result.exit_code == 2
    assert "option 'scores'" in result.output and "leep" in result.output and "--scores logme" in result.output


# --------------------------------------------------------------------------------------------------------- tune

@pytest.mark.parametrize("task, measure, table", [("regression", "r2", "ratings"),
                                                  ("multilabel", "example_f1", "tags")])
def test_tune_scores_trials_by_the_measure_of_the_task(task, measure, table, tiny_text_model, tmp_path,
                                                       request) -> None:
    import transferkit.workflows.tune as tune_module

    data = request.getfixturevalue(table)
    result = tune_module.tune(str(data), task=task, backbone=str(tiny_text_model), n_trials=2, objective="cv",
                              folds=2, output=str(tmp_path / "tune"), progress=False)
    assert result.measure == measure and result.n_complete == 2
    assert all(-10 < row["value"] <= 1 and len(row["fold_scores"]) == 2 for row in result.top)
    assert f"best {measure}:" in result.table()
    best = (tmp_path / "tune" / "best_config.yaml").read_text()
    assert f"task: {task}" in best


# ------------------------------------------------------------------------------------------ export and compress

def test_export_reads_its_parity_data_by_the_task_of_the_model(models) -> None:
    """The parity inputs of ``export --data`` are read as the model's task reads them (a numeric label column is
    refused when read as classes); the ONNX parity itself is the same code for every task."""
    from transferkit.models.artifacts import load_model
    from transferkit.workflows.export import _config, _parity_data

    model = load_model(models["regression"])
    dataset = _parity_data(str(models["regression-data"]), _config(None, None, {}), model)
    assert dataset.task == "regression" and len(dataset) == len(ROWS)


@pytest.mark.parametrize("task, measure", [("regression", "r2"), ("multilabel", "example_f1")])
def test_compress_measures_every_variant_by_the_task_measure(task: str, measure: str, models, tmp_path) -> None:
    from transferkit.models.artifacts import load_model
    from transferkit.tasks import get_task
    from transferkit.workflows.compress import compress_model

    data = models[f"{task}-data"]
    report = compress_model(models[task], str(data), output=tmp_path / "variants", variants=["float"])
    assert report.measure == measure and measure in report.table()
    model = load_model(models[task])
    task_entry = get_task(task)
    from transferkit.data.sources import load_data

    dataset = load_data(data, task=task)
    proba = model.predict_proba(dataset, progress=False, cache=None)
    expected = task_entry.metrics(task_entry.targets(dataset, model.classes), proba, model.classes)[measure]
    assert report.row("float").accuracy == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------------------------ report

def test_report_of_a_regression_model_shows_predictions_residuals_and_largest_errors(models, tmp_path) -> None:
    out = tmp_path / "report.html"
    result = _invoke("report", models["regression"], "--output", out)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "Predictions and residuals" in html and "largest errors" in html and "<th>r2</th>" in html


def test_report_of_a_multilabel_model_shows_per_label_results(models, tmp_path) -> None:
    out = tmp_path / "report.html"
    result = _invoke("report", models["multilabel"], "--output", out)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "Per-label results" in html and "average precision" in html and "<th>example_f1</th>" in html
    for label in ("acting", "negative", "positive", "time"):
        assert f"<td>{label}</td>" in html


# ------------------------------------------------------------------------------------------------------- serve

def test_serve_answers_a_value_or_a_label_set_with_probabilities(models) -> None:
    from fastapi.testclient import TestClient

    from transferkit.serving.app import create_app
    from transferkit.serving.settings import ServeConfig

    texts = {"texts": ["great acting and a great story", "a dull, lifeless mess"]}
    with TestClient(create_app(ServeConfig(model=str(models["regression"])))) as client:
        answer = client.post("/predict", json=texts)
    assert answer.status_code == 200, answer.text
    values = [p["value"] for p in answer.json()["predictions"]]
    assert "label" not in answer.json()["predictions"][0] and values[0] > values[1]
    with TestClient(create_app(ServeConfig(model=str(models["multilabel"])))) as client:
        answer = client.post("/predict", json=texts)
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["predictions"]
    assert set(first["probabilities"]) == {"acting", "negative", "positive", "time"}
    assert all(0 <= p <= 1 for p in first["probabilities"].values())
    assert first["labels"] == [n for n, p in first["probabilities"].items() if p >= 0.5]
    assert "positive" in first["labels"] and "negative" in second["labels"]


# ----------------------------------------------------------------------------------------------------- distill

@pytest.mark.parametrize("task, measure, hard_term", [("regression", "r2", "mse"),
                                                      ("multilabel", "example_f1", "binary_cross_entropy")])
def test_distill_trains_a_student_of_the_teachers_task(task: str, measure: str, hard_term: str, models,
                                                       tiny_text_model: Path, tmp_path: Path) -> None:
    """The task is the teachers' (no --task-type given): the student is saved as a model of it, scored by its
    measure beside the teacher, and its training logged the soft-target term and the task's own loss."""
    import transferkit as tk
    from transferkit.tasks import task_of

    out = tmp_path / "student"
    result = _invoke("distill", models[f"{task}-data"], "--teacher", models[task], "--student", tiny_text_model,
                     "--output", out, "--epochs", "1", "--batch-size", "16", "--no-report", "--lr", "1e-3",
                     "--device", "cpu", "--tracking-uri", "off", "--work-dir", tmp_path / "work", "--interval", "0.8",
                     *(["--compare-plain"] if task == "regression" else []))  # the plain student once: time
    assert result.exit_code == 0, result.output
    assert f"{measure}" in result.output and "teacher" in result.output
    student = tk.load_model(out)
    assert task_of(student).name == task and student.classes == tk.load_model(models[task]).classes
    assert (student.interval is not None) == (task == "regression")  # calibrated on the held-out part
    assert student.interval is None or student.interval["level"] == 0.8
    metrics = json.loads((out / "metrics.json").read_text())
    assert measure in metrics["test"] and np.isfinite(metrics["teachers"][0][measure])
    if task == "regression":  # the plain student and the paired verdict on the task's measure
        assert f"distillation vs plain training ({measure})" in result.output
        assert measure in metrics["plain_student"] and metrics["comparisons"][0]["baseline"] == "plain student"
    log = (out / "training_log.csv").read_text()
    assert "train_soft_targets" in log and f"train_{hard_term}" in log


def test_distill_refuses_a_task_other_than_the_teachers_naming_both(models, tiny_text_model: Path,
                                                                     tmp_path: Path) -> None:
    result = _invoke("distill", models["regression-data"], "--task-type", "multilabel", "--teacher",
                     models["regression"], "--student", tiny_text_model, "--output", tmp_path / "student",
                     "--epochs", "1", "--no-report")
    assert result.exit_code == 2
    assert f"--teacher {models['regression']}" in result.output and "--task-type regression" in result.output
    assert not (tmp_path / "student").exists()
    mixed = _invoke("distill", models["regression-data"], "--teacher", models["regression"], "--teacher",
                    models["multilabel"], "--student", tiny_text_model, "--output", tmp_path / "student", "--epochs",
                    "1", "--no-report")
    assert mixed.exit_code == 2 and "different tasks" in mixed.output and "(multilabel)" in mixed.output


def test_regression_distillation_terms_are_standardised_squared_errors() -> None:
    """Values: the soft term is the squared distance to the teachers' mean in units of the target's deviation;
    an unlabelled example (NaN) has the soft term only; at alpha 1 the true targets do not count."""
    import torch

    from transferkit.tasks import get_task

    task = get_task("regression")
    student = torch.tensor([[1.0], [3.0], [0.0]], requires_grad=True)
    teachers = torch.tensor([[[2.0], [3.0], [1.0]], [[4.0], [3.0], [-1.0]]])  # mean 3, 3, 0
    targets = torch.tensor([[1.0], [5.0], [float("nan")]])
    head = type("Head", (), {"target_scale": torch.tensor([2.0])})()
    terms = task.distillation_terms(student, teachers, targets, temperature=4.0, alpha=0.25, head=head)
    assert float(terms["soft_targets"].detach()) == pytest.approx((0.25 * (2 / 2) ** 2 + 0.25 * 0 + 1.0 * 0) / 3)
    assert float(terms["mse"].detach()) == pytest.approx(0.75 * (0 + (2 / 2) ** 2) / 3)
    sum(terms.values()).backward()
    assert torch.isfinite(student.grad).all()
    only_soft = task.distillation_terms(student, teachers, targets, temperature=1.0, alpha=1.0, head=head)
    assert float(only_soft["mse"].detach()) == 0.0


def test_multilabel_distillation_terms_vanish_when_the_student_matches_the_teachers() -> None:
    """Labels: the soft term is a binary KL divergence to the teachers' averaged tempered sigmoids (zero when the
    student's tempered sigmoids equal them, positive otherwise); the hard term is the BCE on the 0/1 labels."""
    import torch
    from torch.nn import functional as F

    from transferkit.tasks import get_task

    task = get_task("multilabel")
    teacher = torch.tensor([[[2.0, -1.0], [0.5, 3.0]]])
    targets = torch.tensor([[1.0, 0.0], [float("nan"), float("nan")]])
    same = task.distillation_terms(teacher[0], teacher, targets, temperature=2.0, alpha=0.5)
    assert float(same["soft_targets"]) == pytest.approx(0.0, abs=1e-6)
    assert float(same["binary_cross_entropy"]) == pytest.approx(
        0.5 * float(F.binary_cross_entropy_with_logits(teacher[0, 0], targets[0])) / 2, rel=1e-5)
    other = task.distillation_terms(-teacher[0], teacher, targets, temperature=2.0, alpha=0.5)
    assert float(other["soft_targets"]) > 0.1


# ------------------------------------------------------------------------------------ verbs that refuse the tasks

# -------------------------------------------------------------------------------------------------------- fuse

def _worse_copy(folder: Path, seed: int = 0):
    """The model of ``folder`` with noise added to its head's weights (a weaker member of the same architecture)."""
    import torch

    import transferkit as tk

    model = tk.load_model(folder)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = model.head.linear.weight
        weight.add_(3 * weight.abs().mean() * torch.randn(weight.shape, generator=generator))
    return model


@pytest.mark.parametrize("task, measure, loss", [("regression", "r2", "mse"), ("multilabel", "example_f1", "bce")])
def test_fuse_ensemble_averages_the_task_outputs_weighted_on_validation(task: str, measure: str, loss: str, models,
                                                                        tmp_path: Path) -> None:
    """The ensemble's output is the weighted mean of its members' values or per-label probabilities; fitted
    weights favour the better member; the saved folder loads as a model of the task."""
    import transferkit as tk
    from transferkit.data.sources import load_data
    from transferkit.tasks import task_of

    data = models[f"{task}-data"]
    result = tk.fuse("ensemble", [models[task], _worse_copy(models[task])], val=str(data), output=str(tmp_path / "e"))
    assert result.weights[0] > result.weights[1] and sum(result.weights) == pytest.approx(1.0)
    assert result.members[0][f"val_{measure}"] > result.members[1][f"val_{measure}"]
    assert set(result.val["fitted"]) == {measure, loss}
    assert result.val["fitted"][loss] <= result.val["uniform"][loss] + 1e-9
    dataset = load_data(data, task=task)
    members = [m.predict_proba(dataset, progress=False, cache=None) for m in result.model.members]
    expected = result.weights[0] * members[0] + result.weights[1] * members[1]
    np.testing.assert_allclose(result.model.predict_proba(dataset, progress=False, cache=None), expected, atol=1e-5)
    loaded = tk.load_model(tmp_path / "e")
    assert task_of(loaded).name == task
    np.testing.assert_allclose(loaded.predict_proba(dataset, progress=False, cache=None), expected, atol=1e-5)
    cli = _invoke("fuse", models[task], models[task], "--method", "ensemble", "--weighting", "uniform", "--val", data,
                  "--output", tmp_path / "cli")
    assert cli.exit_code == 0, cli.output
    assert f"val {measure}" in cli.output and loss in cli.output


@pytest.mark.parametrize("task, measure", [("regression", "r2"), ("multilabel", "example_f1")])
def test_fuse_soup_and_interpolation_choose_by_the_task_measure(task: str, measure: str, models,
                                                                tmp_path: Path) -> None:
    """Weight-space fusion of one architecture: the greedy soup is never worse on validation than its best
    ingredient, and interpolation's curve holds the task's measure, its chosen alpha the best on validation."""
    import transferkit as tk

    data = str(models[f"{task}-data"])
    soup = tk.fuse("soup", [_worse_copy(models[task], 1), models[task]], val=data)
    assert soup.measure == measure and soup.val_accuracy >= soup.best_ingredient_accuracy
    assert f"val_{measure}" in soup.to_dict() and 1 in soup.used
    assert getattr(soup.model, "interval", None) is None  # an ingredient's interval does not fit the soup
    line = tk.fuse("interpolate", models[task], val=data, train=data, alphas=[0.0, 0.5, 1.0])
    scores = {row["alpha"]: row[f"val_{measure}"] for row in line.curve}
    assert set(scores) == {0.0, 0.5, 1.0} and scores[line.alpha] == max(scores.values())
    assert measure in line.summary()


def test_fuse_refuses_members_of_different_tasks_naming_them(models, tmp_path: Path) -> None:
    result = _invoke("fuse", models["regression"], models["multilabel"], "--method", "ensemble", "--val",
                     models["regression-data"], "--output", tmp_path / "fused")
    assert result.exit_code == 2
    assert "regression model" in result.output and "multilabel model" in result.output
    assert str(models["multilabel"]) in result.output
    assert not (tmp_path / "fused").exists()


@pytest.mark.parametrize("task, measure, head", [("regression", "r2", "RegressionHead"),
                                                 ("multilabel", "example_f1", "LinearHead")])
def test_fuse_stack_fits_the_task_meta_model_and_saves_it(task: str, measure: str, head: str, models,
                                                          tiny_text_model: Path, tmp_path: Path) -> None:
    """Stacked features with --task-type: ridge (values) or per-label logistic regression (label sets) as the meta
    model, scored by the task's measure; the folder records the task and reloads to the same outputs."""
    import transferkit as tk
    from transferkit.data.sources import load_data
    from transferkit.tasks import task_of

    data = models[f"{task}-data"]
    out = tmp_path / "stacked"
    result = _invoke("fuse", "--method", "stack", "--task-type", task, "--backbones", tiny_text_model, "--train", data,
                     "--val", data, "--output", out)
    assert result.exit_code == 0, result.output
    assert f"val {measure}" in result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["task"] == task and saved["head"]["type"] == head
    model = tk.load_model(out)
    assert task_of(model).name == task
    dataset = load_data(data, task=task)
    proba = model.predict_proba(dataset, progress=False, cache=None)
    direct = tk.fuse("stack", [str(tiny_text_model)], train=str(data), val=str(data), task=task, compare_single=False)
    np.testing.assert_allclose(proba, direct.model.predict_proba(dataset, progress=False, cache=None), atol=1e-5)
    assert direct.val["val"][measure] > 0.2
