"""Built-in registry entries named by "module:NAME" reference: loaded on first use, a failing one raises each time."""

from __future__ import annotations

import pytest

from transferkit._registry import Registry


class Thing:
    def __init__(self, name: str = "made") -> None:
        self.name = name


ENTRY = Thing("entry")


def test_references_load_on_first_use_in_order_and_classes_are_instantiated():
    registry = Registry("thing", "thing", builtins=(f"{__name__}:ENTRY", f"{__name__}:Thing"))
    assert registry._builtins is not None  # nothing imported or registered yet
    assert registry.names() == ["entry", "made"]
    assert registry.get("entry") is ENTRY


def test_a_built_in_that_fails_to_import_fails_every_time_instead_of_an_empty_registry():
    registry = Registry("thing", "thing", builtins=(f"{__name__}:ENTRY", "transferkit.no_such_module:ENTRY"))
    for _ in range(2):
        with pytest.raises(ModuleNotFoundError, match="transferkit.no_such_module"):
            registry.names()
