"""The fusion-method registry: name -> :class:`FusionMethod`, what ``fuse`` runs for ``--method NAME``.

An entry runs its method from the models and options of :func:`transferkit.workflows.fuse.fuse` (``run``), and picks the
arguments it uses from the ``fuse`` command's values (``from_cli``), so neither :func:`fuse` nor the CLI compares
method names. The registry is light; the methods' modules (torch) load when ``run`` is called. Each built-in entry
lives in its own module in ``fusion/methods/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from transferkit._registry import Registry


@dataclass(frozen=True)
class FusionMethod:
    """What a fusion method declares, and the hooks ``fuse`` calls."""

    name: str
    #: One line for listings and the docs.
    description: str
    #: What it fuses: ``weights``, ``outputs`` or ``features``.
    space: str
    #: (models, options) -> the method's result (``model``, ``output``, ``summary()``, ``to_dict()``).
    run: Callable[[Any, dict[str, Any]], Any]
    #: (the fuse command's values) -> (models, options) for :func:`~transferkit.workflows.fuse.fuse`; raises
    #: :class:`ConfigError` for values that cannot work with this method.
    from_cli: Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]


_BUILTINS = tuple(f"transferkit.fusion.methods.{name}:ENTRY" for name in ("interpolate", "soup", "ensemble", "stack"))

REGISTRY: Registry[FusionMethod] = Registry("fusion method", "method", builtins=_BUILTINS)


def register_fusion_method(entry: FusionMethod) -> FusionMethod:
    """Add ``entry`` to the registry (a name registered twice is a programming error)."""
    return REGISTRY.register(entry)


def get_fusion_method(name: str) -> FusionMethod:
    """The entry named ``name``; a :class:`ConfigError` naming the option and the known methods otherwise."""
    return REGISTRY.get(name)


def fusion_method_names() -> list[str]:
    """Every registered fusion method, in registration order."""
    return REGISTRY.names()
