"""Run configurations: typed, validated at construction, saved next to every output.

The CLI and YAML files build the same objects as the Python API, so a run is described the same way everywhere.
Unknown keys and wrong types are errors that name the option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from transferkit._version import __version__
from transferkit.errors import ConfigError
from transferkit.modalities import get_modality
from transferkit.options import DataOptions, OutputOptions, RuntimeOptions
from transferkit.strategies.options import (TRAINING_OPTIONS, ContrastiveConfig, FineTuneConfig, L2SPConfig,
                                           LoraConfig)
from transferkit.tasks import DEFAULT_TASK

#: fit's strategies (the ``strategy`` field's choices; each is an entry of :mod:`transferkit.strategies.registry`).
STRATEGIES = ("linear-probe", "finetune", "lp-ft", "lora", "l2sp", "contrastive", "auto")
#: Of those, the ones the from-scratch baseline uses as well (it trains at its own learning rate, from random weights).
SCRATCH_BASELINE_OPTIONS = tuple(o for o in TRAINING_OPTIONS if o not in ("lr", "head_lr", "init_from"))


class FitConfig(DataOptions, RuntimeOptions, OutputOptions):
    """Everything that decides what ``fit`` does. Paths are strings; ``None`` means "chosen for you". The options
    shared with other verbs (reading data, runtime, output) come from :mod:`transferkit.options`."""

    data: str | None = Field(None, description="training data: a folder with one sub-folder per class, or a table (CSV, TSV, JSONL, Parquet)")
    val: str | None = Field(None, description="validation data (same form); by default the probe's C is chosen by cross-validation on the training data, and training strategies hold out val_fraction of it for early stopping")
    test: str | None = Field(None, description="test data (same form); by default a stratified part of the training data is held out")
    unlabelled: str | None = Field(None, description="unlabelled data of the same task (a folder of images or clips, or a table with a text or path column): the linear probe adds its most confident pseudo-labels over 5 rounds (curriculum), kept when folds of the labelled data show no loss; the labelled-only probe is reported beside it on the same test data")
    backbone: str | None = Field(None, description="backbone name (`transferkit models`), timm:ARCH, hf:MODEL_ID or a local folder; default efficientnet_lite0 for images, all-MiniLM-L6-v2 for text; auto ranks the installed backbones of the data's modality by LogME on the training data and uses the best (the ranking is saved in the run config)")
    strategy: Literal["linear-probe", "finetune", "lp-ft", "lora", "l2sp", "contrastive", "auto"] = Field("linear-probe", description="how the backbone is adapted: linear-probe (frozen, cached features + logistic regression), finetune (full or partial), lp-ft (linear probe, then fine-tune from it), lora (low-rank adapters), l2sp (fine-tune held near the pretrained weights), contrastive (top layers tuned so that same-class examples are close, every pair of a batch, then the linear probe on the tuned embeddings; few labelled texts per class), auto (a planner chooses among linear-probe, lp-ft, finetune and lora from the data and the budget, and explains why in the run config)")
    task: str = Field(DEFAULT_TASK, description="what a label is (`transferkit.tasks`): classification (one class per example, the default), regression (a numeric target) multilabel (a set of labels per example: a|b, a;b or a JSON list) or detection (boxes: DATA is a COCO annotations.json or folder, a YOLO folder with classes.txt or data.yaml, or a Pascal VOC folder; an FCOS detector on the backbone, scored by COCO mAP); the task decides the head, the loss, the probe, the metrics and the verdict's measure, and is saved with the model")
    budget: float | None = Field(None, gt=0, json_schema_extra={"cli_parse": "config"}, description="strategy auto: time budget of the run in seconds (YAML and CLI also take 90s, 20m, 1.5h); the planner picks a strategy and a number of epochs whose estimated cost fits, and training stops when the budget is spent")
    interval: float = Field(0.9, ge=0, lt=1, description="regression: nominal coverage of the split-conformal prediction intervals saved with the model (value ± a width from held-out residuals: --val, else out-of-fold probe predictions or the part held out for early stopping); predict and serve give low and high, the report the test coverage beside it; 0 gives none")
    calibrate: bool = Field(False, description="fit a temperature on validation data (--val, else the part held out for early stopping, else out-of-fold probe logits) so that predicted probabilities match accuracy; saved with the model and applied by predict")
    shots: int | None = Field(None, gt=0, description="keep at most this many training examples per class (few-shot experiments)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="part of each class held out for testing when no test data is given")
    baselines: list[Literal["raw", "scratch", "zero-shot"]] | None = Field(None, description="baselines run on the same split: raw (pixels / TF-IDF), scratch (same architecture from random weights, trained for the same budget), zero-shot (nearest class name in the backbone's embedding, when the label-name prior applies); default raw and zero-shot, plus scratch for training strategies on small data")
    probe_c: float | None = Field(None, gt=0, description="fixed inverse regularisation of the probe; default chosen on validation data")
    label_descriptions: str | None = Field(None, description="text classification: a CSV table label,description (one line about each class, one row per class; a class without a row keeps its name) embedded by the backbone for the label-name prior and the zero-shot row; use it when class names are codes or say little")
    label_prior: Literal["auto", "on", "off"] = Field("auto", description="text classification, linear probe: start the probe from the zero-shot classifier on the backbone's embedding of the class names (or --label-descriptions) and let cross-validation decide how far to move from it; auto = when the class names are words or descriptions are given; the zero-shot accuracy is reported as a row beside the baselines")
    probe_views: Literal["auto", "on", "off"] = Field("auto", description="image classification, linear probe: fixed augmented views of each training image (a flip and four corner crops, their features cached) as extra training rows of the probe, C chosen on the images alone; auto = when there are at most 20 training images per class (median), where it measured +2 to +4 points on Fashion-MNIST")
    max_length: int = Field(256, gt=0, description="text backbones: maximum tokens per text")
    image_size: int | None = Field(None, ge=16, le=2048, description="image backbones: input resolution in pixels (square) instead of the one the backbone was pretrained at; e.g. 112 for 28x28 images costs a quarter of 224's compute")
    # --- training strategies (finetune, lp-ft, lora, l2sp) ---------------------------------------------------
    epochs: int = Field(10, gt=0, description="training: maximum epochs (early stopping may end sooner)")
    lr: float | None = Field(None, gt=0, description="training: learning rate of the backbone (default: 1e-4 for finetune, lp-ft and l2sp, 1e-3 for lora)")
    head_lr: float | None = Field(None, gt=0, description="training: learning rate of the head (default: 10 x lr for a new head, lr for lp-ft's probed head)")
    weight_decay: float = Field(0.01, ge=0, description="training: AdamW weight decay (not on biases and norms; l2sp uses its own penalty instead)")
    warmup: float = Field(0.1, ge=0, lt=1, description="training: part of the steps with a linear learning-rate warm-up, before cosine decay")
    accumulate: int = Field(1, gt=0, description="training: gradient accumulation, batches per optimiser step")
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = Field("auto", description="training: numeric precision; auto = bf16 mixed on GPUs that have it, fp16 mixed on older GPUs, fp32 on the CPU")
    patience: int = Field(3, ge=0, description="training: early stopping after this many epochs without a better validation accuracy (0 = off)")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="training: part of each class held out of the training data for early stopping and checkpoint selection when no validation data is given")
    augment: Literal["none", "light", "medium", "heavy"] = Field("light", description="training: augmentation preset; images: flips, random resized crops, rotation, colour jitter, TrivialAugment, random erasing; text: token masking and dropout")
    auto_augment: Literal["randaugment", "trivialaugment", "none"] | None = Field(None, description="training, images: RandAugment or TrivialAugment instead of the preset's choice")
    mixup: float = Field(0.0, ge=0, description="training, images: mixup alpha (0 = off)")
    cutmix: float = Field(0.0, ge=0, description="training, images: cutmix alpha (0 = off)")
    resume: bool = Field(False, description="training: continue an interrupted run from its last checkpoint (same options and output or work_dir)")
    work_dir: str | None = Field(None, description="training: folder for checkpoints and logs (default: under the transferkit cache, one per output folder)")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI of the run (params, per-epoch metrics, test metrics, report, model folder) (default: a SQLite store in the transferkit cache, sqlite:///.../mlflow/mlflow.db); off disables MLflow")
    devices: int = Field(1, gt=0, description="training: processes / GPUs to train on (with distributed=ddp, or under torchrun)")
    num_nodes: int = Field(1, gt=0, description="training: machines taking part in a multi-node run (each with `devices` processes; launched by torchrun or a cluster scheduler such as SLURM)")
    distributed: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = Field("auto", description="training: Lightning's multi-device strategy (ddp for several processes or GPUs)")
    deterministic: bool = Field(True, description="training: deterministic algorithms, seeded (same run, same weights)")
    activation_checkpointing: bool = Field(False, description="training: recompute each layer group's activations in the backward pass instead of keeping them (much less memory for long inputs and large batches, about a third more compute)")
    init_from: str | None = Field(None, description="training: initialise the backbone from this checkpoint (.safetensors, or a transferkit model folder); tensors whose names and shapes match load, 1- and 3-channel input stems are converted, the rest is reported")
    finetune: FineTuneConfig = Field(default_factory=FineTuneConfig, description="finetune, lp-ft and l2sp: freezing, per-layer learning-rate decay, gradual unfreezing")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="lora: rank, alpha, dropout, target layers")
    l2sp: L2SPConfig = Field(default_factory=L2SPConfig, description="l2sp: strengths of the pull to the pretrained weights (alpha) and of the head's decay (beta)")
    contrastive: ContrastiveConfig = Field(default_factory=ContrastiveConfig, description="contrastive: the pair loss, its temperature and how many top layer groups train")

    def backbone_options(self, modality: str) -> dict[str, Any]:
        """The ``create_backbone`` options this run asks for: the token limit for text, the resolution for images."""
        return get_modality(modality).backbone_options(max_length=self.max_length, image_size=self.image_size)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        from transferkit.tasks import TASKS, WORKFLOW_TASKS, task_names

        if value not in TASKS and value not in WORKFLOW_TASKS:
            raise ValueError(f"unknown task {value!r}; known tasks: {', '.join([*task_names(), *WORKFLOW_TASKS])}")
        return value

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_seconds(cls, value: Any) -> Any:
        from transferkit.strategies.budget import parse_duration

        return parse_duration(value) if isinstance(value, str) else value

    def resolved(self, **facts: Any) -> dict[str, Any]:
        """The config as saved next to outputs: every option's value plus facts decided during the run."""
        return {"transferkit_version": __version__, **self.model_dump(), **facts}

    def unused_options(self, strategy: str | None = None) -> dict[str, tuple[str, ...]]:
        """The options set to something other than their default that ``strategy`` (default: this config's)
        ignores, each with the strategies that use it (``lora.rank`` -> ``("lora",)``)."""
        from transferkit.engine.run_record import flatten

        from transferkit.strategies.registry import get_strategy

        strategy = strategy or self.strategy
        values, defaults = flatten(self.model_dump()), flatten(type(self).model_construct().model_dump())
        scratch = not get_strategy(strategy).trains_network and "scratch" in (self.baselines or [])
        return {name: users for name, users in option_users().items()
                if values.get(name) != defaults.get(name) and strategy not in users
                and not (scratch and name in SCRATCH_BASELINE_OPTIONS)}

    def check_options_apply(self, strategy: str | None = None, *, chosen_by: str | None = None) -> None:
        """Options that ``strategy`` would silently ignore: a :class:`ConfigError` for ``init_from`` with the linear
        probe (its features would come from the pretrained weights, not the checkpoint: another model than the
        one asked for), else one warning naming each ignored option and the strategies that use it.
        ``chosen_by = "auto"``: the planner chose ``strategy`` (it sets the epochs itself)."""
        strategy = strategy or self.strategy
        unused = self.unused_options(strategy)
        if chosen_by == "auto":
            unused.pop("epochs", None)
        if not unused:
            return
        from transferkit.options import flag_name
        from transferkit.strategies.registry import get_strategy

        entry = get_strategy(strategy)
        named = f"--strategy {strategy}" + (f" (chosen by --strategy {chosen_by})" if chosen_by else "")
        if "init_from" in unused and not entry.trains_network and not chosen_by:
            raise ConfigError(f"{named} does not use --init-from: the probe's features would come from the "
                              "backbone's pretrained weights, not from the checkpoint. Give a training strategy "
                              "(--strategy finetune, lp-ft, lora or l2sp) to start from it, or leave --init-from out.")
        by_users: dict[tuple[str, ...], list[str]] = {}
        for name, users in unused.items():
            # a strategy of another verb (distill) is named only to a run of that verb
            shown = tuple(u for u in users if u == strategy or get_strategy(u).verb == entry.verb)
            by_users.setdefault(shown, []).append(flag_name(name))
        parts = [f"{', '.join(flags)} (used by {', '.join(users)})" for users, flags in by_users.items()]
        import warnings

        warnings.warn(f"{named} ignores {'; '.join(parts)}; leave them out, or choose a strategy that uses them.",
                      stacklevel=2)


class EvaluateConfig(DataOptions):
    """Options of ``evaluate``: how the labelled data is read (:class:`~transferkit.options.DataOptions`), where the
    model runs, and which task of a multi-task model is scored."""

    batch_size: int = Field(64, gt=0, description="examples per forward pass")
    device: str = Field("auto", description="cpu, cuda, cuda:1, ... or auto")
    cache_dir: str | None = Field(None, description="feature cache folder (default: $TRANSFERKIT_CACHE/features or ~/.cache/transferkit/features)")
    task: str | None = Field(None, description="the task to evaluate, for a multi-task model")
    progress: bool = Field(True, description="show progress of long steps (the CLI's --quiet turns it off)")


class PredictConfig(DataOptions):
    """Options of ``predict``: how tables of inputs are read, where the model runs, what each prediction holds and
    where the predictions go."""

    top_k: int = Field(3, ge=1, description="probabilities of the K most likely classes per input")
    batch_size: int = Field(64, gt=0, description="examples per forward pass")
    device: str = Field("auto", description="cpu, cuda, cuda:1, ... or auto")
    output: str | None = Field(None, description="write the predictions to this file (.jsonl or .csv) instead of printing them")
    overwrite: bool = Field(False, description="replace the output file if it exists")
    runtime: str = Field("torch", description="torch, or onnx: ONNX Runtime on the CPU with MODEL/model.onnx (from `transferkit export`, or int8 from `transferkit compress`)")
    onnx_file: str | None = Field(None, description="with --runtime onnx: this ONNX file instead of MODEL/model.onnx")
    processes: int = Field(1, ge=1, description="with --runtime torch: CPU processes computing the backbone's features, each a share of the inputs (one thread each on a machine of as many cores); one merged output, the predictions of one process")
    task: str | None = Field(None, description="the task to predict, for a multi-task model")
    score_threshold: float | None = Field(None, ge=0, le=1, description="detectors: the lowest score of a box returned (default 0.3)")
    draw: str | None = Field(None, description="detectors: write each image with its predicted boxes into this new folder")
    progress: bool = Field(True, description="show progress of long steps (the CLI's --quiet turns it off)")


def option_users() -> dict[str, tuple[str, ...]]:
    """Options that only some strategies use -> those strategies (options not listed apply to every strategy), as
    the strategy registry's entries declare them."""
    from transferkit.strategies.registry import option_users as declared

    return declared()


def describe_errors(exc: ValidationError, origin: str) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(config)"
        if error["type"] == "extra_forbidden":
            section = FitConfig.model_fields.get(str(error["loc"][0])) if len(error["loc"]) > 1 else None
            owner = section.annotation if section is not None and isinstance(section.annotation, type) else FitConfig
            allowed = ", ".join(getattr(owner, "model_fields", FitConfig.model_fields))
            lines.append(f"unknown option '{field}'; allowed options are: {allowed}")
        else:
            message = str(error["msg"]).removeprefix("Value error, ").removeprefix(f"option '{field}': ")
            lines.append(f"option '{field}': {message} (got {error.get('input')!r})")
    return f"{origin}: " + "; ".join(lines)


def make_config(origin: str = "options", **values: Any) -> FitConfig:
    """Build a FitConfig, turning validation problems into one ConfigError that names each option."""
    try:
        return FitConfig(**values)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, origin)) from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file into a mapping of options; errors name the file and the problem."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of option: value, got {type(data).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def merge_config(file_values: dict[str, Any], flag_values: dict[str, Any], origin: str,
                 build: Any = None) -> FitConfig:
    """Defaults < config file < flags given on the command line (``None`` means "not given"); ``build(origin,
    **values)`` makes the config (default :func:`make_config`)."""
    values = dict(file_values)
    for key, value in flag_values.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **{k: v for k, v in value.items() if v is not None}}
        elif isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
            if value:
                values[key] = value
        else:
            values[key] = value
    return (build or make_config)(origin, **values)
