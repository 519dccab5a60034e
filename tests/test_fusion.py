"""Fusion: weight interpolation, model soups, ensembles and stacked features, on tiny text models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TEXTS, write_text_csv

TEXT_ROWS = [(t, label) for label, texts in TEXTS.items() for t in texts]


def _data():
    from transferkit.data.sources import from_arrays

    return from_arrays([t for t, _ in TEXT_ROWS], [label for _, label in TEXT_ROWS], origin="reviews")


@pytest.fixture(scope="session")
def other_text_model(tmp_path_factory) -> Path:
    """A tiny BERT of another width (16): a different architecture with the same tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from transferkit.backbones.packaged import minilm_folder

    folder = tmp_path_factory.mktemp("tiny-bert-16")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128)
    torch.manual_seed(1)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def finetuned_runs(tiny_text_model, tmp_path_factory) -> list[Path]:
    """Three fine-tuned runs of the tiny BERT (seeds and learning rates differ), saved as model folders."""
    pytest.importorskip("lightning")
    from transferkit.models.artifacts import save_model
    from transferkit.backbones import create_backbone
    from transferkit.config import make_config
    from transferkit.strategies.run import train_with_strategy

    root = tmp_path_factory.mktemp("runs")
    data = _data()
    folders = []
    for seed, lr in ((0, 3e-3), (1, 1e-3), (2, 5e-3)):
        config = make_config(strategy="finetune", epochs=3, batch_size=4, seed=seed, lr=lr, augment="none",
                             tracking_uri="off", progress=False, patience=0, work_dir=str(root / f"work-{seed}"))
        trained = train_with_strategy(config, create_backbone(str(tiny_text_model)), data, data, data.classes)
        folders.append(save_model(trained.model, root / f"run-{seed}"))
    return folders


def _states_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- interpolation -------------------------------------------------------------------------------------------

def test_interpolation_ends_are_exactly_the_two_models(finetuned_runs, tiny_text_model, tmp_path):
    import transferkit as tk
    from transferkit.fusion.interpolation import interpolate, interpolate_states, pretrained_endpoint

    data = _data()
    finetuned = tk.load_model(finetuned_runs[0])
    start, _ = pretrained_endpoint(finetuned, train=data, val=data)
    pre, ft = start.state_dict(), finetuned.state_dict()
    assert _states_equal(interpolate_states(pre, ft, 0.0), pre)
    assert _states_equal(interpolate_states(pre, ft, 1.0), ft)
    middle = interpolate_states(pre, ft, 0.25)
    key = "head.linear.weight"
    torch.testing.assert_close(middle[key], 0.75 * pre[key] + 0.25 * ft[key])

    at_one = interpolate(finetuned_runs[0], data, train=data, alphas=[1.0])
    assert _states_equal(at_one.model.state_dict(), ft)
    at_zero = interpolate(finetuned_runs[0], data, train=data, alphas=[0.0])
    assert _states_equal(at_zero.model.state_dict(), pre)
    # the pretrained end is the pretrained backbone with a probe: the probe's own accuracy
    probe_accuracy = float(np.mean(np.asarray(start.predict(data, progress=False)) == np.asarray(data.labels)))
    assert at_zero.curve[0]["val_accuracy"] == pytest.approx(probe_accuracy)
    tuned_accuracy = float(np.mean(np.asarray(finetuned.predict(data, progress=False)) == np.asarray(data.labels)))
    assert at_one.curve[0]["val_accuracy"] == pytest.approx(tuned_accuracy)


def test_interpolation_sweep_chooses_on_validation_and_saves_curve(finetuned_runs, tmp_path):
    import transferkit as tk

    data = _data()
    shifted = data.subset(np.arange(0, 16, 3), origin="shifted")
    result = tk.fuse("interpolate", finetuned_runs[1], val=data, train=data, eval_sets={"shifted": shifted},
                     alphas=[0, 0.5, 1], output=str(tmp_path / "wise"))
    assert [row["alpha"] for row in result.curve] == [0.0, 0.5, 1.0]
    best = max(row["val_accuracy"] for row in result.curve)
    assert result.curve[[r["alpha"] for r in result.curve].index(result.alpha)]["val_accuracy"] == best
    assert all("shifted_accuracy" in row for row in result.curve)
    out = tmp_path / "wise"
    assert (out / "interpolation.png").stat().st_size > 1000
    saved = json.loads((out / "interpolation.json").read_text())
    assert saved["alpha"] == result.alpha and len(saved["curve"]) == 3
    loaded = tk.load_model(out)
    np.testing.assert_allclose(loaded.predict_proba(data, progress=False),
                               result.model.predict_proba(data, progress=False), atol=1e-5)


def test_interpolation_refuses_other_architectures(finetuned_runs, other_text_model, tmp_path):
    import transferkit as tk
    from transferkit.models.artifacts import save_model
    from transferkit.backbones import create_backbone
    from transferkit.errors import ConfigError
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    data = _data()
    other = create_backbone(str(other_text_model))
    probe = save_model(TransferModel(other, LinearHead(other.num_features, 2), data.classes), tmp_path / "other")
    with pytest.raises(ConfigError, match="one architecture"):
        tk.fuse("interpolate", finetuned_runs[0], val=data, pretrained=str(probe))
    with pytest.raises(ConfigError, match="give training data"):
        tk.fuse("interpolate", finetuned_runs[0], val=data)
    with pytest.raises(ConfigError, match="alphas"):
        tk.fuse("interpolate", finetuned_runs[0], val=data, train=data, alphas=[1.5])


# --- soups ---------------------------------------------------------------------------------------------------

def test_greedy_soup_is_never_worse_than_its_best_ingredient(finetuned_runs, tmp_path):
    import transferkit as tk

    data = _data()
    result = tk.fuse("soup", finetuned_runs, val=data, soup="greedy", output=str(tmp_path / "soup"))
    accuracies = [i["val_accuracy"] for i in result.ingredients]
    assert result.val_accuracy >= max(accuracies)
    assert result.used[0] == int(np.argmax(accuracies)) or accuracies[result.used[0]] == max(accuracies)
    best = int(np.argmax(accuracies))
    running, running_loss = max(accuracies), result.ingredients[result.used[0]]["val_log_loss"]
    for step in result.steps:  # tried best first; added exactly when accuracy rose, or held with a lower log loss
        better = step["soup_val_accuracy"] > running or (step["soup_val_accuracy"] == running and
                                                         step["soup_val_log_loss"] < running_loss)
        assert step["added"] == better
        if step["added"]:
            running, running_loss = step["soup_val_accuracy"], step["soup_val_log_loss"]
    assert [s["candidate"] for s in result.steps] == sorted(
        [i for i in range(3) if i != result.used[0]], key=lambda i: (-accuracies[i], result.ingredients[i]["val_log_loss"]))
    measured = float(np.mean(np.asarray(result.model.predict(data, progress=False)) == np.asarray(data.labels)))
    assert measured == pytest.approx(result.val_accuracy)
    loaded = tk.load_model(tmp_path / "soup")
    np.testing.assert_allclose(loaded.predict_proba(data, progress=False),
                               result.model.predict_proba(data, progress=False), atol=1e-5)


def test_greedy_soup_leaves_out_a_run_that_hurts(finetuned_runs, tiny_text_model, tmp_path):
    """A broken run (its head flipped) must not enter the soup."""
    import transferkit as tk
    from transferkit.models.artifacts import save_model

    data = _data()
    broken = tk.load_model(finetuned_runs[0])
    with torch.no_grad():
        broken.head.linear.weight.mul_(-50)
        broken.head.linear.bias.mul_(-50)
    bad = save_model(broken, tmp_path / "broken")
    result = tk.fuse("soup", [*finetuned_runs, bad], val=data)
    assert 3 not in result.used
    assert result.val_accuracy >= max(i["val_accuracy"] for i in result.ingredients)


def test_uniform_soup_is_the_mean_of_the_weights(finetuned_runs):
    import transferkit as tk

    result = tk.fuse("soup", finetuned_runs, soup="uniform")
    assert result.used == [0, 1, 2] and result.val_accuracy is None
    states = [tk.load_model(f).state_dict() for f in finetuned_runs]
    key = "head.linear.weight"
    expected = sum(s[key].double() for s in states) / 3
    torch.testing.assert_close(result.model.state_dict()[key].double(), expected, rtol=0, atol=1e-6)


def test_soup_refuses_mismatched_models(finetuned_runs, other_text_model, tmp_path):
    import transferkit as tk
    from transferkit.models.artifacts import save_model
    from transferkit.backbones import create_backbone
    from transferkit.errors import ConfigError
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    data = _data()
    relabelled = tk.load_model(finetuned_runs[0])
    relabelled.classes = ["bad", "good"]
    other_labels = save_model(relabelled, tmp_path / "relabelled")
    with pytest.raises(ConfigError, match="label set"):
        tk.fuse("soup", [finetuned_runs[0], other_labels], val=data)
    # same backbone name, other widths: caught by the tensor shapes
    wide = tk.load_model(finetuned_runs[0])
    wide.head = LinearHead(wide.head.in_features, 3)
    wide.classes = ["negative", "neutral", "positive"]
    with pytest.raises(ConfigError, match="label set|shape"):
        tk.fuse("soup", [finetuned_runs[0], wide], val=data)
    other = create_backbone(str(other_text_model))
    narrow = save_model(TransferModel(other, LinearHead(other.num_features, 2), data.classes, strategy="finetune"),
                        tmp_path / "narrow")
    with pytest.raises(ConfigError, match="one architecture"):
        tk.fuse("soup", [finetuned_runs[0], narrow], val=data)
    with pytest.raises(ConfigError, match="at least two"):
        tk.fuse("soup", finetuned_runs[:1], val=data)


# --- ensembles -----------------------------------------------------------------------------------------------

def test_fitted_ensemble_weights_are_on_the_simplex_and_beat_uniform():
    from transferkit.fusion.ensembles import fit_ensemble_weights, mixture_log_loss

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=200)
    good = np.full((200, 3), 0.1)
    good[np.arange(200), y] = 0.8
    noise = rng.dirichlet(np.ones(3), size=200)
    member_proba = np.stack([good, noise, 0.5 * good + 0.5 * noise])
    weights = fit_ensemble_weights(member_proba, y)
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    uniform = np.full(3, 1 / 3)
    assert mixture_log_loss(member_proba, y, weights) <= mixture_log_loss(member_proba, y, uniform)
    assert weights[0] > 0.8  # the informative member carries the mixture


def test_ensemble_of_folders_saves_and_loads(finetuned_runs, other_text_model, tmp_path):
    import transferkit as tk
    from transferkit.models.artifacts import save_model
    from transferkit.backbones import create_backbone
    from transferkit.models.model import TransferModel
    from transferkit.estimators.linear_probe import LinearProbe

    data = _data()
    other = create_backbone(str(other_text_model))  # a different backbone: allowed in output space
    from transferkit.features.extract import extract_features

    features = extract_features(other, data, progress=False)
    probe = LinearProbe().fit(features, data.label_array(data.classes))
    narrow = save_model(TransferModel(other, probe.to_head(), data.classes), tmp_path / "probe")
    members = [*finetuned_runs[:2], narrow]
    fitted = tk.fuse("ensemble", members, val=data, output=str(tmp_path / "ens"))
    assert sum(fitted.weights) == pytest.approx(1.0) and min(fitted.weights) >= 0
    assert fitted.val["fitted"]["log_loss"] <= fitted.val["uniform"]["log_loss"] + 1e-12
    config = json.loads((tmp_path / "ens" / "config.json").read_text())
    assert config["kind"] == "ensemble" and len(config["members"]) == 3
    loaded = tk.load_model(tmp_path / "ens")
    np.testing.assert_allclose(loaded.predict_proba(data, progress=False),
                               fitted.model.predict_proba(data, progress=False), atol=1e-5)
    assert loaded.weights == pytest.approx(fitted.weights)
    metrics = tk.evaluate(tmp_path / "ens", write_text_csv(tmp_path / "eval.csv"), progress=False)
    assert 0 <= metrics["accuracy"] <= 1
    uniform = tk.fuse("ensemble", members, weighting="uniform")
    assert uniform.weights == pytest.approx([1 / 3] * 3)


def test_ensemble_refuses_other_label_sets(finetuned_runs, tmp_path):
    import transferkit as tk
    from transferkit.models.artifacts import save_model
    from transferkit.errors import ConfigError

    relabelled = tk.load_model(finetuned_runs[0])
    relabelled.classes = ["bad", "good"]
    with pytest.raises(ConfigError, match="share one label set"):
        tk.fuse("ensemble", [finetuned_runs[1], save_model(relabelled, tmp_path / "r")], val=_data())


def test_tampered_ensemble_member_is_refused(finetuned_runs, tmp_path):
    import transferkit as tk
    from transferkit.errors import ArtifactError

    tk.fuse("ensemble", finetuned_runs[:2], weighting="uniform", output=str(tmp_path / "ens"))
    config = tmp_path / "ens" / "config.json"
    data = json.loads(config.read_text())
    data["members"][0] = "../../elsewhere"
    config.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="changed since the model was saved"):
        tk.load_model(tmp_path / "ens")
    import hashlib  # the manifest rewritten too: the member path itself is refused

    manifest = json.loads((tmp_path / "ens" / "manifest.json").read_text())
    manifest["files"]["config.json"] = hashlib.sha256(config.read_bytes()).hexdigest()
    (tmp_path / "ens" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="outside the model folder"):
        tk.load_model(tmp_path / "ens")


# --- stacking ------------------------------------------------------------------------------------------------

def test_stacked_features_with_pca_from_a_ranking(tiny_text_model, other_text_model, tmp_path):
    import transferkit as tk
    from transferkit.fusion.stacking import backbones_from_ranking

    ranking = {"rows": [{"name": "raw", "kind": "raw"}, {"name": str(tiny_text_model), "kind": "backbone"},
                        {"name": str(other_text_model), "kind": "backbone"}, {"name": "third", "kind": "backbone"}]}
    assert backbones_from_ranking(ranking, top=2) == [str(tiny_text_model), str(other_text_model)]
    path = tmp_path / "ranking.json"
    path.write_text(json.dumps(ranking))
    data = _data()
    result = tk.fuse("stack", train=data, val=data, ranking=str(path), top=2, reduce=4, output=str(tmp_path / "st"))
    assert result.backbones == [str(tiny_text_model), str(other_text_model)]
    assert result.model.head.in_features == 8  # 4 components from each backbone
    assert set(result.single) == set(result.backbones) and "val" in result.val
    config = json.loads((tmp_path / "st" / "config.json").read_text())
    assert config["kind"] == "stacked" and [r["components"] for r in config["reduce"]] == [4, 4]
    loaded = tk.load_model(tmp_path / "st")
    np.testing.assert_allclose(loaded.predict_proba(data, progress=False),
                               result.model.predict_proba(data, progress=False), atol=1e-5)
    full = tk.fuse("stack", [str(tiny_text_model), str(other_text_model)], train=data, val=data)
    assert full.model.head.in_features == 32 + 16


def test_stacked_features_equal_the_concatenation(tiny_text_model, other_text_model):
    from transferkit.backbones import create_backbone
    from transferkit.features.extract import extract_features
    from transferkit.fusion.stacking import stack

    data = _data()
    result = stack([str(tiny_text_model), str(other_text_model)], data, data)
    parts = [extract_features(create_backbone(str(p)), data, progress=False) for p in (tiny_text_model, other_text_model)]
    stacked = result.model.transform(parts)
    np.testing.assert_array_equal(stacked, np.concatenate(parts, axis=1))
    with pytest.raises(Exception, match="not both"):
        stack([str(tiny_text_model)], data, ranking={"rows": [{"name": "x", "kind": "backbone"}]})


# --- command line --------------------------------------------------------------------------------------------

def test_fuse_cli_end_to_end(finetuned_runs, tiny_text_model, other_text_model, tmp_path):
    from typer.testing import CliRunner

    from transferkit.cli.main import _register_commands, app

    _register_commands()
    runner = CliRunner()
    csv = str(write_text_csv(tmp_path / "reviews.csv"))
    runs = [str(f) for f in finetuned_runs]

    soup = runner.invoke(app, ["fuse", *runs, "--method", "soup", "--val", csv, "--output", str(tmp_path / "soup"), "-q"])
    assert soup.exit_code == 0, soup.output
    assert "greedy soup" in soup.output and (tmp_path / "soup" / "soup.json").is_file()

    ens = runner.invoke(app, ["fuse", *runs[:2], "--method", "ensemble", "--val", csv, "--output",
                              str(tmp_path / "ens"), "--json"])
    assert ens.exit_code == 0, ens.output
    assert sum(json.loads(ens.output)["weights"]) == pytest.approx(1.0)
    predicted = runner.invoke(app, ["predict", str(tmp_path / "ens"), "a wonderful film", "-q"])
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.output.strip().splitlines()[-1])["label"] in ("negative", "positive")

    wise = runner.invoke(app, ["fuse", runs[0], "--method", "interpolate", "--train", csv, "--val", csv,
                               "--test", csv, "--alphas", "0,0.5,1", "--output", str(tmp_path / "wise"), "-q"])
    assert wise.exit_code == 0, wise.output
    assert "chosen" in wise.output and (tmp_path / "wise" / "interpolation.png").is_file()

    stacked = runner.invoke(app, ["fuse", "--method", "stack", "--backbones",
                                  f"{tiny_text_model},{other_text_model}", "--train", csv, "--val", csv,
                                  "--reduce", "3", "--output", str(tmp_path / "stack"), "-q"])
    assert stacked.exit_code == 0, stacked.output
    evaluated = runner.invoke(app, ["evaluate", str(tmp_path / "stack"), csv, "--json", "-q"])
    assert evaluated.exit_code == 0, evaluated.output

    bad = runner.invoke(app, ["fuse", "--method", "blend", *runs])
    assert bad.exit_code == 2 and "must be one of" in bad.output
    mixed = runner.invoke(app, ["fuse", runs[0], str(tmp_path / "stack"), "--method", "soup", "--val", csv])
    assert mixed.exit_code == 2 and "one backbone and one head" in mixed.output


def test_image_models_with_batchnorm_interpolate_and_soup(image_folder):
    """CNN weights (BatchNorm statistics and counters included) interpolate and average; given ends stay exact."""
    import transferkit as tk
    from conftest import TINY_IMAGE_BACKBONE
    from transferkit.backbones import create_backbone
    from transferkit.data.sources import load_data
    from transferkit.fusion.interpolation import interpolate
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    data = load_data(image_folder)
    models = []
    for seed in range(3):
        torch.manual_seed(0)
        backbone = create_backbone(TINY_IMAGE_BACKBONE)
        torch.manual_seed(seed + 1)
        with torch.no_grad():
            for name, tensor in backbone.state_dict().items():
                if tensor.is_floating_point():
                    tensor.add_(0.01 * torch.randn_like(tensor))
                elif name.endswith("num_batches_tracked"):
                    tensor.fill_(10 * (seed + 1))
        models.append(TransferModel(backbone, LinearHead(backbone.num_features, 3), data.classes,
                                    strategy="finetune").eval())
    counters = [k for k in models[0].state_dict() if k.endswith("num_batches_tracked")]
    assert counters
    uniform = tk.fuse("soup", models, soup="uniform")
    state = uniform.model.state_dict()
    assert int(state[counters[0]]) == 10  # integer buffers: from one ingredient, not averaged
    key = next(k for k in state if k.endswith("running_var"))
    expected = sum(m.state_dict()[key].double() for m in models) / 3
    torch.testing.assert_close(state[key].double(), expected, rtol=0, atol=1e-6)
    greedy = tk.fuse("soup", models, val=data)
    assert greedy.val_accuracy >= max(i["val_accuracy"] for i in greedy.ingredients)
    ends = interpolate(models[1], data, pretrained=models[0], alphas=[0.0, 1.0])
    pre, ft = models[0].state_dict(), models[1].state_dict()
    chosen = ends.model.state_dict()
    assert all(torch.equal(chosen[k], (pre if ends.alpha == 0.0 else ft)[k]) for k in chosen)
