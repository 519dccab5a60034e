"""The modality registry: modality names -> :class:`~transferkit.modalities.base.Modality` objects.

A dataset names its modality (``Dataset.modality``, a key of ``MODALITIES``); loading, checking, the raw-input
baseline, the default backbone, augmentation, reports and the HTTP service ask the entry instead of testing the name.
A new modality is one module beside :mod:`transferkit.modalities.image` and one reference in ``_BUILTINS``.
Nothing heavy is imported here: entries import PIL, scikit-learn and torch when a hook runs.
"""

from __future__ import annotations

from typing import Any

from transferkit._registry import Registry
from transferkit.modalities.base import ATTRIBUTES, HOOKS, Modality, RawEncoder

#: The built-in modalities in registration order: ``"module:Class"`` references, loaded on first use of the registry
#: (an entry's hooks use the data layer, which asks this registry: a reference is not an import circle).
_BUILTINS = (
    "transferkit.modalities.image:ImageModality",
    "transferkit.modalities.text:TextModality",
    "transferkit.modalities.audio:AudioModality",
)


def _check(entry: object) -> None:
    if not isinstance(entry, Modality):
        raise TypeError(f"register_modality takes a Modality instance; got {type(entry).__name__}.")


REGISTRY: Registry[Modality] = Registry("modality", "modality", plural="modalities", check=_check,
                                    builtins=_BUILTINS)


def register_modality(modality: Modality, *, replace: bool = False) -> Modality:
    """Add ``modality`` under ``modality.name``; a name already taken is an error unless ``replace``."""
    return REGISTRY.register(modality, replace=replace)


def get_modality(name: str, *, option: str = "modality") -> Modality:
    """The modality registered as ``name``; an unknown name is a ConfigError naming ``option`` and the known ones."""
    return REGISTRY.get(name, option=option)


def modality_names() -> list[str]:
    """The registered modality names, in registration order."""
    return REGISTRY.names()


def __getattr__(name: str) -> Any:
    # MODALITIES: name -> entry, every built-in loaded (the registry's own dict, so registering shows in it)
    if name == "MODALITIES":
        return REGISTRY.mapping()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ATTRIBUTES", "HOOKS", "MODALITIES", "Modality", "RawEncoder", "get_modality",
           "modality_names", "register_modality"]
