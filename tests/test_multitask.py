"""Multi-task learning: one backbone, a head per task, task sampling, loss weighting, save / load, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TEXTS, TINY_IMAGE_BACKBONE, write_image_folder, write_text_csv

pytest.importorskip("lightning")

TEXT_ROWS = [(t, label) for label, texts in TEXTS.items() for t in texts]


def _text_task(tmp_path: Path, name: str, labeller) -> Path:
    return write_text_csv(tmp_path / f"{name}.csv", [(t, labeller(t, label)) for t, label in TEXT_ROWS])


def _datasets():
    from transferkit.data.sources import from_arrays

    texts = [t for t, _ in TEXT_ROWS]
    sentiment = from_arrays(texts, [label for _, label in TEXT_ROWS], origin="sentiment")
    length = from_arrays(texts, ["long" if len(t) > 20 else "short" for t in texts], origin="length")
    return sentiment, length


COMMON = dict(epochs=2, batch_size=4, seed=3, augment="none", tracking_uri="off", progress=False, patience=0)


def test_sampling_shares_and_batch_sizes():
    from transferkit.strategies.multitask import task_batch_sizes, task_sampling_probabilities

    sizes = {"big": 900, "small": 100}
    proportional = task_sampling_probabilities(sizes, "proportional")
    uniform = task_sampling_probabilities(sizes, "uniform")
    warm = task_sampling_probabilities(sizes, "temperature", temperature=2.0)
    assert proportional == pytest.approx({"big": 0.9, "small": 0.1})
    assert uniform == pytest.approx({"big": 0.5, "small": 0.5})
    assert warm["big"] == pytest.approx(30 / 40)  # sqrt(900) : sqrt(100)
    assert proportional["small"] < warm["small"] < uniform["small"]
    assert task_sampling_probabilities(sizes, "temperature", temperature=1.0) == pytest.approx(proportional)
    for batch in (2, 7, 32, 33):
        split = task_batch_sizes(warm, batch)
        assert sum(split.values()) == batch and min(split.values()) >= 1
    assert task_batch_sizes(proportional, 10) == {"big": 9, "small": 1}
    assert task_batch_sizes({"a": 0.999, "b": 0.0005, "c": 0.0005}, 4) == {"a": 2, "b": 1, "c": 1}
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match="at least the number of tasks"):
        task_batch_sizes(uniform, 1)


def test_one_task_equals_single_task_finetuning(tmp_path, tiny_text_model):
    """The same seed, the same data: multi-task training with one task makes exactly the updates of finetune."""
    from transferkit.backbones import create_backbone
    from transferkit.config import make_config
    from transferkit.strategies.finetune import FineTune
    from transferkit.strategies.multitask import TaskData, train_multitask
    from transferkit.strategies.multitask_options import make_multitask_config
    from transferkit.strategies.run import train_with_strategy

    sentiment, _ = _datasets()
    train, val = sentiment, sentiment.subset(np.arange(0, 16, 2))
    classes = train.classes

    fit_config = make_config(strategy="finetune", work_dir=str(tmp_path / "single"), **COMMON)
    torch.manual_seed(0)
    single = train_with_strategy(fit_config, create_backbone(str(tiny_text_model)), train, val, classes,
                                 strategy=FineTune(fit_config.finetune))
    mt_config = make_multitask_config(tasks=[{"name": "sentiment"}], work_dir=str(tmp_path / "multi"), **COMMON)
    torch.manual_seed(0)
    multi = train_multitask(mt_config, create_backbone(str(tiny_text_model)),
                            [TaskData("sentiment", train, val, None, classes)])

    assert single.outcome.global_step == multi.outcome.global_step == 8  # 16 examples / batch 4, 2 epochs
    a = single.model.backbone.state_dict()
    b = multi.model.backbone.state_dict()
    assert a.keys() == b.keys()
    changed = [k for k in a if a[k].is_floating_point()]
    start = create_backbone(str(tiny_text_model)).state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in changed)  # training did change the weights
    for key in a:
        assert torch.equal(a[key], b[key]), key
    head_a, head_b = single.model.head.state_dict(), multi.model.heads["sentiment"].state_dict()
    for key in head_a:
        assert torch.equal(head_a[key], head_b[key]), key
    assert [r["val_accuracy"] for r in single.outcome.history] == [r["val_accuracy"] for r in multi.outcome.history]


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty", "pcgrad"])
def test_two_text_tasks_train_save_and_predict(tmp_path, tiny_text_model, weighting):
    import transferkit as tk

    sentiment, length = _datasets()
    result = tk.multitask(
        tasks=[{"name": "sentiment"}, {"name": "length", "weight": 0.5}], backbone=str(tiny_text_model),
        data={"sentiment": {"train": sentiment, "val": sentiment, "test": sentiment},
              "length": {"train": length, "val": length, "test": length}},
        weighting=weighting, sampling="uniform", output=str(tmp_path / "model"), work_dir=str(tmp_path / "run"),
        **{**COMMON, "batch_size": 8})
    assert set(result.metrics) == {"sentiment", "length"}
    assert result.training["task_batch_sizes"] == {"sentiment": 4, "length": 4}
    history = result.training["history"]
    for row in history:  # per-task validation figures, and their mean as the monitored value
        assert row["val_accuracy"] == pytest.approx((row["val_accuracy_sentiment"] + row["val_accuracy_length"]) / 2)
    if weighting == "pcgrad":
        record = result.training["pcgrad_conflicting_steps"]
        assert 0 <= record["steps_with_conflict"] <= record["steps"] and record["steps"] > 0
    if weighting == "uncertainty":
        weights = result.training["learned_task_weights"]
        assert set(weights) == {"sentiment", "length"} and all(w != 1.0 for w in weights.values())

    loaded = tk.load_model(tmp_path / "model")
    assert loaded.tasks == ["sentiment", "length"]
    every = loaded.predict(length, progress=False)
    assert set(every) == {"sentiment", "length"}
    assert set(every["length"]) <= {"long", "short"} and set(every["sentiment"]) <= {"negative", "positive"}
    proba = loaded.predict_proba(length, "length", progress=False)
    original = result.model.predict_proba(length, "length", progress=False)
    np.testing.assert_allclose(proba, original, atol=1e-5)
    one = tk.load_model(tmp_path / "model", task="length")
    assert one.classes == ["long", "short"]
    np.testing.assert_allclose(one.predict_proba(length, progress=False), proba, atol=1e-6)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["kind"] == "multitask"
    if weighting == "fixed":
        _evaluate_and_predict_one_task_from_the_command_line(tmp_path, proba)


def _evaluate_and_predict_one_task_from_the_command_line(tmp_path, proba) -> None:
    import csv

    from test_cli import run

    table = tmp_path / "length.csv"
    with open(table, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *((t, "long" if len(t) > 20 else "short") for t, _ in TEXT_ROWS)])
    model = str(tmp_path / "model")
    metrics = json.loads(run("evaluate", model, str(table), "--task", "length", "--json", "-q").stdout)
    expected = float(np.mean(proba.argmax(axis=1) == np.array([0 if len(t) > 20 else 1 for t, _ in TEXT_ROWS])))
    assert metrics["accuracy"] == pytest.approx(expected)
    lines = run("predict", model, str(table), "--task", "sentiment", "-q").stdout.strip().splitlines()
    assert len(lines) == len(TEXT_ROWS) and {json.loads(x)["label"] for x in lines} <= {"negative", "positive"}
    missing = run("predict", model, "a text", "-q", check=False)
    assert missing.returncode != 0 and "--task" in missing.stderr and "sentiment, length" in missing.stderr
    assert "Traceback" not in missing.stderr
    wrong = run("evaluate", model, str(table), "--task", "colour", "-q", check=False)
    assert wrong.returncode != 0 and "no task 'colour'" in wrong.stderr and "Traceback" not in wrong.stderr


def test_pcgrad_projection_removes_conflict():
    from transferkit.losses.task_weighting import pcgrad_project

    g = torch.tensor([[1.0, 1.0], [-1.0, 0.5]])
    combined = pcgrad_project(g, torch.Generator().manual_seed(0))
    # each projected gradient is orthogonal to the other task's original gradient where they conflicted
    p0 = g[0] - (g[0] @ g[1]) / (g[1] @ g[1]) * g[1]
    p1 = g[1] - (g[1] @ g[0]) / (g[0] @ g[0]) * g[0]
    torch.testing.assert_close(combined, p0 + p1)
    assert float(combined @ g[0]) >= 0 and float(combined @ g[1]) >= 0
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(pcgrad_project(agreeing), agreeing.sum(0))


def test_pcgrad_gradient_on_the_backbone(tiny_text_model):
    """The backward pass of PCGrad's terms leaves the projected sum on the shared weights, each task's own gradient
    on its head."""
    from transferkit.backbones import create_backbone
    from transferkit.models.heads import HeadSet
    from transferkit.losses.task_weighting import pcgrad_project
    from transferkit.models.multitask_model import MultiTaskModel
    from transferkit.strategies.multitask import MultiTaskPlan

    torch.manual_seed(0)
    backbone = create_backbone(str(tiny_text_model))
    model = MultiTaskModel(backbone, HeadSet(backbone.num_features, {"a": 2, "b": 2}), {"a": ["x", "y"],
                                                                                        "b": ["p", "q"]})
    model.heads["b"].load_state_dict(model.heads["a"].state_dict())
    model.eval()  # no dropout: two forward passes give the same graph
    plan = MultiTaskPlan(["a", "b"], weighting="pcgrad", seed=1)
    plan.prepare(model, {})
    texts = [t for t, _ in TEXT_ROWS[:6]]
    inputs = backbone.collate([backbone.prepare(t) for t in texts])
    # task b: the same head and inputs, most labels flipped, so that the two gradients conflict
    batch = {"a": (inputs, torch.tensor([0, 1, 0, 1, 0, 1])), "b": (inputs, torch.tensor([1, 0, 1, 0, 0, 1]))}
    terms, size = plan.batch_terms(model, batch)
    assert size == 12 and set(terms) == {"cross_entropy_a", "cross_entropy_b", "pcgrad"}
    assert float(terms["pcgrad"].detach()) == 0.0
    sum(terms.values()).backward()
    shared = [p for p in backbone.parameters() if p.requires_grad]
    got = torch.cat([p.grad.reshape(-1) for p in shared])

    losses, _ = MultiTaskPlan(["a", "b"]).task_losses(model, batch)
    rows = [torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                       for g, p in zip(torch.autograd.grad(losses[t], shared, allow_unused=True), shared)])
            for t in ("a", "b")]
    assert float(rows[0] @ rows[1]) < 0 and plan.conflicting_steps == 1
    expected = pcgrad_project(torch.stack(rows), torch.Generator().manual_seed(1 * 1_000_003 + 0))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(got, rows[0] + rows[1])  # the tasks conflicted somewhere


def test_image_tasks_and_cli(tmp_path):
    """Two image tasks with different label sets, from a YAML config through the command line."""
    from typer.testing import CliRunner

    from transferkit.cli.main import _register_commands, app

    write_image_folder(tmp_path / "colours", classes=("red", "green", "blue"), per_class=4)
    write_image_folder(tmp_path / "stripes", classes=("horizontal", "vertical"), per_class=6, seed=1)
    config = tmp_path / "multitask.yaml"
    config.write_text(f"""
backbone: {TINY_IMAGE_BACKBONE}
epochs: 1
batch_size: 6
sampling: temperature
temperature: 2
weighting: uncertainty
augment: none
tracking_uri: "off"
work_dir: {tmp_path / 'run'}
test_fraction: 0.25
tasks:
  - name: colour
    data: colours
  - name: stripes
    data: stripes
""")
    _register_commands()
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["multitask", str(config), "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "colour" in result.output and "stripes" in result.output and "mean" in result.output
    import transferkit as tk

    model = tk.load_model(out)
    assert model.task_classes == {"colour": ["blue", "green", "red"], "stripes": ["horizontal", "vertical"]}
    # several tasks: BatchNorm layers kept their pretrained (here: initial) running statistics
    from transferkit.backbones import create_backbone

    torch.manual_seed(0)
    fresh = create_backbone(TINY_IMAGE_BACKBONE).state_dict()
    trained = model.backbone.state_dict()
    stats = [k for k in fresh if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(fresh[k], trained[k]) for k in stats)
    assert any(not torch.equal(fresh[k], trained[k]) for k in fresh if k.endswith(".weight"))
    run_config = (out / "run_config.yaml").read_text()
    assert "weighting: uncertainty" in run_config and "task_batch_sizes" in run_config

    again = CliRunner().invoke(app, ["multitask", str(config), "--output", str(out)])
    assert again.exit_code == 2 and "already holds a model" in again.output


def test_batchnorm_statistics_default():
    from transferkit.strategies.multitask import MultiTaskPlan
    from transferkit.strategies.options import FineTuneConfig

    assert MultiTaskPlan(["a", "b"]).batchnorm_eval
    assert not MultiTaskPlan(["a"]).batchnorm_eval  # one task: as finetune
    assert not MultiTaskPlan(["a", "b"], config=FineTuneConfig(bn_statistics="update")).batchnorm_eval
    assert MultiTaskPlan(["a"], config=FineTuneConfig(bn_statistics="frozen")).batchnorm_eval


def test_config_errors(tmp_path, tiny_text_model):
    import transferkit as tk
    from transferkit.errors import ConfigError, DataError
    from transferkit.strategies.multitask_options import load_multitask_config, make_multitask_config

    with pytest.raises(ConfigError, match="repeated: a"):
        make_multitask_config(tasks=[{"name": "a"}, {"name": "a"}])
    with pytest.raises(ConfigError, match="unknown option 'tasks.0.labels'"):
        make_multitask_config(tasks=[{"name": "a", "labels": "x"}])
    with pytest.raises(ConfigError, match="option 'weighting'"):
        make_multitask_config(tasks=[{"name": "a"}], weighting="gradnorm-ish")
    path = tmp_path / "c.yaml"
    path.write_text("tasks:\n  sentiment:\n    data: reviews.csv\n")
    write_text_csv(tmp_path / "reviews.csv")
    assert Path(load_multitask_config(path).tasks[0].data) == tmp_path / "reviews.csv"
    sentiment, length = _datasets()
    with pytest.raises(ConfigError, match="does not name"):
        tk.multitask(tasks=[{"name": "a"}], data={"b": {"train": sentiment}})
    with pytest.raises(ConfigError, match="no training data"):
        tk.multitask(tasks=[{"name": "a"}])
    images = write_image_folder(tmp_path / "imgs")
    with pytest.raises(DataError, match="same modality"):
        tk.multitask(tasks=[{"name": "a"}, {"name": "b", "data": str(images)}], data={"a": {"train": sentiment}},
                     backbone=str(tiny_text_model), **COMMON)
    unseen = sentiment.subset(np.arange(4))
    unseen.labels = ["neutral"] * 4
    with pytest.raises(DataError, match="never appears in the training data"):
        tk.multitask(tasks=[{"name": "a"}], data={"a": {"train": sentiment, "val": unseen}},
                     backbone=str(tiny_text_model), **COMMON)
