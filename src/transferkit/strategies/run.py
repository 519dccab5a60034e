"""Train a model by a strategy through the engine: the path ``fit`` takes for every strategy but the linear probe.

Order of work: every check that can fail (options against the backbone, resume, devices, augmentation), then the
validation split, the model (backbone + a new head, seeded), the strategy's preparation, the engine's run, and the
strategy's finalisation. A finished stage leaves its weights in its run folder, so ``--resume`` after an
interruption in a later stage (the from-scratch baseline) does not train the finished stage again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.modalities import get_modality
from transferkit.strategies.base import TrainingStrategy

log = logging.getLogger("transferkit")

FINAL_WEIGHTS = "final-weights.pt"
FINAL_OUTCOME = "outcome.json"
#: Options that do not change what a stage trains (where things are written, logging, devices, what runs after
#: training, paths whose data is recorded by fingerprint instead): ``--resume`` may change them.
UNTRAINED_OPTIONS = ("data", "val", "test", "output", "overwrite", "report", "label_column", "text_column",
                     "path_column", "encoding", "cache_dir", "no_cache", "progress", "resume", "work_dir",
                     "tracking_uri", "num_workers", "device", "devices", "num_nodes", "distributed", "calibrate", "interval",
                     "baselines", "activation_checkpointing", "compare_plain")


@dataclass
class TrainedModel:
    """A trained :class:`~transferkit.models.model.TransferModel`, the engine's account of the run, and facts to save."""

    model: Any
    outcome: Any
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main_process(self) -> bool:
        return self.outcome.is_main_process

    @property
    def best_score(self) -> float | None:
        """The monitored validation figure of the weights the model holds: the engine's best epoch, unless the
        strategy's last choice (``final_choice``, e.g. lp-ft keeping its probe) put other weights back."""
        choice = self.facts.get("final_choice") or {}
        return choice.get("score", self.outcome.best_score)


def default_tracking_uri() -> str:
    """MLflow's store when none is given: ``$TRANSFERKIT_TRACKING_URI`` when set (any MLflow URI, or ``off``), else
    one SQLite file in the transferkit cache for every run."""
    import os

    from transferkit.backbones.packaged import cache_root

    if os.environ.get("TRANSFERKIT_TRACKING_URI", "").strip():
        return os.environ["TRANSFERKIT_TRACKING_URI"].strip()
    folder = cache_root() / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


def run_folder(config: Any, train: Dataset) -> Path:
    """Where a run keeps checkpoints and logs: ``work_dir``, else a folder in the cache keyed by the output folder
    (so that ``--resume`` with the same ``--output`` finds it), else keyed by the options and the data (the same
    on every process of a multi-process run)."""
    if config.work_dir:
        return Path(config.work_dir)
    from transferkit.backbones.packaged import cache_root

    if config.output:
        output = Path(config.output).resolve()
        key = hashlib.blake2b(str(output).encode(), digest_size=6).hexdigest()
        return cache_root() / "runs" / f"{output.name}-{key}"
    text = json.dumps({**config.model_dump(), "resume": False}, sort_keys=True, default=str) + train.fingerprint()
    return cache_root() / "runs" / f"run-{hashlib.blake2b(text.encode(), digest_size=6).hexdigest()}"


def engine_settings(config: Any, folder: Path, *, lr: float, run_name: str, log_params: dict[str, Any]):
    """The engine's settings for one stage of a run, from a :class:`~transferkit.config.FitConfig`."""
    from transferkit.engine.settings import EngineSettings

    distributed = config.distributed
    if (config.devices > 1 or config.num_nodes > 1) and distributed == "auto":
        distributed = "ddp"
    return EngineSettings(
        work_dir=folder, epochs=config.epochs, batch_size=config.batch_size, lr=lr, weight_decay=config.weight_decay,
        warmup_fraction=config.warmup, accumulate=config.accumulate, precision=config.precision,
        patience=config.patience, seed=config.seed, deterministic=config.deterministic, device=config.device,
        devices=config.devices, num_nodes=config.num_nodes, distributed=distributed, num_workers=config.num_workers,
        resume=config.resume,
        tracking_uri=config.tracking_uri or default_tracking_uri(), run_name=run_name, progress=config.progress,
        log_params=log_params,
    )


def _has_progress(folder: Path) -> bool:
    """Whether a stage of a run left something to resume from: a checkpoint, or its finished weights."""
    return (folder / "checkpoints" / "last.ckpt").is_file() or (folder / FINAL_WEIGHTS).is_file()


def _check(config: Any, strategy: TrainingStrategy, backbone: Backbone, settings: Any, folder: Path) -> None:
    strategy.check(backbone)
    modality = get_modality(backbone.modality)
    if not modality.mixes_batches and (config.mixup or config.cutmix):
        raise ConfigError(f"options 'mixup' and 'cutmix' mix images; for {modality.name} use --augment "
                          f"({modality.augment_summary}).")
    processes = config.devices * config.num_nodes
    if config.batch_size % processes:
        raise ConfigError(f"option 'batch_size' ({config.batch_size}) must be divisible by the number of processes "
                          f"('devices' x 'num_nodes' = {processes}): it is the global batch, split evenly across them.")
    if processes > 1 and strategy.changes_trainable:
        raise ConfigError("gradual unfreezing (--unfreeze-every) changes which parameters train during the run, "
                          "which DDP does not allow; use it with --devices 1, or freeze with --freeze instead.")
    if config.resume and not _has_progress(folder) and not any(_has_progress(f) for f in folder.parent.glob("*/")):
        raise ConfigError(
            f"--resume: nothing to resume in {folder.parent} (no checkpoint). Give the same --output or --work-dir "
            "as the interrupted run, or run without --resume."
        )
    from transferkit.engine.trainer import accelerator_and_devices

    accelerator_and_devices(config.device, config.devices)


def train_with_strategy(config: Any, backbone: Backbone, train: Dataset, val: Dataset | None, classes: Sequence[str],
                        *, strategy: TrainingStrategy | None = None, stage: str | None = None,
                        lr: float | None = None, callbacks: Sequence[Any] = (),
                        facts: dict[str, Any] | None = None) -> TrainedModel:
    """Train ``backbone`` + a new head on ``train`` by ``strategy`` (default: the one ``config.strategy`` names).

    ``val`` drives early stopping and checkpoint selection; without it ``config.val_fraction`` of each class of
    ``train`` is held out. ``stage`` names the sub-folder of the run folder ("scratch" for the baseline).
    """
    from transferkit.data.augmentation import augmentation_for
    from transferkit.data.splits import stratified_split
    from transferkit.models.model import TransferModel
    from transferkit.strategies.registry import build_strategy
    from transferkit.tasks import DEFAULT_TASK, get_task

    strategy = strategy or build_strategy(config)
    task = get_task(getattr(config, "task", DEFAULT_TASK))  # the configs of adapt, distill and tune name none
    strategy.task_type = task.name
    stage = stage or strategy.name
    lr = lr or config.lr or strategy.default_lr
    folder = run_folder(config, train) / stage
    run_facts = {"strategy": strategy.name, "stage": stage, "lr": lr, **(facts or {})}
    settings = _checked_settings(config, strategy, backbone, train, val, folder, stage, lr)
    augmentation = augmentation_for(backbone.modality, config.augment, config.auto_augment)
    if config.init_from:
        from transferkit.strategies.weight_transfer import load_backbone_weights

        init_report = load_backbone_weights(backbone, config.init_from)
        run_facts["init_from"] = {"path": config.init_from, **init_report.summary()}

    held_out = val is None
    if held_out:
        train, val = stratified_split(train, config.val_fraction, config.seed, names=("train", "validation"))
    run_facts.update(n_train=len(train), n_val=len(val), val_held_out_of_train=held_out,
                     augmentation={"preset": config.augment, **augmentation.to_dict()})

    torch.manual_seed(config.seed)
    model = TransferModel(backbone, task.new_head(backbone.num_features, classes, task.targets(train, classes)),
                          classes, strategy=strategy.name, task=task.name)
    if config.activation_checkpointing:
        run_facts["activation_checkpointing"] = _checkpoint_activations(backbone)
    strategy.prepare(model, {"train": train, "val": val, "classes": list(classes), "config": config,
                             "augmented": not augmentation.is_identity, "val_held_out": held_out})
    run_facts.update(strategy.describe(model))
    examples = _examples(config, strategy, backbone, task, train, val, classes, augmentation)
    outcome = _train_or_reload(model, strategy, settings, folder, stage, config, examples, callbacks, run_facts)
    if config.activation_checkpointing:
        from transferkit.engine.memory import disable_activation_checkpointing

        disable_activation_checkpointing(model)
    strategy.finalize(model)
    model.eval()
    run_facts["training"] = outcome.to_dict()
    run_facts["history"] = outcome.history
    return TrainedModel(model, outcome, run_facts)


def _checked_settings(config: Any, strategy: TrainingStrategy, backbone: Backbone, train: Dataset,
                      val: Dataset | None, folder: Path, stage: str, lr: float) -> Any:
    """The engine's settings of this stage, the run checked (:func:`_check`) and its record written; resuming, a
    stage the interrupted run had started continues (its options compared), one it had not reached starts afresh."""
    from transferkit.engine.run_record import check_resume, training_options, write_record

    settings = engine_settings(config, folder, lr=lr, run_name=f"{backbone.name} {stage}",
                               log_params=config.resolved(backbone=backbone.name, stage=stage, lr=lr))
    settings.monitor = strategy.monitor
    _check(config, strategy, backbone, settings, folder)
    settings.resume = config.resume and settings.last_checkpoint.is_file()
    options = training_options(config.model_dump(), UNTRAINED_OPTIONS, stage=stage, lr=lr,
                               **{"training data": train.fingerprint(),
                                  "validation data": val.fingerprint() if val is not None else None})
    if config.resume and _has_progress(folder):
        check_resume(folder, options)
    else:
        write_record(folder, options)
    return settings


def _checkpoint_activations(backbone: Backbone) -> Any:
    """Activation checkpointing on the backbone's layer groups (what was wrapped); an error when every group holds
    BatchNorm layers."""
    from transferkit.engine.memory import enable_activation_checkpointing

    wrapped = enable_activation_checkpointing(backbone.layer_groups())
    if not wrapped:
        raise ConfigError(f"--activation-checkpointing: every layer group of backbone '{backbone.name}' holds "
                          "BatchNorm layers, whose statistics recomputation would update twice; it applies to "
                          "transformer encoders. Lower --batch-size (with --accumulate) instead.")
    return wrapped


def _examples(config: Any, strategy: TrainingStrategy, backbone: Backbone, task: Any, train: Dataset, val: Dataset,
              classes: Sequence[str], augmentation: Any) -> dict[str, Any]:
    """The training and validation examples and their collate functions, as ``run_training`` takes them (mixup /
    cutmix mixing the training batches when asked)."""
    from transferkit.data.augmentation import BatchMixing
    from transferkit.engine.data import LabelledCollate, LabelledExamples

    mixing = BatchMixing(len(classes), config.mixup, config.cutmix) if (config.mixup or config.cutmix) else None
    prepare_train, batch_transform = get_modality(backbone.modality).training_inputs(backbone, augmentation, mixing)
    return {"train": strategy.training_examples(train, task.targets(train, classes), prepare_train),
            "val": LabelledExamples(val.items, task.targets(val, classes), backbone.prepare),
            "train_collate": LabelledCollate(backbone.collate, batch_transform),
            "val_collate": LabelledCollate(backbone.collate)}


def _train_or_reload(model: Any, strategy: TrainingStrategy, settings: Any, folder: Path, stage: str, config: Any,
                     examples: dict[str, Any], callbacks: Sequence[Any], run_facts: dict[str, Any]) -> Any:
    """Train ``model`` through the engine and keep its final weights and outcome in the stage's folder (for
    ``--resume``); a stage that the interrupted run finished is reloaded instead. Returns the training outcome;
    the strategy's final choice goes into ``run_facts``."""
    from transferkit.engine.trainer import TrainingOutcome, run_training

    final = folder / FINAL_WEIGHTS
    if config.resume and final.is_file():
        log.info("%s: finished in the interrupted run; its weights are reloaded from %s", stage, final)
        model.load_state_dict(torch.load(final, map_location="cpu", weights_only=True))
        saved = json.loads((folder / FINAL_OUTCOME).read_text())
        if saved.get("final_choice"):
            run_facts["final_choice"] = saved["final_choice"]
        return TrainingOutcome(**{k: v for k, v in saved.items() if k in TrainingOutcome.__dataclass_fields__})
    final.unlink(missing_ok=True)
    outcome = run_training(model, strategy, settings=settings, callbacks=callbacks, **examples)
    choice = strategy.after_training(model, outcome)
    if choice:
        run_facts["final_choice"] = choice
        log.info("%s: %s", stage, ", ".join(f"{k} {v}" for k, v in choice.items()))
    if outcome.is_main_process:
        torch.save(model.state_dict(), final)
        (folder / FINAL_OUTCOME).write_text(json.dumps({**outcome.to_dict(), "history": outcome.history,
                                                        "final_choice": choice}, default=str))
    return outcome


def finish_run(config: Any, train: Dataset) -> None:
    """After the whole ``fit`` succeeded: drop the finished stages' weights (kept only for ``--resume``); logs stay."""
    root = run_folder(config, train)
    if root.is_dir():
        for weights in root.glob(f"*/{FINAL_WEIGHTS}"):
            weights.unlink(missing_ok=True)
