"""Recommendation data: an interactions table (user, item, optional rating and timestamp) and an item table (item
id and the items' content), read and checked before any model runs.

Every problem is a :class:`~transferkit.errors.DataError` that names the file, the row and the fix: a missing
column, an interaction whose item is not in the item table, the same (user, item, time) twice, an item without
content, an item listed twice. Ids are strings as written (``"7"`` and ``"07"`` are different items).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.data.sources import (AUDIO_SUFFIXES, PATH_COLUMNS, _image_path, _pick_column, _read_table,
                                      _Table, is_blank)
from transferkit.errors import DataError

USER_COLUMNS = ("user", "user_id", "userid", "customer", "customer_id")
ITEM_COLUMNS = ("item", "item_id", "itemid", "movie_id", "product_id", "id")
RATING_COLUMNS = ("rating", "score", "weight")
TIME_COLUMNS = ("timestamp", "time", "date")


@dataclass
class Catalogue:
    """The items: ``item_ids`` in table order and ``content`` (a :class:`Dataset`, one example per item, same
    order) whose modality decides the backbone."""

    item_ids: list[str]
    content: Dataset
    origin: str

    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}


@dataclass
class Interactions:
    """Positive interactions as integer arrays: ``users[n]`` indexes ``user_ids``, ``items[n]`` indexes the
    catalogue's ``item_ids``; ``times`` (seconds or any increasing number) when the table has a time column."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray | None
    user_ids: list[str]
    origin: str

    def __len__(self) -> int:
        return len(self.users)


def _column(table: _Table, wanted: str | None, candidates: Sequence[str], path: Path, option: str,
            what: str) -> int:
    index = _pick_column(table, wanted, candidates, path, option)
    if index is None:
        raise DataError(f"{path}: no {what} column found among {table.columns}; name it '{candidates[0]}' or pass "
                        f"{option} NAME.")
    return index


def load_catalogue(path: str | Path, config: Any) -> Catalogue:
    """The item table ``path``: its item-id column (``config.item_column``) and each item's content: the image or
    audio file of ``config.path_column``, else the text of ``config.content_columns`` / ``config.text_column``
    (default: every other column) joined with ". "."""
    path = Path(path)
    table = _read_table(path, config.encoding, config.delimiter)
    if len(table) == 0:
        raise DataError(f"{path}: the item table has a header but no rows.")
    id_col = _column(table, config.item_column, ITEM_COLUMNS, path, "--item-column", "item-id")
    item_ids = _ids(table.cells[id_col], table.row_ids, table.columns[id_col])
    seen: dict[str, str] = {}
    for item, row in zip(item_ids, table.row_ids):
        if item in seen:
            raise DataError(f"{row}: item '{item}' is listed twice in the item table (first at {seen[item]}); keep "
                            "one row per item.")
        seen[item] = row
    if config.path_column is not None:
        return Catalogue(item_ids, _file_content(table, path, config.path_column), str(path))
    names = config.content_columns or ([config.text_column] if config.text_column else
                                       [c for i, c in enumerate(table.columns) if i != id_col])
    if not names:
        raise DataError(f"{path}: the item table has no content column besides the item id; add a text column "
                        "(title, description) or an image path column (--path-column).")
    columns = [_column(table, name, (), path, "--content-columns", "content") for name in names]
    texts = []
    for r, row in enumerate(table.row_ids):
        parts = [str(table.cells[c][r]).strip() for c in columns if not is_blank(table.cells[c][r])]
        if not parts:
            raise DataError(f"{row}: item '{item_ids[r]}' has no content (its {', '.join(names)} "
                            f"{'is' if len(names) == 1 else 'are'} empty); fill in a title or description, or "
                            "drop the item.")
        texts.append(". ".join(parts))
    return Catalogue(item_ids, Dataset("text", texts, None, str(path), list(table.row_ids)), str(path))


def _file_content(table: _Table, path: Path, column: str) -> Dataset:
    col = _column(table, column, PATH_COLUMNS, path, "--path-column", "path")
    name = table.columns[col]
    files = []
    for row, value in zip(table.row_ids, table.cells[col]):
        if is_blank(value):
            raise DataError(f"{row}: the item has no content (its '{name}' path is empty); give its file, or drop "
                            "the item.")
        files.append(_image_path(value, path.parent, row, name))
    clips = sum(Path(p).suffix.lower() in AUDIO_SUFFIXES for p in files)
    return Dataset("audio" if clips * 2 > len(files) else "image", files, None, str(path), list(table.row_ids))


def _ids(values: Sequence[Any], row_ids: Sequence[str], column: str) -> list[str]:
    ids = []
    for value, row in zip(values, row_ids):
        if is_blank(value):
            raise DataError(f"{row}: the id ('{column}') is empty; fill it in or drop the row.")
        text = str(value).strip()
        ids.append(text[:-2] if text.endswith(".0") and text[:-2].isdigit() else text)  # 7.0 from a float column
    return ids


def _numbers(values: Sequence[Any], row_ids: Sequence[str], column: str, path: Path, option: str) -> np.ndarray:
    out = np.empty(len(values))
    for n, (value, row) in enumerate(zip(values, row_ids)):
        try:
            out[n] = float(value)
        except (TypeError, ValueError):
            out[n] = np.nan
        if not np.isfinite(out[n]):
            raise DataError(f"{row}: '{column}' is {value!r}, not a number; fix the cell, or give another column "
                            f"with {option}.")
    return out


def _times(values: Sequence[Any], row_ids: Sequence[str], column: str, path: Path) -> np.ndarray:
    """Numbers as they are; otherwise dates (ISO 8601 or anything pandas reads) as seconds."""
    try:
        return _numbers(values, row_ids, column, path, "--time-column")
    except DataError:
        import pandas as pd

        stamps = pd.to_datetime(pd.Series(list(values), dtype=object), errors="coerce", utc=True)
        bad = np.flatnonzero(stamps.isna().to_numpy())
        if bad.size:
            raise DataError(f"{row_ids[bad[0]]}: the time ('{column}') is {values[bad[0]]!r}, neither a number nor "
                            "a date; fix the cell, or give another column with --time-column.") from None
        return stamps.astype("int64").to_numpy() / 1e9


def load_interactions(path: str | Path, item_ids: Sequence[str], items_origin: str, config: Any) -> Interactions:
    """The interactions table ``path``, checked against the catalogue's ``item_ids`` (read from ``items_origin``):
    every item known, no row repeated; rows rated below ``config.min_rating`` dropped (they are not positives)."""
    path = Path(path)
    table = _read_table(path, config.encoding, config.delimiter)
    if len(table) == 0:
        raise DataError(f"{path}: the interactions table has a header but no rows.")
    user_col = _column(table, config.user_column, USER_COLUMNS, path, "--user-column", "user-id")
    item_col = _column(table, config.item_column, ITEM_COLUMNS, path, "--item-column", "item-id")
    rows = table.row_ids
    users = _ids(table.cells[user_col], rows, table.columns[user_col])
    items = _ids(table.cells[item_col], rows, table.columns[item_col])
    index = {item: i for i, item in enumerate(item_ids)}
    for item, row in zip(items, rows):
        if item not in index:
            raise DataError(f"{row}: item '{item}' is not in the item table {items_origin}; add it there with its "
                            "content, or drop the interaction.")
    rating_col = _pick_column(table, config.rating_column, RATING_COLUMNS, path, "--rating-column")
    time_col = _pick_column(table, config.time_column, TIME_COLUMNS, path, "--time-column")
    times = None if time_col is None else _times(table.cells[time_col], rows, table.columns[time_col], path)
    _check_repeats(users, items, times, rows)
    keep = np.ones(len(rows), dtype=bool)
    if config.min_rating is not None:
        if rating_col is None:
            raise DataError(f"{path}: --min-rating needs a rating column, and none was found among {table.columns}; "
                            "pass --rating-column NAME.")
        ratings = _numbers(table.cells[rating_col], rows, table.columns[rating_col], path, "--rating-column")
        keep = ratings >= config.min_rating
        if not keep.any():
            raise DataError(f"{path}: no interaction is rated {config.min_rating} or more (--min-rating); lower it.")
    user_ids = sorted(set(u for u, k in zip(users, keep) if k))
    user_index = {u: i for i, u in enumerate(user_ids)}
    kept = np.flatnonzero(keep)
    return Interactions(np.array([user_index[users[n]] for n in kept], dtype=np.int64),
                        np.array([index[items[n]] for n in kept], dtype=np.int64),
                        None if times is None else times[kept], user_ids, str(path))


def _check_repeats(users: list[str], items: list[str], times: np.ndarray | None, rows: Sequence[str]) -> None:
    """The same user, item (and time, when there is one) twice is a duplicated row: it would count twice."""
    first: dict[tuple, str] = {}
    for n, row in enumerate(rows):
        key = (users[n], items[n]) if times is None else (users[n], items[n], times[n])
        if key in first:
            raise DataError(f"{row}: user '{users[n]}' and item '{items[n]}'"
                            + ("" if times is None else " at the same time")
                            + f" repeat {first[key]}; drop the duplicate row (or sum repeated events into a rating "
                              "column).")
        first[key] = row


__all__ = ["Catalogue", "Interactions", "ITEM_COLUMNS", "USER_COLUMNS", "load_catalogue", "load_interactions"]
