"""Where ``explore`` writes: the output folder's check, the per-example tables and ``summary.json``.

Each file is written beside its final name and renamed into place, so an interrupted run never leaves half a
table; files of other tools in the folder are never touched.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable

from transferkit.errors import ConfigError
from transferkit.exploration.result import COLUMNS, ExploreResult

#: The files an explore run writes (an earlier run's are replaced only with ``overwrite``).
OUTPUT_FILES = ("explore.html", "explore.csv", "explore.parquet", "summary.json")


def check_explore_output(folder: str | Path, overwrite: bool, *, inputs: Iterable[Any] = ()) -> Path:
    """The output folder, checked before any work: not a file, not one of the inputs or inside one, writable, and
    without an earlier explore's files unless ``overwrite``. Raises :class:`ConfigError` naming ``--output``."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"option 'output': {path} is a file; give a folder (it is created when missing).")
    resolved = path.resolve()
    for source in inputs:
        source_path = Path(source).expanduser().resolve()
        if source_path.is_dir() and (resolved == source_path or source_path in resolved.parents):
            raise ConfigError(f"option 'output': {path} is inside the data folder {source}; the outputs would be "
                              "read as data next time. Choose a folder outside it.")
    taken = [name for name in OUTPUT_FILES if (path / name).exists()]
    if taken and not overwrite:
        raise ConfigError(f"option 'output': {path} already holds {', '.join(taken)} of an earlier explore run; pass "
                          "--overwrite (overwrite=True) to replace them, or choose another folder.")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"option 'output': {parent} cannot be written; choose a folder you can write to.")
    return path


def _replace(path: Path, write: Any) -> Path:
    temporary = path.with_name(f".{path.name}.partial")
    write(temporary)
    os.replace(temporary, path)
    return path


def write_tables(result: ExploreResult, folder: Path) -> dict[str, str]:
    """``explore.csv`` (every example, :data:`COLUMNS`) and ``explore.parquet`` when pyarrow is installed."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = list(zip(*(result.table[c] for c in COLUMNS)))

    def csv_file(path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows(["" if v is None else v for v in row] for row in rows)

    files = {"table": str(_replace(folder / "explore.csv", csv_file))}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return files
    table = pa.table({c: result.table[c] for c in COLUMNS})
    files["parquet"] = str(_replace(folder / "explore.parquet", lambda p: pq.write_table(table, p)))
    return files


def write_summary(result: ExploreResult, folder: Path, config: Any) -> Path:
    """``summary.json``: the facts, the clusters, the files and the options of the run."""
    content = {**result.to_dict(), "options": config.model_dump(mode="json")}
    text = json.dumps(content, indent=2, default=str)
    return _replace(folder / "summary.json", lambda p: p.write_text(text, encoding="utf-8"))
