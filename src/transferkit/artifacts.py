"""Save and load an adapted model as a folder. Loading never unpickles.

A model folder holds:

- ``config.json``: format and library version, backbone (name, options, preprocessing, weights digest), head,
  class names, strategy, and the SHA-256 of every weights file;
- ``model.safetensors``: the head (``head.*``) and, when the backbone was changed by training or cannot be rebuilt
  from its name (random weights), the backbone (``backbone.*``);
- ``metrics.json``, ``run_config.yaml`` (the resolved options of the run that made it), ``README.md`` (model card).

The folder is written under a temporary name and renamed into place at the end, so a crash never leaves a folder
that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from transferkit._io import atomic_write_json, atomic_write_text
from transferkit._version import __version__
from transferkit.errors import ArtifactError, ConfigError

FORMAT = "transferkit-model"
FORMAT_VERSION = 1
#: The newest format this version reads: 2 adds folders of other kinds (multi-task, ensemble, stacked features;
#: see :mod:`transferkit.artifact_kinds`). Single models are still written as format 1.
READABLE_FORMAT_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
REQUIRED_FILES = ("config.json", WEIGHTS_FILE)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def backbone_options(preprocessing: dict[str, Any]) -> dict[str, Any]:
    """The ``create_backbone`` options that reproduce a backbone's preprocessing."""
    if preprocessing.get("kind") == "text":
        return {"max_length": preprocessing["max_length"], "normalize": preprocessing["normalize"]}
    return {"crop_pct": preprocessing["crop_pct"], "image_size": preprocessing["input_size"]}


def is_model_folder(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT
    except (ValueError, OSError):
        return False


def check_output_folder(path: str | Path, overwrite: bool) -> Path:
    """Refuse, before any work, to write over something that is not ours or without ``overwrite``."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"output {path} exists and is a file; give a folder path.")
        if any(path.iterdir()):
            if not is_model_folder(path):
                raise ConfigError(f"output folder {path} exists and is not empty; choose a new folder.")
            if not overwrite:
                raise ConfigError(f"output folder {path} already holds a model; pass --overwrite or choose a new folder.")
    return path


def backbone_spec(backbone, included: bool) -> dict[str, Any]:
    """A backbone as ``config.json`` describes it: what it is, the options that rebuild its preprocessing, whether
    its weights are in the folder, and the digest of the weights it was trained with."""
    return {**backbone.describe(), "options": backbone_options(backbone.preprocessing), "weights_included": included,
            "weights_digest": backbone.weights_digest()}


def write_model_folder(folder: str | Path, tensors: dict[str, Any], header: dict[str, Any], *,
                       metrics: dict | None, run_config: dict | None, overwrite: bool,
                       card: Callable[[dict[str, Any]], str], weights_metadata: dict[str, str] | None = None,
                       extra_files: dict[str, str] | None = None, fill: Callable[[Path], None] | None = None) -> Path:
    """Write a model folder atomically: the weights (safetensors), ``config.json`` (``header`` plus the format,
    library version, date and the weights' checksum), metrics, the resolved run config, the model card
    (``card(config)``) and ``extra_files``; ``fill(staging)`` may add more files. Everything is written to a
    staging folder beside ``folder`` and renamed into place at the end, so a crash never leaves a folder that looks
    complete."""
    import yaml
    from safetensors.torch import save_file

    folder = check_output_folder(folder, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT, **(weights_metadata or {})})
        if fill is not None:
            fill(staging)
        config = {"format": FORMAT, "format_version": header.get("format_version", FORMAT_VERSION),
                  "transferkit_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  **{k: v for k, v in header.items() if k != "format_version"},
                  "files": {WEIGHTS_FILE: _sha256(staging / WEIGHTS_FILE)}}
        atomic_write_json(staging / "config.json", config)
        atomic_write_json(staging / "metrics.json", metrics or {})
        atomic_write_text(staging / "run_config.yaml", yaml.safe_dump(run_config or {}, sort_keys=False))
        atomic_write_text(staging / "README.md", card(config))
        for name, text in (extra_files or {}).items():
            atomic_write_text(staging / name, text)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def save_model(model, folder: str | Path, *, metrics: dict | None = None, run_config: dict | None = None,
               include_backbone: bool | None = None, overwrite: bool = False, extra_files: dict[str, str] | None = None) -> Path:
    """Write ``model`` (a :class:`~transferkit.model.TransferModel`) to ``folder``; returns the folder path."""
    backbone = model.backbone
    if include_backbone is None:
        include_backbone = model.strategy != "linear-probe" or backbone.name.startswith("random:")
    tensors = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    if include_backbone:
        tensors.update({f"backbone.{k}": v for k, v in backbone.state_dict().items()})
    header = {
        "strategy": model.strategy,
        "temperature": float(getattr(model, "temperature", 1.0)),
        "modality": model.modality,
        "classes": model.classes,
        "backbone": backbone_spec(backbone, include_backbone),
        "head": {"type": type(model.head).__name__, "in_features": model.head.in_features,
                 "num_classes": model.head.num_classes,
                 **({"options": model.head.options()} if hasattr(model.head, "options") else {})},
    }
    return write_model_folder(folder, tensors, header, metrics=metrics, run_config=run_config, overwrite=overwrite,
                              card=lambda config: _model_card(config, metrics or {}), extra_files=extra_files)


def read_config(folder: str | Path) -> dict[str, Any]:
    """The checked ``config.json`` of a model folder (files present, checksums equal)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such model folder.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ArtifactError(f"{folder}: not a complete transferkit model (missing {', '.join(missing)}).")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{folder / 'config.json'}: not valid JSON ({exc}).") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ArtifactError(f"{folder / 'config.json'}: not a transferkit model config.")
    if config.get("format_version", 0) > READABLE_FORMAT_VERSION:
        raise ArtifactError(f"{folder}: written by a newer transferkit (format {config['format_version']}); upgrade.")
    for name, expected in config.get("files", {}).items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise ArtifactError(f"{folder}: file {name} listed in config.json is missing.")
        if _sha256(path) != expected:
            raise ArtifactError(
                f"{path}: checksum does not match config.json; the file was changed or damaged. Re-save the model."
            )
    return config


def load_model(folder: str | Path, task: str | None = None):
    """Load a model folder written by :func:`save_model` (safetensors and JSON only; nothing is unpickled).

    Folders of other kinds (multi-task, ensemble, stacked features) load as their own model classes; ``task``
    picks one task of a multi-task model as a single-task model.
    """
    from safetensors.torch import load_file

    from transferkit.backbones import create_backbone
    from transferkit.heads import HEAD_TYPES
    from transferkit.model import TransferModel

    folder = Path(folder)
    config = read_config(folder)
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except Exception as exc:
        raise ArtifactError(f"{folder / WEIGHTS_FILE}: cannot be read as safetensors ({exc}).") from exc
    if config.get("kind", "single") != "single" or task is not None:
        from transferkit.artifact_kinds import load_kind

        return load_kind(folder, config, tensors, task)
    spec = config["backbone"]
    included = spec.get("weights_included", False)
    name = spec["name"].removeprefix("random:") if included else spec["name"]
    backbone = create_backbone(name, pretrained=not included, **spec.get("options", {}))
    backbone.name = spec["name"]
    if spec.get("architecture_changes"):  # structured pruning: shrink the layers before loading their weights
        from transferkit.compress.prune import apply_architecture_changes

        apply_architecture_changes(backbone, spec["architecture_changes"])
    if included:
        state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        _load_state(backbone, state, folder)
    elif backbone.weights_digest() != spec.get("weights_digest"):
        raise ArtifactError(
            f"{folder}: the installed weights of backbone '{spec['name']}' differ from those this model was trained "
            "with; install the same weights package version, or re-run fit."
        )
    head_spec = config["head"]
    if head_spec["type"] not in HEAD_TYPES:
        raise ArtifactError(f"{folder}: unknown head type {head_spec['type']}.")
    head = HEAD_TYPES[head_spec["type"]](head_spec["in_features"], head_spec["num_classes"],
                                         **head_spec.get("options", {}))
    _load_state(head, {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}, folder)
    model = TransferModel(backbone, head, config["classes"], strategy=config.get("strategy", "linear-probe"),
                          temperature=float(config.get("temperature", 1.0)))
    return model.eval()


def _load_state(module, state: dict, folder: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{folder / WEIGHTS_FILE}: weights do not fit the model described in config.json ({exc}).") from exc
    if hasattr(module, "invalidate_digest"):
        module.invalidate_digest()


def _model_card(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    backbone = config["backbone"]
    lines = [
        f"# transferkit model: {backbone['name']} + {config['strategy']}",
        "",
        f"- task: {config['modality']} classification, {len(config['classes'])} classes: {', '.join(config['classes'][:20])}",
        f"- backbone: `{backbone['name']}` ({backbone['num_features']}-d features); preprocessing "
        f"`{json.dumps(backbone['preprocessing'])}`",
        f"- strategy: {config['strategy']}; made by transferkit {config['transferkit_version']} on {config['created']}",
    ]
    test = metrics.get("test")
    if test:
        lines.append(f"- test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f} on {test['n']} held-out examples")
    for comparison in metrics.get("comparisons", []):
        lines.append(f"- against the {comparison['baseline']} baseline: {comparison['verdict']} "
                     f"({100 * comparison['difference']:+.1f} points, interval {100 * comparison['ci_low']:+.1f} to "
                     f"{100 * comparison['ci_high']:+.1f})")
    lines += ["", "Load it with `transferkit.load_model(folder)`; predict with `transferkit predict FOLDER INPUT`.", ""]
    return "\n".join(lines)
