"""Turn what a user has (a folder of images per class, a table, arrays, a list of texts) into a :class:`Dataset`.

Each loader checks its input as it reads it and raises :class:`~transferkit.errors.DataError` naming the file,
line or row; nothing here decodes images fully or runs a model.

Folders. Hidden files and folders (``.name``) and what operating systems leave behind (``Thumbs.db``,
``desktop.ini``, ``__MACOSX``, ``@eaDir``, ...) are skipped without a word; other files without an image extension
are skipped with one warning. Symbolic links never take images out of the folder they are in: a link to a *folder*
is followed only when the folder lies inside the class folder (or, for unlabelled data, inside the folder given);
a link to a folder elsewhere (the parent, another class) is skipped with a warning naming it, because its images
would all take this folder's label. A link to a *file* is followed wherever it points: class folders are often
built by linking images from a pool, and the image's label is that of the folder holding the link (if the same
image is also in another class, the duplicate check says so). Link loops and broken links are skipped with a
warning; a folder that cannot be listed is an error naming it.

Tables. CSV-like files are decoded as ``encoding`` (UTF-8 by default, a byte-order mark removed; UTF-16 when the
file starts with a UTF-16 byte-order mark); their delimiter is ``delimiter`` when given, else detected on the
first lines among ``,`` ``;`` tab and ``|`` (Excel's ``sep=;`` first line is honoured). Blank lines and rows whose
every cell is empty are skipped; a row is named by the line it starts on. Column names are matched with
surrounding whitespace removed. Labels that differ only in case, surrounding or repeated whitespace or Unicode
form (``Positive`` / ``positive``) are an error unless ``normalize_labels`` folds them into their most frequent
spelling; a label column of many decimal numbers is an error (a regression target, not classes).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.data.audio import AUDIO_SUFFIXES, UNSUPPORTED_AUDIO_SUFFIXES
from transferkit.data.dataset import Dataset, label_key
from transferkit.data.images import IMAGE_SUFFIXES, UNSUPPORTED_IMAGE_SUFFIXES
from transferkit.errors import ConfigError, DataError, DataNotFoundError
from transferkit.tasks import DEFAULT_TASK

log = logging.getLogger("transferkit")

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
TEXT_COLUMNS = ("text", "sentence", "review", "content")
PATH_COLUMNS = ("path", "image", "filepath", "file", "filename")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target")
#: Delimiters tried when a delimited table's delimiter is not given, in this order of preference.
DELIMITERS = (",", ";", "\t", "|")
#: Lines of a delimited table read to detect its delimiter.
SNIFF_LINES = 50
#: A numeric label column with more distinct values than this, some of them not whole numbers, is refused as a
#: regression target (half-star ratings 0.5 ... 5.0 are 10 values and pass).
MAX_DECIMAL_CLASSES = 10

#: What operating systems, cameras and sync tools leave in folders (lower case); skipped without a warning.
JUNK_FILES = frozenset({"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r", ".ds_store"})
JUNK_FOLDERS = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information", "__pycache__"})
_MAX_LINK_WARNINGS = 5


def table_options(options: Any) -> tuple[str | None, str | None, str | None, str, str | None, bool]:
    """The fields of a :class:`~transferkit.options.DataOptions` (or of a config composed of it) that say how a table
    is read: label, text and path columns, encoding, delimiter, label normalisation."""
    return (options.label_column, options.text_column, options.path_column, options.encoding, options.delimiter,
            options.normalize_labels)


def load_data(
    source: Any,
    options: Any = None,
    *,
    labels: Sequence[Any] | None = None,
    label_column: str | None = None,
    text_column: str | None = None,
    path_column: str | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    normalize_labels: bool = False,
    unlabelled: bool = False,
    task: str = DEFAULT_TASK,
) -> Dataset:
    """Load ``source`` as a :class:`Dataset`.

    ``source`` may be a folder of images with one sub-folder per class, a table file (CSV, TSV, JSONL, Parquet)
    with a label column and a text or image-path column, an array of images with ``labels``, a list of texts with
    ``labels``, or a :class:`Dataset` (returned as is). ``delimiter`` is that of a CSV/TSV file (detected when
    ``None``); ``normalize_labels`` folds labels that differ only in case, whitespace or Unicode form into their
    most frequent spelling instead of refusing them. ``task`` names the task (:mod:`transferkit.tasks`) that reads
    and checks the labels of a table or of ``labels``.

    ``options``: a :class:`~transferkit.options.DataOptions` (or a config composed of it, such as a ``FitConfig``)
    whose fields give the table options in place of the keywords of the same names (``task`` is always given by
    keyword: a config's ``task`` may mean something else, such as the head of a multi-task model).
    """
    if isinstance(source, Dataset):
        return source
    if options is not None:
        label_column, text_column, path_column, encoding, delimiter, normalize_labels = table_options(options)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            if path.is_symlink():
                raise DataNotFoundError(f"{path}: a symbolic link to {os.readlink(path)}, which does not exist.")
            raise DataNotFoundError(f"{path}: no such file or folder. Give a folder of images or a table file.")
        if path.is_dir():
            if not unlabelled:
                _check_folder_labels(path, task)
            if folder_holds_audio(path):
                if unlabelled:
                    return load_unlabelled_audio_folder(path)
                return load_audio_folder(path, normalize_labels=normalize_labels)
            if unlabelled:
                return load_unlabelled_image_folder(path)
            return load_image_folder(path, normalize_labels=normalize_labels)
        if path.suffix.lower() in AUDIO_SUFFIXES:
            if unlabelled:
                return Dataset("audio", [str(path)], None, display_path(path), [display_path(path)])
            raise DataError(f"{display_path(path)}: is one audio file; labelled data is a folder with one sub-folder "
                            "of clips per class, or a table with a label column and a path column.")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if unlabelled:
                return Dataset("image", [str(path)], None, display_path(path), [display_path(path)])
            raise DataError(f"{display_path(path)}: is one image file; labelled data is a folder with one sub-folder "
                            "of images per class, or a table with a label column.")
        return load_table(
            path,
            label_column=None if unlabelled else label_column,
            text_column=text_column,
            path_column=path_column,
            encoding=encoding,
            delimiter=delimiter,
            normalize_labels=normalize_labels,
            require_labels=not unlabelled,
            task=task,
        )
    return from_arrays(source, labels, normalize_labels=normalize_labels, task=task)


def from_arrays(items: Any, labels: Sequence[Any] | None = None, origin: str = "arrays", *,
                normalize_labels: bool = False, task: str = DEFAULT_TASK) -> Dataset:
    """Images as an array ``(N, H, W)`` / ``(N, H, W, C)`` (uint8; other integers up to 65535, rescaled; floats in
    0..1 or 0..255; booleans), or a list of texts; ``labels`` are read and checked by ``task``."""
    from transferkit.tasks import get_task

    reader = get_task(task)
    if isinstance(items, np.ndarray) and items.dtype.kind in "uifb":
        row_ids = [f"{origin}[{i}]" for i in range(len(items))]
        label_list = None if labels is None else _parse_listed_labels(reader, list(labels), origin)
        if label_list is not None:
            label_list = reader.check_labels(label_list, row_ids, origin, normalize=normalize_labels)
        return Dataset("image", _image_array_uint8(items, origin), label_list, origin, row_ids, task=task)
    items = list(items)
    label_list = None if labels is None else _parse_listed_labels(reader, list(labels), origin)
    if not all(isinstance(item, str) for item in items):
        bad = next(i for i, item in enumerate(items) if not isinstance(item, str))
        raise DataError(f"{origin}[{bad}]: expected a string (text) or an image array, got "
                        f"{type(items[bad]).__name__}.")
    row_ids = [f"{origin}[{i}]" for i in range(len(items))]
    _check_texts(items, row_ids)
    if label_list is not None:
        label_list = reader.check_labels(label_list, row_ids, origin, normalize=normalize_labels)
    return Dataset("text", items, label_list, origin, row_ids, task=task)


def _image_array_uint8(items: np.ndarray, origin: str) -> np.ndarray:
    """An image array as uint8 0..255, or a DataError saying which range was expected."""
    if items.ndim not in (3, 4) or (items.ndim == 4 and items.shape[3] not in (1, 3, 4)):
        raise DataError(
            f"{origin}: image arrays must be shaped (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got {items.shape}."
        )
    if items.shape[0] and 0 in items.shape[1:3]:
        raise DataError(f"{origin}: images of size {items.shape[1]}x{items.shape[2]} have no pixels.")
    if items.dtype == np.uint8 or items.size == 0:
        return items.astype(np.uint8, copy=False)
    if items.dtype.kind == "b":
        return items.astype(np.uint8) * 255
    if items.dtype.kind == "f" and not np.isfinite(items).all():
        raise DataError(f"{origin}: the image array contains NaN or infinite values.")
    low, high = float(items.min()), float(items.max())
    if items.dtype.kind in "iu":
        if low < 0 or high > 65535:
            raise DataError(f"{origin}: integer pixel values from {low:g} to {high:g}; expected 0..255 (8-bit) or "
                            "0..65535 (16-bit).")
        if high > 255:  # 16-bit data: the whole 16-bit range maps to 0..255
            return np.rint(items.astype(np.float64) / 257.0).astype(np.uint8)
        return items.astype(np.uint8)
    if low < 0 or high > 255:
        raise DataError(f"{origin}: float pixel values from {low:.3g} to {high:.3g}; expected 0..1 or 0..255. "
                        "Undo any normalisation (mean/std) before passing the images: transferkit applies the "
                        "backbone's own.")
    scale = 255.0 if high <= 1.0 else 1.0
    return np.clip(np.rint(items * scale), 0, 255).astype(np.uint8)


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def label_cell(value: Any, where: str, column: str = "label") -> str:
    """One class label as a string (``3.0`` -> ``"3"``); missing, empty and nested (list / object) values are errors
    naming ``where`` (a row or an index)."""
    if isinstance(value, (list, tuple, dict, set, np.ndarray)):
        raise DataError(f"{where}: the {column} is a {type(value).__name__} ({str(value)[:40]}); a label must be "
                        "a string or a number.")
    if is_blank(value):
        raise DataError(f"{where}: the {column} is missing or empty. Fill it in or drop the row.")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip()


def _parse_listed_labels(task: Any, labels: list[Any], origin: str) -> list[Any]:
    """Labels given as a list (not a table column), read by ``task``; each is named by its index."""
    return task.parse_labels(labels, [f"{origin}: label {i}" for i in range(len(labels))], "label")


def check_label_spellings(labels: list[str], row_ids: Sequence[str], origin: str, normalize: bool) -> list[str]:
    """``labels`` with no two spellings of one label (:func:`label_key`).

    With ``normalize`` the spellings of a label become its most frequent one (the first seen on a tie), and the
    folding is logged; without it, spellings that differ are a DataError naming both and a row of each.
    """
    first_row: dict[str, str] = {}
    spellings: dict[str, Counter] = {}
    for label, row in zip(labels, row_ids):
        first_row.setdefault(label, row)
        spellings.setdefault(label_key(label), Counter())[label] += 1
    clashes = {key: counts for key, counts in spellings.items() if len(counts) > 1}
    if not clashes:
        return labels
    if normalize:
        # most_common keeps first-seen order on ties
        chosen = {label: counts.most_common(1)[0][0] for counts in clashes.values() for label in counts}
        for counts in clashes.values():
            keep = counts.most_common(1)[0][0]
            others = [f"'{s}' ({n})" for s, n in counts.items() if s != keep]
            log.info("%s: labels %s folded into '%s'", origin, ", ".join(others), keep)
        return [chosen.get(label, label) for label in labels]
    described = []
    for counts in list(clashes.values())[:3]:
        # spellings that look the same when printed (composed and decomposed accents) are shown with escapes
        visible = Counter(unicodedata.normalize("NFC", s) for s in counts)
        shown = {s: ascii(s) if visible[unicodedata.normalize("NFC", s)] > 1 else f"'{s}'" for s in counts}
        described.append(" and ".join(f"{shown[s]} ({n} row{'s' if n != 1 else ''}, e.g. {first_row[s]})"
                                      for s, n in counts.most_common()))
    more = f" (and {len(clashes) - 3} more such labels)" if len(clashes) > 3 else ""
    raise DataError(
        f"{origin}: labels that differ only in case, whitespace or Unicode form would become separate classes: "
        f"{'; '.join(described)}{more}. Spell each label one way, or pass --normalize-labels (normalize_labels=True) "
        "to fold them into their most frequent spelling."
    )


# --------------------------------------------------------------------------------------------------- folders


def display_path(path: str | os.PathLike) -> str:
    """A path as text that can be printed and saved: bytes of a file name that are not valid in the file system's
    encoding (a latin-1 name on a UTF-8 system) are shown as ``\\xe9`` escapes."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _link_problem(path: str) -> str:
    """Why the symbolic link ``path`` leads nowhere usable (a loop or a missing target)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == 40 or "symbolic links" in str(exc):  # ELOOP
            return "a symbolic link loop"
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"a broken symbolic link (its target {display_path(target)} does not exist)"
    return "a symbolic link that cannot be followed"


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_FILES or name.lower() in JUNK_FOLDERS


def _walk_files(root: Path) -> list[Path]:
    """All files below ``root`` (sorted), following the link policy of the module docstring; every folder read once.

    Links that are skipped are named in warnings (at most a few, then a count); a folder that cannot be listed is
    a DataError naming it.
    """
    base = os.path.realpath(root)
    seen = {base}
    files: list[Path] = []
    skipped: list[str] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except PermissionError as exc:
            raise DataError(f"{display_path(folder)}: cannot list the folder (permission denied). Give read access "
                            f"(chmod u+rx) or move it out of {display_path(root)}.") from exc
        except OSError as exc:
            raise DataError(f"{display_path(folder)}: cannot list the folder ({exc.strerror or exc}).") from exc
        for entry in entries:
            if _is_junk(entry.name):
                continue
            shown = display_path(entry.path)
            try:
                is_link = entry.is_symlink()
                if is_link and not os.path.exists(entry.path):
                    skipped.append(f"{shown}: {_link_problem(entry.path)}; skipped.")
                    continue
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                skipped.append(f"{shown}: cannot be read ({exc.strerror or exc}); skipped.")
                continue
            if is_dir:
                real = os.path.realpath(entry.path)
                if is_link and not _inside(real, base):
                    skipped.append(f"{shown}: a symbolic link to the folder {display_path(real)}, outside "
                                   f"{display_path(root)}; skipped (its images would all take this folder's label). "
                                   "Link the image files, or move the folder in.")
                elif real in seen:
                    skipped.append(f"{shown}: leads to a folder already read ({display_path(real)}); skipped, "
                                   "each image is read once.")
                else:
                    seen.add(real)
                    stack.append(Path(entry.path))
            elif is_file:
                files.append(Path(entry.path))
            else:
                skipped.append(f"{shown}: not a regular file (a pipe, socket or device); skipped.")
    for message in skipped[:_MAX_LINK_WARNINGS]:
        warnings.warn(message, stacklevel=3)
    if len(skipped) > _MAX_LINK_WARNINGS:
        warnings.warn(f"{display_path(root)}: {len(skipped) - _MAX_LINK_WARNINGS} more links or entries skipped "
                      "(see above).", stacklevel=3)
    return sorted(files)


def _split_by_suffix(files: list[Path], folder: Path, kind: str, suffixes: set[str] | frozenset[str],
                     unsupported_suffixes: set[str] | frozenset[str], convert_to: str, modality: str) -> list[Path]:
    """The files of ``folder`` with one of ``suffixes`` (a ``kind`` each: image, clip); those in a format that cannot
    be decoded here and those without a ``modality`` extension are named in one warning each."""
    kept = [f for f in files if f.suffix.lower() in suffixes]
    unsupported = [f for f in files if f.suffix.lower() in unsupported_suffixes]
    others = [f for f in files if f.suffix.lower() not in set(suffixes) | set(unsupported_suffixes)]
    if unsupported:
        kinds = ", ".join(sorted({f.suffix.lower() for f in unsupported}))
        warnings.warn(f"{display_path(folder)}: {len(unsupported)} {kind}(s) in a format that cannot be decoded here "
                      f"({kinds}) skipped ({_shown(unsupported)}); convert them to {convert_to} to use them.",
                      stacklevel=4)
    if others:
        warnings.warn(f"{display_path(folder)}: {len(others)} file(s) without an {modality} extension skipped "
                      f"({_shown(others)}).", stacklevel=4)
    return kept


def _shown(paths: list[Path]) -> str:
    return ", ".join(display_path(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")


def _split_images(files: list[Path], folder: Path) -> list[Path]:
    return _split_by_suffix(files, folder, "image", IMAGE_SUFFIXES, UNSUPPORTED_IMAGE_SUFFIXES, "JPEG or PNG", "image")


def _class_folders(root: Path) -> list[Path]:
    """The class folders of ``root`` (links to folders anywhere allowed: a class may live elsewhere); image files
    lying directly in ``root`` are named in a warning, since they belong to no class."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"{display_path(root)}: cannot list the folder ({exc.strerror or exc}).") from exc
    folders, loose = [], []
    for entry in entries:
        if _is_junk(entry.name):
            continue
        try:
            if entry.is_symlink() and not os.path.exists(entry.path):
                warnings.warn(f"{display_path(entry.path)}: {_link_problem(entry.path)}; skipped.", stacklevel=3)
                continue
            if entry.is_dir():
                folders.append(Path(entry.path))
            elif entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                loose.append(entry.name)
        except OSError as exc:
            warnings.warn(f"{display_path(entry.path)}: cannot be read ({exc.strerror or exc}); skipped.", stacklevel=3)
    if loose and folders:
        warnings.warn(f"{display_path(root)}: {len(loose)} image(s) lie directly in the data folder, outside the class "
                      f"folders ({', '.join(display_path(n) for n in loose[:3])}{' ...' if len(loose) > 3 else ''}), "
                      "and are not used; move them into the folder of their class.", stacklevel=3)
    return folders


def load_image_folder(root: str | Path, *, normalize_labels: bool = False) -> Dataset:
    """A folder with one sub-folder per class; images anywhere below a class folder belong to that class (links:
    see the module docstring). The class name is the folder's name."""
    return _load_class_folders(root, "image", _split_images, normalize_labels,
                               no_classes="Put the images of each class in their own folder, e.g. {root}/cat/001.jpg "
                                          "and {root}/dog/001.jpg.",
                               empty_class="has no images. Add images or remove the folder.")


def _load_class_folders(root: str | Path, modality: str, split: Any, normalize_labels: bool, *, no_classes: str,
                        empty_class: str) -> Dataset:
    """The files of each class folder of ``root`` that ``split`` keeps, labelled with the folder's name; no class
    folder, or one with no such file, is a DataError ending with ``no_classes`` / ``empty_class``."""
    root = Path(root)
    class_dirs = _class_folders(root)
    if not class_dirs:
        raise DataError(f"{display_path(root)}: no class sub-folders found. "
                        + no_classes.format(root=display_path(root)))
    paths: list[str] = []
    labels: list[str] = []
    for class_dir in class_dirs:
        files = split(_walk_files(class_dir), class_dir)
        if not files:
            raise DataError(f"{display_path(class_dir)}: class folder '{display_path(class_dir.name)}' {empty_class}")
        paths.extend(str(p) for p in files)
        labels.extend([display_path(class_dir.name).strip()] * len(files))
    row_ids = [display_path(p) for p in paths]
    labels = check_label_spellings(labels, row_ids, display_path(root), normalize_labels)
    return Dataset(modality, paths, labels, display_path(root), row_ids)


def image_files(paths: Sequence[str | os.PathLike], origin: str = "inputs") -> Dataset:
    """A list of image files as an unlabelled dataset; a path that is not an existing file is a DataError naming it."""
    for path in paths:
        if not os.path.isfile(path):
            problem = _link_problem(os.fspath(path)) if os.path.islink(path) else \
                "a folder; give image files, or the folder alone" if os.path.isdir(path) else "no such file"
            raise DataError(f"{display_path(path)}: {problem}.")
    items = [os.fspath(p) for p in paths]
    return Dataset("image", items, None, origin, [display_path(p) for p in items])


def load_unlabelled_image_folder(root: str | Path) -> Dataset:
    """Every image below ``root``, without labels (target-domain data, inputs to ``predict``)."""
    root = Path(root)
    images = _split_images(_walk_files(root), root)
    if not images:
        raise DataError(f"{display_path(root)}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    paths = [str(p) for p in images]
    return Dataset("image", paths, None, display_path(root), [display_path(p) for p in paths])


# ----------------------------------------------------------------------------------------------------- audio


def folder_holds_audio(root: Path) -> bool:
    """Whether the files below ``root`` are mostly audio clips (by extension) rather than images."""
    audio = images = 0
    for _, folders, names in os.walk(root, followlinks=True):
        folders[:] = [f for f in folders if not _is_junk(f)]
        for name in names:
            suffix = Path(name).suffix.lower()
            audio += suffix in AUDIO_SUFFIXES
            images += suffix in IMAGE_SUFFIXES
        if audio + images > 200:
            break
    return audio > images


def _split_audio(files: list[Path], folder: Path) -> list[Path]:
    return _split_by_suffix(files, folder, "clip", AUDIO_SUFFIXES, UNSUPPORTED_AUDIO_SUFFIXES, "WAV or FLAC", "audio")


def load_audio_folder(root: str | Path, *, normalize_labels: bool = False) -> Dataset:
    """A folder with one sub-folder of clips per class (WAV, FLAC, OGG, AIFF, MP3, ...; links as for images). The
    class name is the folder's name. Clips are decoded and checked later, before any backbone runs."""
    return _load_class_folders(root, "audio", _split_audio, normalize_labels,
                               no_classes="Put the clips of each class in their own folder, e.g. {root}/kick/001.wav "
                                          "and {root}/snare/001.wav.",
                               empty_class=f"has no audio clips ({', '.join(sorted(AUDIO_SUFFIXES))}). Add clips or "
                                           "remove the folder.")


def load_unlabelled_audio_folder(root: str | Path) -> Dataset:
    """Every clip below ``root``, without labels (target-domain data, inputs to ``predict``)."""
    root = Path(root)
    clips = _split_audio(_walk_files(root), root)
    if not clips:
        raise DataError(f"{display_path(root)}: no audio clips found (looked for {', '.join(sorted(AUDIO_SUFFIXES))}).")
    paths = [str(p) for p in clips]
    return Dataset("audio", paths, None, display_path(root), [display_path(p) for p in paths])


def audio_files(paths: Sequence[str | os.PathLike], origin: str = "inputs") -> Dataset:
    """A list of audio files as an unlabelled dataset; a path that is not an existing file is a DataError naming it."""
    for path in paths:
        if not os.path.isfile(path):
            problem = _link_problem(os.fspath(path)) if os.path.islink(path) else \
                "a folder; give audio files, or the folder alone" if os.path.isdir(path) else "no such file"
            raise DataError(f"{display_path(path)}: {problem}.")
    items = [os.fspath(p) for p in paths]
    return Dataset("audio", items, None, origin, [display_path(p) for p in items])


# ---------------------------------------------------------------------------------------------------- tables


@dataclass
class _Table:
    """A table as read: column names (stripped; may repeat), one list of cells per column, and a name per row."""

    columns: list[str]
    cells: list[list[Any]]
    row_ids: list[str]
    delimiter: str | None = None

    def __len__(self) -> int:
        return len(self.row_ids)


def _check_encoding(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(f"unknown text encoding '{encoding}' (--encoding); use a Python codec name such as utf-8, "
                          "latin-1, cp1252 or utf-16.") from None


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    """The file's text: a UTF-8 byte-order mark dropped, UTF-16 recognised by its byte-order mark when the
    encoding was left at UTF-8; a byte that is not valid text is a DataError naming its line and column."""
    codec = _check_encoding(encoding)
    if codec == "utf-8":
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            codec = "utf-16"
        else:
            codec = _utf16_without_bom(raw) or "utf-8-sig"
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start:exc.start].decode(codec, errors="replace")) + 1
        line_end = raw.find(b"\n", exc.start)
        excerpt = raw[line_start: line_end if line_end >= 0 else len(raw)][:80].decode(codec, errors="replace")
        hint = ("it looks like UTF-16 without a byte-order mark: give --encoding utf-16-le"
                if raw[1:200:2].count(0) > 50 else
                "the file is in another encoding: give it, e.g. --encoding latin-1 (or cp1252 for files from Windows), "
                "or save the file as UTF-8")
        raise DataError(
            f"{path} line {line}, column {column}: byte 0x{raw[exc.start]:02x} is not valid {encoding} text "
            f"(the line reads {excerpt.rstrip()!r}); {hint}."
        ) from None


def _utf16_without_bom(raw: bytes) -> str | None:
    """``utf-16-le`` / ``utf-16-be`` when the head of ``raw`` is mostly text with a zero byte in every odd / even
    position (UTF-16 of Latin text, as some programs save it without a byte-order mark), else ``None``."""
    head = raw[:400] if len(raw) % 2 == 0 else raw[:400][:-1]
    if len(head) < 8:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return "utf-16-be"
    return None


def _sniff_delimiter(text: str, preferred: str) -> str:
    """The delimiter among :data:`DELIMITERS` that splits the header into most columns consistently across the
    first :data:`SNIFF_LINES` records (ties go to ``preferred``, then to the order of :data:`DELIMITERS`)."""
    head = text[: 1 << 16]
    truncated = len(text) > len(head)
    best: tuple[float, str] | None = None
    for candidate in (preferred, *[d for d in DELIMITERS if d != preferred]):
        try:
            records = [r for r in islice(csv.reader(io.StringIO(head, newline=""), delimiter=candidate),
                                         SNIFF_LINES + 1) if r]
        except csv.Error:
            continue
        if truncated and len(records) > 1:
            records = records[:-1]
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        consistency = sum(len(r) == width for r in records[1:]) / max(1, len(records) - 1)
        if best is None or consistency > best[0]:
            best = (consistency, candidate)
    return best[1] if best else preferred


def _normalise_delimiter(delimiter: str | None) -> str | None:
    if delimiter is None:
        return None
    named = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
    value = named.get(delimiter.lower(), delimiter)
    if len(value) != 1 or value in "\"\r\n":
        raise ConfigError(f"--delimiter must be one character such as ',', ';', '|' or '\\t' (tab); got {delimiter!r}.")
    return value


def _read_delimited(path: Path, text: str, delimiter: str | None, preferred: str) -> _Table:
    if "\x00" in text:
        position = text.index("\x00")
        line = text.count("\n", 0, position) + 1
        raise DataError(
            f"{path} line {line}: contains a NUL byte (\\0), which a text table does not have: the file may be "
            "binary, or UTF-16 without a byte-order mark (then give --encoding utf-16-le). Otherwise remove the NUL "
            "bytes (e.g. tr -d '\\000' < in > out)."
        )
    offset = 0
    first_line = text.split("\n", 1)[0].strip().strip('"').replace(" ", "")
    if first_line.lower().startswith("sep=") and len(first_line) == 5:  # Excel's delimiter hint
        delimiter = delimiter or first_line[4]
        text = text.split("\n", 1)[1] if "\n" in text else ""
        offset = 1
    delimiter = delimiter or _sniff_delimiter(text, preferred)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[list[str]] = []
    starts: list[int] = []
    previous_end = 0
    limit = csv.field_size_limit(1 << 30)  # long texts are legal (the validation warns about them)
    try:
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not record or all(cell.strip() == "" for cell in record):
                continue
            if header is None:
                header = record
                continue
            rows.append(record)
            starts.append(start + offset)
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num + 1 + offset}: cannot be read as a table ({exc}).") from None
    finally:
        csv.field_size_limit(limit)
    if header is None:
        raise DataError(f"{path}: the file has no header line (or only blank lines).")
    if rows:
        _check_last_record_closed(path, text, starts[-1] - offset, offset)
    columns = [c.strip() for c in header]
    width = len(columns)
    if width == 1 and _one_column_hint(_Table(columns, [], [], delimiter)):
        raise DataError(f"{path}: no delimiter {delimiter!r} in the header." + _one_column_hint(_Table(columns, [], [],
                                                                                                      delimiter)))
    for record, start in zip(rows, starts):
        if len(record) > width and any(cell.strip() for cell in record[width:]):
            raise DataError(
                f"{path} line {start}: {len(record)} fields, but the header has {width} ({columns}) with "
                f"delimiter {delimiter!r}. Quote the fields that contain {delimiter!r}, or pass --delimiter."
            )
    cells = [[record[i] if i < len(record) else "" for record in rows] for i in range(width)]
    return _Table(columns, cells, [f"{path} line {start}" for start in starts], delimiter)


def _check_last_record_closed(path: Path, text: str, start_line: int, offset: int) -> None:
    """A quote opened and never closed makes the rest of the file one cell; name the line where it opened."""
    tail = "".join(islice(io.StringIO(text, newline=""), start_line - 1, None))
    try:
        for _ in csv.reader(io.StringIO(tail, newline=""), strict=True):
            pass
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise DataError(
                f"{path} line {start_line + offset}: a quoted field starts here and is never closed, so the rest of "
                "the file would be one cell. Close the quote, or double a quote inside a field (\"\")."
            ) from None


def _read_jsonl(path: Path, text: str) -> _Table:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of records rather than JSON lines
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}).") from None
        if not all(isinstance(r, dict) for r in records):
            bad = next(i for i, r in enumerate(records) if not isinstance(r, dict))
            raise DataError(f"{path} item {bad + 1}: is a {type(records[bad]).__name__}; each item must be an object "
                            "such as {\"text\": \"...\", \"label\": \"...\"}.")
        return _records_table(records, [f"{path} item {i + 1}" for i in range(len(records))])
    records, row_ids = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            hint = (" The file looks like one JSON object over several lines; write one object per line (JSON lines)."
                    if number == 1 and line.strip() == "{" else "")
            raise DataError(
                f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno}); the line starts "
                f"{line.strip()[:60]!r}. Each line must be one JSON object such as "
                f"{{\"text\": \"...\", \"label\": \"...\"}}.{hint}"
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: is a JSON {type(record).__name__}, not an object; each line must "
                            "be one object such as {\"text\": \"...\", \"label\": \"...\"}.")
        records.append(record)
        row_ids.append(f"{path} line {number}")
    return _records_table(records, row_ids)


def _records_table(records: list[dict], row_ids: list[str]) -> _Table:
    columns: dict[str, None] = {}
    for record in records:
        for key in record:
            columns.setdefault(key, None)
    names = list(columns)
    cells = [[record.get(name) for record in records] for name in names]
    return _Table([str(n).strip() for n in names], cells, row_ids)


def _read_parquet(path: Path) -> _Table:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow ({exc}).") from None
    except Exception as exc:
        raise DataError(f"{path}: cannot be read as Parquet ({type(exc).__name__}: {exc}).") from None
    cells = [frame.iloc[:, i].tolist() for i in range(frame.shape[1])]
    return _Table([str(c).strip() for c in frame.columns], cells, [f"{path} row {i + 1}" for i in range(len(frame))])


def _read_table(path: Path, encoding: str, delimiter: str | None = None) -> _Table:
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unknown table format '{path.suffix}'. Use .csv, .tsv, .jsonl or .parquet, or give a folder of "
            "images." + (" Save a spreadsheet as CSV first." if path.suffix.lower() in (".xlsx", ".xls", ".ods")
                         else "")
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if size == 0:
        raise DataError(f"{path}: the file is empty.")
    if kind == "parquet":
        return _read_parquet(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    text = _decode(path, raw, encoding)
    if kind == "jsonl":
        return _read_jsonl(path, text)
    return _read_delimited(path, text, _normalise_delimiter(delimiter), "," if kind == "csv" else "\t")


def _pick_column(table: _Table, wanted: str | None, candidates: Sequence[str], path: Path, option: str) -> int | None:
    """The index of the column named ``wanted`` (``option`` gave it), else of the first of ``candidates`` present
    (case-insensitive); a name that appears twice is an error."""
    columns = table.columns
    if wanted is not None:
        matches = [i for i, c in enumerate(columns) if c == wanted.strip()]
        if not matches:
            matches = [i for i, c in enumerate(columns) if c.lower() == wanted.strip().lower()]
        if not matches:
            raise DataError(f"{path}: no column '{wanted}' ({option}); the columns are {columns}."
                            + _one_column_hint(table))
    else:
        matches = []
        for name in candidates:
            matches = [i for i, c in enumerate(columns) if c.lower() == name]
            if matches:
                break
        if not matches:
            return None
    if len(matches) > 1:
        raise DataError(f"{path}: the column '{columns[matches[0]]}' appears {len(matches)} times (columns "
                        f"{', '.join(str(i + 1) for i in matches)}); rename all but one.")
    return matches[0]


def _one_column_hint(table: _Table) -> str:
    if len(table.columns) != 1:
        return ""
    name = table.columns[0]
    found = [d for d in DELIMITERS if d in name and d != table.delimiter]
    if not found:
        return ""
    shown = "\\t" if found[0] == "\t" else found[0]
    return (f" The table was read as one column named {name!r}, which contains {shown!r}: the delimiter is probably "
            f"{shown!r}; pass --delimiter '{shown}' (or leave --delimiter out to detect it).")


def check_numeric_labels(labels: list[str], column: str, path: str | Path) -> None:
    """Refuse a label column that holds a measurement rather than classes (many decimal numbers)."""
    distinct = set(labels)
    if len(distinct) <= MAX_DECIMAL_CLASSES:
        return
    numbers = []
    for label in distinct:
        try:
            numbers.append(float(label))
        except ValueError:
            return
    if not np.isfinite(numbers).all():
        return
    decimals = any(not float(n).is_integer() for n in numbers)
    mostly_unique = len(distinct) > len(labels) / 2
    if decimals or mostly_unique:
        examples = ", ".join(str(v) for v in sorted(distinct, key=float)[:4])
        raise DataError(
            f"{path}: the label column '{column}' looks numeric (a regression target?): {len(distinct)} distinct "
            f"values in {len(labels)} rows, such as {examples}. To predict the number, pass --task-type regression "
            "(task='regression'); to classify, give class labels (for example bin the values into a few named "
            "ranges), or choose another column with --label-column."
        )


def load_table(
    path: str | Path,
    options: Any = None,
    *,
    label_column: str | None = None,
    text_column: str | None = None,
    path_column: str | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    normalize_labels: bool = False,
    require_labels: bool = True,
    task: str = DEFAULT_TASK,
) -> Dataset:
    """A table with a label column and either a text column or an image-path column (labels read by ``task``).

    Column names are guessed when not given (``label``/``class``/...; ``text``/``sentence``/...;
    ``path``/``image``/...). Image paths are relative to the table's folder unless absolute. Reading rules (encoding,
    delimiter, blank rows, label spellings): see the module docstring. ``options``: a
    :class:`~transferkit.options.DataOptions` whose fields replace the keywords of the same names.
    """
    if options is not None:
        label_column, text_column, path_column, encoding, delimiter, normalize_labels = table_options(options)
    path = Path(path)
    table = _read_table(path, encoding, delimiter)
    if len(table) == 0:
        raise DataError(f"{path}: the table has a header but no rows.")
    from transferkit.data.label_columns import named_columns

    several = named_columns(table.columns, label_column) if require_labels else None  # 0/1 columns: a,b,c
    label_col = _pick_column(table, None if several else label_column, () if several else LABEL_COLUMNS, path,
                             "--label-column")
    if require_labels and label_col is None and not several:
        raise DataError(
            f"{path}: no label column found among {table.columns}. Name it 'label' or pass --label-column NAME."
            + _one_column_hint(table)
        )
    text_col = _pick_column(table, text_column, TEXT_COLUMNS, path, "--text-column")
    path_col = _pick_column(table, path_column, PATH_COLUMNS, path, "--path-column")
    if text_column is None and path_column is not None:
        text_col = None
    if text_col is None and path_col is None:
        raise DataError(
            f"{path}: no text or image-path column found among {table.columns}. Name it 'text' or 'path', or pass "
            "--text-column NAME / --path-column NAME." + _one_column_hint(table)
        )
    row_ids = table.row_ids
    labels = None
    if require_labels:
        from transferkit.tasks import get_task

        reader = get_task(task)
        if several:
            from transferkit.data.label_columns import label_sets

            name = ",".join(several)
            values = label_sets(table.columns, table.cells, several, row_ids, str(path),
                                reads_label_sets=reader.label_sets, task=reader.name)
        else:
            name, values = table.columns[label_col], table.cells[label_col]
        labels = reader.parse_labels(values, row_ids, f"label ('{name}')")
        labels = reader.check_labels(labels, row_ids, str(path), normalize=normalize_labels, column=name)
    if text_col is not None:
        texts = table.cells[text_col]
        _check_texts(texts, row_ids, column=table.columns[text_col])
        return Dataset("text", [str(t) for t in texts], labels, str(path), row_ids, task=task)
    base = path.parent
    paths = [_image_path(value, base, row_ids[i], table.columns[path_col])
             for i, value in enumerate(table.cells[path_col])]
    # the kind of file most paths name decides: clips (by extension) make an audio dataset
    clips = sum(Path(p).suffix.lower() in AUDIO_SUFFIXES for p in paths)
    return Dataset("audio" if clips * 2 > len(paths) else "image", paths, labels, str(path), row_ids, task=task)


def _check_folder_labels(path: Path, task: str) -> None:
    """A folder of sub-folders gives one class per example: refused for a task whose labels are not classes."""
    from transferkit.tasks import get_task

    if not get_task(task).reads_class_folders:
        raise DataError(f"{display_path(path)}: a folder of sub-folders labels each example with one class, but the "
                        f"task is {task}; give a table with a path column and a label column (--path-column, "
                        "--label-column) instead.")


def _image_path(value: Any, base: Path, row: str, column: str) -> str:
    """One cell of an image-path column as an existing image file (relative to ``base``), or a DataError naming
    the row and what is wrong with the path."""
    if is_blank(value):
        raise DataError(f"{row}: the image path ('{column}') is empty.")
    text = str(value).strip()
    if "://" in text:
        raise DataError(f"{row}: the image path ('{column}') is a URL ({text[:80]}); download the images and give "
                        "local paths.")
    image_path = Path(text).expanduser()
    image_path = image_path if image_path.is_absolute() else base / image_path
    if not image_path.exists() and "\\" in text and os.sep == "/":  # a table written on Windows
        converted = Path(text.replace("\\", "/"))
        converted = converted if converted.is_absolute() else base / converted
        if converted.exists():
            image_path = converted
    if image_path.is_symlink() and not image_path.exists():
        raise DataError(f"{row}: image file {display_path(image_path)} is {_link_problem(str(image_path))}.")
    if image_path.is_dir():
        raise DataError(f"{row}: {display_path(image_path)} is a folder, not an image file; list the image files "
                        "one per row.")
    if not image_path.is_file():
        relative = "" if Path(text).is_absolute() else f" (paths are relative to the table's folder {display_path(base)})"
        raise DataError(f"{row}: image file {display_path(image_path)} does not exist{relative}.")
    return str(image_path)


def _check_texts(texts: Sequence[Any], row_ids: Sequence[str], column: str = "text") -> None:
    for i, text in enumerate(texts):
        if isinstance(text, (list, tuple, dict, set, np.ndarray)):
            raise DataError(f"{row_ids[i]}: the text ('{column}') is a {type(text).__name__}, not a string.")
        if is_blank(text):
            raise DataError(f"{row_ids[i]}: the text ('{column}') is missing or empty. Fill it in or drop the row.")
