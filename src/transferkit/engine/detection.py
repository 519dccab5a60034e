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
pyramid and head at ``head_lr``. ``l2sp`` adds the L2-SP penalty (:class:`~transferkit.losses.l2sp.L2SPPenalty`:
the backbone pulled towards its pretrained weights, the pyramid and head towards zero) as the loss term ``l2sp``,
in place of AdamW's weight decay. ``lora`` trains low-rank adapters (PEFT's LoRA, on the layers
:func:`~transferkit.strategies.lora.resolve_targets` picks in the backbone) instead of the backbone's weights, and
merges them into the weights after training, so the saved detector is a plain one. Each epoch ends with mAP@0.5 on the validation images; the weights of the best
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
    #: L2-SP: ``(alpha, beta)`` of the penalty (None: AdamW's weight decay).
    l2sp: tuple[float, float] | None = None
    #: LoRA: the adapters' :class:`~transferkit.strategies.options.LoraConfig` (None: the backbone's weights train).
    lora: Any = None


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
        self._terms: dict[str, list[float]] = {}
        self.penalty: nn.Module | None = None
        if settings.l2sp is not None:
            from transferkit.losses.l2sp import L2SPPenalty

            self.penalty = L2SPPenalty(network, pretrained=lambda name: name.startswith("backbone.body."),
                                       alpha=settings.l2sp[0], beta=settings.l2sp[1])

    def on_train_epoch_start(self) -> None:
        s = self.settings
        body = self.network.backbone.body
        if s.lora is None:  # with adapters, PEFT keeps the backbone's own weights frozen and the adapters trainable
            set_trainable(body, self.current_epoch >= s.frozen_epochs)
            if s.freeze:
                set_trainable(_first_stages(body, s.freeze), False)
        self._losses, self._terms = [], {}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.settings.bn_frozen:
            keep_frozen_batchnorm_eval(self.network.backbone.body, every_batchnorm=True)
        else:
            keep_frozen_batchnorm_eval(self.network)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        terms = self.network(images, targets)
        if self.penalty is not None:
            terms = {**terms, "l2sp": self.penalty(self.network)}
        loss = sum(terms.values())
        self._losses.append(float(loss.detach()))
        for name, value in terms.items():
            self._terms.setdefault(name, []).append(float(value.detach()))
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
        terms = {f"train_{k}": sum(v) / len(v) for k, v in self._terms.items() if v}  # each loss term's mean
        self.history.append({"epoch": self.current_epoch, "train_loss": loss, **terms, "val_map50": score})  # from 0
        if score > self.best_score:
            self.best_score = score
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def configure_optimizers(self) -> Any:
        s = self.settings
        body_ids = {id(p) for p in self.network.backbone.body.parameters()}
        groups = []
        for name, lr, params in (("backbone", s.lr, [p for p in self.network.parameters() if id(p) in body_ids]),
                                 ("head", s.head_lr, [p for p in self.network.parameters() if id(p) not in body_ids])):
            decay = 0.0 if self.penalty is not None else s.weight_decay  # L2-SP's penalty replaces the decay
            groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": decay,
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


def _add_adapters(network: nn.Module, config: Any) -> None:
    """LoRA adapters on the backbone's layers (``config.targets``, else the linear and pointwise convolutions);
    the backbone's own weights frozen, the pyramid and the head trainable."""
    import warnings

    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    from transferkit.errors import ConfigError
    from transferkit.strategies.lora import resolve_targets

    body = network.backbone.body
    targets = resolve_targets(body, config.targets)
    if not targets:
        raise ConfigError("option 'strategy' (--strategy lora): the detector's backbone has no linear or convolution "
                          "layer to adapt; name them with --lora-targets, or use --strategy finetune.")
    peft_config = PeftLoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 target_modules=targets, bias="none")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        network.backbone.body = get_peft_model(body, peft_config)


def _merge_adapters(network: nn.Module) -> None:
    """Fold the adapters into the backbone's weights (``W + (alpha / r) B A``): the detector is a plain one again,
    saved and loaded as any other."""
    with torch.no_grad():
        network.backbone.body = network.backbone.body.merge_and_unload()
    set_trainable(network, True)


def train_detector(network: nn.Module, train: Any, val: Any, settings: DetectorTraining, *,
                   augmentation: Any = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train ``network`` on ``train`` (a :class:`~transferkit.data.detection.DetectionSet`), validating on
    ``val``; the best epoch's weights end in ``network``. Returns the facts of the run (epochs, per-epoch
    history, best validation mAP@0.5, seconds per epoch)."""
    import time

    from lightning.pytorch.callbacks import EarlyStopping

    from transferkit.engine.trainer import accelerator_and_devices, resolve_precision

    pl.seed_everything(settings.seed, workers=True, verbose=False)
    if settings.lora is not None:
        _add_adapters(network, settings.lora)
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
    if settings.lora is not None:
        _merge_adapters(network)
    network.cpu().eval()
    epochs = len(module.history)
    return {"epochs": epochs, "best_val_map50": module.best_score, "history": module.history,
            "seconds_per_epoch": elapsed / max(1, epochs), "accelerator": accelerator}
