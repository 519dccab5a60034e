"""Turn what a user has (a folder of images per class, a table, arrays, a list of texts) into a :class:`Dataset`.

Each loader checks its input as it reads it and raises :class:`~transferkit.errors.DataError` naming the file
or row; nothing here decodes images fully or runs a model.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.data.images import IMAGE_SUFFIXES
from transferkit.errors import DataError, DataNotFoundError

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
TEXT_COLUMNS = ("text", "sentence", "review", "content")
PATH_COLUMNS = ("path", "image", "filepath", "file", "filename")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target")


def load_data(
    source: Any,
    *,
    labels: Sequence[Any] | None = None,
    label_column: str | None = None,
    text_column: str | None = None,
    path_column: str | None = None,
    encoding: str = "utf-8",
    unlabelled: bool = False,
) -> Dataset:
    """Load ``source`` as a :class:`Dataset`.

    ``source`` may be a folder of images with one sub-folder per class, a table file (CSV, TSV, JSONL, Parquet)
    with a label column and a text or image-path column, an array of images with ``labels``, a list of texts with
    ``labels``, or a :class:`Dataset` (returned as is).
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise DataNotFoundError(f"{path}: no such file or folder. Give a folder of images or a table file.")
        if path.is_dir():
            if unlabelled:
                return load_unlabelled_image_folder(path)
            return load_image_folder(path)
        return load_table(
            path,
            label_column=None if unlabelled else label_column,
            text_column=text_column,
            path_column=path_column,
            encoding=encoding,
            require_labels=not unlabelled,
        )
    return from_arrays(source, labels)


def from_arrays(items: Any, labels: Sequence[Any] | None = None, origin: str = "arrays") -> Dataset:
    """Images as an array ``(N, H, W)`` / ``(N, H, W, C)`` (uint8, or floats in 0..1 or 0..255), or a list of texts."""
    label_list = None if labels is None else _labels_to_str(list(labels), origin)
    if isinstance(items, np.ndarray) and items.dtype.kind in "uif":
        if items.ndim not in (3, 4) or (items.ndim == 4 and items.shape[3] not in (1, 3, 4)):
            raise DataError(
                f"{origin}: image arrays must be shaped (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got {items.shape}."
            )
        if items.dtype != np.uint8:
            if not np.isfinite(items).all():
                raise DataError(f"{origin}: the image array contains NaN or infinite values.")
            scale = 255.0 if items.max() <= 1.0 else 1.0
            items = np.clip(np.rint(items * scale), 0, 255).astype(np.uint8)
        return Dataset("image", items, label_list, origin, [f"{origin}[{i}]" for i in range(len(items))])
    items = list(items)
    if not all(isinstance(item, str) for item in items):
        bad = next(i for i, item in enumerate(items) if not isinstance(item, str))
        raise DataError(f"{origin}[{bad}]: expected a string (text) or an image array, got {type(items[bad]).__name__}.")
    _check_texts(items, [f"{origin}[{i}]" for i in range(len(items))])
    return Dataset("text", items, label_list, origin, [f"{origin}[{i}]" for i in range(len(items))])


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def _label_cell(value: Any, where: str, column: str = "label") -> str:
    """One label as a string (``3.0`` -> ``"3"``); missing, empty and nested (list / object) values are errors
    naming ``where`` (a row or an index)."""
    if isinstance(value, (list, tuple, dict, set, np.ndarray)):
        raise DataError(f"{where}: the {column} is a {type(value).__name__} ({str(value)[:40]}); a label must be "
                        "a string or a number.")
    if _is_blank(value):
        raise DataError(f"{where}: the {column} is missing or empty. Fill it in or drop the row.")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip()


def _labels_to_str(labels: list[Any], origin: str) -> list[str]:
    return [_label_cell(label, f"{origin}: label {i}") for i, label in enumerate(labels)]


def _walk_files(root: Path) -> list[Path]:
    """All files under ``root``, following symbolic links but never visiting a folder twice (no symlink loops)."""
    seen: set[str] = set()
    files: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            warnings.warn(f"{folder}: symbolic link loop or repeated folder skipped.", stacklevel=3)
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"{folder}: cannot list the folder ({exc.strerror or exc}).") from exc
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=True):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=True):
                files.append(Path(entry.path))
            elif entry.is_symlink():
                warnings.warn(f"{entry.path}: broken symbolic link skipped.", stacklevel=3)
    return sorted(files)


def _split_images(files: list[Path], folder: Path) -> list[Path]:
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    others = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        shown = ", ".join(str(p) for p in others[:3]) + (" ..." if len(others) > 3 else "")
        warnings.warn(
            f"{folder}: {len(others)} file(s) without an image extension skipped ({shown}).", stacklevel=3
        )
    return images


def load_image_folder(root: str | Path) -> Dataset:
    """A folder with one sub-folder per class; images anywhere below a class folder belong to that class."""
    root = Path(root)
    class_dirs = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if not class_dirs:
        raise DataError(
            f"{root}: no class sub-folders found. Put the images of each class in their own folder, "
            f"e.g. {root}/cat/001.jpg and {root}/dog/001.jpg."
        )
    paths: list[str] = []
    labels: list[str] = []
    for class_dir in class_dirs:
        images = _split_images(_walk_files(class_dir), class_dir)
        if not images:
            raise DataError(
                f"{class_dir}: class folder '{class_dir.name}' has no images. Add images or remove the folder."
            )
        paths.extend(str(p) for p in images)
        labels.extend([class_dir.name] * len(images))
    return Dataset("image", paths, labels, str(root), list(paths))


def load_unlabelled_image_folder(root: str | Path) -> Dataset:
    """Every image below ``root``, without labels (target-domain data, inputs to ``predict``)."""
    root = Path(root)
    images = _split_images(_walk_files(root), root)
    if not images:
        raise DataError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    paths = [str(p) for p in images]
    return Dataset("image", paths, None, str(root), list(paths))


def _read_table(path: Path, encoding: str):
    import pandas as pd

    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unknown table format '{path.suffix}'. Use .csv, .tsv, .jsonl or .parquet, or give a folder of images."
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty.")
    try:
        if kind == "csv":
            return pd.read_csv(path, encoding=encoding, dtype=str, keep_default_na=False)
        if kind == "tsv":
            return pd.read_csv(path, sep="\t", encoding=encoding, dtype=str, keep_default_na=False)
        if kind == "jsonl":
            return pd.read_json(path, lines=True, encoding=encoding, dtype=False)
        return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: byte {exc.start} is not valid {encoding} text. Save the file as UTF-8, or give its encoding "
            "(for example --encoding latin-1)."
        ) from exc
    except Exception as exc:
        raise DataError(f"{path}: cannot be read as {kind} ({type(exc).__name__}: {exc}).") from exc


def _pick_column(columns: list[str], wanted: str | None, candidates: Sequence[str], what: str, path: Path, option: str):
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{path}: no column '{wanted}' ({option}); the columns are {columns}.")
        return wanted
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def _row_name(path: Path, index: int, kind: str) -> str:
    # Row numbers as a person sees them: CSV/TSV line numbers count the header; JSONL lines count from 1.
    return f"{path} line {index + 2}" if kind in ("csv", "tsv") else f"{path} row {index + 1}"


def load_table(
    path: str | Path,
    *,
    label_column: str | None = None,
    text_column: str | None = None,
    path_column: str | None = None,
    encoding: str = "utf-8",
    require_labels: bool = True,
) -> Dataset:
    """A table with a label column and either a text column or an image-path column.

    Column names are guessed when not given (``label``/``class``/...; ``text``/``sentence``/...;
    ``path``/``image``/...). Image paths are relative to the table's folder unless absolute.
    """
    path = Path(path)
    table = _read_table(path, encoding)
    kind = TABLE_SUFFIXES[path.suffix.lower()]
    columns = [str(c) for c in table.columns]
    if len(table) == 0:
        raise DataError(f"{path}: the table has a header but no rows.")
    label_col = _pick_column(columns, label_column, LABEL_COLUMNS, "label", path, "--label-column")
    if require_labels and label_col is None:
        raise DataError(
            f"{path}: no label column found among {columns}. Name it 'label' or pass --label-column NAME."
        )
    text_col = _pick_column(columns, text_column, TEXT_COLUMNS, "text", path, "--text-column")
    path_col = _pick_column(columns, path_column, PATH_COLUMNS, "path", path, "--path-column")
    if text_column is None and path_column is not None:
        text_col = None
    if text_col is None and path_col is None:
        raise DataError(
            f"{path}: no text or image-path column found among {columns}. Name it 'text' or 'path', or pass "
            "--text-column NAME / --path-column NAME."
        )
    row_ids = [_row_name(path, i, kind) for i in range(len(table))]
    labels = None
    if require_labels:
        labels = [_label_cell(value, row_ids[i], f"label ('{label_col}')")
                  for i, value in enumerate(table[label_col].tolist())]
    if text_col is not None:
        texts = table[text_col].tolist()
        _check_texts(texts, row_ids, column=text_col)
        return Dataset("text", [str(t) for t in texts], labels, str(path), row_ids)
    base = path.parent
    paths = []
    for i, value in enumerate(table[path_col].tolist()):
        if value is None or str(value).strip() == "":
            raise DataError(f"{row_ids[i]}: the image path ('{path_col}') is empty.")
        image_path = Path(str(value).strip())
        image_path = image_path if image_path.is_absolute() else base / image_path
        if not image_path.is_file():
            raise DataError(f"{row_ids[i]}: image file {image_path} does not exist.")
        paths.append(str(image_path))
    return Dataset("image", paths, labels, str(path), row_ids)


def _check_texts(texts: Sequence[Any], row_ids: Sequence[str], column: str = "text") -> None:
    for i, text in enumerate(texts):
        if isinstance(text, (list, tuple, dict, set, np.ndarray)):
            raise DataError(f"{row_ids[i]}: the text ('{column}') is a {type(text).__name__}, not a string.")
        if _is_blank(text):
            raise DataError(f"{row_ids[i]}: the text ('{column}') is missing or empty. Fill it in or drop the row.")
