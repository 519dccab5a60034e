"""Few-shot strategies end to end: contrastive fine-tuning through the CLI (fit, saved model, predict, evaluate, cv)
and its refusals of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from conftest import write_text_csv
from transferkit.cli.main import _register_commands, app

COMMON = ["--tracking-uri", "off", "--device", "cpu", "-q"]


def invoke(*args: str):
    _register_commands()
    return CliRunner().invoke(app, list(args))


def test_fit_contrastive_saves_a_backbone_and_probe_head_that_predict_and_evaluate_use(
        text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = invoke("fit", str(text_csv), "--backbone", str(tiny_text_model), "--strategy", "contrastive",
                    "--epochs", "2", "--batch-size", "8", "--top-layers", "1", "--temperature", "0.2",
                    "--baselines", "raw", "--test-fraction", "0.25", "--work-dir", str(tmp_path / "work"),
                    "--output", str(out), *COMMON)
    assert result.exit_code == 0, result.output
    run_config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert run_config["strategy"] == "contrastive"
    assert run_config["contrastive"] == {"loss": "supcon", "temperature": 0.2, "top_layers": 1}
    choice = run_config["training"]["final_choice"]
    assert choice["head"] == "linear probe on the tuned embeddings" and choice["probe_refit_on"] == 12
    # only the top layer group (and the head) trained: the tiny BERT has embeddings + 2 layers (+ pooler)
    assert 0 < run_config["training"]["trainable_parameters"] < run_config["training"]["total_parameters"]
    assert (out / "model.safetensors").is_file()

    predicted = invoke("predict", str(out), "a wonderful, moving film", "--device", "cpu", "-q")
    assert predicted.exit_code == 0, predicted.output
    assert "positive" in predicted.output or "negative" in predicted.output
    evaluation = invoke("evaluate", str(out), str(text_csv), "--json", "--device", "cpu", "-q")
    assert evaluation.exit_code == 0, evaluation.output
    assert json.loads(evaluation.output)["n"] == 16


def test_cv_runs_the_contrastive_strategy(text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    result = invoke("cv", str(text_csv), "--backbone", str(tiny_text_model), "--strategy", "contrastive",
                    "--folds", "2", "--epochs", "1", "--batch-size", "8", "--baselines", "raw", "--json",
                    "--work-dir", str(tmp_path / "work"), *COMMON)
    assert result.exit_code == 0, result.output
    assert "contrastive" in result.output


def test_contrastive_refuses_one_class_before_training(tiny_text_model: Path, tmp_path: Path) -> None:
    data = write_text_csv(tmp_path / "one.csv", [(f"text number {i}", "only") for i in range(12)])
    test = write_text_csv(tmp_path / "test.csv", [("a", "only"), ("b", "other")])
    result = invoke("fit", str(data), "--test", str(test), "--backbone", str(tiny_text_model), "--strategy",
                    "contrastive", "--work-dir", str(tmp_path / "work"), "--output", str(tmp_path / "m"), *COMMON)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "at least 2" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_contrastive_top_layers_beyond_the_backbone_is_refused(text_csv: Path, tiny_text_model: Path,
                                                               tmp_path: Path) -> None:
    result = invoke("fit", str(text_csv), "--backbone", str(tiny_text_model), "--strategy", "contrastive",
                    "--top-layers", "50", "--work-dir", str(tmp_path / "work"), "--output", str(tmp_path / "m"),
                    *COMMON)
    assert result.exit_code == 2, result.output
    assert "--top-layers" in result.output and "layer groups" in result.output and "give 1 to" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m").exists()
    assert not (tmp_path / "work" / "contrastive" / "checkpoints").exists()


# --------------------------------------------------------------------------------------------------------------
# Label-name prototypes: zero-shot classifier and the probe regularised towards it
# --------------------------------------------------------------------------------------------------------------

LABELLED_TOPICS = {
    "sport": ["the team won the football match", "she scored a goal in the final", "the tennis player served an ace",
              "the runners finished the marathon"],
    "food": ["he baked bread and a cake", "the soup needs more salt", "we ate pasta with tomato sauce",
             "fresh fruit and vegetables for dinner"],
    "weather": ["heavy rain and strong wind tonight", "it will be sunny and warm tomorrow",
                "snow is falling on the mountains", "a thunderstorm is coming this afternoon"],
}


def test_label_name_prototypes_give_above_chance_zero_shot_on_real_texts() -> None:
    """The packaged MiniLM embeds the class names; nearest-name classification of 12 real sentences."""
    import numpy as np

    from transferkit.backbones.registry import create_backbone
    from transferkit.data import from_arrays
    from transferkit.estimators.label_names import class_texts, label_prototypes, zero_shot_predict
    from transferkit.features.extract import extract_features

    classes = sorted(LABELLED_TOPICS)
    texts = [t for c in classes for t in LABELLED_TOPICS[c]]
    y = np.repeat(np.arange(len(classes)), 4)
    backbone = create_backbone("all-MiniLM-L6-v2")
    X = extract_features(backbone, from_arrays(texts, None), cache=None, device="cpu", progress=False)
    prototypes = label_prototypes(backbone, class_texts(classes), device="cpu")
    accuracy = float(np.mean(zero_shot_predict(X, prototypes) == y))
    assert accuracy >= 0.75  # chance: 1/3


def test_prototype_probe_follows_the_prior_at_small_C_and_learns_past_a_wrong_one_at_large_C() -> None:
    import numpy as np

    from transferkit.estimators.label_names import PrototypeProbe, zero_shot_predict

    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 3
    X = np.vstack([centres[k] + rng.normal(scale=0.5, size=(10, 8)) for k in range(3)])
    y = np.repeat(np.arange(3), 10)
    wrong_prior = centres[[1, 2, 0]]  # every prototype points at another class
    assert np.mean(zero_shot_predict(X, wrong_prior) == y) == 0.0
    prior_only = PrototypeProbe(centres, C=1e-4).fit(X, y)  # a strong pull: the correction stays near zero
    assert np.abs(prior_only.coef_).max() < 0.05 and np.mean(prior_only.predict(X) == y) == 1.0
    assert np.mean(PrototypeProbe(wrong_prior, C=100.0).fit(X, y).predict(X) == y) == 1.0
    chosen = PrototypeProbe(wrong_prior).fit(X, y)  # C by cross-validation leaves the misleading prior
    assert chosen.C_ >= 1.0 and np.mean(chosen.predict(X) == y) == 1.0


def test_label_descriptions_file_is_read_and_its_mistakes_are_refused(tmp_path: Path) -> None:
    import pytest

    from transferkit.errors import DataError, DataNotFoundError
    from transferkit.estimators.label_names import class_texts, read_label_descriptions

    good = tmp_path / "labels.csv"
    good.write_text("label,description\nfood,things people eat and drink\n", encoding="utf-8")
    descriptions = read_label_descriptions(good, ["food", "sport"])
    assert class_texts(["food", "sport", "ice_hockey"], descriptions) == [
        "things people eat and drink", "sport", "ice hockey"]

    with pytest.raises(DataNotFoundError, match="--label-descriptions.*missing.csv.*does not exist") as missing:
        read_label_descriptions(tmp_path / "missing.csv", ["food"])
    assert "label, description" in str(missing.value)

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("label,description\nfood,eat\nfoood,typo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"unknown.csv row 3: label 'foood' is not a class.*food, sport.*fix the label"):
        read_label_descriptions(unknown, ["food", "sport"])

    columns = tmp_path / "columns.csv"
    columns.write_text("class,text\nfood,eat\n", encoding="utf-8")
    with pytest.raises(DataError, match="columns.csv must have the columns label, description; found class, text"):
        read_label_descriptions(columns, ["food"])

    empty = tmp_path / "empty.csv"
    empty.write_text("label,description\nfood,\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 2: the description of 'food' is empty"):
        read_label_descriptions(empty, ["food"])


def test_tune_searches_the_contrastive_space(tiny_text_model: Path, tmp_path: Path) -> None:
    from synthetic_texts import synthetic_dataset
    from transferkit.workflows.tune import tune

    storage = f"sqlite:///{tmp_path / 's.db'}"
    result = tune(synthetic_dataset(6), strategy="contrastive", backbone=str(tiny_text_model), epochs=1,
                  batch_size=8, augment="none", tracking_uri="off", device="cpu", progress=False, n_trials=2,
                  storage=storage, work_dir=str(tmp_path / "work"))
    assert result.n_complete == 2
    assert {"lr", "contrastive.temperature", "contrastive.top_layers"} <= set(result.best_params)
