"""The model-folder format every kind of model is saved in, and its checks. Loading never unpickles.

A model folder holds:

- ``config.json``: format and library version, backbone (name, options, preprocessing, weights digest), head,
  class names, strategy, and the SHA-256 of every weights file;
- ``model.safetensors``: the head (``head.*``) and, when the backbone was changed by training or cannot be rebuilt
  from its name (random weights), the backbone (``backbone.*``);
- ``manifest.json``: the SHA-256 of ``config.json`` and of the weights, so that an edited ``config.json`` (class
  names swapped, a class added) is refused instead of mislabelling predictions;
- ``metrics.json``, ``run_config.yaml`` (the resolved options of the run that made it), ``README.md`` (model card).

The folder is written under a temporary name and renamed into place at the end, so a crash never leaves a folder
that looks complete, and a model it replaces (``overwrite``) is removed only once the new one is complete. Files a
run adds afterwards (metrics of late steps, the report) are written into the finished folder one by one, each
atomically. Loading checks everything it reads and raises :class:`~transferkit.errors.ArtifactError` naming the
folder, the file and the fix: checksums, the weights file (a real safetensors file with the expected tensors, finite
head weights), the class names against the head's output width, the head against the backbone's feature width.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from transferkit._io import (json_default, atomic_write_json, atomic_write_text, check_location, check_not_input,
                             folder_is_empty, give_normal_mode, staged_folder)
from transferkit._version import __version__
from transferkit.errors import ArtifactError, ConfigError

log = logging.getLogger("transferkit")

FORMAT = "transferkit-model"
FORMAT_VERSION = 1
#: The newest format this version reads: 2 adds folders of other kinds (multi-task, ensemble, stacked features;
#: see :mod:`transferkit.models.artifact_kinds`). Single models are still written as format 1.
READABLE_FORMAT_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "transferkit-manifest"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)
#: Files of a model folder that only the writer of the folder writes; late steps may add or replace any other file.
PROTECTED_FILES = (CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE)
#: Files that mark a folder as the output of a verb that does not write a model.
RESULT_MARKERS = {"cv.json": "cross-validation results (transferkit cv)",
                  "tune.json": "a hyper-parameter search (transferkit tune)",
                  "study.db": "a hyper-parameter search (transferkit tune)",
                  "tradeoff.json": "compressed variants (transferkit compress)"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def backbone_options(preprocessing: dict[str, Any]) -> dict[str, Any]:
    """The ``create_backbone`` options that reproduce a backbone's preprocessing."""
    from transferkit.modalities import get_modality

    return get_modality(preprocessing.get("kind"), option="preprocessing kind").options_from_preprocessing(preprocessing)


def is_model_folder(path: str | Path) -> bool:
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == FORMAT
    except (ValueError, OSError, AttributeError):
        return False


def model_kind(path: str | Path) -> str | None:
    """``single``, ``multitask``, ``ensemble`` or ``stacked`` for a model folder; ``None`` for anything else."""
    if not is_model_folder(path):
        return None
    try:
        return str(json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8")).get("kind", "single"))
    except (ValueError, OSError):
        return None


def describe_folder(path: str | Path) -> str:
    """What an existing, non-empty folder holds, in words (for error messages)."""
    path = Path(path)
    kind = model_kind(path)
    if kind is not None:
        return f"a {'' if kind == 'single' else kind + ' '}transferkit model"
    for name, what in RESULT_MARKERS.items():
        if (path / name).exists():
            return what
    return "files that transferkit did not write"


def check_output_folder(path: str | Path, overwrite: bool, *, option: str = "--output",
                        inputs: Iterable[tuple[str, Any]] = ()) -> Path:
    """Check, before any work, that a model can be saved in the folder ``path``; raises
    :class:`~transferkit.errors.ConfigError` naming ``option`` and the fix.

    Refused: a file at ``path``; a parent that is a file; a location that cannot be written; one of the run's
    ``inputs`` (``(role, path)`` pairs: data, teacher or member models), a folder holding one, or a folder inside an
    input folder; a non-empty folder that is not a transferkit model (nothing in it is ever replaced); a model
    without ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} exists and is a file; give a folder path (a new or empty folder).")
    check_not_input(path, inputs, option)
    check_location(path, option)
    if not folder_is_empty(path):
        if not is_model_folder(path):
            raise ConfigError(f"{option} {path} is not empty: it holds {describe_folder(path)}, not a model; nothing "
                              "in it is replaced, even with --overwrite. Choose a new folder.")
        if not overwrite:
            raise ConfigError(f"{option} {path} already holds a model (kind: {model_kind(path)}); pass --overwrite to "
                              "replace it (the old model stays until the new one is saved), or choose a new folder.")
    return path


def unfinished_model(folder: str | Path | None) -> bool:
    """Whether ``folder`` holds a model that its run saved but did not finish (interrupted during the evaluation or
    the baselines that follow the save; ``metrics.json`` says what was pending): resuming that run may replace it
    without ``--overwrite``."""
    if folder is None or not is_model_folder(folder):
        return False
    try:
        metrics = json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return False
    return isinstance(metrics, dict) and "pending" in metrics


def _free_sibling(folder: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = folder.with_name(f"{folder.name}-{stamp}")
    index = 1
    while candidate.exists():
        index += 1
        candidate = folder.with_name(f"{folder.name}-{stamp}-{index}")
    return candidate


def _destination(folder: Path, overwrite: bool, keep_beside: bool) -> Path:
    """Where a model is saved: ``folder``, checked again. With ``keep_beside`` (a verb that checked the folder
    before its long work), a folder that was filled since is left alone and the model goes beside it, with a
    warning, so that neither the new model nor what is there is lost."""
    try:
        return check_output_folder(folder, overwrite)
    except ConfigError as exc:
        if not keep_beside or not folder.exists():
            raise
        beside = _free_sibling(folder)
        warnings.warn(f"{folder} changed while this run worked ({exc}); the model is saved in {beside} instead.",
                      stacklevel=4)
        return beside


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_model_folder(folder: str | Path, tensors: dict[str, Any], header: dict[str, Any], *,
                       metrics: dict | None, run_config: dict | None, overwrite: bool,
                       card: Callable[[dict[str, Any]], str], weights_metadata: dict[str, str] | None = None,
                       extra_files: dict[str, str] | None = None, fill: Callable[[Path], None] | None = None,
                       keep_beside: bool = False) -> Path:
    """Write a model folder atomically: the weights (safetensors), ``config.json`` (``header`` plus the format,
    library version, date and the weights' checksum), ``manifest.json`` (checksums of ``config.json`` and the
    weights), metrics, the resolved run config, the model card (``card(config)``) and ``extra_files``;
    ``fill(staging)`` may add more files. Everything is written to a staging folder beside ``folder`` and renamed
    into place at the end (:func:`transferkit._io.staged_folder`): a crash or Ctrl-C never leaves a folder that
    looks complete, and a model replaced with ``overwrite`` stays intact until the new one is complete. Returns
    the folder (another one beside it with ``keep_beside``, see :func:`_destination`)."""
    import yaml
    from safetensors.torch import save_file

    folder = _destination(Path(folder), overwrite, keep_beside)
    with staged_folder(folder, what="model folder") as staging:
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        try:
            save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT, **(weights_metadata or {})})
        except Exception as exc:  # the Rust writer reports a full disk as its own error: make it the OSError it is
            code = re.search(r"os error (\d+)", str(exc))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from exc
        give_normal_mode(staging / WEIGHTS_FILE)  # the safetensors writer makes it 0600
        if fill is not None:
            fill(staging)
        weights_sha = _sha256(staging / WEIGHTS_FILE)
        config = {"format": FORMAT, "format_version": header.get("format_version", FORMAT_VERSION),
                  "transferkit_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  **{k: v for k, v in header.items() if k != "format_version"},
                  "files": {WEIGHTS_FILE: weights_sha}}
        config_text = json.dumps(config, indent=2, default=json_default) + "\n"
        atomic_write_text(staging / CONFIG_FILE, config_text)
        atomic_write_json(staging / MANIFEST_FILE, {
            "format": MANIFEST_FORMAT, "algorithm": "sha256",
            "files": {CONFIG_FILE: _sha256_bytes(config_text.encode("utf-8")), WEIGHTS_FILE: weights_sha}})
        atomic_write_json(staging / "metrics.json", metrics or {})
        atomic_write_text(staging / "run_config.yaml", yaml.safe_dump(run_config or {}, sort_keys=False))
        atomic_write_text(staging / "README.md", card(config))
        for name, text in (extra_files or {}).items():
            if name in PROTECTED_FILES:
                raise ValueError(f"extra file {name} would replace a file the model folder writer owns")
            atomic_write_text(staging / name, text)
    return folder


def update_model_folder(folder: str | Path, *, metrics: dict | None = None, files: dict[str, str] | None = None) -> Path:
    """Add or replace the late files of a saved model folder (``metrics.json`` and ``files``: the summary, the model
    card, reports), each atomically. The weights, ``config.json`` and ``manifest.json`` are never touched."""
    folder = Path(folder)
    for name in files or {}:
        if name in PROTECTED_FILES or Path(name).name != name:
            raise ValueError(f"{name}: not a late file of a model folder")
    if metrics is not None:
        atomic_write_json(folder / "metrics.json", metrics)
    for name, text in (files or {}).items():
        atomic_write_text(folder / name, text)
    return folder


def late_step(what: str, step: Callable[[], Any], notes: list[str], *, saved: str = "the model is saved") -> Any:
    """Run an optional step that comes after the result was saved (baselines, plots, the report, tracking). A
    failure is a one-line warning and a note in ``notes`` (for ``metrics.json`` and the summary), never the end of
    the run: the saved result stands. Returns the step's value, or ``None`` when it failed."""
    try:
        return step()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - anything a late, optional step raises is reported beside the result
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        note = f"{what} failed ({type(exc).__name__}{': ' + detail if detail else ''}); {saved} all the same."
        notes.append(note)
        warnings.warn(note, stacklevel=2)
        return None


def backbone_spec(backbone, included: bool) -> dict[str, Any]:
    """A backbone as ``config.json`` describes it: what it is, the options that rebuild its preprocessing, whether
    its weights are in the folder, and the digest of the weights it was trained with."""
    return {**backbone.describe(), "options": backbone_options(backbone.preprocessing), "weights_included": included,
            "weights_digest": backbone.weights_digest()}

RESAVE = "re-save the model (run the command that made it again)"

#: Bytes per element of the safetensors dtypes.
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def _weights_error(path: Path, reason: str) -> ArtifactError:
    return ArtifactError(f"{path}: not a transferkit safetensors weights file ({reason}); the file is damaged or was "
                         f"replaced. Restore it, or {RESAVE}.")


def read_safetensors_header(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The tensor entries (name -> dtype, shape, offsets) and the metadata of a safetensors file, checked without
    reading the tensors: the header is JSON of a sane length, every entry's byte range lies inside the file and
    matches its dtype and shape. Raises :class:`~transferkit.errors.ArtifactError` naming the file otherwise."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise _weights_error(path, f"{size} bytes, shorter than a safetensors header")
        length = struct.unpack("<Q", prefix)[0]
        if length < 2 or length > min(size - 8, _MAX_HEADER_BYTES):
            raise _weights_error(path, "the header length does not fit the file")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _weights_error(path, "the header is not JSON") from None
    if not isinstance(header, dict):
        raise _weights_error(path, "the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise _weights_error(path, "its metadata is not a JSON object")
    data_bytes = size - 8 - length
    for name, entry in header.items():
        if not (isinstance(entry, dict) and entry.get("dtype") in _DTYPE_BYTES and isinstance(entry.get("shape"), list)
                and all(isinstance(d, int) and d >= 0 for d in entry["shape"])
                and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
                and all(isinstance(o, int) for o in entry["data_offsets"])):
            raise _weights_error(path, f"the entry of tensor {name!r} is malformed")
        begin, end = entry["data_offsets"]
        count = 1
        for dim in entry["shape"]:
            count *= dim
        if not 0 <= begin <= end <= data_bytes or end - begin != count * _DTYPE_BYTES[entry["dtype"]]:
            raise _weights_error(path, f"the bytes of tensor {name!r} do not fit the file")
    if metadata.get("format") != FORMAT:
        raise _weights_error(path, f"its metadata names format {metadata.get('format')!r}, not {FORMAT!r}")
    return header, metadata


def read_weights(folder: str | Path, prefixes: Iterable[str]) -> dict[str, Any]:
    """The tensors of a model folder's weights file, checked (:func:`read_safetensors_header`); every tensor name
    must start with one of ``prefixes`` (the parts the folder's kind has), and the head tensors (``head.``,
    ``heads.``) must be finite."""
    import torch
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    header, _ = read_safetensors_header(path)
    prefixes = tuple(prefixes)
    stray = [name for name in header if not name.startswith(prefixes)]
    if stray:
        raise ArtifactError(f"{path}: holds tensors this kind of model does not have ({', '.join(stray[:5])}); the "
                            f"file does not belong with config.json. Restore it, or {RESAVE}.")
    try:
        tensors = load_file(str(path))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the Rust reader raises a PanicException (a BaseException) on some damage
        raise _weights_error(path, f"{type(exc).__name__}: {exc}") from None
    for name, tensor in tensors.items():
        if name.startswith(("head.", "heads.")) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ArtifactError(f"{path}: tensor {name} holds NaN or infinite values; the model would predict "
                                f"nothing sensible. Restore the file, or {RESAVE}.")
    return tensors


def _read_manifest(folder: Path) -> dict[str, str] | None:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc}); restore it, or {RESAVE}.") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())):
        raise ArtifactError(f"{path}: not a transferkit manifest; restore it, or {RESAVE}.")
    return files


_warned_without_manifest: set[str] = set()


def read_config(folder: str | Path) -> dict[str, Any]:
    """The checked ``config.json`` of a model folder: the files present, ``config.json`` equal to the checksum in
    ``manifest.json`` (folders saved before the manifest existed load with a warning), every listed file equal to
    its checksum. Raises :class:`~transferkit.errors.ArtifactError` naming the folder, the file and the fix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such model folder." if not folder.exists() else
                            f"{folder}: is a file, not a model folder; give the folder a transferkit command saved.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ArtifactError(f"{folder}: not a complete transferkit model (missing {', '.join(missing)}); give the "
                            f"folder a transferkit command saved, or {RESAVE}.")
    manifest = _read_manifest(folder)
    config_path = folder / CONFIG_FILE
    if manifest is not None:
        expected = manifest.get(CONFIG_FILE)
        if expected is None or _sha256(config_path) != expected:
            raise ArtifactError(
                f"{config_path}: changed since the model was saved (its checksum differs from {MANIFEST_FILE}); its "
                "class names, head or backbone settings may no longer match the weights. Restore the saved "
                f"config.json, or {RESAVE}.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{config_path}: not valid JSON ({exc}); restore it, or {RESAVE}.") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ArtifactError(f"{config_path}: not a transferkit model config.")
    version = config.get("format_version", 0)
    if not isinstance(version, int):
        raise ArtifactError(f"{config_path}: format_version {version!r} is not a number; restore it, or {RESAVE}.")
    if version > READABLE_FORMAT_VERSION:
        raise ArtifactError(f"{folder}: written by a newer transferkit (format {version}); upgrade.")
    listed = config.get("files", {})
    if not isinstance(listed, dict):
        raise ArtifactError(f"{config_path}: 'files' is not a mapping of file names to checksums; restore it, or "
                            f"{RESAVE}.")
    if manifest is None:
        key = str(folder.resolve())
        if key not in _warned_without_manifest:
            _warned_without_manifest.add(key)
            warnings.warn(f"{folder}: has no {MANIFEST_FILE} (saved by an older transferkit), so config.json cannot "
                          f"be checked against what was saved; {RESAVE} to add one.", stacklevel=3)
    checks = {**listed, **{k: v for k, v in (manifest or {}).items() if k != CONFIG_FILE}}
    for name, expected in checks.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise ArtifactError(f"{folder}: file {name} listed in config.json is missing; restore it, or {RESAVE}.")
        if _sha256(path) != expected or listed.get(name, expected) != expected:
            raise ArtifactError(
                f"{path}: checksum does not match config.json; the file was changed or damaged. Restore it, or "
                f"{RESAVE}."
            )
    return config


def check_classes(classes: Any, width: Any, where: str, folder: Path) -> list[str]:
    """``classes`` as saved: a list of distinct, non-empty names, as many as the head's outputs (``width``)."""
    path = folder / CONFIG_FILE
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) and c for c in classes)):
        raise ArtifactError(f"{path}: {where} is not a list of class names; restore the saved config.json, or "
                            f"{RESAVE}.")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ArtifactError(f"{path}: {where} names {', '.join(repeated)} more than once; restore the saved "
                            f"config.json, or {RESAVE}.")
    if not isinstance(width, int) or isinstance(width, bool) or len(classes) != width:
        raise ArtifactError(f"{path}: {where} has {len(classes)} names but the head has {width} outputs; each output "
                            f"needs one name. Restore the saved config.json, or {RESAVE}.")
    return list(classes)


def check_head_width(head: Any, num_features: int, folder: Path) -> None:
    """The head reads features of the backbone's width."""
    if head.in_features != num_features:
        raise ArtifactError(f"{folder / CONFIG_FILE}: the head reads {head.in_features} features but the backbone "
                            f"gives {num_features}; the backbone and the head do not belong together. Restore the "
                            f"saved config.json, or {RESAVE}.")

def load_state(module, state: dict, folder: Path) -> None:
    """Load ``state`` into ``module`` strictly; a mismatch is an ArtifactError naming the weights file."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{folder / WEIGHTS_FILE}: weights do not fit the model described in config.json "
                            f"({exc}); restore the saved files, or {RESAVE}.") from exc
    if hasattr(module, "invalidate_digest"):
        module.invalidate_digest()

