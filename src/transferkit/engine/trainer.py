"""``run_training``: the one place a Lightning Trainer is built and run."""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from transferkit.engine.plan import TrainingPlan
from transferkit.engine.settings import MONITORS, EngineSettings
from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")

# Messages Lightning prints on every run that say nothing about this run.
_QUIET_WARNINGS = (
    r".*LeafSpec.*",
    r".*does not have many workers.*",
    r".*in eval mode at the start of training.*",
    r".*is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*Experiment logs directory .* exists.*",
    r".*`isinstance\(treespec, LeafSpec\)`.*",
    r".*sync_dist=True.*when logging on epoch level.*",
)


@dataclass
class TrainingOutcome:
    """What a run did. ``is_main_process`` is false on the other processes of a multi-process run."""

    best_epoch: int | None
    best_score: float | None
    monitor: str
    epochs_run: int
    stopped_early: bool
    global_step: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: str | None = None
    is_main_process: bool = True
    world_size: int = 1
    precision: str = "32-true"
    metrics_csv: str | None = None
    mlflow_uri: str | None = None
    mlflow_run_id: str | None = None
    #: Micro-batches per training batch (gradients accumulated), to bound activation memory on the CPU.
    micro_batches: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "history"}


def accelerator_and_devices(device: str, devices: int | str) -> tuple[str, int | str | list[int]]:
    """Lightning's ``accelerator`` and ``devices`` from transferkit's ``device`` (cpu, cuda, cuda:N, auto)."""
    from transferkit.features.extract import resolve_device

    resolve_device(device)  # a device that is not here, or a wrong name: a ConfigError naming --device
    device = str(device).strip().lower()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device in ("auto", "cuda") and gpus and isinstance(devices, int) and devices > gpus:
        raise ConfigError(f"--devices {devices}: this machine has {gpus} CUDA GPU(s); give --devices {gpus} or "
                          "fewer (several machines: --num-nodes under torchrun or a cluster scheduler).")
    if device == "auto":
        return ("gpu" if gpus else "cpu"), devices
    if device == "cpu":
        return "cpu", devices
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"option 'device' is {device!r} but no CUDA GPU is available here; use --device cpu.")
        _, _, index = device.partition(":")
        return "gpu", [int(index)] if index else devices
    if device == "mps":
        return "mps", devices
    raise ConfigError(f"option 'device' must be cpu, cuda, cuda:N, mps or auto; got {device!r}.")


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 mixed precision on GPUs that support it, fp16 mixed on older GPUs, fp32 on the CPU."""
    if precision == "32":
        return "32-true"
    if precision != "auto":
        return precision
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _distribution(settings: EngineSettings) -> Any:
    if settings.distributed == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # Parameters that get no gradient in some step (a pooler the features skip) must not stall the reduction.
        return DDPStrategy(find_unused_parameters=True)
    return settings.distributed


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, f"{name}."))
        else:
            text = value if isinstance(value, (int, float, bool)) or value is None else str(value)
            out[name] = text[:500] if isinstance(text, str) else text
    return out


def _loggers(settings: EngineSettings, resume: bool) -> tuple[list[Any], Any]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(save_dir=str(settings.work_dir), name="", version="")]
    mlflow_logger = None
    uri = settings.mlflow_uri
    if uri is not None:
        try:
            from lightning.pytorch.loggers import MLFlowLogger
        except ImportError as exc:  # pragma: no cover - mlflow-skinny is in the train extra
            raise ConfigError("MLflow logging needs mlflow-skinny (`pip install 'transferkit[train]'`); or pass "
                              "--tracking-uri off.") from exc
        run_id_file = settings.work_dir / "mlflow_run_id.txt"
        run_id = run_id_file.read_text().strip() if resume and run_id_file.is_file() else None
        mlflow_logger = MLFlowLogger(experiment_name=settings.experiment, run_name=settings.run_name,
                                     tracking_uri=uri, run_id=run_id,
                                     artifact_location=(settings.work_dir / "mlflow-artifacts").resolve().as_uri())
        loggers.append(mlflow_logger)
    return loggers, mlflow_logger


#: A resumed run's log rows from before its checkpoint, kept here until they are merged into metrics.csv again.
EARLIER_METRICS = "metrics-before-resume.csv"


def _read_rows(path: Path) -> list[dict[str, str]]:
    import csv

    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    import csv
    import io

    from transferkit._io import atomic_write_text

    keys = sorted(set().union(*rows)) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def earlier_metrics(settings: EngineSettings) -> list[dict[str, str]]:
    """The log rows of the interrupted run(s) up to the epoch of the checkpoint a resumed run starts from (rows of
    the epoch that was cut short are dropped: it runs again), so that the log of the whole run stays complete."""
    state = torch.load(settings.last_checkpoint, map_location="cpu", weights_only=True, mmap=True)
    last_epoch = int(state.get("epoch", -1))
    del state
    rows, seen = [], set()
    for row in _read_rows(settings.work_dir / EARLIER_METRICS) + _read_rows(settings.metrics_csv):
        try:
            epoch = int(float(row.get("epoch") or "nan"))
        except ValueError:
            continue
        key = tuple(sorted((k, v) for k, v in row.items() if v not in ("", None)))
        if epoch <= last_epoch and key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def _merge_earlier_metrics(settings: EngineSettings) -> None:
    """metrics.csv = the rows kept from before the resume, then this run's."""
    earlier = settings.work_dir / EARLIER_METRICS
    rows = _read_rows(earlier)
    if rows:
        _write_rows(settings.metrics_csv, rows + _read_rows(settings.metrics_csv))
    earlier.unlink(missing_ok=True)


def _cpu_micro_batches(module: nn.Module, plan: TrainingPlan, train: TorchDataset, collate: Callable,
                       settings: EngineSettings) -> int:
    """Micro-batches per training batch on the CPU, so that one forward pass keeps at most
    ``settings.cpu_activation_budget_bytes`` of activations; measured on two training examples (BatchNorm statistics
    are put back afterwards). Gradients of the micro-batches are accumulated: the update is that of the whole batch
    (BatchNorm layers that train see micro-batch statistics)."""
    from transferkit.engine.memory import activation_bytes_per_example, micro_batch_factor

    processes = settings.devices * settings.num_nodes if isinstance(settings.devices, int) else 1
    per_process = settings.batch_size // max(processes, 1)
    if per_process < 2:
        return 1
    sample = collate([train[i] for i in range(min(2, len(train)))])
    buffers = {name: value.detach().clone() for name, value in module.model.named_buffers()}
    module.train()
    try:
        per_example = activation_bytes_per_example(
            lambda: plan.batch_terms(module.model, sample), min(2, len(train)),
            [p for p in module.model.parameters()])
    except Exception as exc:  # the run itself will report a problem with the data or the model
        log.debug("activation memory not measured: %s", exc)
        return 1
    finally:
        with torch.no_grad():
            for name, value in module.model.named_buffers():
                if name in buffers:
                    value.copy_(buffers[name])
    micro = micro_batch_factor(per_process, per_example, settings.cpu_activation_budget_bytes)
    if micro > 1:
        log.info("%s: about %.0f MB of activations per example; each batch of %d runs as %d micro-batches of %d "
                 "(gradients accumulated) to keep memory under %.1f GB", settings.run_name, per_example / 2**20,
                 per_process, micro, per_process // micro, settings.cpu_activation_budget_bytes / 2**30)
    return micro


def run_training(model: nn.Module, plan: TrainingPlan, train: TorchDataset | Mapping[str, TorchDataset],
                 val: TorchDataset | Mapping[str, TorchDataset], settings: EngineSettings, *,
                 train_collate: Callable | Mapping[str, Callable], val_collate: Callable | Mapping[str, Callable],
                 callbacks: Sequence[Any] = (), task_batch_sizes: Mapping[str, int] | None = None) -> TrainingOutcome:
    """Train ``model`` by ``plan`` on ``train``, validating on ``val`` after every epoch; on return ``model``
    holds the weights of the best validation epoch.

    A multi-task plan (``plan.tasks``) takes mappings ``{task: dataset}`` and ``{task: collate}`` and the share of
    each training step's batch per task (``task_batch_sizes``); see :class:`~transferkit.engine.data.EngineData`.

    Checks that can fail fast (a resume with nothing to resume, a device that is not here) run before any work.
    """
    import lightning.pytorch as pl

    from transferkit.engine.checkpoint_io import StreamingCheckpointIO
    from transferkit.engine.data import EngineData
    from transferkit.engine.module import AdaptationModule

    _quiet_library_loggers()
    accelerator, devices = accelerator_and_devices(settings.device, settings.devices)
    precision = resolve_precision(settings.precision, accelerator)
    resume_from, earlier_rows = _prepare_work_dir(settings)
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    watch = _Callbacks.make(settings, callbacks)
    loggers, mlflow_logger = _loggers(settings, resume=resume_from is not None)

    module = AdaptationModule(model, plan, settings)
    micro = 1
    if accelerator == "cpu" and settings.cpu_activation_budget_bytes and not isinstance(train, Mapping) and len(train):
        micro = _cpu_micro_batches(module, plan, train, train_collate, settings)
    pl.seed_everything(settings.seed, workers=True, verbose=False)  # the measurement's draws are forgotten
    data = EngineData(train, val, batch_size=settings.batch_size // micro, seed=settings.seed, train_collate=train_collate,
                      val_collate=val_collate, num_workers=settings.num_workers, pin_memory=accelerator == "gpu",
                      task_batch_sizes=task_batch_sizes)
    deterministic_before = torch.are_deterministic_algorithms_enabled()  # the Trainer may change it
    trainer = pl.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=settings.num_nodes, strategy=_distribution(settings),
        precision=precision,
        max_epochs=settings.epochs, max_steps=settings.max_steps, accumulate_grad_batches=settings.accumulate * micro,
        deterministic=(True if accelerator == "cpu" else "warn") if settings.deterministic else None,
        callbacks=watch.all, logger=loggers, log_every_n_steps=settings.log_every_n_steps,
        enable_progress_bar=watch.on_terminal, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=str(settings.work_dir), use_distributed_sampler=False, plugins=[StreamingCheckpointIO()],
    )
    seconds = _fit(trainer, module, data, settings, mlflow_logger, resume_from, earlier_rows, deterministic_before)
    best_epoch = _load_best(module, watch.checkpoint.best_model_path, trainer.current_epoch)
    model.eval()
    score = watch.checkpoint.best_model_score
    outcome = TrainingOutcome(
        best_epoch=best_epoch, best_score=float(score) if score is not None else None, monitor=settings.monitor,
        epochs_run=trainer.current_epoch, stopped_early=watch.stopped_early(),
        global_step=trainer.global_step, seconds=round(seconds, 2), history=watch.recorder.history,
        resumed_from=resume_from, is_main_process=trainer.is_global_zero, world_size=trainer.world_size,
        precision=precision, metrics_csv=str(settings.metrics_csv) if settings.metrics_csv.is_file() else None,
        mlflow_uri=settings.mlflow_uri, mlflow_run_id=getattr(mlflow_logger, "run_id", None),
        micro_batches=micro,
    )
    _remove_checkpoints(settings, trainer)
    return outcome


def _quiet_library_loggers() -> None:
    """Lightning's and MLflow's messages at warning level (their set-up messages would interleave with results)."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)  # "experiment ... creating it"
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # database set-up messages


def _prepare_work_dir(settings: EngineSettings) -> tuple[str | None, list[dict[str, str]]]:
    """The checkpoint to resume from and the metrics rows of the interrupted run (with ``resume``), or a work folder
    cleared of an earlier run's checkpoints and metrics (without)."""
    resume_from = None
    earlier_rows: list[dict[str, str]] = []
    if settings.resume:
        if not settings.last_checkpoint.is_file():
            raise ConfigError(
                f"--resume: no checkpoint to resume from at {settings.last_checkpoint}. Give the same --work-dir "
                "(or --output) as the interrupted run, or run without --resume."
            )
        resume_from = str(settings.last_checkpoint)
        earlier_rows = earlier_metrics(settings)
    else:  # a fresh run: nothing of an earlier one in this folder may be mistaken for this one's
        for old in settings.checkpoint_dir.glob("*.ckpt"):
            old.unlink(missing_ok=True)
        settings.metrics_csv.unlink(missing_ok=True)
        (settings.work_dir / EARLIER_METRICS).unlink(missing_ok=True)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    return resume_from, earlier_rows


@dataclass
class _Callbacks:
    """The run's Lightning callbacks: the best and last checkpoints, the epoch recorder, early stopping (with a
    patience), the progress bar (on a terminal) and the caller's own."""

    checkpoint: Any
    recorder: Any
    all: list[Any]
    on_terminal: bool

    @classmethod
    def make(cls, settings: EngineSettings, callbacks: Sequence[Any]) -> "_Callbacks":
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar

        from transferkit.engine.callbacks import EpochRecorder

        mode, direction = settings.monitor, MONITORS[settings.monitor]
        checkpoint = ModelCheckpoint(dirpath=str(settings.checkpoint_dir), filename="best-epoch{epoch}", monitor=mode,
                                     mode=direction, save_top_k=1, save_last=True, auto_insert_metric_name=False)
        on_terminal = settings.progress and sys.stderr.isatty()
        recorder = EpochRecorder(settings.run_name, echo=settings.progress and not on_terminal)
        everything: list[Any] = [checkpoint, recorder, *callbacks]
        if settings.patience > 0:
            everything.append(EarlyStopping(monitor=mode, mode=direction, patience=settings.patience))
        if on_terminal:
            everything.append(RichProgressBar(leave=False))
        return cls(checkpoint, recorder, everything, on_terminal)

    def stopped_early(self) -> bool:
        from lightning.pytorch.callbacks import EarlyStopping

        early = next((c for c in self.all if isinstance(c, EarlyStopping)), None)
        return bool(early and early.stopped_epoch > 0)


def _fit(trainer: Any, module: nn.Module, data: Any, settings: EngineSettings, mlflow_logger: Any,
         resume_from: str | None, earlier_rows: list[dict[str, str]], deterministic_before: bool) -> float:
    """Run Lightning's fit (the run's parameters logged to MLflow first; the interrupted run's metrics rows kept
    and merged back when resuming); the seconds it took. Deterministic algorithms are left as they were before the
    Trainer was made (``deterministic_before``)."""
    start = time.perf_counter()
    module.train()  # the whole model in training mode, except frozen BatchNorm layers
    if earlier_rows and trainer.is_global_zero:  # kept aside first: Lightning's CSV logger starts metrics.csv anew
        _write_rows(settings.work_dir / EARLIER_METRICS, earlier_rows)
    try:
        with warnings.catch_warnings():
            for pattern in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            if mlflow_logger is not None and trainer.is_global_zero:
                if settings.log_params:
                    mlflow_logger.log_hyperparams(flatten_params(settings.log_params))
                # written first, so that a resumed run continues the same MLflow run
                (settings.work_dir / "mlflow_run_id.txt").write_text(mlflow_logger.run_id + "\n")
            trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        if earlier_rows and trainer.is_global_zero:
            _merge_earlier_metrics(settings)
    return time.perf_counter() - start


def _load_best(module: nn.Module, best_path: str, epochs_run: int) -> int | None:
    """The weights of the best validation epoch loaded into ``module`` (unless the last epoch was the best: the
    model holds them already); that epoch's number, or ``None`` without a best checkpoint."""
    if not best_path:
        return None
    named = re.fullmatch(r"best-epoch(\d+)\.ckpt", Path(best_path).name)
    best_epoch = int(named.group(1)) if named else None
    if best_epoch is None or best_epoch != epochs_run - 1:
        # memory-mapped: only the weights are read, not the optimiser state beside them
        state = torch.load(best_path, map_location="cpu", weights_only=True, mmap=True)
        module.load_state_dict(state["state_dict"])
        best_epoch = int(state["epoch"])
        del state
    return best_epoch


def _remove_checkpoints(settings: EngineSettings, trainer: Any) -> None:
    """The run's checkpoints removed once the best weights are loaded (unless ``keep_checkpoints``); every process
    waits until then."""
    if settings.keep_checkpoints:
        return
    if trainer.world_size > 1:
        trainer.strategy.barrier("transferkit-best-loaded")
    if trainer.is_global_zero:
        for old in settings.checkpoint_dir.glob("*.ckpt"):
            old.unlink(missing_ok=True)
