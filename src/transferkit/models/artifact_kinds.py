"""The registry of model-folder kinds: ``config.json``'s ``"kind"`` -> :class:`ArtifactKind`, the entry that saves
and loads a model of that kind. :func:`transferkit.models.artifacts.save_model` and
:func:`~transferkit.models.artifacts.load_model` ask the registry; nothing else branches on a kind's name.

Every kind is written in the one folder format of :mod:`transferkit.models.folder`: weights in safetensors,
everything else JSON (and YAML / Markdown for people), checksums in ``config.json``, written under a temporary name
and renamed into place; loading never unpickles. Folders without ``kind`` are single models (format 1); the other
kinds carry ``"kind"`` and ``format_version`` 2:

- ``single``: one backbone and one head (:class:`~transferkit.models.model.TransferModel`); the backbone's weights
  are saved when training changed them or when it cannot be rebuilt from its name (random weights).
- ``multitask``: ``backbone.*`` and ``heads.<task>.*`` tensors; ``tasks`` maps each task to its classes.
- ``ensemble``: each member is a complete model folder in ``members/<i>/``; ``model.safetensors`` holds the
  member weights (``ensemble.weights``); the members' classes are aligned to ``classes``.
- ``stacked``: several pretrained backbones (rebuilt from their names and checked by weights digest, like a
  linear-probe model), per backbone an optional PCA projection (``reduce.<i>.mean``, ``reduce.<i>.components``),
  and one ``LinearHead`` (``head.*``) on the concatenated features.
- ``recommender``: user and item vectors from ids, the projection of item content features, ids and backbone
  (:class:`~transferkit.models.recommender.Recommender`; ``transferkit recommend``).
- ``detection``: an object detector (:class:`~transferkit.models.detector.DetectionModel`): the whole FCOS network
  (``network.*``), its ``classes`` and ``detector`` (backbone name, input size, pyramid and head widths).

A new kind is one :class:`ArtifactKind` (its model class, a ``save`` and a ``load`` hook) and one
:func:`register_artifact_kind` call; the model classes are imported when a hook runs, so the registry costs nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from transferkit._registry import Registry
from transferkit.errors import ArtifactError, TransferkitError
from transferkit.models.folder import (CONFIG_FILE, RESAVE, backbone_spec, check_classes, check_head_width,
                                       load_state, read_config, read_weights, write_model_folder)
from transferkit.tasks import DEFAULT_TASK

@dataclass(frozen=True)
class ArtifactKind:
    """What a model-folder kind declares, and the hooks :mod:`transferkit.models.artifacts` calls."""

    name: str
    #: "module:Class" of the model it saves (imported on first use; a subclass counts too).
    model_class: str
    #: (model, folder, metrics=, run_config=, overwrite=, extra_files=, keep_beside=) -> the folder written.
    save: Callable[..., Path]
    #: (folder, checked config.json, task) -> the model; ``task`` is not None only for kinds with ``has_tasks``.
    load: Callable[[Path, dict[str, Any], str | None], Any]
    #: True: ``load_model(folder, task=NAME)`` picks one of its tasks.
    has_tasks: bool = False

    def holds(self, model: Any) -> bool:
        """True when ``model`` is an instance of this kind's model class."""
        import importlib

        module, _, name = self.model_class.partition(":")
        return isinstance(model, getattr(importlib.import_module(module), name))


KIND_FORMAT_VERSION = 2


def _write_folder(folder: str | Path, kind: str, tensors: dict[str, Any], description: dict[str, Any], *,
                  metrics: dict | None, run_config: dict | None, overwrite: bool, card: str,
                  extra_files: dict[str, str] | None = None,
                  fill: Callable[[Path], None] | None = None, keep_beside: bool = False) -> Path:
    return write_model_folder(folder, tensors, {"format_version": KIND_FORMAT_VERSION, "kind": kind, **description},
                              metrics=metrics, run_config=run_config, overwrite=overwrite, card=lambda _: card,
                              weights_metadata={"kind": kind}, extra_files=extra_files, fill=fill,
                              keep_beside=keep_beside)


# --- single ----------------------------------------------------------------------------------------------

def save_single(model: Any, folder: str | Path, *, metrics: dict | None = None, run_config: dict | None = None,
               include_backbone: bool | None = None, overwrite: bool = False, extra_files: dict[str, str] | None = None,
               keep_beside: bool = False) -> Path:
    """Write ``model`` (a :class:`~transferkit.models.model.TransferModel`) to ``folder``; returns the folder path
    (see :func:`~transferkit.models.folder.write_model_folder` for ``keep_beside``)."""
    backbone = model.backbone
    if include_backbone is None:
        from transferkit.strategies.registry import keeps_pretrained_backbone

        include_backbone = not keeps_pretrained_backbone(model.strategy) or backbone.name.startswith("random:")
    tensors = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    if include_backbone:
        tensors.update({f"backbone.{k}": v for k, v in backbone.state_dict().items()})
    header = {
        "strategy": model.strategy,
        "task": getattr(model, "task", DEFAULT_TASK),
        "temperature": float(getattr(model, "temperature", 1.0)),
        **({"interval": model.interval} if getattr(model, "interval", None) else {}),
        "modality": model.modality,
        "classes": model.classes,
        "backbone": backbone_spec(backbone, include_backbone),
        "head": {"type": type(model.head).__name__, "in_features": model.head.in_features,
                 "num_classes": model.head.num_classes,
                 **({"options": model.head.options()} if hasattr(model.head, "options") else {})},
    }
    return write_model_folder(folder, tensors, header, metrics=metrics, run_config=run_config, overwrite=overwrite,
                              card=lambda config: _model_card(config, metrics or {}), extra_files=extra_files,
                              keep_beside=keep_beside)


def model_card(folder: str | Path, metrics: dict[str, Any]) -> str:
    """The ``README.md`` of a saved single model with ``metrics`` (to refresh it after late steps)."""
    return _model_card(json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8")), metrics)



def _load_single(folder: Path, config: dict[str, Any]):
    from transferkit.backbones import create_backbone
    from transferkit.models.heads import HEAD_TYPES
    from transferkit.models.model import TransferModel

    spec = config["backbone"]
    head_spec = config["head"]
    if head_spec["type"] not in HEAD_TYPES:
        raise ArtifactError(f"{folder}: unknown head type {head_spec['type']}.")
    classes = check_classes(config["classes"], head_spec["num_classes"], "'classes'", folder)
    included = spec.get("weights_included", False)
    tensors = read_weights(folder, ("head.", "backbone.") if included else ("head.",))
    name = spec["name"].removeprefix("random:") if included else spec["name"]
    backbone = create_backbone(name, pretrained=not included, **spec.get("options", {}))
    backbone.name = spec["name"]
    if spec.get("architecture_changes"):  # structured pruning: shrink the layers before loading their weights
        from transferkit.compress.prune import apply_architecture_changes

        apply_architecture_changes(backbone, spec["architecture_changes"])
    if included:
        state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        load_state(backbone, state, folder)
    elif backbone.weights_digest() != spec.get("weights_digest"):
        raise ArtifactError(
            f"{folder}: the installed weights of backbone '{spec['name']}' differ from those this model was trained "
            "with; install the same weights package version, or re-run fit."
        )
    head = HEAD_TYPES[head_spec["type"]](head_spec["in_features"], head_spec["num_classes"],
                                         **head_spec.get("options", {}))
    load_state(head, {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}, folder)
    check_head_width(head, backbone.num_features, folder)
    temperature = config.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ArtifactError(f"{folder / CONFIG_FILE}: temperature {temperature!r} is not a positive number; restore "
                            f"the saved config.json, or {RESAVE}.")
    model = TransferModel(backbone, head, classes, strategy=config.get("strategy", "linear-probe"),
                          temperature=float(temperature), task=_saved_task(config, folder))
    model.interval = _saved_interval(config, folder)
    return model.eval()


def _load_single_checked(folder: Path, config: dict[str, Any], task: str | None = None):
    try:
        return _load_single(folder, config)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ArtifactError(f"{folder / CONFIG_FILE}: entry {exc} is missing or malformed; restore the saved "
                            f"config.json, or {RESAVE}.") from exc


def _saved_interval(config: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """The prediction interval recorded in ``config.json`` (``None`` when the model has none), checked: a nominal
    ``level`` in (0, 1) and a finite ``half_width`` >= 0 (see :mod:`transferkit.evaluation.conformal`)."""
    value = config.get("interval")
    if value is None:
        return None
    numbers = isinstance(value, dict) and all(
        isinstance(value.get(key), (int, float)) and not isinstance(value.get(key), bool)
        for key in ("level", "half_width"))
    if not numbers or not 0 < value["level"] < 1 or not 0 <= value["half_width"] < math.inf:
        raise ArtifactError(f"{folder / CONFIG_FILE}: 'interval' must hold a 'level' in (0, 1) and a finite "
                            f"'half_width' >= 0; got {value!r}. Restore the saved config.json, or {RESAVE}.")
    return dict(value)


def _saved_task(config: dict[str, Any], folder: Path) -> str:
    """The task recorded in ``config.json`` (folders saved before tasks were recorded hold classifiers)."""
    from transferkit.tasks import TASKS, task_names

    name = config.get("task", DEFAULT_TASK)
    if not isinstance(name, str) or name not in TASKS:
        raise ArtifactError(f"{folder / CONFIG_FILE}: task {name!r} is not one this transferkit knows (known: "
                            f"{', '.join(task_names())}); install the transferkit version that saved the model, or "
                            f"{RESAVE}.")
    return name



def _model_card(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    from transferkit.tasks import DEFAULT_TASK, get_task

    backbone = config["backbone"]
    task = get_task(config.get("task", DEFAULT_TASK))
    lines = [
        f"# transferkit model: {backbone['name']} + {config['strategy']}",
        "",
        f"- task: {config['modality']} {task.name}, {len(config['classes'])} outputs: {', '.join(config['classes'][:20])}",
        f"- backbone: `{backbone['name']}` ({backbone['num_features']}-d features); preprocessing "
        f"`{json.dumps(backbone['preprocessing'])}`",
        f"- strategy: {config['strategy']}; made by transferkit {config['transferkit_version']} on {config['created']}",
    ]
    test = metrics.get("test")
    if test:
        figures = ", ".join(f"{header} {test[key]:.4f}" for key, header in task.summary_columns
                            if isinstance(test.get(key), (int, float)))
        lines.append(f"- test {figures} on {test['n']} held-out examples")
    for comparison in metrics.get("comparisons", []):
        lines.append(f"- against the {comparison['baseline']} baseline: {comparison['verdict']} "
                     f"({100 * comparison['difference']:+.1f} points, interval {100 * comparison['ci_low']:+.1f} to "
                     f"{100 * comparison['ci_high']:+.1f})")
    lines += ["", "Load it with `transferkit.load_model(folder)`; predict with `transferkit predict FOLDER INPUT`.", ""]
    return "\n".join(lines)


def _build_backbone(spec: dict[str, Any], folder: Path, state: dict[str, Any] | None):
    """A backbone from its saved spec: rebuilt with random weights and loaded from ``state`` when the weights were
    saved, else rebuilt from the installed pretrained weights and checked against the saved digest."""
    from transferkit.backbones import create_backbone

    included = spec.get("weights_included", False)
    name = spec["name"].removeprefix("random:") if included else spec["name"]
    backbone = create_backbone(name, pretrained=not included, **spec.get("options", {}))
    backbone.name = spec["name"]
    if included:
        load_state(backbone, state or {}, folder)
    elif backbone.weights_digest() != spec.get("weights_digest"):
        raise ArtifactError(f"{folder}: the installed weights of backbone '{spec['name']}' differ from those this "
                            "model was made with; install the same weights package version, or re-run it.")
    return backbone


def _prefixed(tensors: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# --- multi-task ----------------------------------------------------------------------------------------------

def save_multitask_model(model: Any, folder: str | Path, *, metrics: dict | None = None,
                         run_config: dict | None = None, overwrite: bool = False,
                         extra_files: dict[str, str] | None = None, keep_beside: bool = False) -> Path:
    """Write a :class:`~transferkit.models.multitask_model.MultiTaskModel` (backbone weights included: it was trained)."""
    tensors = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    tensors.update({f"heads.{k}": v for k, v in model.heads.heads.state_dict().items()})
    description = {
        "strategy": "multitask", "modality": model.modality,
        "backbone": backbone_spec(model.backbone, included=True),
        "tasks": {task: {"classes": classes, "head": {"type": "LinearHead", "in_features": model.heads.in_features,
                                                      "num_classes": len(classes)}}
                  for task, classes in model.task_classes.items()},
    }
    lines = [f"# transferkit multi-task model: {model.backbone.name}", "",
             f"- {model.modality} classification, {len(model.tasks)} tasks sharing one backbone:"]
    for task, classes in model.task_classes.items():
        test = (metrics or {}).get("test", {}).get(task)
        score = f"; test accuracy {test['accuracy']:.4f} on {test['n']} examples" if test else ""
        lines.append(f"  - `{task}`: {len(classes)} classes ({', '.join(classes[:10])}){score}")
    lines += ["", "Load it with `transferkit.load_model(folder)` (every task: `model.predict(data)`; one task: "
              "`model.predict(data, task=...)`), or `transferkit.load_model(folder, task=NAME)` for a single-task "
              "model.", ""]
    return _write_folder(folder, "multitask", tensors, description, metrics=metrics, run_config=run_config,
                         overwrite=overwrite, card="\n".join(lines), extra_files=extra_files, keep_beside=keep_beside)


def _load_multitask(folder: Path, config: dict[str, Any], task: str | None):
    from transferkit.models.heads import HeadSet
    from transferkit.models.multitask_model import MultiTaskModel

    tasks = config["tasks"]
    if not isinstance(tasks, dict) or not tasks:
        raise ArtifactError(f"{folder / 'config.json'}: 'tasks' names no task; restore the saved config.json, or "
                            f"{RESAVE}.")
    classes = {name: check_classes(spec["classes"], spec["head"]["num_classes"], f"the classes of task '{name}'",
                                   folder) for name, spec in tasks.items()}
    widths = {spec["head"]["in_features"] for spec in tasks.values()}
    if len(widths) != 1:
        raise ArtifactError(f"{folder / 'config.json'}: the task heads read features of different widths "
                            f"{sorted(widths)}; restore the saved config.json, or {RESAVE}.")
    tensors = read_weights(folder, ("backbone.", "heads."))
    backbone = _build_backbone(config["backbone"], folder, _prefixed(tensors, "backbone."))
    in_features = widths.pop()
    heads = HeadSet(in_features, {name: spec["head"]["num_classes"] for name, spec in tasks.items()})
    load_state(heads.heads, _prefixed(tensors, "heads."), folder)
    check_head_width(heads, backbone.num_features, folder)
    model = MultiTaskModel(backbone, heads, classes).eval()
    if task is None:
        return model
    if task not in tasks:
        raise ArtifactError(f"{folder}: no task '{task}'; this model has tasks {', '.join(tasks)}.")
    return model.task_model(task)


# --- ensemble ------------------------------------------------------------------------------------------------

def save_ensemble(model: Any, folder: str | Path, *, metrics: dict | None = None, run_config: dict | None = None,
                  overwrite: bool = False, extra_files: dict[str, str] | None = None, keep_beside: bool = False) -> Path:
    """Write an :class:`~transferkit.models.combined.EnsembleModel`: each member as a model folder inside it."""
    import torch

    def fill(staging: Path) -> None:
        for index, member in enumerate(model.members):
            save_any(member, staging / "members" / str(index))

    description = {"strategy": "ensemble", "modality": model.modality, "classes": model.classes,
                   "members": [f"members/{i}" for i in range(len(model.members))],
                   "member_backbones": [m.backbone.name for m in model.members],
                   "weights": [float(w) for w in model.weights], "task": model.task,
                   "combine": "weighted mean of the members' outputs (class probabilities, values or per-label "
                              "probabilities, as the task gives them)"}
    card = "\n".join([f"# transferkit ensemble of {len(model.members)} models", "",
                      f"- {model.modality} {model.task}, {len(model.classes)} outputs",
                      "- members (weight, backbone, strategy): " + "; ".join(
                          f"{w:.3f} {m.backbone.name} {m.strategy}" for w, m in zip(model.weights, model.members)),
                      "", "Load it with `transferkit.load_model(folder)`.", ""])
    tensors = {"ensemble.weights": torch.as_tensor(list(model.weights), dtype=torch.float64)}
    return _write_folder(folder, "ensemble", tensors, description, metrics=metrics, run_config=run_config,
                         overwrite=overwrite, card=card, extra_files=extra_files, fill=fill, keep_beside=keep_beside)


def _load_ensemble(folder: Path, config: dict[str, Any], task: str | None = None):
    from transferkit.models.combined import EnsembleModel

    relatives = config["members"]
    if not isinstance(relatives, list) or not relatives:
        raise ArtifactError(f"{folder / 'config.json'}: 'members' lists no member folder; restore the saved "
                            f"config.json, or {RESAVE}.")
    tensors = read_weights(folder, ("ensemble.",))
    weights = tensors.get("ensemble.weights")
    if weights is None or tuple(weights.shape) != (len(relatives),):
        raise ArtifactError(f"{folder / 'model.safetensors'}: holds {0 if weights is None else weights.numel()} "
                            f"ensemble weights for {len(relatives)} members; restore the saved files, or {RESAVE}.")
    members = []
    for relative in relatives:
        path = (folder / str(relative)).resolve()
        if folder.resolve() not in path.parents:
            raise ArtifactError(f"{folder}: member path {relative} points outside the model folder.")
        members.append(load_any(path, read_config(path)))
    classes = config["classes"]
    check_classes(classes, len(members[0].classes), "'classes'", folder)
    try:
        return EnsembleModel(members, weights.tolist(), classes=classes)
    except TransferkitError as exc:  # members of other label sets, weights off the simplex
        raise ArtifactError(f"{folder}: the saved ensemble is inconsistent ({exc}); restore the saved files, or "
                            f"{RESAVE}.") from exc


# --- stacked features ----------------------------------------------------------------------------------------

def save_stacked(model: Any, folder: str | Path, *, metrics: dict | None = None, run_config: dict | None = None,
                 overwrite: bool = False, extra_files: dict[str, str] | None = None, keep_beside: bool = False) -> Path:
    """Write a :class:`~transferkit.models.combined.StackedModel` (pretrained backbones by name, projections, head)."""
    tensors = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    reducers = []
    for index, (backbone, reducer) in enumerate(zip(model.backbones, model.reducers)):
        if reducer is not None:
            tensors[f"reduce.{index}.mean"] = reducer["mean"]
            tensors[f"reduce.{index}.components"] = reducer["components"]
        reducers.append(None if reducer is None else {"kind": "pca", "components": int(reducer["components"].shape[0])})
        if backbone.name.startswith("random:"):
            tensors.update({f"backbone.{index}.{k}": v for k, v in backbone.state_dict().items()})
    description = {
        "strategy": "stacked", "task": getattr(model, "task", DEFAULT_TASK), "modality": model.modality,
        "classes": model.classes,
        "backbones": [backbone_spec(b, included=b.name.startswith("random:")) for b in model.backbones],
        "reduce": reducers,
        "head": {"type": type(model.head).__name__, "in_features": model.head.in_features,
                 "num_classes": model.head.num_classes},
    }
    card = "\n".join([f"# transferkit stacked-features model: {' + '.join(b.name for b in model.backbones)}", "",
                      f"- {model.modality} {getattr(model, 'task', DEFAULT_TASK)}, {len(model.classes)} outputs",
                      f"- features of {len(model.backbones)} frozen backbones"
                      + (", each reduced by PCA," if any(reducers) else "") + " concatenated, then a linear probe",
                      "", "Load it with `transferkit.load_model(folder)`.", ""])
    return _write_folder(folder, "stacked", tensors, description, metrics=metrics, run_config=run_config,
                         overwrite=overwrite, card=card, extra_files=extra_files, keep_beside=keep_beside)


def _load_stacked(folder: Path, config: dict[str, Any], task: str | None = None):
    from transferkit.models.combined import StackedModel
    from transferkit.models.heads import HEAD_TYPES

    specs, reduce_specs, head_spec = config["backbones"], config["reduce"], config["head"]
    if head_spec.get("type") not in HEAD_TYPES:
        raise ArtifactError(f"{folder / 'config.json'}: unknown head type {head_spec.get('type')!r} (known: "
                            f"{', '.join(HEAD_TYPES)}); restore the saved config.json, or {RESAVE}.")
    if not isinstance(specs, list) or not specs or not isinstance(reduce_specs, list) \
            or len(reduce_specs) != len(specs):
        raise ArtifactError(f"{folder / 'config.json'}: 'backbones' and 'reduce' do not describe the same backbones; "
                            f"restore the saved config.json, or {RESAVE}.")
    classes = check_classes(config["classes"], head_spec["num_classes"], "'classes'", folder)
    tensors = read_weights(folder, ("head.", "backbone.", "reduce."))
    backbones, reducers, width = [], [], 0
    for index, spec in enumerate(specs):
        backbone = _build_backbone(spec, folder, _prefixed(tensors, f"backbone.{index}."))
        backbones.append(backbone)
        if reduce_specs[index] is None:
            reducers.append(None)
            width += backbone.num_features
            continue
        mean, components = tensors.get(f"reduce.{index}.mean"), tensors.get(f"reduce.{index}.components")
        if mean is None or components is None or tuple(mean.shape) != (backbone.num_features,) \
                or components.ndim != 2 or components.shape[1] != backbone.num_features:
            raise ArtifactError(f"{folder / 'model.safetensors'}: the projection of backbone {index} is missing or "
                                f"does not fit its {backbone.num_features} features; restore the saved files, or "
                                f"{RESAVE}.")
        reducers.append({"mean": mean, "components": components})
        width += int(components.shape[0])
    head = HEAD_TYPES[head_spec["type"]](head_spec["in_features"], head_spec["num_classes"])
    load_state(head, _prefixed(tensors, "head."), folder)
    check_head_width(head, width, folder)
    return StackedModel(backbones, reducers, head, classes, task=_saved_task(config, folder))


# --- detection --------------------------------------------------------------------------------------------

def save_detection(model: Any, folder: str | Path, *, metrics: dict | None = None, run_config: dict | None = None,
                   overwrite: bool = False, extra_files: dict[str, str] | None = None,
                   keep_beside: bool = False) -> Path:
    """Write a :class:`~transferkit.models.detector.DetectionModel`: the whole network (``network.*``; its backbone
    trained with the rest) and ``detector`` (the spec that rebuilds it: backbone name, input size, pyramid)."""
    header = {"task": model.task, "modality": model.modality, "strategy": model.strategy, "classes": model.classes,
              "detector": model.spec}
    tensors = {f"network.{k}": v for k, v in model.network.state_dict().items()}
    lines = [f"# Object detector ({len(model.classes)} classes)", "",
             f"FCOS on backbone `{model.spec['backbone']}`, images resized to {model.spec['image_size']} px.", "",
             "Classes: " + ", ".join(model.classes), ""]
    lines += [f"- {k}: {v:.4f}" for k, v in (metrics or {}).get("test", {}).items() if isinstance(v, float)]
    return _write_folder(folder, "detection", tensors, header, metrics=metrics, run_config=run_config,
                         overwrite=overwrite, card="\n".join(lines) + "\n", extra_files=extra_files,
                         keep_beside=keep_beside)


def _load_detection(folder: Path, config: dict[str, Any], task: str | None = None):
    from transferkit.models.detector import DetectionModel, rebuild_detector

    classes = config["classes"]
    classes = check_classes(classes, len(classes) if isinstance(classes, list) else None, "'classes'", folder)
    spec = config["detector"]
    try:
        network = rebuild_detector(spec, classes)
    except (TransferkitError, ValueError) as exc:
        raise ArtifactError(f"{folder / CONFIG_FILE}: 'detector' cannot be rebuilt ({exc}); restore the saved "
                            f"config.json, or {RESAVE}.") from exc
    load_state(network, _prefixed(read_weights(folder, ("network.",)), "network."), folder)
    return DetectionModel(network, classes, spec, strategy=str(config.get("strategy", "finetune")))


# --- recommender ------------------------------------------------------------------------------------------

def _save_recommender(model: Any, folder: str | Path, **options: Any) -> Path:
    from transferkit.models.recommender import save_recommender

    return save_recommender(model, folder, **options)


def _load_recommender(folder: Path, config: dict[str, Any], task: str | None = None):
    from transferkit.models.recommender import load_recommender

    return load_recommender(folder, config, task)


SINGLE = ArtifactKind("single", "transferkit.models.model:TransferModel", save_single, _load_single_checked)
MULTITASK = ArtifactKind("multitask", "transferkit.models.multitask_model:MultiTaskModel", save_multitask_model,
                         _load_multitask, has_tasks=True)
ENSEMBLE = ArtifactKind("ensemble", "transferkit.models.combined:EnsembleModel", save_ensemble, _load_ensemble)
STACKED = ArtifactKind("stacked", "transferkit.models.combined:StackedModel", save_stacked, _load_stacked)
DETECTION = ArtifactKind("detection", "transferkit.models.detector:DetectionModel", save_detection,
                         _load_detection)
RECOMMENDER = ArtifactKind("recommender", "transferkit.models.recommender:Recommender", _save_recommender,
                           _load_recommender)

REGISTRY: Registry[ArtifactKind] = Registry("model kind", "kind", entries={})
for _entry in (SINGLE, MULTITASK, ENSEMBLE, STACKED, DETECTION, RECOMMENDER):
    REGISTRY.register(_entry)


def register_artifact_kind(entry: ArtifactKind, *, replace: bool = False) -> ArtifactKind:
    """Add a model-folder kind (a name registered twice is a programming error unless ``replace``)."""
    return REGISTRY.register(entry, replace=replace)


def artifact_kind_names() -> list[str]:
    """Every registered kind, ``single`` first."""
    return REGISTRY.names()


def kind_of(model: Any) -> ArtifactKind:
    """The kind that saves ``model``: the last registered kind whose model class it is an instance of (so that a
    kind registered for a subclass wins), ``single`` for any other model."""
    for entry in reversed(REGISTRY.entries()):
        if entry.holds(model):
            return entry
    return SINGLE


def save_any(model: Any, folder: str | Path, **kwargs: Any) -> Path:
    """Save a model of any kind with the writer of its kind."""
    return kind_of(model).save(model, folder, **kwargs)


def load_any(folder: Path, config: dict[str, Any], task: str | None = None):
    """Load a folder whose checked ``config.json`` is ``config`` with the reader of its ``kind`` (``single`` when it
    names none); ``task`` picks one task of a kind that has tasks."""
    name = config.get("kind", "single")
    entry = REGISTRY.find(name) if isinstance(name, str) else None
    if entry is None:
        raise ArtifactError(f"{folder}: unknown model kind {name!r} (known: {', '.join(artifact_kind_names())}); a "
                            "newer transferkit may read it.")
    if task is not None and not entry.has_tasks:
        raise ArtifactError(f"{folder}: task={task!r} was given, but this is a {name} model, not a multi-task one.")
    try:
        return entry.load(folder, config, task)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ArtifactError(f"{folder / 'config.json'}: entry {exc} is missing or malformed; the folder is damaged. "
                            f"Restore the saved config.json, or {RESAVE}.") from exc


__all__ = ["ArtifactKind", "REGISTRY", "artifact_kind_names", "kind_of", "load_any", "model_card",
           "register_artifact_kind", "save_any", "save_ensemble", "save_multitask_model", "save_single",
           "save_stacked"]
