"""What a request to explain asks for, checked once for every caller (``explain``, the report, ``POST /explain``):
the attribution methods and the explained class. ``field`` names the option or the request field in the message
(``option 'method'``, ``field 'target'``, ``query parameter 'method'``), so that each caller's user reads the name
they wrote."""

from __future__ import annotations

from typing import Any, Sequence

from transferkit.errors import ConfigError

#: Classes listed by name in a refusal; more are counted.
LISTED_CLASSES = 40


def choose_methods(requested: Sequence[str] | None, explainer: Any, network: Any, modality: str, *,
                   field: str = "option 'method'") -> list[str]:
    """The methods to run: ``requested`` (names) checked against the modality's methods and against what can explain
    ``network``; none requested: the first method that can explain it. A :class:`ConfigError` names ``field``, what
    was given and what is allowed."""
    unavailable = explainer.available(network)
    usable = [m for m in explainer.methods if m not in unavailable]
    if not requested:
        return usable[:1]
    methods = list(dict.fromkeys(str(m).strip().lower() for m in requested))
    for method in methods:
        if method not in explainer.methods:
            raise ConfigError(f"{field}: unknown method '{method}' for {modality} models; known methods: "
                              f"{', '.join(explainer.methods)}.")
    for method in methods:
        if method in unavailable:
            raise ConfigError(f"{field}: {method} cannot explain this model: {unavailable[method]}; use "
                              f"{' or '.join(usable)}.")
    return methods


def target_index(name: str | None, classes: Sequence[Any], *, field: str = "option 'target'") -> int | None:
    """The index of class ``name`` among ``classes`` (``None``: each input's predicted class); an unknown name is a
    :class:`ConfigError` naming ``field`` and listing the classes."""
    if name is None:
        return None
    names = [str(c) for c in classes]
    if str(name) not in names:
        listed = ", ".join(names[:LISTED_CLASSES])
        more = f" and {len(names) - LISTED_CLASSES} more" if len(names) > LISTED_CLASSES else ""
        raise ConfigError(f"{field}: '{name}' is not a class of this model; its classes are: {listed}{more}.")
    return names.index(str(name))
