"""finetune on a tiny CNN: what is frozen stays bit-identical, what trains moves, BatchNorm of frozen parts stays in
eval mode, per-layer learning rates and gradual unfreezing do what was asked, and the saved model reloads."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE, _class_image
from transferkit.backbones import create_backbone
from transferkit.config import make_config
from transferkit.data.sources import from_arrays
from transferkit.errors import ConfigError
from transferkit.strategies.run import train_with_strategy


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    labels = [name for name in ("cat", "dog", "fox") for _ in range(10)]
    arrays = np.stack([_class_image(rng, ("cat", "dog", "fox").index(name), size=24) for name in labels])
    data = from_arrays(arrays, labels, origin="tiny-images")
    return data.subset(np.arange(0, 30, 3)), data.subset(np.setdiff1d(np.arange(30), np.arange(0, 30, 3)))


def config(tmp_path: Path, **options):
    values = dict(strategy="finetune", epochs=2, batch_size=8, tracking_uri="off", progress=False,
                  work_dir=str(tmp_path / "work"), augment="none", device="cpu", patience=0)
    values.update(options)
    return make_config(**values)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def group_states(backbone) -> list[dict[str, torch.Tensor]]:
    return [snapshot(group) for group in backbone.layer_groups()]


class BatchNormModes(pl.Callback):
    """Records, at every training step, which BatchNorm layers are in training mode, by layer group."""

    def __init__(self, backbone) -> None:
        self.groups = backbone.layer_groups()
        self.modes: list[list[set[bool]]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.modes.append([{m.training for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)}
                           for g in self.groups])


class TrainableGroups(pl.Callback):
    """Which layer groups are trainable in each epoch, and their weights at the end of each epoch."""

    def __init__(self, backbone) -> None:
        self.backbone = backbone
        self.groups = backbone.layer_groups()
        self.by_epoch: list[list[bool]] = []
        self.states: list[list[dict[str, torch.Tensor]]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.by_epoch.append([all(p.requires_grad for p in g.parameters()) for g in self.groups])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append(group_states(self.backbone))


class InitialLRs(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizers[0].param_groups}


def test_freeze_first_groups_keeps_them_bit_identical_and_in_eval_mode(images, tmp_path: Path) -> None:
    train, val = images
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    n = len(backbone.layer_groups())
    before = group_states(backbone)
    classifier_before = snapshot(backbone.model.get_classifier())
    modes = BatchNormModes(backbone)
    trained = train_with_strategy(config(tmp_path, finetune={"freeze": 2}, lr=1e-2), backbone, train, val,
                                  train.classes, callbacks=[modes])
    after = group_states(trained.model.backbone)
    for index in range(n):
        same = all(torch.equal(before[index][k], after[index][k]) for k in before[index])
        assert same == (index < 2), f"layer group {index}: frozen={index < 2} but unchanged={same}"
    assert all(torch.equal(v, snapshot(backbone.model.get_classifier())[k]) for k, v in classifier_before.items())
    # BatchNorm running statistics of frozen groups are buffers: unchanged too (checked above); and their mode:
    assert modes.modes and all(m[0] == {False} and m[1] == {False} for m in modes.modes)
    assert all(True in m[n - 1] for m in modes.modes if m[n - 1])
    assert trained.facts["trainable_parameters"] < trained.facts["total_parameters"]


def test_full_finetuning_moves_every_group_and_the_head(images, tmp_path: Path) -> None:
    train, val = images
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    before = group_states(backbone)
    trained = train_with_strategy(config(tmp_path, lr=1e-2), backbone, train, val, train.classes)
    after = group_states(trained.model.backbone)
    for index, (a, b) in enumerate(zip(before, after)):
        assert any(not torch.equal(a[k], b[k]) for k in a), f"layer group {index} did not train"


def test_per_layer_learning_rates_are_what_was_asked(images, tmp_path: Path) -> None:
    train, val = images
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    n = len(backbone.layer_groups())
    record = InitialLRs()
    train_with_strategy(config(tmp_path, epochs=1, lr=1e-3, head_lr=5e-3, finetune={"freeze": 1, "layer_lr_decay": 0.5}),
                        backbone, train, val, train.classes, callbacks=[record])
    expected = {f"backbone.group{i}": 1e-3 * 0.5 ** (n - i) for i in range(1, n)}
    expected["head"] = 5e-3
    got = {name.removesuffix(".no_decay"): lr for name, lr in record.lrs.items()}
    assert got == pytest.approx(expected)
    assert "backbone.group0" not in got


def test_gradual_unfreezing_follows_the_schedule(images, tmp_path: Path) -> None:
    train, val = images
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    n = len(backbone.layer_groups())
    before = group_states(backbone)
    record = TrainableGroups(backbone)
    train_with_strategy(config(tmp_path, epochs=3, lr=1e-2, finetune={"unfreeze_every": 1}), backbone, train, val,
                        train.classes, callbacks=[record])
    assert record.by_epoch == [[False] * n, [False] * (n - 1) + [True], [False] * (n - 2) + [True, True]]
    for epoch, state in enumerate(record.states):
        for index in range(n):
            unchanged = all(torch.equal(before[index][k], state[index][k]) for k in before[index])
            assert unchanged == (index < n - epoch), (epoch, index)


def test_freeze_beyond_the_layer_groups_fails_before_training(images, tmp_path: Path) -> None:
    train, val = images
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    n = len(backbone.layer_groups())
    with pytest.raises(ConfigError, match=rf"'finetune.freeze' \(--freeze\) is {n + 1}.*has {n} layer groups"):
        train_with_strategy(config(tmp_path, finetune={"freeze": n + 1}), backbone, train, val, train.classes)
    assert not (tmp_path / "work").exists()


def test_gradual_unfreezing_with_several_processes_is_refused(images, tmp_path: Path) -> None:
    train, val = images
    with pytest.raises(ConfigError, match="--unfreeze-every"):
        train_with_strategy(config(tmp_path, devices=2, finetune={"unfreeze_every": 1}),
                            create_backbone(TINY_IMAGE_BACKBONE), train, val, train.classes)


def test_the_global_batch_must_split_over_every_process_of_every_machine(images, tmp_path: Path) -> None:
    train, val = images
    with pytest.raises(ConfigError, match=r"'batch_size' \(6\).*'devices' x 'num_nodes' = 4"):
        train_with_strategy(config(tmp_path, devices=2, num_nodes=2, batch_size=6),
                            create_backbone(TINY_IMAGE_BACKBONE), train, val, train.classes)
    assert not (tmp_path / "work").exists()


def test_fit_saves_the_finetuned_backbone_and_reloads_to_the_same_predictions(images, tmp_path: Path) -> None:
    train, test = images
    out = tmp_path / "model"
    result = tk.fit(train, test=test, backbone=TINY_IMAGE_BACKBONE, strategy="finetune", epochs=2, batch_size=8,
                    output=str(out), tracking_uri="off", progress=False, work_dir=str(tmp_path / "work"),
                    baselines=["raw"], lr=1e-2, device="cpu")
    saved = json.loads((out / "config.json").read_text())
    assert saved["strategy"] == "finetune" and saved["backbone"]["weights_included"] is True
    assert (out / "training_log.csv").read_text().startswith("epoch,")
    reloaded = tk.load_model(out)
    assert reloaded.backbone.weights_digest() == result.model.backbone.weights_digest()
    before = result.model.predict_proba(test, device="cpu", progress=False)
    after = reloaded.predict_proba(test, device="cpu", progress=False)
    np.testing.assert_allclose(before, after, atol=1e-6)
    assert result.skipped_baselines == {"scratch": "not requested (--baselines)"}
    assert "not run: scratch" in (out / "summary.txt").read_text()


def test_default_baselines_follow_the_strategy_and_the_data_size() -> None:
    from transferkit.evaluation.baselines import SCRATCH_AUTO_MAX_EXAMPLES, choose_baselines

    assert choose_baselines(None, "finetune", 500) == (["raw", "scratch"], {})
    names, skipped = choose_baselines(None, "lora", SCRATCH_AUTO_MAX_EXAMPLES + 1)
    assert names == ["raw"] and "--baselines raw,scratch" in skipped["scratch"]
    names, skipped = choose_baselines(None, "linear-probe", 100)
    assert names == ["raw"] and "linear probe" in skipped["scratch"]
    assert choose_baselines(["scratch"], "linear-probe", 100) == (["scratch"], {"raw": "not requested (--baselines)"})


def test_options_are_reachable_from_python_with_the_config_objects() -> None:
    config = tk.FitConfig(strategy="lora", lora=tk.LoraConfig(rank=4), finetune=tk.FineTuneConfig(freeze=1))
    assert config.lora.rank == 4 and config.finetune.freeze == 1 and config.l2sp == tk.L2SPConfig()
    with pytest.raises(ConfigError, match="option 'finetune.layer_lr_decay'"):
        make_config(finetune={"layer_lr_decay": 1.5})


@pytest.mark.parametrize("strategy, bn_statistics, frozen", [("finetune", "frozen", True), ("lp-ft", "auto", True),
                                                              ("finetune", "auto", False)])
def test_batchnorm_statistics_frozen_or_updated(strategy, bn_statistics, frozen, images, tmp_path: Path) -> None:
    train, val = images
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    bn = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats_before = [m.running_mean.clone() for m in bn]
    weights_before = [m.weight.detach().clone() for m in bn]
    modes = BatchNormModes(backbone)
    train_with_strategy(config(tmp_path, strategy=strategy, lr=1e-2, no_cache=True,
                               finetune={"bn_statistics": bn_statistics}),
                        backbone, train, val, train.classes, callbacks=[modes])
    assert all(m == [{not frozen}] * len(m) for m in modes.modes)
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stats_before, bn)) == frozen
    assert any(not torch.equal(a, m.weight) for a, m in zip(weights_before, bn))  # their weights train either way


def test_auto_batchnorm_statistics_follow_pretraining_and_data_size() -> None:
    from transferkit.strategies.finetune import FineTune
    from transferkit.strategies.lp_ft import LinearProbeThenFineTune

    pretrained = create_backbone(TINY_IMAGE_BACKBONE)
    pretrained.name = "timm:test_efficientnet"  # as a pretrained backbone is named
    random = create_backbone(TINY_IMAGE_BACKBONE)
    finetune, lp_ft = FineTune(), LinearProbeThenFineTune()
    limit = finetune.small_data_batchnorm_limit
    assert finetune.keeps_pretrained_batchnorm(pretrained, 1_000)
    assert not finetune.keeps_pretrained_batchnorm(pretrained, limit + 1)
    assert not finetune.keeps_pretrained_batchnorm(random, 1_000)  # the scratch baseline must learn its statistics
    assert lp_ft.keeps_pretrained_batchnorm(pretrained, limit + 1) and lp_ft.keeps_pretrained_batchnorm(random, 10)


def test_a_finished_fit_leaves_logs_but_no_weights_in_its_run_folder(images, tmp_path: Path) -> None:
    train, test = images
    tk.fit(train, test=test, backbone=TINY_IMAGE_BACKBONE, strategy="finetune", epochs=1, batch_size=8,
           tracking_uri="off", progress=False, work_dir=str(tmp_path / "work"), baselines=["scratch"], device="cpu")
    assert (tmp_path / "work" / "finetune" / "metrics.csv").is_file()
    assert (tmp_path / "work" / "scratch" / "metrics.csv").is_file()
    assert not list((tmp_path / "work").rglob("*.pt")) and not list((tmp_path / "work").rglob("*.ckpt"))


def test_resume_reuses_a_finished_stage_and_starts_the_one_not_reached(images, tmp_path: Path, monkeypatch,
                                                                       caplog) -> None:
    import logging

    from transferkit.evaluation import baselines as baselines_module

    train, test = images
    options = dict(test=test, backbone=TINY_IMAGE_BACKBONE, strategy="finetune", epochs=1, batch_size=8, lr=1e-2,
                   tracking_uri="off", progress=False, work_dir=str(tmp_path / "work"), baselines=["raw", "scratch"],
                   device="cpu", output=str(tmp_path / "model"))
    reference = tk.fit(train, **{**options, "work_dir": str(tmp_path / "reference"),
                                 "output": str(tmp_path / "reference-model")})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C before the scratch baseline (a failing baseline would only be a note)

    with monkeypatch.context() as patch:
        patch.setitem(baselines_module.BASELINES, "scratch", crash)
        with pytest.raises(KeyboardInterrupt):
            tk.fit(train, **options)
    assert (tmp_path / "work" / "finetune" / "final-weights.pt").is_file()
    assert tk.load_model(tmp_path / "model") is not None  # saved before the baselines; --resume replaces it
    assert not (tmp_path / "work" / "scratch").exists()
    caplog.set_level(logging.INFO, logger="transferkit")
    resumed = tk.fit(train, **{**options, "resume": True})
    assert any("finished in the interrupted run" in r.getMessage() for r in caplog.records)
    assert resumed.accuracy == reference.accuracy
    assert resumed.model.backbone.weights_digest() == reference.model.backbone.weights_digest()
    assert resumed.baselines["scratch"]["accuracy"] == reference.baselines["scratch"]["accuracy"]
