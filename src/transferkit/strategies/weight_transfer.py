"""Cross-architecture weight transfer: load what fits, convert input stems, report the rest.

Loading a checkpoint into a model whose architecture only partly matches (a sibling architecture, another number
of classes, a 1-channel stem) loads every tensor whose name and shape match, converts first-layer convolutions
between 1 and 3 input channels (or any other count), and reports what it skipped, instead of failing on the first
mismatch (``strict=True``) or skipping silently (``strict=False``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.errors import ConfigError

Shape = tuple[int, ...]


@dataclass
class TransferReport:
    """What :func:`load_matching` did: tensor names loaded as they were, loaded after converting their input
    channels, not loaded because the shapes differ, missing from the checkpoint, and not in the model."""

    loaded: list[str] = field(default_factory=list)
    adapted: list[tuple[str, Shape, Shape]] = field(default_factory=list)
    mismatched: list[tuple[str, Shape, Shape]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self, examples: int = 5) -> dict[str, Any]:
        return {
            "loaded": len(self.loaded), "adapted": [f"{k} {list(a)} -> {list(b)}" for k, a, b in self.adapted],
            "mismatched": len(self.mismatched), "missing": len(self.missing), "unexpected": len(self.unexpected),
            "examples": {"mismatched": [f"{k} {list(a)} vs {list(b)}" for k, a, b in self.mismatched[:examples]],
                         "missing": self.missing[:examples], "unexpected": self.unexpected[:examples]},
        }

    def __str__(self) -> str:
        s = self.summary()
        text = (f"{s['loaded']} tensors loaded, {len(self.adapted)} converted to another number of input channels, "
                f"{s['mismatched']} skipped for their shape, {s['missing']} not in the checkpoint, "
                f"{s['unexpected']} not in the model")
        details = [f"{name}: {', '.join(items)}" for name, items in s["examples"].items() if items]
        return text + (" (" + "; ".join(details) + ")" if details else "")


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A convolution weight ``(out, c, kh, kw)`` for ``in_channels`` inputs instead of ``c``.

    To one channel: the sum over channels (a grey image ``x`` then gives what the original gave for ``x``
    repeated on every channel). From ``c`` to more: channels repeated cyclically and scaled by ``c / in_channels``
    (so a grey image repeated on every channel gives what the original gave for it).
    """
    source = weight.shape[1]
    if in_channels == source:
        return weight.clone()
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_channels) % source
    return weight[:, index] * (source / in_channels)


def _convertible(source: torch.Tensor, target: torch.Tensor) -> bool:
    return (source.ndim == 4 and target.ndim == 4 and source.shape[0] == target.shape[0]
            and source.shape[2:] == target.shape[2:] and source.shape[1] != target.shape[1])


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], *, adapt_channels: bool = True) -> TransferReport:
    """Load into ``module`` every tensor of ``state`` whose name exists in it with the same shape (converting input
    channels of 4-D convolution weights when ``adapt_channels``); report the rest."""
    own = module.state_dict()
    report = TransferReport()
    to_load: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(tensor.shape) == tuple(own[key].shape):
            to_load[key] = tensor
            report.loaded.append(key)
        elif adapt_channels and _convertible(tensor, own[key]):
            to_load[key] = adapt_input_channels(tensor, own[key].shape[1])
            report.adapted.append((key, tuple(tensor.shape), tuple(own[key].shape)))
        else:
            report.mismatched.append((key, tuple(tensor.shape), tuple(own[key].shape)))
    report.missing = [key for key in own if key not in to_load]
    with torch.no_grad():
        for key, tensor in to_load.items():
            own[key].copy_(tensor.to(own[key].dtype))
    return report


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint: ``.safetensors``; a transferkit model folder (its backbone); or a PyTorch file
    (``.pt``, ``.pth``, ``.bin``, ``.ckpt``: loaded with ``weights_only=True``, a ``state_dict`` entry unwrapped)."""
    path = Path(path)
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise ConfigError(f"option 'init_from': {path} is a folder without model.safetensors; give a "
                              "transferkit model folder or a weights file.")
        from safetensors.torch import load_file

        tensors = load_file(str(weights))
        backbone = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        if not backbone:
            raise ConfigError(f"option 'init_from': the model in {path} does not include its backbone weights "
                              "(a linear-probe model of a packaged backbone); use that backbone's name instead.")
        return backbone
    if not path.is_file():
        raise ConfigError(f"option 'init_from': {path} does not exist; give a .safetensors file, a PyTorch weights "
                          "file or a transferkit model folder.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"option 'init_from': {path} cannot be read as PyTorch weights ({type(exc).__name__}: "
                          f"{exc}); save it as .safetensors.") from exc
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ConfigError(f"option 'init_from': {path} does not hold a mapping of names to tensors.")
    return data


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> TransferReport:
    """Initialise ``backbone`` from the checkpoint at ``path`` (names relative to the backbone or to the model it
    wraps both work); warns with the report when anything did not load, fails when nothing did."""
    state = read_weights(path)
    inner = getattr(backbone, "model", None)
    candidates = [(backbone, state)]
    if isinstance(inner, nn.Module):
        candidates.append((inner, state))
    best = max(candidates, key=lambda c: len(set(c[1]) & set(c[0].state_dict())))
    report = load_matching(best[0], best[1])
    if not report.loaded and not report.adapted:
        raise ConfigError(f"option 'init_from': none of the {len(state)} tensors of {path} fits backbone "
                          f"'{getattr(backbone, 'name', type(backbone).__name__)}' ({report}).")
    if report.mismatched or report.missing or report.adapted:
        warnings.warn(f"init_from {path}: {report}", stacklevel=2)
    if hasattr(backbone, "invalidate_digest"):
        backbone.invalidate_digest()
    return report
