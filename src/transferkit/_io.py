"""File helpers for everything transferkit writes: atomic writes, folders staged beside their final place and
renamed into it, and the checks of an output path that run before any long work.

Rules (every verb that writes follows them):

- a file is written to a temporary name in its own folder and renamed over the final name (``os.replace``), so a
  crash never leaves a half-written file that looks complete, and the old file stays until the new one is whole;
- a folder (a model) is written into a staging folder beside it and renamed into place at the end; an existing
  folder it replaces is moved aside first and deleted only once the new one is in place;
- created files and folders get the modes of any ordinary write (``0666`` / ``0777`` less the user's umask; a
  replaced file keeps its mode), not the private modes of :mod:`tempfile`;
- an output path is checked before the work that produces it: it is not a file where a folder is wanted (nor the
  reverse), no part of its parent is a file, its folder can be written (a probe file is created and removed), and
  it neither is, nor holds, nor lies inside the data or model the run reads.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Iterable, Iterator

from transferkit.errors import ConfigError, OutputError


# --- atomic writes ---------------------------------------------------------------------------------------------

def _create_exclusive(folder: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """A new, empty file in ``folder`` opened for writing, with the umask's mode (``tempfile.mkstemp`` makes 0600)."""
    for _ in range(100):
        path = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


def temporary_path(path: str | Path, tag: str = "partial") -> Path:
    """A free name beside ``path`` for a file that will be renamed onto it (``.NAME.TAG-xxxx``); not created."""
    path = Path(path)
    while True:
        candidate = path.parent / f".{path.name}.{tag}-{secrets.token_hex(6)}"
        if not os.path.lexists(candidate):
            return candidate


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (see the module docstring)."""
    with _atomic_file(path, "wb") as handle:
        handle.write(data)


def atomic_text_writer(path: str | Path) -> contextlib.AbstractContextManager[Any]:
    """A UTF-8 text file written in pieces (no newline translation) through a temporary file in the same folder,
    renamed onto ``path`` when the block ends without error and removed otherwise: for outputs too large to build
    in memory first. An earlier ``path`` is untouched until the rename."""
    return _atomic_file(path, "w", encoding="utf-8", newline="")


@contextlib.contextmanager
def _atomic_file(path: str | Path, mode: str, **open_options: Any) -> Iterator[Any]:
    """The open temporary file beside ``path``; flushed to disk and renamed onto ``path`` (keeping the mode of a
    file it replaces) when the block ends without error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_exclusive(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, mode, **open_options) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        keep_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def keep_mode(existing: str | Path, new: str | Path) -> None:
    """Give ``new`` the permission bits of ``existing`` when that exists (a replaced file keeps its mode)."""
    try:
        mode = stat.S_IMODE(os.stat(existing).st_mode)
    except FileNotFoundError:
        return
    os.chmod(new, mode)


def normal_file_mode(folder: str | Path) -> int:
    """The permission bits an ordinary new file gets in ``folder`` (``0666`` less the umask), found by creating one
    (the umask cannot be read without changing it)."""
    fd, probe = _create_exclusive(Path(folder), ".transferkit-mode-", "")
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        os.unlink(probe)


def give_normal_mode(path: str | Path) -> None:
    """Give a file that a library created with private permissions (0600) those of an ordinary new file."""
    path = Path(path)
    os.chmod(path, normal_file_mode(path.parent))


def save_figure(figure: Any, path: str | Path, **options: Any) -> Path:
    """Save a matplotlib figure as PNG, atomically (rendered in memory, then :func:`atomic_write_bytes`)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **options)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# --- staged folders ----------------------------------------------------------------------------------------------

def make_sibling_folder(path: str | Path, tag: str) -> Path:
    """A new empty folder ``.NAME.TAG-xxxx`` beside ``path``, with the umask's mode (``mkdtemp`` makes 0700)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        candidate = path.parent / f".{path.name}.{tag}-{secrets.token_hex(6)}"
        try:
            os.mkdir(candidate, 0o777)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def replace_folder(staging: str | Path, folder: str | Path) -> None:
    """Rename the complete folder ``staging`` to ``folder``. A folder already there is moved aside first and
    deleted only once the new one is in place; if the rename fails, it is moved back."""
    staging, folder = Path(staging), Path(folder)
    if folder.is_dir() and not folder.is_symlink() and any(folder.iterdir()):
        old = make_sibling_folder(folder, "old")
        os.rmdir(old)
        os.rename(folder, old)
        try:
            os.rename(staging, folder)
        except BaseException:
            os.rename(old, folder)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, folder)  # onto nothing, or onto an empty folder (POSIX replaces an empty folder)


@contextlib.contextmanager
def staged_folder(folder: str | Path, *, what: str = "output") -> Iterator[Path]:
    """Write a folder atomically: yields a staging folder beside ``folder``; when the block ends without error the
    staging folder replaces ``folder`` (:func:`replace_folder`), else it is removed and ``folder`` is untouched.
    An ``OSError`` while writing (no space left, permissions) becomes an :class:`~transferkit.errors.OutputError`
    naming the folder."""
    folder = Path(folder)
    try:
        staging = make_sibling_folder(folder, "partial")
    except OSError as exc:
        raise OutputError(f"{what} {folder}: cannot create a folder in {folder.parent} ({exc.strerror or exc}); "
                          "choose a writable location.") from exc
    try:
        yield staging
        replace_folder(staging, folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"{what} {folder}: could not be written ({exc.strerror or exc}); nothing there was "
                          "changed. Free some space or choose another location.") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --- checks of output paths before the work ------------------------------------------------------------------

def _nearest_existing(path: Path) -> Path:
    current = path
    while not os.path.lexists(current):
        if current.parent == current:
            break
        current = current.parent
    return current


def check_location(path: str | Path, option: str = "--output") -> Path:
    """The checks of an output path that do not depend on what is written: no part of its parent is a file, and
    the folder it will be created in can be written (a probe file is created and removed there, and inside
    ``path`` too when it is an existing folder that is written into). Returns ``path``."""
    path = Path(path)
    existing = _nearest_existing(path.parent if path != path.parent else path)
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file, not a folder, so nothing can be created under it; "
                          "choose a path whose parent is a folder.")
    if not existing.exists():  # a dangling symbolic link on the way
        raise ConfigError(f"{option} {path}: {existing} does not lead to a folder; choose another path.")
    places = [existing]
    if path.is_dir():
        places.append(path)
    for place in places:
        try:
            fd, probe = _create_exclusive(place, ".transferkit-write-probe-", "")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(f"{option} {path}: cannot write in {place} ({exc.strerror or exc}); choose a writable "
                              "location, or fix the folder's permissions.") from None
    return path


def check_not_input(path: str | Path, inputs: Iterable[tuple[str, Any]], option: str = "--output", *,
                    allow_inside: Iterable[str] = ()) -> None:
    """Refuse an output that is one of the run's inputs (``(role, path)`` pairs; ``None`` and in-memory data are
    skipped), holds one (replacing the folder would delete it), or lies inside an input folder (it would be read as
    part of that input next time) unless that input's role is in ``allow_inside`` (a model folder may hold its own
    exports)."""
    out = Path(os.path.abspath(path))
    try:
        out = out.resolve()
    except OSError:
        pass
    allowed = set(allow_inside)
    for role, value in inputs:
        if not isinstance(value, (str, os.PathLike)):
            continue
        try:
            source = Path(value).resolve()
        except OSError:
            continue
        if not os.path.exists(source):
            continue
        if out == source:
            raise ConfigError(f"{option} {path} is the {role} ({value}) this run reads; writing there would destroy "
                              "it. Choose another output path.")
        if out in source.parents:
            raise ConfigError(f"{option} {path} holds the {role} ({value}) this run reads; writing there could "
                              "delete it. Choose an output path outside it.")
        if source.is_dir() and source in out.parents and role not in allowed:
            raise ConfigError(f"{option} {path} lies inside the {role} folder {value}; what is written there would "
                              f"become part of the {role}. Choose an output path outside it.")


def folder_is_empty(path: str | Path) -> bool:
    path = Path(path)
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_location", "check_not_input",
           "folder_is_empty", "give_normal_mode", "keep_mode", "make_sibling_folder", "normal_file_mode",
           "replace_folder", "save_figure", "staged_folder", "temporary_path"]
