"""lp-ft, l2sp and lora on tiny models: the probe becomes the head, the penalty holds weights near the start,
adapters train while the base stays bit-identical, and merging gives the outputs of the unmerged model."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

import transferkit as tk
from conftest import TEXTS, TINY_IMAGE_BACKBONE, _class_image
from transferkit.backbones import create_backbone
from transferkit.config import make_config
from transferkit.data.dataset import concat
from transferkit.data.sources import from_arrays
from transferkit.errors import ConfigError
from transferkit.models.heads import LinearHead
from transferkit.models.model import TransferModel
from transferkit.strategies.l2sp import L2SP
from transferkit.strategies.lora import default_targets
from transferkit.strategies.lp_ft import LinearProbeThenFineTune
from transferkit.strategies.options import L2SPConfig
from transferkit.strategies.run import train_with_strategy


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    labels = [name for name in ("cat", "dog", "fox") for _ in range(10)]
    arrays = np.stack([_class_image(rng, ("cat", "dog", "fox").index(name), size=24) for name in labels])
    data = from_arrays(arrays, labels, origin="tiny-images")
    return data.subset(np.arange(0, 30, 3)), data.subset(np.setdiff1d(np.arange(30), np.arange(0, 30, 3)))


@pytest.fixture(scope="module")
def texts():
    rows = [(t, label) for label, items in TEXTS.items() for t in items]
    data = from_arrays([t for t, _ in rows], [label for _, label in rows], origin="tiny-texts")
    return data.subset(np.arange(0, 16, 2)), data.subset(np.arange(1, 16, 2))


def config(tmp_path: Path, strategy: str, **options):
    values = dict(strategy=strategy, epochs=2, batch_size=4, tracking_uri="off", progress=False, no_cache=True,
                  work_dir=str(tmp_path / "work"), augment="none", device="cpu", patience=0)
    values.update(options)
    return make_config(**values)


def distance(a: torch.nn.Module, start: dict[str, torch.Tensor]) -> float:
    return float(sum((p.detach() - start[n]).pow(2).sum() for n, p in a.named_parameters() if n in start))


# --- lp-ft ----------------------------------------------------------------------------------------------------

def test_lp_ft_head_starts_as_the_probe(images, tmp_path: Path) -> None:
    train, val = images
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    model = TransferModel(backbone, LinearHead(backbone.num_features, 3), train.classes)
    strategy = LinearProbeThenFineTune()
    strategy.prepare(model, {"train": train, "val": val, "classes": train.classes,
                             "config": config(tmp_path, "lp-ft")})
    expected = strategy.probe_.to_head()
    for key, value in expected.state_dict().items():
        assert torch.equal(model.head.state_dict()[key], value), key
    # the model's probabilities before fine-tuning are the probe's
    from transferkit.features.extract import extract_features

    features = extract_features(backbone, val, device="cpu", progress=False)
    np.testing.assert_allclose(model.head_proba(features), strategy.probe_.predict_proba(features), atol=1e-5)
    assert strategy.describe(model)["probe_C"] == strategy.probe_.C_
    assert strategy.param_groups(model, 1e-4)[-1].lr == 1e-4  # the probed head trains at the backbone's rate


def test_lp_ft_trains_backbone_and_probed_head(images, tmp_path: Path) -> None:
    train, val = images
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    start = {k: v.detach().clone() for k, v in backbone.named_parameters()}
    trained = train_with_strategy(config(tmp_path, "lp-ft", lr=1e-2, finetune={"keep_probe": False}), backbone,
                                  train, val, train.classes)
    assert trained.model.strategy == "lp-ft" and "probe_C" in trained.facts
    assert distance(trained.model.backbone, start) > 0 and "final_choice" not in trained.facts


# 2.0 wrecks the weights within an epoch without making the loss NaN (which would stop the run)
@pytest.mark.parametrize("lr", [2.0, 1e-2])
def test_lp_ft_keeps_the_probe_unless_fine_tuning_beats_it_on_validation(images, tmp_path: Path, lr: float) -> None:
    train, val = images
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    start = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    trained = train_with_strategy(config(tmp_path, "lp-ft", lr=lr, epochs=1), backbone, train, val, train.classes)
    choice = trained.facts["final_choice"]
    probe_acc, tuned_acc = choice["probe_val_accuracy"], choice["finetuned_val_accuracy"]
    assert choice["kept"] == ("probe" if probe_acc > tuned_acc + 1e-6 else "fine-tuned"), choice
    assert "probe_refit_on" not in choice  # the validation data was given: it is not trained on
    moved = sum(not torch.equal(v, start[k]) for k, v in trained.model.backbone.state_dict().items())
    if choice["kept"] == "probe":  # back to the pretrained weights and the probe head, exactly
        assert moved == 0
        features = torch.as_tensor(np.stack([backbone.prepare(x) for x in val.items]))
        with torch.no_grad():
            accuracy = float((trained.model(features).argmax(1).numpy() == val.label_array(train.classes)).mean())
        assert accuracy == pytest.approx(probe_acc)
    else:
        assert moved > 0 and tuned_acc >= probe_acc - 1e-6
    if lr == 2.0:  # a learning rate that wrecks the weights cannot beat the probe
        assert choice["kept"] == "probe", choice


def test_a_kept_probe_is_fitted_again_on_the_held_out_validation_examples_too(images, tmp_path: Path) -> None:
    from transferkit.features.extract import extract_features
    from transferkit.estimators.linear_probe import LinearProbe

    train, other = images
    data = concat([train, other], origin="tiny-images")
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    features = extract_features(backbone, data, device="cpu", progress=False)
    trained = train_with_strategy(config(tmp_path, "lp-ft", lr=2.0, epochs=1), backbone, data, None, data.classes)
    choice = trained.facts["final_choice"]
    assert choice["kept"] == "probe" and choice["probe_refit_on"] == len(data)
    # the probe of --strategy linear-probe on all of it (C by cross-validation again)
    expected = LinearProbe(random_state=0).fit(features, data.label_array(data.classes)).predict_proba(features)
    # (the same optimum; L-BFGS sees the examples in another order, hence the tolerance)
    np.testing.assert_allclose(trained.model.head_proba(features), expected, atol=1e-3)


# --- l2sp -----------------------------------------------------------------------------------------------------

def test_l2sp_adds_its_term_and_holds_weights_nearer_the_start(images, tmp_path: Path) -> None:
    train, val = images
    distances = {}
    for alpha in (0.0, 50.0):
        backbone = create_backbone(TINY_IMAGE_BACKBONE)
        start = {k: v.detach().clone() for k, v in backbone.named_parameters()}
        strategy = L2SP(L2SPConfig(alpha=alpha, beta=0.0))
        trained = train_with_strategy(config(tmp_path / str(alpha), "l2sp", lr=3e-2, epochs=3), backbone, train,
                                      val, train.classes, strategy=strategy)
        distances[alpha] = distance(trained.model.backbone, start)
        terms = strategy.loss_terms(trained.model, backbone.collate([backbone.prepare(x) for x in val.items[:2]]),
                                    torch.tensor([0, 1]))
        assert set(terms) == {"cross_entropy", "l2sp"}
        assert float(terms["l2sp"].detach()) == pytest.approx(alpha / 2 * distances[alpha], rel=1e-4)
        assert all(g.weight_decay == 0.0 for g in strategy.param_groups(trained.model, 1e-3))
    assert 0 < distances[50.0] < distances[0.0]


# --- lora -----------------------------------------------------------------------------------------------------

class AtTrainEnd(pl.Callback):
    """Keeps the (unmerged) model's base weights, adapter weights and eval-mode logits on a fixed batch."""

    def __init__(self, batch) -> None:
        self.batch = batch

    def on_train_end(self, trainer, pl_module) -> None:
        model = pl_module.model
        self.base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p.detach().clone()
                     for n, p in model.backbone.named_parameters() if "lora_" not in n}
        self.lora_b = [p.detach().clone() for n, p in model.backbone.named_parameters() if "lora_B" in n]
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        model.eval()
        with torch.no_grad():
            self.logits = model(self.batch).clone()
        model.train()


@pytest.mark.parametrize("kind", ["text", "image"])
def test_lora_trains_adapters_only_and_merging_keeps_the_outputs(kind, texts, images, tiny_text_model,
                                                                  tmp_path: Path) -> None:
    train, val = texts if kind == "text" else images
    backbone = create_backbone(str(tiny_text_model)) if kind == "text" else create_backbone(TINY_IMAGE_BACKBONE)
    start = {k: v.detach().clone() for k, v in backbone.named_parameters()}
    batch = backbone.collate([backbone.prepare(x) for x in val.items[:4]])
    record = AtTrainEnd(batch)
    trained = train_with_strategy(config(tmp_path, "lora", lr=5e-2, lora={"rank": 2}), backbone, train, val,
                                  train.classes, callbacks=[record])
    # the frozen base: bit-identical; the adapters: moved away from their zero start
    assert record.base.keys() == start.keys()
    for name, value in start.items():
        assert torch.equal(record.base[name], value), name
    assert record.lora_b and any(float(b.abs().max()) > 0 for b in record.lora_b)
    assert all("lora_" in n or n.startswith("head.") for n in record.trainable)
    # merged: a plain backbone again (no adapters), computing what the unmerged one did
    assert not any("lora_" in n for n, _ in trained.model.named_parameters())
    assert sorted(trained.model.backbone.state_dict()) == sorted(backbone_state_keys(kind, tiny_text_model))
    with torch.no_grad():
        merged = trained.model.eval()(batch)
    torch.testing.assert_close(merged, record.logits, atol=1e-5, rtol=1e-5)
    assert trained.facts["trainable_parameters"] < 0.2 * trained.facts["total_parameters"]


def backbone_state_keys(kind: str, tiny_text_model: Path) -> list[str]:
    fresh = create_backbone(str(tiny_text_model)) if kind == "text" else create_backbone(TINY_IMAGE_BACKBONE)
    return list(fresh.state_dict())


def test_lora_default_targets() -> None:
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=16))
    assert [n.rsplit(".", 1)[-1] for n in default_targets(bert)] == ["query", "value"] * 2
    cnn = create_backbone(TINY_IMAGE_BACKBONE).model
    names = default_targets(cnn)
    modules = dict(cnn.named_modules())
    assert names and "classifier" not in names
    assert all(isinstance(modules[n], torch.nn.Linear) or modules[n].kernel_size == (1, 1) for n in names)


def test_lora_targets_that_match_nothing_fail_before_training(texts, tiny_text_model, tmp_path: Path) -> None:
    train, val = texts
    with pytest.raises(ConfigError, match="'nonexistent' matches no linear"):
        train_with_strategy(config(tmp_path, "lora", lora={"targets": ["nonexistent"]}),
                            create_backbone(str(tiny_text_model)), train, val, train.classes)


def test_lora_model_saves_merged_and_reloads(texts, tiny_text_model, tmp_path: Path) -> None:
    train, test = texts
    out = tmp_path / "model"
    result = tk.fit(train, test=test, backbone=str(tiny_text_model), strategy="lora", epochs=1, batch_size=4,
                    output=str(out), tracking_uri="off", progress=False, work_dir=str(tmp_path / "work"),
                    baselines=["raw"], device="cpu")
    assert json.loads((out / "config.json").read_text())["strategy"] == "lora"
    reloaded = tk.load_model(out)
    np.testing.assert_allclose(result.model.predict_proba(test, device="cpu", progress=False),
                               reloaded.predict_proba(test, device="cpu", progress=False), atol=1e-6)


def test_a_dead_feature_dimension_does_not_blow_up_the_probe_head() -> None:
    from transferkit.estimators.linear_probe import LinearProbe

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    X[:, 3] = rng.normal(size=60) * 1e-33  # a dead dimension, as all-MiniLM-L6-v2 has two
    y = (X[:, 0] > 0).astype(int)
    head = LinearProbe(C=1.0).fit(X, y).to_head()
    assert float(head.scale[3]) == 1.0
    nudged = X.copy()
    nudged[:, 3] += 1e-6  # a rounding-sized change of the features, as fine-tuning makes at once
    with torch.no_grad():
        before, after = head(torch.from_numpy(X)), head(torch.from_numpy(nudged))
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
