"""L2-SP: weight decay towards the pretrained starting point instead of towards zero."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.losses import _checks


def _select(owner: str, names: list[str], pretrained: Iterable[str] | Callable[[str], bool] | None) -> list[str]:
    if pretrained is None:
        return names
    if callable(pretrained):
        chosen = [name for name in names if pretrained(name)]
        if not chosen:
            warnings.warn(f"{owner}: the pretrained predicate matched none of the module's {len(names)} parameters; "
                          "the penalty is plain weight decay (beta) on all of them.", stacklevel=3)
        return chosen
    if isinstance(pretrained, str) or not isinstance(pretrained, Iterable):
        raise ConfigError(f"{owner}: pretrained must be None, a list of parameter names or prefixes, or a "
                          f"predicate name -> bool; got {pretrained!r}.")
    chosen: list[str] = []
    for entry in pretrained:
        matches = [name for name in names if name == entry or name.startswith(f"{entry}.")]
        if not isinstance(entry, str) or not matches:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ConfigError(f"{owner}: pretrained entry {entry!r} is neither a parameter name nor a module prefix "
                              f"of the module; its parameters are: {shown}.")
        chosen.extend(name for name in matches if name not in chosen)
    return [name for name in names if name in chosen]


class L2SPPenalty(nn.Module):
    """Penalty that keeps fine-tuned weights near their pretrained values, and new weights small.

    Paper: X. Li, Y. Grandvalet, F. Davoine (2018), "Explicit Inductive Bias for Transfer Learning with
    Convolutional Networks", ICML.

    Formula, with ``S`` the pretrained parameters (their starting values ``w0`` copied, detached, at construction)
    and ``S-bar`` every other parameter of the module at the time of ``forward`` (a new head, for example):

        Omega(w) = alpha / 2 * sum_{p in S} ||w_p - w0_p||^2 + beta / 2 * sum_{p in S-bar} ||w_p||^2

    It replaces the optimizer's weight decay for these parameters (use ``weight_decay=0``). The starting values
    are buffers of this module: ``.to(device)`` moves them and the state dict saves them, so a resumed run keeps
    the true starting point. ``forward`` looks the parameters up by name, so it takes the module it was built from
    (or one with the same parameter names and shapes).

    Shapes: ``forward(module)`` -> a scalar.

    Parameters
    ----------
    module
        The model at its starting (pretrained) point.
    pretrained
        Which parameters are pretrained: ``None`` (all of them), parameter names or module prefixes
        (``["backbone"]`` covers ``backbone.*``), or a predicate ``name -> bool``.
    alpha
        Strength of the pull towards the starting point (``>= 0``). Default 0.1.
    beta
        Strength of the plain L2 penalty on the other parameters (``>= 0``). Default 0.01.
    """

    def __init__(self, module: nn.Module, pretrained: Iterable[str] | Callable[[str], bool] | None = None,
                 alpha: float = 0.1, beta: float = 0.01) -> None:
        super().__init__()
        owner = type(self).__name__
        if not isinstance(module, nn.Module):
            raise ConfigError(f"{owner}: module must be a torch.nn.Module; got {type(module).__name__}.")
        self.alpha = _checks.non_negative_float(owner, "alpha", alpha)
        self.beta = _checks.non_negative_float(owner, "beta", beta)
        parameters = dict(module.named_parameters())
        self.pretrained_names: tuple[str, ...] = tuple(_select(owner, list(parameters), pretrained))
        for index, name in enumerate(self.pretrained_names):
            self.register_buffer(f"start_{index}", parameters[name].detach().clone())

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, beta={self.beta:g}, pretrained={len(self.pretrained_names)} parameters"

    def starting_point(self) -> dict[str, torch.Tensor]:
        """Parameter name -> its stored starting value."""
        return {name: getattr(self, f"start_{index}") for index, name in enumerate(self.pretrained_names)}

    def forward(self, module: nn.Module) -> torch.Tensor:
        owner = type(self).__name__
        parameters = dict(module.named_parameters())
        missing = [name for name in self.pretrained_names if name not in parameters]
        if missing:
            raise ValueError(f"{owner}: the module has no parameter {missing[0]!r} (of {len(missing)} missing); "
                             "give forward the module this penalty was built from.")
        pretrained = set(self.pretrained_names)
        device = next(iter(parameters.values())).device if parameters else torch.device("cpu")
        to_start = torch.zeros((), device=device)
        to_zero = torch.zeros((), device=device)
        for name, start in self.starting_point().items():
            weight = parameters[name]
            if weight.shape != start.shape:
                raise ValueError(f"{owner}: parameter {name!r} has shape {tuple(weight.shape)}, its starting point "
                                 f"{tuple(start.shape)}.")
            to_start = to_start + (weight - start.to(weight.device, weight.dtype)).pow(2).sum()
        if self.beta:
            for name, weight in parameters.items():
                if name not in pretrained:
                    to_zero = to_zero + weight.pow(2).sum()
        return 0.5 * self.alpha * to_start + 0.5 * self.beta * to_zero


__all__ = ["L2SPPenalty"]
