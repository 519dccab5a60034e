"""The steps that open and end the verbs that train or evaluate a model on the user's data (fit, cv, tune, adapt,
distill): each a small function, so that a verb reads as the list of its steps.

Opening: build the run's config from the call (:func:`build_config`), check what can be checked before any work
(:func:`training_requirement`, :func:`check_runtime`, :func:`check_model_output`), load and check the data
(:func:`load_dataset`, :func:`load_training_data`, :func:`load_splits`), pick the backbone (:func:`backbone_name`,
which resolves ``auto``) and build it (:func:`build_backbone`).

Ending: save the model as soon as it exists (:func:`save_early`), keep its folder up to date as the late steps
finish (:func:`update_run_folder`, with :class:`RunLog` for the timings, notes and pending steps), and remove the
run's work folder (:func:`clean_up_training`). Heavy libraries load inside the steps that need them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.modalities import get_modality

# --- opening -------------------------------------------------------------------------------------------------------


def source_origin(source: Any) -> str | None:
    """How a data source (a path or a :class:`~transferkit.data.Dataset`) is named in a run's config: the path, the
    dataset's origin, or its type; ``None`` for no source."""
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "origin", type(source).__name__)


def build_config(make: Callable[..., Any], config: Any, sources: dict[str, Any], options: dict[str, Any]) -> Any:
    """The run's config: ``config`` with ``options`` laid over it, or, without ``config``, one made from ``options``
    and the :func:`source_origin` of each of ``sources`` (``{"data": ..., "val": ...}``; options of the same name win).
    ``make`` builds the verb's config class and turns validation problems into a ``ConfigError``."""
    if config is None:
        named = {name: source_origin(source) for name, source in sources.items() if source is not None}
        return make(**{**named, **options})
    if options:
        return make(**{**config.model_dump(), **options})
    return config


def training_requirement(config: Any, trains_network: bool) -> str | None:
    """What needs the training libraries in this run (named in the error when they are missing): the strategy when
    it trains a network, else the scratch baseline when it was asked for, else ``None``."""
    if trains_network:
        return config.strategy
    if config.baselines and "scratch" in config.baselines:
        return "the scratch baseline"
    return None


def check_runtime(device: str, training: str | None = None) -> None:
    """Before any data is read: ``device`` exists here (a GPU that is not here fails now, not after the features),
    and, when ``training`` names what trains, the training libraries are installed."""
    from transferkit.features.extract import resolve_device

    resolve_device(device)
    if training is not None:
        from transferkit.strategies.requirements import check_training_installed

        check_training_installed(training)


def check_model_output(config: Any, inputs: Iterable[tuple[str, Any]]) -> Any:
    """Before any work: the model folder ``config.output`` can be written and is none of the run's ``inputs``
    (``(role, path)`` pairs). With ``config.resume``, a model that the interrupted run saved but did not finish is
    its own and may be replaced: the config returned then has ``overwrite`` set."""
    if config.output is None:
        return config
    from transferkit.models.folder import check_output_folder, unfinished_model

    if config.resume and unfinished_model(config.output):
        config = config.model_copy(update={"overwrite": True})
    check_output_folder(config.output, config.overwrite, inputs=inputs)
    return config


def load_dataset(source: Any, config: Any) -> Dataset:
    """``source`` (a path or a :class:`~transferkit.data.Dataset`, returned as is) read with the config's table
    options (columns, encoding, delimiter, label normalisation) and task."""
    from transferkit.data.sources import load_data

    return load_data(source, config, task=config.task)


def load_training_data(source: Any, config: Any) -> Dataset:
    """The training data: loaded, checked as training data, and cut to ``config.shots`` examples per class when
    given (the same examples for the same ``config.seed``)."""
    from transferkit.data.splits import sample_per_class
    from transferkit.data.validation import validate_dataset

    dataset = load_dataset(source, config)
    validate_dataset(dataset, role="training")
    if config.shots is not None:
        dataset = sample_per_class(dataset, config.shots, config.seed)
    return dataset


def load_splits(data: Any, val: Any, test: Any, config: Any) -> tuple[Dataset, Dataset | None, Dataset]:
    """A run's training, validation and test data, loaded and checked (each set, and the sets against each other);
    ``config.shots`` examples per class kept for training; without test data, ``config.test_fraction`` of each
    class held out of the training data. The validation data stays ``None`` when not given."""
    from transferkit.data.splits import sample_per_class, stratified_split
    from transferkit.data.validation import validate_dataset, validate_splits

    train = load_dataset(data, config)
    validate_dataset(train, role="training")
    val_ds = load_dataset(val, config) if val is not None else None
    test_ds = load_dataset(test, config) if test is not None else None
    others = [d for d in (val_ds, test_ds) if d is not None]
    for other in others:
        validate_dataset(other, role="evaluation")
    validate_splits(train, others, normalize_labels=config.normalize_labels)
    if config.shots is not None:
        train = sample_per_class(train, config.shots, config.seed)
    if test_ds is None:
        train, test_ds = stratified_split(train, config.test_fraction, config.seed, names=("train", "test"))
    return train, val_ds, test_ds


def backbone_name(config: Any, dataset: Dataset, default: str | None = None) -> tuple[str, dict[str, Any]]:
    """The backbone the run uses and the facts of its choice: ``config.backbone``, else ``default``, else the
    default backbone of the data's modality; ``auto`` is the installed backbone that ranks first on ``dataset``
    (its ranking facts returned for the run config; empty otherwise)."""
    name = config.backbone or default or get_modality(dataset.modality).default_backbone
    if name != "auto":
        return name, {}
    from transferkit.selection.ranking import choose_backbone

    return choose_backbone(dataset, config)


def build_backbone(name: str, config: Any, dataset: Dataset, *, subject: str | None = None) -> Any:
    """The backbone ``name`` with the run's options (token limit, resolution), random parts seeded with
    ``config.seed``; an error when it takes another kind of input than ``dataset`` holds. ``subject`` names it in
    that error (default ``backbone 'NAME'``)."""
    import torch

    from transferkit.backbones import create_backbone

    torch.manual_seed(config.seed)  # random:... backbones start from the same weights for the same seed
    backbone = create_backbone(name, **config.backbone_options(dataset.modality))
    if backbone.modality != dataset.modality:
        who = subject or f"backbone '{name}'"
        raise ConfigError(
            f"{who} takes {backbone.modality} input but {dataset.origin} holds "
            f"{dataset.modality} data; choose a {dataset.modality} backbone (`transferkit models`)."
        )
    return backbone


def feature_cache(config: Any) -> Any:
    """The on-disk feature cache the run reads and fills (``config.cache_dir``, else the default one), or ``None``
    with ``config.no_cache``."""
    if config.no_cache:
        return None
    from transferkit.features.cache import FeatureCache, default_cache_dir

    return FeatureCache(config.cache_dir or default_cache_dir())


# --- ending --------------------------------------------------------------------------------------------------------


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the seconds the block takes as ``timings[name]`` (when it finishes)."""
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


@dataclass
class RunLog:
    """What a run's ``metrics.json`` holds beside its figures: the seconds of each step, the notes of optional
    late steps that failed, and the steps not done yet (a folder saved with ``pending`` is an unfinished run that
    ``--resume`` may replace)."""

    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        """``timings_s``, and ``notes`` and ``pending`` when there are any, in that order."""
        return {"timings_s": self.timings, **({"notes": self.notes} if self.notes else {}),
                **({"pending": ", ".join(self.pending)} if self.pending else {})}


def network_interval(model: Any, task: Any, config: Any, train: Dataset, val: Dataset | None) -> Any:
    """The task's prediction interval (regression: split conformal at ``config.interval``) of a trained network:
    calibrated on ``val``, else on the part of ``train`` that ``train_with_strategy`` held out for early stopping
    (the same seeded split, never trained on); ``None`` for tasks without intervals or ``interval`` 0."""
    from transferkit.data.splits import stratified_split

    if not task.gives_intervals or not getattr(config, "interval", 0):
        return None
    held_out = val if val is not None else stratified_split(
        train, config.val_fraction, config.seed, names=("train", "validation"))[1]
    proba = model.predict_proba(held_out, batch_size=config.batch_size, device=config.device,
                                num_workers=config.num_workers, cache=None, progress=False)
    where = "the validation data" if val is not None else "the part of the training data held out for early stopping"
    return task.prediction_interval(task.targets(held_out, model.classes), proba, config.interval,
                                    calibrated_on=where)


def save_early(model: Any, config: Any, run_config: dict[str, Any], metrics: dict[str, Any],
               extra_files: dict[str, str] | None = None) -> Path | None:
    """Save ``model`` in ``config.output`` as soon as it exists (``None`` when there is no output folder): the
    evaluation, baselines, plots, report and tracking come after and update the folder, so none of them can lose
    the model."""
    if config.output is None:
        return None
    from transferkit.models.artifacts import save_model

    return save_model(model, config.output, overwrite=config.overwrite, run_config=run_config, metrics=metrics,
                      extra_files=extra_files or {}, keep_beside=True)


def yaml_text(values: dict[str, Any]) -> str:
    """``values`` as YAML, in their order (``run_config.yaml``)."""
    import yaml

    return yaml.safe_dump(values, sort_keys=False)


def update_run_folder(folder: Path | None, metrics: dict[str, Any], summary: str, run_config: dict[str, Any]) -> None:
    """Bring a saved model folder up to date: ``metrics.json``, ``summary.txt``, the model card (``README.md``) and
    ``run_config.yaml``. Nothing happens without a folder."""
    if folder is None:
        return
    from transferkit.models.artifact_kinds import model_card
    from transferkit.models.folder import update_model_folder

    update_model_folder(folder, metrics=metrics, files={
        "summary.txt": summary + "\n", "README.md": model_card(folder, metrics), "run_config.yaml": yaml_text(run_config)})


def clean_up_training(config: Any, train: Dataset, notes: list[str]) -> None:
    """Remove the work folder of a run that trained (checkpoints, logs); a failure is a note, not an error."""
    from transferkit.models.folder import late_step
    from transferkit.strategies.run import finish_run

    late_step("cleaning up the run's work folder", lambda: finish_run(config, train), notes)


# --- opening of the verbs that use a saved model (evaluate, predict) ----------------------------------------------


def resolve_model(model: Any, task: str | None = None) -> Any:
    """A model folder or a loaded model as a model with one set of classes: ``task`` picks one task of a multi-task
    model (required for one; an error for any other model)."""
    from transferkit.models.multitask_model import MultiTaskModel

    if isinstance(model, (str, os.PathLike)):
        from transferkit.models.artifacts import load_model

        model = load_model(model, task=task)
    elif task is not None:
        if not isinstance(model, MultiTaskModel):
            raise ConfigError(f"task={task!r} was given, but the model is not a multi-task one.")
        model = model.task_model(task)
    if isinstance(model, MultiTaskModel):
        raise ConfigError(f"this is a multi-task model ({', '.join(model.tasks)}): choose one task with "
                          f"--task (task=...), e.g. --task {model.tasks[0]}.")
    refuse_recommender(model)
    return model


def refuse_recommender(model: Any) -> None:
    """A recommender has no predictions of labels or values: the verbs that need them say where to go instead."""
    if getattr(model, "recommends", False):
        raise ConfigError("this is a recommender (saved by `transferkit recommend fit`), not a model that predicts "
                          "labels or values: use `transferkit recommend top` / `recommend evaluate` (Python: "
                          "transferkit.recommend_top / recommend_evaluate), or `transferkit serve` (POST /recommend).")


def check_model_input(model: Any, dataset: Dataset) -> None:
    """``dataset`` holds the kind of input ``model`` takes; the error names the model's backbone and the data."""
    from transferkit.data.validation import check_modality

    backbone = getattr(getattr(model, "backbone", None), "name", None)
    check_modality(dataset, getattr(model, "modality", None), f"the model ({backbone})" if backbone else "the model")
