"""Label sets given as one 0/1 column per label: ``--label-column drama,comedy,horror`` (multi-label tables).

A table of tags often has a column per label holding 1 when the row has it and 0 when not. Naming several columns,
comma-separated, as the label column reads each row's label set from them: the labels are the names of the
columns holding 1 (a row with none has the empty set). The names are the columns' own (case-insensitive match,
like ``--label-column``). Each cell must be 0 or 1 (``0``, ``1``, ``0.0``, ``1.0``, ``true`` / ``false`` and
booleans are read as such); anything else, a missing cell, a repeated or unknown column is a :class:`DataError`
naming the table, the row and the column. A column with no 1 at all is a warning: no model can learn that label
from this table. Only a task whose labels are sets (``--task-type multilabel``) reads such columns.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

from transferkit.errors import ConfigError, DataError

_TRUE = {"1", "1.0", "true"}
_FALSE = {"0", "0.0", "false"}


def named_columns(columns: Sequence[str], wanted: str | None) -> list[str] | None:
    """The names in ``wanted`` when it names several columns (comma-separated and not itself one column's name),
    else ``None`` (one label column, read as usual)."""
    if wanted is None or "," not in wanted or any(c == wanted.strip() for c in columns):
        return None
    return [part.strip() for part in wanted.split(",")]


def column_indices(columns: Sequence[str], names: Sequence[str], origin: str) -> list[int]:
    """The index of each named column (exact name first, else case-insensitive); an empty, repeated or unknown
    name is a DataError naming the table and the option."""
    if any(not name for name in names):
        raise DataError(f"{origin}: --label-column {','.join(names)} has an empty column name (a comma at an end, "
                        "or two in a row); list the 0/1 label columns as a,b,c.")
    if len({name.lower() for name in names}) < len(names):
        raise DataError(f"{origin}: --label-column {','.join(names)} names a column twice; list each 0/1 label "
                        "column once.")
    indices = []
    for name in names:
        matches = [i for i, c in enumerate(columns) if c == name] or \
            [i for i, c in enumerate(columns) if c.lower() == name.lower()]
        if not matches:
            raise DataError(f"{origin}: no column '{name}' (--label-column {','.join(names)}); the columns are "
                            f"{list(columns)}.")
        if len(matches) > 1:
            raise DataError(f"{origin}: the column '{columns[matches[0]]}' appears {len(matches)} times; rename all "
                            "but one.")
        indices.append(matches[0])
    return indices


def _flag(value: Any, place: str, column: str) -> bool:
    """One cell of a 0/1 label column as whether the row has the label."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        if value in (0, 1):
            return bool(value)
    elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    shown = "empty" if value is None or (isinstance(value, str) and not value.strip()) or \
        (isinstance(value, float) and math.isnan(value)) else repr(value)[:40]
    raise DataError(f"{place}: label column '{column}' holds {shown}; a 0/1 label column holds 1 when the row has "
                    "the label and 0 when not. Correct the cell, or drop the row.")


def label_sets(columns: Sequence[str], cells: Sequence[Sequence[Any]], names: Sequence[str],
               row_ids: Sequence[str], origin: str, *, reads_label_sets: bool, task: str) -> list[list[str]]:
    """Each row's label set from the 0/1 columns ``names`` (``cells`` holds one sequence of values per column of
    ``columns``). ``reads_label_sets`` is whether the run's ``task`` reads label sets; if not, a ConfigError says
    to choose the multi-label task."""
    if not reads_label_sets:
        raise ConfigError(f"option 'label_column' (--label-column {','.join(names)}): several 0/1 label columns give "
                          f"each row a set of labels, which the {task} task does not read; add --task-type "
                          "multilabel, or name one label column.")
    if len(names) < 2:
        raise DataError(f"{origin}: --label-column {','.join(names)} names one 0/1 column; give at least two label "
                        "columns (a,b), or one column of label sets.")
    indices = column_indices(columns, names, origin)
    flags = [[_flag(value, row, columns[j]) for value, row in zip(cells[j], row_ids)] for j in indices]
    never = [columns[j] for j, column in zip(indices, flags) if not any(column)]
    if never:
        from transferkit.data.validation import DataWarning

        warnings.warn(f"{origin}: label column(s) {never[:5]} hold 0 on every row; no model can learn these labels "
                      "from this table.", DataWarning, stacklevel=4)
    return [[columns[j] for j, column in zip(indices, flags) if column[i]] for i in range(len(row_ids))]
