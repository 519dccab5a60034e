"""The adaptation-method registry: name -> :class:`AdaptationMethod`, what ``adapt`` needs to run a method.

Two kinds of method:

- ``trained``: a network trained on the shared engine (:class:`~transferkit.strategies.adaptation.plan.AdaptationPlan`):
  the source cross-entropy plus the method's target term (``target_loss``), weighted by a trade-off;
- ``features``: cached features re-aligned (``aligner``), then the linear probe; no training loop.

Callers ask the entry (``get_adaptation_method(name).kind``, ``.target_loss``, ...) instead of comparing names.
The registry is light; hooks import torch when they run. Each built-in entry lives in its own module in
``strategies/adaptation/methods/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from transferkit._registry import Registry
from transferkit.errors import ConfigError

TRAINED = "trained"
FEATURES = "features"
KINDS = (TRAINED, FEATURES)


def _no_modules(hidden: int, num_classes: int, head: Any = None) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class AdaptationMethod:
    """What an adaptation method declares, and the hooks ``adapt`` calls."""

    name: str
    #: One line for listings and the docs.
    description: str
    #: ``trained`` (the engine) or ``features`` (aligned cached features + the linear probe).
    kind: str
    #: Trained methods with a target term: the trade-off weights tried when none is given (the validator picks);
    #: empty for a method without a term to weigh.
    tradeoffs: tuple[float, ...] = ()
    #: The source-only reference: always trained (at trade-off 0), every method is compared with it.
    reference: bool = False
    #: The source cross-entropy is weighted by importance weights of the source examples (``iw``).
    weights_source: bool = False
    #: A trained method that starts from the head of this feature method's candidate (``probe-mcc`` from
    #: ``source-probe``); it then needs cached, frozen features.
    starts_from: str | None = None
    #: The head's weight decay (None: the run's); ``probe-mcc`` sets 0 (its L2-SP anchor replaces it).
    head_weight_decay: float | None = None
    #: AdaptConfig options only some methods use, and this one does.
    options: tuple[str, ...] = ()
    #: (hidden, num_classes, head) -> the loss modules trained with the network (a discriminator, an anchor).
    auxiliary: Callable[..., dict[str, Any]] = _no_modules
    #: (plan, network, h_s, h_t, logits_s, logits_t) -> (the target term before the trade-off, extra terms);
    #: None: no target term (the source cross-entropy alone).
    target_loss: Callable[..., tuple[Any, dict[str, Any]]] | None = None
    #: Feature methods: () -> a fresh aligner (``fit(source, target)``, ``transform``, ``head_from_probe``).
    aligner: Callable[[], Any] | None = None


def _check(entry: AdaptationMethod) -> None:
    if entry.kind not in KINDS:
        raise ValueError(f"adaptation method '{entry.name}': kind must be one of {KINDS}, not {entry.kind!r}")


_BUILTINS = tuple(f"transferkit.strategies.adaptation.methods.{name}:ENTRY"
                  for name in ("source_only", "dan", "coral", "dann", "cdan", "mcc", "entropy", "self_train",
                               "probe_mcc", "iw", "source_probe", "coral_features", "subspace"))

REGISTRY: Registry[AdaptationMethod] = Registry("adaptation method", "method", builtins=_BUILTINS, check=_check)


def register_adaptation_method(entry: AdaptationMethod) -> AdaptationMethod:
    """Add ``entry`` to the registry (a name registered twice, or an unknown kind, is a programming error)."""
    return REGISTRY.register(entry)


def get_adaptation_method(name: str) -> AdaptationMethod:
    """The entry named ``name``; a :class:`ConfigError` naming the option and the known methods otherwise."""
    return REGISTRY.get(name)


def adaptation_method_names() -> list[str]:
    """Every registered adaptation method, in registration order."""
    return REGISTRY.names()


def reference_method() -> str:
    """The name of the source-only reference method."""
    return next(entry.name for entry in REGISTRY.entries() if entry.reference)


def tradeoff_method_names() -> list[str]:
    """The methods whose target term has a trade-off weight."""
    return [entry.name for entry in REGISTRY.entries() if entry.tradeoffs]


def feature_aligner(method: str):
    """A fresh aligner of a feature method (its registry entry's ``aligner``): ``source-probe`` (none),
    ``coral-features`` or ``subspace``."""
    feature_methods = [name for name in adaptation_method_names() if get_adaptation_method(name).aligner is not None]
    if method not in feature_methods:
        raise ConfigError(f"unknown feature-alignment method {method!r}; choose {', '.join(feature_methods[:-1])} or "
                          f"{feature_methods[-1]}.")
    return get_adaptation_method(method).aligner()
