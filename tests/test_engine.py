"""The training engine on tiny models: stopping, best checkpoint, resume, seeding, logs, per-group learning rates."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn

from transferkit.engine.data import LabelledCollate, LabelledExamples
from transferkit.engine.freezing import keep_frozen_batchnorm_eval, set_trainable
from transferkit.engine.module import warmup_cosine
from transferkit.engine.param_groups import layer_lrs, layerwise_groups
from transferkit.engine.plan import ParamGroup, TrainingPlan
from transferkit.engine.settings import EngineSettings
from transferkit.engine.trainer import run_training
from transferkit.errors import ConfigError


def _data(n: int = 96, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = ((X[:, 0] + 0.5 * X[:, 1]) > 0).astype(np.int64)
    train = LabelledExamples(X[: n * 3 // 4], y[: n * 3 // 4], torch.from_numpy)
    val = LabelledExamples(X[n * 3 // 4:], y[n * 3 // 4:], torch.from_numpy)
    return train, val


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 2))


COLLATE = LabelledCollate(torch.stack)


def _settings(tmp_path: Path, **overrides) -> EngineSettings:
    values = dict(work_dir=tmp_path / "run", epochs=4, batch_size=8, lr=5e-3, patience=0, tracking_uri="off",
                  progress=False, device="cpu")
    values.update(overrides)
    return EngineSettings(**values)


def _train(model, tmp_path, plan=None, callbacks=(), **overrides):
    train, val = _data()
    return run_training(model, plan or TrainingPlan(), train, val, _settings(tmp_path, **overrides),
                        train_collate=COLLATE, val_collate=COLLATE, callbacks=callbacks)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_and_training_changes_them(tmp_path: Path) -> None:
    a, b = _model(), _model()
    start = _weights(a)
    _train(a, tmp_path / "a", keep_checkpoints=False)
    _train(b, tmp_path / "b")
    assert any(not torch.equal(start[k], v) for k, v in a.state_dict().items())
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


class _Snapshots(pl.Callback):
    """Copies of the weights at the end of every epoch (after validation)."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.scores: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append(copy.deepcopy(pl_module.model.state_dict()))
        self.scores.append(float(trainer.callback_metrics["val_loss"]))


def test_the_best_validation_epoch_is_what_comes_back(tmp_path: Path) -> None:
    model, snapshots = _model(), _Snapshots()
    # lr high enough that validation loss is not monotone, so the last epoch need not be the best one
    outcome = _train(model, tmp_path, callbacks=[snapshots], monitor="val_loss", lr=0.3, epochs=5)
    best = int(np.argmin(snapshots.scores))
    assert outcome.best_epoch == best and outcome.epochs_run == 5
    assert outcome.best_score == pytest.approx(snapshots.scores[best])
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots.states[best][key]), key


def test_early_stopping_ends_a_run_that_stopped_improving(tmp_path: Path) -> None:
    class Frozen(TrainingPlan):  # nothing trains, so validation never improves after the first epoch
        def param_groups(self, model, lr):
            return [ParamGroup("none", [p for p in model.parameters()], 0.0)]

    outcome = _train(_model(), tmp_path, plan=Frozen(), patience=2, epochs=10, lr=1e-3)
    assert outcome.stopped_early and outcome.epochs_run == 3


class _Interrupt(pl.Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError("simulated crash")


def test_resume_after_an_interruption_ends_with_the_uninterrupted_weights(tmp_path: Path) -> None:
    reference, reference_snaps = _model(), _Snapshots()
    expected = _train(reference, tmp_path / "reference", epochs=4, callbacks=[reference_snaps])

    interrupted = _model()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(interrupted, tmp_path / "resumed", epochs=4, callbacks=[_Interrupt(epoch=2, batch=3)])
    assert (tmp_path / "resumed" / "run" / "checkpoints" / "last.ckpt").is_file()

    resumed, resumed_snaps = _model(seed=123), _Snapshots()  # other starting weights: all must come from the checkpoint
    outcome = _train(resumed, tmp_path / "resumed", epochs=4, resume=True, callbacks=[resumed_snaps])
    assert outcome.resumed_from is not None and outcome.epochs_run == 4 and len(resumed_snaps.states) == 2
    # the last epoch's weights (dropout and data order included), and the best epoch chosen over the whole run
    for key, value in reference_snaps.states[-1].items():
        assert torch.equal(value, resumed_snaps.states[-1][key]), key
    assert outcome.best_epoch == expected.best_epoch
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_resume_without_a_checkpoint_is_a_config_error_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--resume: no checkpoint") as info:
        _train(_model(), tmp_path, resume=True)
    assert str(tmp_path / "run") in str(info.value)


def test_checkpoints_are_removed_after_success_and_the_csv_log_stays(tmp_path: Path) -> None:
    outcome = _train(_model(), tmp_path, epochs=2)
    assert not list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    lines = Path(outcome.metrics_csv).read_text().splitlines()
    assert "val_accuracy" in lines[0] and "train_loss_epoch" in lines[0]
    assert len(outcome.history) == 2 and outcome.history[1]["val_accuracy"] is not None
    import csv

    rows = list(csv.DictReader(Path(outcome.metrics_csv).open()))
    epoch_losses = [float(r["train_loss_epoch"]) for r in rows if r.get("train_loss_epoch")]
    assert epoch_losses == pytest.approx([h["train_loss"] for h in outcome.history], rel=1e-5)


def test_plain_log_lines_when_not_on_a_terminal(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="transferkit")
    _train(_model(), tmp_path, epochs=2, progress=True, run_name="tiny")
    lines = [r.getMessage() for r in caplog.records if r.name == "transferkit"]
    assert any(line.startswith("tiny: epoch 1/2") and "val_accuracy" in line for line in lines)
    assert any(line.startswith("tiny: epoch 2/2") for line in lines)


def test_mlflow_run_is_recorded_in_a_sqlite_store(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = _train(_model(), tmp_path, epochs=2, tracking_uri=uri, experiment="tests",
                     log_params={"strategy": "finetune", "finetune": {"freeze": 2}})
    run = MlflowClient(tracking_uri=uri).get_run(outcome.mlflow_run_id)
    assert run.data.params["finetune.freeze"] == "2" and run.data.params["strategy"] == "finetune"
    assert "val_accuracy" in run.data.metrics and "train_loss_epoch" in run.data.metrics


class _RecordLRs(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizers[0].param_groups}
        self.decay = {g["name"]: g["weight_decay"] for g in trainer.optimizers[0].param_groups}


def test_optimizer_groups_get_the_learning_rates_asked_for(tmp_path: Path) -> None:
    class TwoRates(TrainingPlan):
        def param_groups(self, model, lr):
            return [ParamGroup("first", list(model[0].parameters()) + list(model[1].parameters()), lr / 10),
                    ParamGroup("last", list(model[4].parameters()), lr)]

    record = _RecordLRs()
    _train(_model(), tmp_path, plan=TwoRates(), callbacks=[record], epochs=1, lr=0.02, weight_decay=0.05)
    assert record.lrs == pytest.approx({"first": 0.002, "first.no_decay": 0.002, "last": 0.02, "last.no_decay": 0.02})
    assert record.decay["first"] == 0.05 and record.decay["first.no_decay"] == 0.0


def test_layer_lrs_decay_from_the_top() -> None:
    assert layer_lrs(3, 1.0, 0.5) == [0.125, 0.25, 0.5]
    groups = [nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)]
    made = layerwise_groups(groups, 1.0, 0.5, skip=1)
    assert [g.name for g in made] == ["backbone.group1", "backbone.group2"]
    assert [g.lr for g in made] == [0.25, 0.5]


def test_warmup_then_cosine() -> None:
    factors = [warmup_cosine(s, total=100, warmup=10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] == pytest.approx(0.01, abs=1e-3)


def test_frozen_batchnorm_is_put_back_in_eval_mode() -> None:
    model = _model()
    set_trainable(model[1], False)
    model.train()
    assert keep_frozen_batchnorm_eval(model) == 1
    assert not model[1].training and model[0].training


def test_bad_settings_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'accumulate'"):
        _settings(tmp_path, accumulate=0)
    with pytest.raises(ConfigError, match="'precision'"):
        _settings(tmp_path, precision="8-bit")


def test_activation_checkpointing_gives_the_same_gradients_and_can_be_undone(tiny_text_model: Path) -> None:
    from transferkit.backbones import create_backbone
    from transferkit.engine.memory import disable_activation_checkpointing, enable_activation_checkpointing

    backbone = create_backbone(str(tiny_text_model))
    batch = backbone.collate(["a wonderful, moving film", "dull"])

    def gradients() -> dict[str, torch.Tensor]:
        backbone.train().zero_grad()
        torch.manual_seed(0)  # the same dropout masks; checkpointing replays them
        backbone.forward_features(batch).pow(2).sum().backward()
        return {n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None}

    calls = []
    inner = next(m for n, m in backbone.named_modules() if n.endswith("layer.0.intermediate.dense"))
    inner.register_forward_hook(lambda *_: calls.append(1))
    plain = gradients()
    assert len(calls) == 1
    wrapped = enable_activation_checkpointing(backbone.layer_groups())
    assert wrapped >= 3  # embeddings and both transformer layers
    checkpointed = gradients()
    assert len(calls) == 3  # forward, then recomputed during the backward pass
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5)
    disable_activation_checkpointing(backbone)
    assert all("forward" not in vars(m) for m in backbone.modules())


def test_activation_checkpointing_skips_batchnorm_layers() -> None:
    from transferkit.engine.memory import enable_activation_checkpointing

    assert enable_activation_checkpointing([_model()]) == 0


def test_a_resumed_run_continues_the_same_mlflow_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(_model(), tmp_path, epochs=3, tracking_uri=uri, callbacks=[_Interrupt(epoch=1, batch=2)])
    outcome = _train(_model(), tmp_path, epochs=3, tracking_uri=uri, resume=True)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("transferkit").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == outcome.mlflow_run_id
    epochs = [m.step for m in client.get_metric_history(outcome.mlflow_run_id, "val_accuracy")]
    assert len(epochs) == 3


def test_precision_and_device_resolution(monkeypatch) -> None:
    from transferkit.engine.trainer import accelerator_and_devices, resolve_precision

    assert resolve_precision("auto", "cpu") == "32-true" and resolve_precision("32", "gpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "gpu") == "16-mixed"
    assert accelerator_and_devices("cpu", 2) == ("cpu", 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        accelerator_and_devices("cuda:1", 1)
    with pytest.raises(ConfigError, match="--device 'tpu'"):
        accelerator_and_devices("tpu", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert accelerator_and_devices("cuda:1", 1) == ("gpu", [1])
    with pytest.raises(ConfigError, match="has 2 CUDA GPU"):
        accelerator_and_devices("cuda:2", 1)
    with pytest.raises(ConfigError, match="--devices 3: this machine has 2"):
        accelerator_and_devices("auto", 3)


def test_gradient_accumulation_matches_the_larger_batch(tmp_path: Path) -> None:
    def plain(seed: int = 0) -> nn.Module:  # no BatchNorm or dropout: the split of a batch must not matter
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 2))

    whole, halves = plain(), plain()
    a = _train(whole, tmp_path / "whole", batch_size=12, accumulate=1, epochs=2)
    b = _train(halves, tmp_path / "halves", batch_size=6, accumulate=2, epochs=2)
    assert a.global_step == b.global_step == 2 * 72 // 12  # optimiser steps, not batches
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(halves.state_dict()[key], value, atol=1e-6, rtol=1e-5)
