"""One registry class for every family of named choices (modalities, tasks, strategies, adaptation and fusion
methods, baselines, validators): name -> entry, in registration order.

A family keeps its entry type and its public functions (``get_task``, ``strategy_names``, ...); they delegate here, so
that every registry refuses a taken name and an unknown one the same way. Built-in entries that live in modules of
their own are loaded on first use (``builtins``), which keeps ``import transferkit`` light.

Built-in entries are named by reference, ``"module:NAME"`` (the entry, or a class whose instance with no arguments
is the entry), the way plugins are found: the registry's module does not import its entries' modules, the entries
import the registry's entry type. So an entry's hooks may use any part of the package, the verbs that ask the
registry included, without an import circle (``tests/test_imports.py``).
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterable, Iterator, Sequence, TypeVar

from transferkit.errors import ConfigError

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """Entries of one family, keyed by their ``name`` attribute.

    ``kind`` names an entry in messages ("adaptation method"), ``option`` the option that chooses one ("method");
    ``builtins`` names the built-in entries (``"module:NAME"`` references, imported on first use; or a function that
    returns them); ``check`` refuses a malformed entry
    (a programming error, ``ValueError``); ``entries`` is the dict that holds them, where a family publishes one.
    """

    def __init__(self, kind: str, option: str, *, plural: str | None = None,
                 builtins: Sequence[str] | Callable[[], Iterable[Entry]] | None = None,
                 check: Callable[[Entry], None] | None = None, entries: dict[str, Entry] | None = None) -> None:
        self.kind, self.option, self.plural = kind, option, plural or f"{kind}s"
        self._entries: dict[str, Entry] = entries if entries is not None else {}
        self._builtins, self._check = builtins, check
        self._loading = False

    def _load(self) -> dict[str, Entry]:
        # Built-ins are all resolved before any is registered: one that fails to import raises its own error again
        # on the next call, instead of leaving a registry that looks empty. Calls made while they import see the
        # entries so far.
        if self._builtins is not None and not self._loading:
            self._loading = True
            try:
                builtins = self._builtins
                entries = list(builtins() if callable(builtins) else map(_resolve, builtins))
            finally:
                self._loading = False
            self._builtins = None
            for entry in entries:
                self.register(entry)
        return self._entries

    def mapping(self) -> dict[str, Entry]:
        """The dict of every entry by name, built-ins loaded (the family's published dict, when it has one)."""
        return self._load()

    def register(self, entry: Entry, *, replace: bool = False) -> Entry:
        """Add ``entry`` under ``entry.name``; a name already taken is an error unless ``replace``."""
        if self._check is not None:
            self._check(entry)
        name = getattr(entry, "name", None)
        if not name:
            raise ValueError(f"{type(entry).__name__} has no name; give it one before registering it as a {self.kind}.")
        entries = self._load()
        if name in entries and not replace:
            raise ValueError(f"{self.kind} '{name}' is already registered; pass replace=True to replace it.")
        entries[name] = entry
        return entry

    def get(self, name: str, *, option: str | None = None) -> Entry:
        """The entry ``name``; an unknown name is a ConfigError naming the option and the known entries."""
        entries = self._load()
        try:
            return entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"option '{option or self.option}': unknown {self.kind} {name!r}; known "
                              f"{self.plural}: {', '.join(entries)}.") from None

    def find(self, name: str | None) -> Entry | None:
        """The entry ``name``, or None (for callers that accept names of other families)."""
        return self._load().get(name or "")

    def names(self) -> list[str]:
        return list(self._load())

    def entries(self) -> list[Entry]:
        return list(self._load().values())

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _resolve(reference: str):
    """The entry named by ``"module:NAME"``: the object, or an instance of it when it is a class."""
    module, _, name = reference.partition(":")
    value = getattr(importlib.import_module(module), name)
    return value() if isinstance(value, type) else value
