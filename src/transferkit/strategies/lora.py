"""``lora``: low-rank adapters on the backbone (PEFT's LoRA, Hu et al. 2021); the head trains fully.

Each targeted layer ``W`` becomes ``W + (alpha / r) B A`` with ``A: r x in`` and ``B: out x r`` trainable and ``W``
frozen, so a few tenths of a percent of the parameters train. After training the adapters are merged into the
weights (:meth:`LoRA.finalize`): the saved model is a plain backbone, exported and served like any other.

Default targets: the attention query and value projections of a transformer (as in the paper), the linear and
pointwise (1x1, ungrouped) convolution layers of a CNN, and for a CNN that has neither (a VGG-style stack of 3x3
convolutions, such as the aiSFX audio network) its ungrouped convolutions (PEFT's convolution adapter: ``A`` a
``k x k`` convolution to ``r`` channels, ``B`` a pointwise one back); ``targets`` takes names or name suffixes.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.engine.freezing import set_trainable
from transferkit.engine.plan import ParamGroup
from transferkit.errors import ConfigError
from transferkit.strategies.base import TrainingStrategy
from transferkit.strategies.options import LoraConfig

ATTENTION_QUERY_VALUE = ("query", "value", "q", "v", "q_proj", "v_proj", "q_lin", "v_lin", "qkv")


def _inner(backbone: Backbone) -> nn.Module:
    inner = getattr(backbone, "model", None)
    if not isinstance(inner, nn.Module):
        raise ConfigError(f"lora: backbone '{backbone.name}' has no wrapped model to put adapters in.")
    return inner


def _is_transformer(module: nn.Module) -> bool:
    return hasattr(getattr(module, "config", None), "model_type")


def _adaptable(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv1d, nn.Embedding))


def default_targets(model: nn.Module) -> list[str]:
    """Layer names LoRA adapts when no ``targets`` are given (see the module docstring)."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    skip = {id(m) for m in classifier.modules()} if isinstance(classifier, nn.Module) else set()
    names = []
    for name, module in model.named_modules():
        if id(module) in skip or not name:
            continue
        if _is_transformer(model):
            if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in ATTENTION_QUERY_VALUE:
                names.append(name)
        elif isinstance(module, nn.Linear) or (
                isinstance(module, nn.Conv2d) and module.groups == 1 and module.kernel_size == (1, 1)):
            names.append(name)
    if names or _is_transformer(model):
        return names
    return [name for name, module in model.named_modules()
            if name and id(module) not in skip and isinstance(module, nn.Conv2d) and module.groups == 1]


def resolve_targets(model: nn.Module, targets: list[str] | None) -> list[str]:
    """Full names of the layers to adapt: ``targets`` matched as names or dotted suffixes, else the defaults."""
    if not targets:
        return default_targets(model)
    names = []
    modules = dict(model.named_modules())
    for target in targets:
        found = [n for n, m in modules.items() if (n == target or n.endswith(f".{target}")) and _adaptable(m)]
        if not found:
            examples = ", ".join(n for n, m in list(modules.items()) if _adaptable(m))[:300]
            raise ConfigError(f"option 'lora.targets' (--lora-targets): '{target}' matches no linear, convolution "
                              f"or embedding layer of the backbone; its layers include: {examples} ...")
        names.extend(n for n in found if n not in names)
    return names


class LoRA(TrainingStrategy):
    """Adapters on ``model.backbone``'s layers, the head trained fully; merged after training."""

    name = "lora"
    default_lr = 1e-3

    def __init__(self, config: LoraConfig | None = None, head_lr: float | None = None) -> None:
        super().__init__(head_lr)
        self.config = config or LoraConfig()
        self.targets_: list[str] = []

    def head_learning_rate(self, lr: float) -> float:
        return self.head_lr if self.head_lr is not None else lr

    def check(self, backbone: Backbone) -> None:
        targets = resolve_targets(_inner(backbone), self.config.targets)
        if not targets:
            raise ConfigError(f"lora: found no layer to adapt in backbone '{backbone.name}'; name them with "
                              "--lora-targets.")

    def prepare(self, model: nn.Module, context: dict[str, Any]) -> None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        inner = _inner(model.backbone)
        self.targets_ = resolve_targets(inner, self.config.targets)
        peft_config = PeftLoraConfig(r=self.config.rank, lora_alpha=self.config.alpha,
                                     lora_dropout=self.config.dropout, target_modules=self.targets_, bias="none")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model.backbone.model = get_peft_model(inner, peft_config)
        set_trainable(model.head, True)

    def adapter_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for n, p in model.backbone.named_parameters() if "lora_" in n and p.requires_grad]

    def param_groups(self, model: nn.Module, lr: float) -> list[ParamGroup]:
        return [ParamGroup("lora", self.adapter_parameters(model), lr),
                ParamGroup("head", list(model.head.parameters()), self.head_learning_rate(lr))]

    def merge(self, model: nn.Module) -> None:
        """Fold the adapters into the weights: ``W <- W + (alpha / r) B A``; the backbone is plain again."""
        wrapped = model.backbone.model
        if hasattr(wrapped, "merge_and_unload"):
            with torch.no_grad():
                model.backbone.model = wrapped.merge_and_unload()
        set_trainable(model.backbone, True)

    def finalize(self, model: nn.Module) -> None:
        self.merge(model)
        super().finalize(model)

    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {**super().describe(model), "lora_targets": len(self.targets_), "lora_rank": self.config.rank}
