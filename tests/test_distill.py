"""Distillation: the loss equals its formula on fixed logits, reduces to cross-entropy at T = 1 with no soft weight,
ensembles average tempered probabilities, and `distill` trains tiny students end to end (teacher outputs cached,
feature matching, unlabelled data, the saved student loads and predicts), from Python and from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE, _class_image
from transferkit.data.sources import from_arrays
from transferkit.errors import ConfigError
from transferkit.losses.distillation import DistillationLoss
from transferkit.strategies.distill import UNLABELLED, distillation_terms, ensemble_soft_logits

STUDENT_LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
TEACHER_LOGITS = torch.tensor([[3.0, 0.0, 1.0], [-1.0, 0.5, 2.0], [0.0, 2.5, -1.0], [1.0, -1.0, 0.0]])
LABELS = torch.tensor([0, 2, 1, 0])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _definition(s: np.ndarray, t: np.ndarray, y: np.ndarray | None, temperature: float, alpha: float) -> float:
    """Hinton et al.'s loss written out in numpy: T^2 mean KL(p_t || p_s) at temperature T, mixed with CE."""
    p_t, p_s = _softmax(t / temperature), _softmax(s / temperature)
    soft = temperature ** 2 * np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1))
    if y is None:
        return float(soft)
    ce = -np.mean(np.log(_softmax(s)[np.arange(len(y)), y]))
    return float(alpha * soft + (1 - alpha) * ce)


@pytest.mark.parametrize("temperature, alpha", [(4.0, 0.9), (2.0, 0.5), (1.0, 1.0), (7.5, 0.0)])
def test_distillation_loss_equals_its_definition_on_fixed_logits(temperature: float, alpha: float) -> None:
    s, t, y = STUDENT_LOGITS.numpy().astype(np.float64), TEACHER_LOGITS.numpy().astype(np.float64), LABELS.numpy()
    expected = _definition(s, t, y, temperature, alpha)
    got = DistillationLoss(temperature, alpha)(STUDENT_LOGITS, TEACHER_LOGITS, LABELS)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    terms = distillation_terms(STUDENT_LOGITS, TEACHER_LOGITS, LABELS, temperature=temperature, alpha=alpha)
    assert set(terms) == {"soft_targets", "cross_entropy"}
    assert float(sum(terms.values())) == pytest.approx(expected, rel=1e-5)
    unlabelled = DistillationLoss(temperature, alpha)(STUDENT_LOGITS, TEACHER_LOGITS)
    assert float(unlabelled) == pytest.approx(_definition(s, t, None, temperature, alpha), rel=1e-5)


def test_at_temperature_one_with_no_soft_weight_it_is_plain_cross_entropy() -> None:
    plain = F.cross_entropy(STUDENT_LOGITS, LABELS)
    assert float(DistillationLoss(1.0, 0.0)(STUDENT_LOGITS, TEACHER_LOGITS, LABELS)) == pytest.approx(float(plain))
    terms = distillation_terms(STUDENT_LOGITS, TEACHER_LOGITS, LABELS, temperature=1.0, alpha=0.0)
    assert float(terms["soft_targets"]) == 0.0
    assert float(terms["cross_entropy"]) == pytest.approx(float(plain), rel=1e-6)
    # the teacher no longer matters at all
    other = distillation_terms(STUDENT_LOGITS, -5 * TEACHER_LOGITS, LABELS, temperature=1.0, alpha=0.0)
    assert float(sum(other.values())) == pytest.approx(float(plain), rel=1e-6)


def test_unlabelled_examples_add_the_soft_term_only_and_unweighted() -> None:
    labels = torch.tensor([0, UNLABELLED, 1, UNLABELLED])
    terms = distillation_terms(STUDENT_LOGITS, TEACHER_LOGITS, labels, temperature=3.0, alpha=0.25)
    s, t = STUDENT_LOGITS.numpy().astype(np.float64), TEACHER_LOGITS.numpy().astype(np.float64)
    p_t, p_s = _softmax(t / 3.0), _softmax(s / 3.0)
    per_example = 9.0 * np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1)
    weights = np.array([0.25, 1.0, 0.25, 1.0])
    assert float(terms["soft_targets"]) == pytest.approx(float(np.sum(weights * per_example) / 4), rel=1e-5)
    ce = -np.log(_softmax(s)[[0, 2], [0, 1]])
    assert float(terms["cross_entropy"]) == pytest.approx(float(0.75 * ce.sum() / 4), rel=1e-5)
    only_unlabelled = distillation_terms(STUDENT_LOGITS, TEACHER_LOGITS, torch.full((4,), UNLABELLED),
                                         temperature=3.0, alpha=0.25)
    assert float(only_unlabelled["cross_entropy"]) == 0.0
    assert float(only_unlabelled["soft_targets"]) == pytest.approx(float(per_example.mean()), rel=1e-5)


def test_ensemble_soft_targets_are_the_mean_of_the_tempered_probabilities() -> None:
    teachers = torch.stack([TEACHER_LOGITS, STUDENT_LOGITS, -TEACHER_LOGITS])
    temperature = 2.5
    logits = ensemble_soft_logits(teachers, temperature)
    expected = torch.softmax(teachers / temperature, dim=-1).mean(dim=0)
    torch.testing.assert_close(torch.softmax(logits / temperature, dim=-1), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(ensemble_soft_logits(teachers[:1], temperature), TEACHER_LOGITS)


# --- end to end on tiny models --------------------------------------------------------------------------------

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    labels = [name for name in CLASSES for _ in range(14)]
    arrays = np.stack([_class_image(rng, CLASSES.index(name), size=24) for name in labels])
    data = from_arrays(arrays, labels, origin="tiny-images")
    test = np.arange(0, 42, 3)
    return data.subset(np.setdiff1d(np.arange(42), test)), data.subset(test)


def _common(tmp: Path, **options):
    values = dict(epochs=1, batch_size=8, tracking_uri="off", progress=False, device="cpu", augment="none",
                  patience=0, work_dir=str(tmp / "work"), cache_dir=str(tmp / "features"))
    values.update(options)
    return values


@pytest.fixture(scope="module")
def teacher(images, tmp_path_factory) -> Path:
    train, test = images
    folder = tmp_path_factory.mktemp("teacher") / "model"
    tk.fit(train, test=test, backbone=TINY_IMAGE_BACKBONE, strategy="finetune", output=str(folder), baselines=["raw"],
           lr=1e-2, **_common(folder.parent, epochs=3))
    return folder


def test_distill_trains_a_student_that_saves_loads_and_predicts(images, teacher, tmp_path: Path) -> None:
    train, test = images
    out = tmp_path / "student"
    result = tk.distill(train, teacher=teacher, student=TINY_IMAGE_BACKBONE, test=test, output=str(out), lr=1e-2,
                        compare_plain=True, **_common(tmp_path))
    assert result.model.strategy == "distill" and 0.0 <= result.accuracy <= 1.0
    assert result.plain is not None and result.comparison is not None
    assert result.teachers[0]["path"] == str(teacher) and result.facts["live_teachers"] is False
    assert result.facts["teacher_outputs_from_cache"] == [0]  # first run: computed
    assert result.facts["teacher_train_accuracy"] > 0.5       # the teacher's outputs belong to these examples
    assert "distill_projection" not in result.model.state_dict()
    saved = json.loads((out / "config.json").read_text())
    assert saved["strategy"] == "distill" and saved["backbone"]["weights_included"] is True
    run_config = (out / "run_config.yaml").read_text()
    assert "temperature: 4.0" in run_config and str(teacher) in run_config
    reloaded = tk.load_model(out)
    np.testing.assert_allclose(reloaded.predict_proba(test, device="cpu", progress=False),
                               result.model.predict_proba(test, device="cpu", progress=False), atol=1e-6)
    rows = tk.predict(out, test.items[:4], progress=False)
    assert len(rows) == 4 and rows[0]["label"] in CLASSES
    assert "distill" in (out / "summary.txt").read_text()
    assert (out / "report.html").is_file()

    again = tk.distill(train, teacher=teacher, student=TINY_IMAGE_BACKBONE, test=test, lr=1e-2, **_common(tmp_path))
    n_train = again.facts["n_train"]
    assert again.facts["teacher_outputs_from_cache"] == [n_train]  # second run: the teacher did not run


def test_feature_matching_ensembles_and_unlabelled_data(images, teacher, tmp_path: Path) -> None:
    train, test = images
    unlabelled = from_arrays(np.asarray(test.items), None, origin="unlabelled")
    result = tk.distill(train, teacher=[teacher, teacher], student=TINY_IMAGE_BACKBONE, test=test, lr=1e-2,
                        unlabelled=unlabelled, distill={"feature_weight": 0.5, "temperature": 2.0},
                        **_common(tmp_path))
    facts = result.facts
    assert facts["n_unlabelled"] == len(test) and len(facts["teacher_parameters"]) == 2
    history = facts["history"]
    assert history and all(np.isfinite(row["train_loss"]) for row in history)
    assert "ensemble_accuracy" in result.config
    assert not any(k.startswith("distill_projection") for k in result.model.state_dict())
    # the projection's width is the teachers' concatenated features
    assert facts["feature_weight"] == 0.5


@pytest.mark.parametrize("live", [False, True])
def test_soft_targets_use_each_teachers_calibrated_temperature(images, teacher, live: bool) -> None:
    from transferkit.backbones import create_backbone
    from transferkit.strategies.distill import Distill

    train, _ = images
    plain, calibrated = tk.load_model(teacher), tk.load_model(teacher)
    calibrated.temperature = 2.5
    outputs = []
    for model in (plain, calibrated):
        strategy = Distill([model], live_teachers=live, device="cpu")
        strategy.options = strategy.options.model_copy(update={"cache_teacher": False})
        strategy._check_classes(train.classes)
        if live:
            backbone = create_backbone(TINY_IMAGE_BACKBONE)
            batch = backbone.collate([backbone.prepare(x) for x in train.items[:6]])
            outputs.append(strategy._live_outputs(batch)[0])
        else:
            outputs.append(strategy._teacher_outputs(train.subset(np.arange(6)))[0])
    torch.testing.assert_close(outputs[1], outputs[0] / 2.5)
    assert outputs[0].abs().max() > 0


def test_an_under_confident_teacher_is_named_in_a_warning(images, teacher) -> None:
    from transferkit.backbones import create_backbone
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel
    from transferkit.strategies.distill import Distill

    train, _ = images
    facts = {}
    for scale in (1.0, 0.01):  # logits shrunk 100x: the same argmax, near-uniform probabilities
        model = tk.load_model(teacher)
        with torch.no_grad():
            model.head.linear.weight.mul_(scale)
            model.head.linear.bias.mul_(scale)
        strategy = Distill([model], device="cpu")
        strategy.options = strategy.options.model_copy(update={"cache_teacher": False})
        student = create_backbone(TINY_IMAGE_BACKBONE)
        context = {"train": train, "val": train, "classes": train.classes, "config": None}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            strategy.prepare(TransferModel(student, LinearHead(student.num_features, len(CLASSES)), train.classes),
                             context)
        messages = [str(w.message) for w in caught if "under-confident" in str(w.message)]
        facts[scale] = (strategy.facts_["teacher_confidence"][0], messages)
    (sure, sure_warned), (shy, shy_warned) = facts[1.0], facts[0.01]
    assert shy["accuracy"] == sure["accuracy"] > 0.5 and shy["mean_top_probability"] < 0.5 < sure["mean_top_probability"]
    assert not sure_warned and len(shy_warned) == 1 and "teacher 1" in shy_warned[0] and "--calibrate" in shy_warned[0]


def test_teachers_see_the_augmented_batch_when_they_share_the_students_preprocessing(images, teacher,
                                                                                      tmp_path: Path) -> None:
    train, test = images
    result = tk.distill(train, teacher=teacher, student=TINY_IMAGE_BACKBONE, test=test, lr=1e-2,
                        **_common(tmp_path, augment="light", epochs=1))
    assert result.facts["live_teachers"] is True and "teacher_outputs_from_cache" not in result.facts


def test_mixup_mixes_the_batch_the_teachers_and_the_student_see(images, teacher, tmp_path: Path) -> None:
    from transferkit.strategies.distill import Distill, DistillOptions

    teacher_model = tk.load_model(teacher)
    strategy = Distill([teacher_model], DistillOptions(mixup=0.4, temperature=2.0, alpha=0.5))
    student = tk.load_model(teacher)  # a student of the teacher's own preprocessing
    student.train()
    strategy._check_classes(teacher_model.classes)
    strategy.live_ = True
    train, _ = images
    batch = torch.stack([teacher_model.backbone.prepare(x) for x in train.items[:6]])
    labels = torch.as_tensor(train.label_array(teacher_model.classes)[:6])
    targets = torch.stack([labels, torch.arange(6)], dim=1)
    torch.manual_seed(3)
    terms = strategy.loss_terms(student, batch, targets)
    torch.manual_seed(3)  # the same draw of lambda and of the permutation, done by hand
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    perm = torch.randperm(6)
    mixed = lam * batch + (1 - lam) * batch[perm]
    with torch.no_grad():
        t = teacher_model.head(teacher_model.backbone.forward_features(mixed)) / teacher_model.temperature
    s = student.head(student.backbone.forward_features(mixed))
    expected_soft = distillation_terms(s, t, labels, temperature=2.0, alpha=0.5)["soft_targets"]
    ce = lam * F.cross_entropy(s, labels) + (1 - lam) * F.cross_entropy(s, labels[perm])
    assert float(terms["soft_targets"].detach()) == pytest.approx(float(expected_soft.detach()), rel=1e-4)
    assert float(terms["cross_entropy"].detach()) == pytest.approx(float(0.5 * ce.detach()), rel=1e-4)
    assert not torch.allclose(mixed, batch)  # the batch was really mixed
    out = tmp_path / "student"
    result = tk.distill(train, teacher=teacher, student=TINY_IMAGE_BACKBONE, output=str(out), lr=1e-2,
                        distill={"mixup": 0.2}, **_common(tmp_path))
    assert result.facts["live_teachers"] is True and result.facts["mixup"] == 0.2


def test_bad_teachers_and_options_fail_before_training(images, teacher, tmp_path: Path) -> None:
    train, test = images
    with pytest.raises(ConfigError, match="no such model folder"):
        tk.distill(train, teacher=tmp_path / "missing", student=TINY_IMAGE_BACKBONE, **_common(tmp_path))
    with pytest.raises(ConfigError, match="use distill's own mixup"):
        tk.distill(train, teacher=teacher, student=TINY_IMAGE_BACKBONE, mixup=0.2, **_common(tmp_path))
    with pytest.raises(ConfigError, match="needs teachers that see the mixed images"):  # 32 px student, 24 px teacher
        tk.distill(train, teacher=teacher, student=TINY_IMAGE_BACKBONE, distill={"mixup": 0.2},
                   **_common(tmp_path, image_size=32))
    with pytest.raises(ConfigError, match="alpha"):
        tk.distill(train, teacher=teacher, student=TINY_IMAGE_BACKBONE, distill={"alpha": 1.5}, **_common(tmp_path))
    other = from_arrays(np.asarray(train.items), ["bird" if l == "cat" else l for l in train.labels], origin="other")
    with pytest.raises(ConfigError, match="does not know the classes"):
        tk.distill(other, teacher=teacher, student=TINY_IMAGE_BACKBONE, **_common(tmp_path))


def test_distill_command_end_to_end(images, teacher, tmp_path: Path) -> None:
    from PIL import Image

    train, _ = images
    root = tmp_path / "images"
    for index, (item, label) in enumerate(zip(train.items, train.labels)):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(item)).save(root / label / f"{index:03d}.png")
    out = tmp_path / "student"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "transferkit.cli.main", "distill", str(root), "--teacher",
                           str(teacher), "--student", TINY_IMAGE_BACKBONE, "--output", str(out), "--epochs", "1",
                           "--batch-size", "8", "--lr", "0.01", "--augment", "none", "--tracking-uri", "off",
                           "--device", "cpu", "--temperature", "2", "--alpha", "0.7", "--work-dir",
                           str(tmp_path / "work"), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "student" in proc.stdout and "teacher" in proc.stdout and f"saved: {out}" in proc.stdout
    assert tk.load_model(out).strategy == "distill"
    assert "temperature: 2.0" in (out / "run_config.yaml").read_text()
    bad = subprocess.run([sys.executable, "-m", "transferkit.cli.main", "distill", str(root), "--student",
                          TINY_IMAGE_BACKBONE], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "--teacher" in bad.stderr


def test_distillation_at_temperature_one_and_no_soft_weight_trains_the_plain_student(images, teacher,
                                                                                      tmp_path: Path) -> None:
    """Through the whole engine: the same seed, data and budget with T = 1 and alpha = 0 give the plain student."""
    train, test = images
    result = tk.distill(train, teacher=teacher, student=TINY_IMAGE_BACKBONE, test=test, lr=1e-2, compare_plain=True,
                        distill={"temperature": 1.0, "alpha": 0.0}, **_common(tmp_path, epochs=2))
    assert result.plain["accuracy"] == result.accuracy
    distilled = [row["train_loss"] for row in result.facts["history"]]
    assert all(np.isfinite(distilled))
    plain_model = tk.fit(train, test=test, backbone=TINY_IMAGE_BACKBONE, strategy="finetune", lr=1e-2,
                         baselines=["raw"], **_common(tmp_path / "plain", epochs=2)).model
    np.testing.assert_allclose(result.model.predict_proba(test, device="cpu", progress=False),
                               plain_model.predict_proba(test, device="cpu", progress=False), atol=1e-5)


def test_tune_searches_the_distillation_options(images, teacher, tmp_path: Path) -> None:
    import yaml

    from transferkit.workflows.tune import tune

    train, _ = images
    out = tmp_path / "tune"
    result = tune(train, strategy="distill", teacher=str(teacher), backbone=TINY_IMAGE_BACKBONE, n_trials=3,
                  pruning=False, output=str(out), lr=1e-3, **_common(tmp_path))
    assert result.n_complete == 3
    study = optuna_trials(out, result.study_name)
    assert study[0].params == {"distill.temperature": 4.0, "distill.alpha": 0.9, "lr": 1e-3, "weight_decay": 0.01}
    for trial in study:
        assert 1.0 <= trial.params["distill.temperature"] <= 8.0 and 0.3 <= trial.params["distill.alpha"] <= 1.0
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best["strategy"] == "distill" and best["teacher"] == [str(teacher)]
    from transferkit.strategies.distill_setup import make_distill_config

    config = make_distill_config(**{**best, **_common(tmp_path)})
    assert config.distill.temperature == pytest.approx(result.best_params["distill.temperature"])
    student = tk.distill(train, config=config)  # the best configuration runs as it is
    assert student.config["distill"]["alpha"] == pytest.approx(result.best_params["distill.alpha"])


def test_tune_checks_the_teachers_before_any_trial(images, teacher, tiny_text_model, tmp_path: Path) -> None:
    from transferkit.workflows.tune import tune

    train, _ = images
    with pytest.raises(ConfigError, match="give a teacher model folder"):
        tune(train, strategy="distill", storage=f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(ConfigError, match="no such model folder"):
        tune(train, strategy="distill", teacher=str(tmp_path / "missing"), storage=f"sqlite:///{tmp_path / 's.db'}")
    from synthetic_texts import synthetic_dataset

    text_teacher = tmp_path / "text-teacher"
    tk.fit(synthetic_dataset(4), backbone=str(tiny_text_model), output=str(text_teacher), baselines=[], report=False,
           **_common(tmp_path))
    with pytest.raises(ConfigError, match="teachers take text input but tiny-images holds image data"):
        tune(train, strategy="distill", teacher=str(text_teacher), storage=f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(ConfigError, match="options 'mixup' and 'cutmix'"):
        tune(train, strategy="distill", teacher=str(teacher), mixup=0.2, storage=f"sqlite:///{tmp_path / 's.db'}")


def optuna_trials(output: Path, study_name: str) -> list:
    optuna = pytest.importorskip("optuna")
    return optuna.load_study(study_name=study_name, storage=f"sqlite:///{(output / 'study.db').resolve()}").trials


def test_text_versions_drop_words_reproducibly_and_keep_the_original() -> None:
    from transferkit.strategies.distill import text_versions

    texts = ["the film was a quiet delight from start to finish", "bad", "two words"]
    versions = text_versions(texts, copies=3, dropout=0.3, seed=5)
    assert len(versions) == 12 and versions[0::4] == texts  # version 0 of each example is the text itself
    assert versions == text_versions(texts, copies=3, dropout=0.3, seed=5)
    assert versions != text_versions(texts, copies=3, dropout=0.3, seed=6)
    for index, text in enumerate(texts):
        words = text.split()
        for version in versions[index * 4 + 1: index * 4 + 4]:
            kept = version.split()
            assert 1 <= len(kept) <= len(words)
            it = iter(words)
            assert all(word in it for word in kept)  # words dropped, never reordered or invented
    assert any(len(v.split()) < 9 for v in versions[1:4])


def test_text_variants_train_from_cached_teacher_outputs_of_every_version(images, teacher, tiny_text_model,
                                                                           tmp_path: Path) -> None:
    from synthetic_texts import synthetic_dataset

    data = synthetic_dataset(10)
    text_teacher = tmp_path / "text-teacher"
    tk.fit(data, backbone=str(tiny_text_model), output=str(text_teacher), baselines=[], report=False,
           **_common(tmp_path))
    result = tk.distill(data, teacher=text_teacher, student=str(tiny_text_model), lr=1e-3, compare_plain=True,
                        distill={"variants": 2, "word_dropout": 0.2}, **_common(tmp_path, epochs=2))
    assert result.facts["variants"] == 2 and result.facts["live_teachers"] is False
    assert result.plain is not None and result.comparison is not None  # the plain student read the same versions
    assert 0.0 <= result.facts["teacher_train_accuracy"] <= 1.0
    # the student's examples point into the versions of their own example
    from transferkit.strategies.distill import Distill, DistillOptions, VersionedExamples

    strategy = Distill([tk.load_model(text_teacher)], DistillOptions(variants=3), cache_dir=str(tmp_path / "features"))
    train = data.subset(np.arange(6))
    student = tk.load_model(text_teacher)
    strategy.prepare(student, {"train": train, "classes": list(student.classes), "augmented": False})
    assert strategy._logits.shape[1] == 6 * 4
    examples = strategy.training_examples(train, train.label_array(student.classes), lambda text: text)
    assert isinstance(examples, VersionedExamples) and len(examples) == 6
    for index in range(6):
        text, (label, position) = examples[index]
        assert index * 4 <= position < index * 4 + 4 and text == strategy._version_items[position]
    with pytest.raises(ConfigError, match="word-dropout copies of texts"):
        tk.distill(images[0], teacher=teacher, student=TINY_IMAGE_BACKBONE, distill={"variants": 2},
                   **_common(tmp_path))
