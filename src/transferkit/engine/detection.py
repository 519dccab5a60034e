"""Training a detector on Lightning: the boxes dataset, the LightningModule and the run.

The classification engine (:mod:`transferkit.engine.module`) trains ``inputs -> logits`` with a task's loss; a
torchvision detector instead takes a list of images with their targets and returns its own loss terms
(classification, box regression, centre-ness for FCOS), so it gets this small module of its own on the same
Lightning trainer, with the engine's pieces: AdamW with biases and norms undecayed, linear warm-up then cosine
decay (:func:`~transferkit.engine.module.warmup_cosine`), device and precision resolved as for every run, frozen
BatchNorm kept in eval mode.

What trains is the strategy's choice (:class:`DetectorTraining`): ``frozen_epochs`` of the run train the pyramid
and the head with the backbone frozen (the whole run for a linear probe, a warm-up for LP-FT), ``freeze`` layer
groups of the backbone stay frozen throughout (``finetune.freeze``), the backbone trains at ``lr`` and the new
pyramid and head at ``head_lr``. Each epoch ends with mAP@0.5 on the validation images; the weights of the best
epoch are kept, and training stops after ``patience`` epochs without a better one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset as TorchDataset

from transferkit.engine.freezing import keep_frozen_batchnorm_eval, set_trainable
from transferkit.engine.module import warmup_cosine

log = logging.getLogger(__name__)


@dataclass
class DetectorTraining:
    """How a detector trains (see the module docstring)."""

    epochs: int = 10
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.1
    frozen_epochs: int = 0
    freeze: int = 0
    bn_frozen: bool = True
    batch_size: int = 8
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    deterministic: bool = True
    num_workers: int = 0
    progress: bool = False


class BoxExamples(TorchDataset):
    """Images and their boxes as ``(image (3, H, W) float 0..1, {"boxes", "labels"})``, each transformed by
    ``transform`` (a box-aware torchvision v2 transform, or ``None``)."""

    def __init__(self, dataset: Any, transform: Any = None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from transferkit.data.detection_augment import to_box_tensors
        from transferkit.models.detector import load_images

        image = load_images([self.dataset.images[index]])[0]
        image, target = to_box_tensors(image, self.dataset.boxes[index], self.dataset.labels[index])
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image.as_subclass(torch.Tensor), {"boxes": target["boxes"].as_subclass(torch.Tensor).reshape(-1, 4),
                                                 "labels": target["labels"]}


def _collate(batch: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    images, targets = zip(*batch)
    return list(images), list(targets)


class DetectorModule(pl.LightningModule):
    """Trains a torchvision detector by the sum of its loss terms; validates mAP@0.5 (``val_map50``)."""

    def __init__(self, network: nn.Module, settings: DetectorTraining, steps_per_epoch: int) -> None:
        super().__init__()
        self.network = network
        self.settings = settings
        self.steps_per_epoch = steps_per_epoch
        self.predictions: list[dict[str, Any]] = []
        self.truths: list[dict[str, Any]] = []
        self.best_score = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self._losses: list[float] = []

    def on_train_epoch_start(self) -> None:
        s = self.settings
        body = self.network.backbone.body
        set_trainable(body, self.current_epoch >= s.frozen_epochs)
        if s.freeze:
            set_trainable(_first_stages(body, s.freeze), False)
        self._losses = []

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.settings.bn_frozen:
            keep_frozen_batchnorm_eval(self.network.backbone.body, every_batchnorm=True)
        else:
            keep_frozen_batchnorm_eval(self.network)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        terms = self.network(images, targets)
        loss = sum(terms.values())
        self._losses.append(float(loss.detach()))
        for name, value in terms.items():
            self.log(f"train_{name}", value.detach(), batch_size=len(images), on_epoch=True, on_step=False)
        self.log("train_loss", loss.detach(), batch_size=len(images), on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, targets = batch
        for found, truth in zip(self.network(images), targets):
            self.predictions.append({k: v.detach().cpu() for k, v in found.items()})
            self.truths.append({k: v.detach().cpu() for k, v in truth.items()})

    def on_validation_epoch_end(self) -> None:
        from transferkit.evaluation.detection_metrics import map50

        if self.trainer.sanity_checking:
            self.predictions, self.truths = [], []
            return
        score = map50(self.predictions, self.truths) if self.truths else 0.0
        self.predictions, self.truths = [], []
        self.log("val_map50", score, prog_bar=True)
        loss = sum(self._losses) / max(1, len(self._losses))
        self.history.append({"epoch": self.current_epoch, "train_loss": loss, "val_map50": score})  # from 0
        if score > self.best_score:
            self.best_score = score
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def configure_optimizers(self) -> Any:
        s = self.settings
        body_ids = {id(p) for p in self.network.backbone.body.parameters()}
        groups = []
        for name, lr, params in (("backbone", s.lr, [p for p in self.network.parameters() if id(p) in body_ids]),
                                 ("head", s.head_lr, [p for p in self.network.parameters() if id(p) not in body_ids])):
            groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": s.weight_decay,
                           "name": name})
            groups.append({"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0,
                           "name": f"{name}.no_decay"})
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]])
        total = max(1, s.epochs * self.steps_per_epoch)
        warmup = max(1, int(s.warmup * total))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _first_stages(body: nn.Module, count: int) -> list[nn.Module]:
    """The stem and the first ``count - 1`` stages of a timm network (``conv_stem``/``bn1``, ``blocks[i]``)."""
    stem = [m for name, m in body.named_children() if name in ("conv_stem", "bn1", "stem")]
    blocks = list(getattr(body, "blocks", getattr(body, "stages", [])))
    return stem + blocks[:max(0, count - 1)]


def train_detector(network: nn.Module, train: Any, val: Any, settings: DetectorTraining, *,
                   augmentation: Any = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train ``network`` on ``train`` (a :class:`~transferkit.data.detection.DetectionSet`), validating on
    ``val``; the best epoch's weights end in ``network``. Returns the facts of the run (epochs, per-epoch
    history, best validation mAP@0.5, seconds per epoch)."""
    import time

    from lightning.pytorch.callbacks import EarlyStopping

    from transferkit.engine.trainer import accelerator_and_devices, resolve_precision

    pl.seed_everything(settings.seed, workers=True, verbose=False)
    accelerator, devices = accelerator_and_devices(settings.device, 1)
    generator = torch.Generator().manual_seed(settings.seed)
    loaders = [DataLoader(BoxExamples(data, transform), batch_size=settings.batch_size, shuffle=shuffle,
                          collate_fn=_collate, num_workers=settings.num_workers, generator=generator)
               for data, transform, shuffle in ((train, augmentation, True), (val, None, False))]
    module = DetectorModule(network, settings, steps_per_epoch=len(loaders[0]))
    stop = [EarlyStopping("val_map50", mode="max", patience=settings.patience)] if settings.patience else []
    trainer = pl.Trainer(max_epochs=settings.epochs, accelerator=accelerator, devices=devices,
                         precision=resolve_precision(settings.precision, accelerator), logger=False,
                         enable_checkpointing=False, enable_progress_bar=settings.progress,
                         enable_model_summary=False,
                         deterministic="warn" if settings.deterministic else False, num_sanity_val_steps=0,
                         callbacks=[*stop, *callbacks])
    network.train()
    started = time.perf_counter()
    trainer.fit(module, *loaders)
    elapsed = time.perf_counter() - started
    if module.best_state is not None:
        network.load_state_dict(module.best_state)
    network.cpu().eval()
    epochs = len(module.history)
    return {"epochs": epochs, "best_val_map50": module.best_score, "history": module.history,
            "seconds_per_epoch": elapsed / max(1, epochs), "accelerator": accelerator}
