"""Pruning: magnitude (unstructured) and structured (channels, attention heads), each made permanent, with an
optional short recovery fine-tune through the engine.

- :func:`prune_magnitude` zeroes the fraction ``amount`` of the smallest-magnitude weights of the backbone's
  linear and (non-depthwise) convolution layers, ranked over all of them together (global L1 magnitude, Han et
  al. 2015, "Learning both Weights and Connections for Efficient Neural Networks"), with
  ``torch.nn.utils.prune`` and ``prune.remove`` (the zeros are written into the weights; no masks stay behind).
  Shapes do not change: the file and the dense latency stay the same, only sparse formats or compression gain.
- :func:`prune_structured` removes whole units, so the network gets smaller and faster:

  * convolutional inverted-residual blocks (MobileNetV2 / V3, EfficientNet: 1x1 expansion, depthwise, optional
    squeeze-excitation, 1x1 projection): the fraction ``amount`` of expanded channels of each block, those with the
    smallest ``|gamma_c| * ||W_proj[:, c]||_1`` (BatchNorm scale after the depthwise convolution times the
    projection weights reading the channel; the network-slimming criterion, Liu et al. 2017);
  * two-convolution blocks (``conv1`` -> ``bn1`` -> ``conv2``, ungrouped, nothing else in the block holding
    parameters: VGG-style stacks such as the aiSFX audio network, ResNet basic blocks): the fraction
    ``amount`` of ``conv1``'s output channels, smallest ``|gamma_c| * ||W_conv2[:, c]||_1`` (the same criterion);
  * transformer layers: the fraction ``amount`` of feed-forward neurons, smallest ``||W_up[c]|| * ||W_down[:, c]||``,
    and, for BERT-style attention (``query``/``key``/``value``), ``heads`` of each layer's heads with the smallest
    summed weight norm (Michel et al. 2019, "Are Sixteen Heads Really Better than One?").

  The changes are recorded on the backbone (``backbone.architecture_changes``); :func:`apply_architecture_changes`
  replays them on a freshly built backbone, which is how a saved pruned model is loaded.

:func:`recover` fine-tunes a pruned model briefly with the ``finetune`` strategy on the shared engine (zeros of
magnitude pruning are kept at zero by a hook during it).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")


@dataclass
class PruneReport:
    """What a pruning step did: parameters and non-zero parameters before and after, and what changed."""

    method: str
    amount: float
    parameters_before: int
    parameters_after: int
    nonzero_before: int
    nonzero_after: int
    layers: int
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero_after / max(1, self.parameters_after)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["changes"] = len(self.changes)
        return {**data, "sparsity": round(self.sparsity, 4)}


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """``(parameters, non-zero parameters)`` of what computes the model's output (a backbone's source classifier,
    kept only for transferability scores, is not counted)."""
    skip = {id(p) for m in module.modules() if id(m) in _source_classifier_ids(module) for p in m.parameters()}
    params = [p for p in module.parameters() if id(p) not in skip]
    return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p.detach())) for p in params)


def _check_amount(amount: float, option: str = "amount") -> float:
    if not isinstance(amount, (int, float)) or not 0 < amount < 1:
        raise ConfigError(f"pruning {option} must be a fraction in (0, 1), e.g. 0.5; got {amount!r}.")
    return float(amount)


def _source_classifier_ids(backbone: nn.Module) -> set[int]:
    inner = getattr(backbone, "model", None)
    classifier = inner.get_classifier() if inner is not None and hasattr(inner, "get_classifier") else None
    return {id(m) for m in classifier.modules()} if isinstance(classifier, nn.Module) else set()


def prunable_layers(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """Linear and non-depthwise convolution layers of ``backbone`` (its source classifier left out)."""
    skip = _source_classifier_ids(backbone)
    out = []
    for name, module in backbone.named_modules():
        if id(module) in skip:
            continue
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1):
            out.append((name, module))
    return out


def prune_magnitude(model: nn.Module, amount: float) -> PruneReport:
    """Zero the fraction ``amount`` of the smallest weights of ``model.backbone``'s prunable layers (global L1
    magnitude), permanently. Returns the :class:`PruneReport`."""
    from torch.nn.utils import prune

    amount = _check_amount(amount)
    before = count_parameters(model.backbone)
    layers = prunable_layers(model.backbone)
    if not layers:
        raise ConfigError(f"backbone '{model.backbone.name}' has no linear or convolution layer to prune.")
    targets = [(module, "weight") for _, module in layers]
    with torch.no_grad():
        for module, _ in targets:  # channels-last weights (from fast inference) cannot be flattened by view
            module.weight.data = module.weight.data.contiguous()
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in targets:
        prune.remove(module, name)
    _invalidate(model)
    after = count_parameters(model.backbone)
    return PruneReport("magnitude", amount, before[0], after[0], before[1], after[1], len(layers))


# --- structured ------------------------------------------------------------------------------------------------

def _slice(module: nn.Module, kind: str, index: torch.Tensor) -> None:
    """Keep the channels / features ``index`` of ``module``: ``out`` or ``in`` of a convolution or linear layer,
    ``depthwise`` for a depthwise convolution, ``norm`` for a BatchNorm layer."""
    with torch.no_grad():
        if kind == "norm":
            for name in ("weight", "bias"):
                p = getattr(module, name, None)
                if p is not None:
                    setattr(module, name, nn.Parameter(p[index].clone()))
            for name in ("running_mean", "running_var"):
                b = getattr(module, name, None)
                if b is not None:
                    setattr(module, name, b[index].clone())
            module.num_features = len(index)
            return
        weight = module.weight
        if kind in ("out", "depthwise"):
            module.weight = nn.Parameter(weight[index].clone())
            if module.bias is not None:
                module.bias = nn.Parameter(module.bias[index].clone())
        elif kind == "in":
            module.weight = nn.Parameter(weight[:, index].clone())
        else:
            raise ValueError(f"unknown slice kind {kind!r}")
        n = len(index)
        if isinstance(module, nn.Linear):
            if kind == "out":
                module.out_features = n
            else:
                module.in_features = n
        else:
            if kind == "out":
                module.out_channels = n
            elif kind == "in":
                module.in_channels = n
            else:
                module.out_channels = module.in_channels = module.groups = n


def _inverted_residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    blocks = []
    for name, module in model.named_modules():
        parts = [getattr(module, a, None) for a in ("conv_pw", "bn1", "conv_dw", "bn2", "conv_pwl")]
        se = getattr(module, "se", None)
        plain_se = se is None or isinstance(se, nn.Identity) or (
            isinstance(getattr(se, "conv_reduce", None), nn.Conv2d) and isinstance(getattr(se, "conv_expand", None), nn.Conv2d))
        if all(isinstance(p, nn.Module) for p in parts) and plain_se:
            pw, bn1, dw, bn2, pwl = parts
            if isinstance(pw, nn.Conv2d) and isinstance(dw, nn.Conv2d) and dw.groups == dw.in_channels == pw.out_channels:
                blocks.append((name, module))
    return blocks


def _two_convolution_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Blocks whose ``conv1`` feeds ``conv2`` through ``bn1`` only (module docstring): ``conv1``'s output channels
    can go. A block with any other child holding parameters (squeeze-excitation, anti-aliasing filters) is left
    out, since such a child may read those channels; ``bn2`` and ``downsample`` act on other channels."""
    blocks = []
    for name, module in model.named_modules():
        conv1, bn1, conv2 = (getattr(module, a, None) for a in ("conv1", "bn1", "conv2"))
        if not (isinstance(conv1, nn.Conv2d) and isinstance(bn1, nn.BatchNorm2d) and isinstance(conv2, nn.Conv2d)):
            continue
        others = [child for key, child in module.named_children()
                  if key not in ("conv1", "bn1", "conv2", "bn2", "downsample")]
        if conv1.groups == conv2.groups == 1 and conv1.out_channels == bn1.num_features == conv2.in_channels \
                and not any(True for other in others for _ in [*other.parameters(), *other.buffers()]):
            blocks.append((name, module))
    return blocks


def structured_units(backbone: nn.Module) -> int:
    """How many blocks and layers :func:`prune_structured` can shrink in ``backbone`` (0: structured pruning does
    not apply to it)."""
    return len(_inverted_residual_blocks(backbone)) + len(_two_convolution_blocks(backbone)) \
        + len(_feed_forward_pairs(backbone))


def _feed_forward_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(up, down)`` linear-layer names of each transformer layer's feed-forward part."""
    pairs = []
    modules = dict(model.named_modules())
    for name, module in modules.items():
        up = getattr(getattr(module, "intermediate", None), "dense", None)
        down = getattr(getattr(module, "output", None), "dense", None)
        if isinstance(up, nn.Linear) and isinstance(down, nn.Linear) and up.out_features == down.in_features:
            pairs.append((f"{name}.intermediate.dense", f"{name}.output.dense"))
    return pairs


def _bert_attention(model: nn.Module) -> list[tuple[str, nn.Module, nn.Linear]]:
    """``(name, self-attention, output projection)`` of BERT-style layers (query / key / value / output.dense)."""
    out = []
    for name, module in model.named_modules():
        attention = getattr(module, "self", None)
        projection = getattr(getattr(module, "output", None), "dense", None)
        if attention is not None and all(isinstance(getattr(attention, a, None), nn.Linear)
                                         for a in ("query", "key", "value")) \
                and isinstance(projection, nn.Linear) and hasattr(attention, "attention_head_size"):
            out.append((f"{name}.self", attention, projection))
    return out


def _module(root: nn.Module, name: str) -> nn.Module:
    return root.get_submodule(name) if name else root


def apply_architecture_changes(backbone: nn.Module, changes: Sequence[dict[str, Any]]) -> None:
    """Replay recorded structured-pruning changes on a freshly built backbone (first ``size`` units kept; the
    saved weights are loaded afterwards)."""
    for change in changes:
        module = _module(backbone, change["module"])
        if change["kind"] == "heads":
            module.num_attention_heads = int(change["size"])
            module.all_head_size = module.num_attention_heads * module.attention_head_size
        else:
            _slice(module, change["kind"], torch.arange(int(change["size"])))
    backbone.architecture_changes = [dict(c) for c in changes]
    _invalidate_backbone(backbone)


def _keep(scores: torch.Tensor, amount: float, minimum: int = 1) -> torch.Tensor:
    n = len(scores)
    keep = max(minimum, n - int(round(amount * n)))
    return torch.sort(torch.topk(scores, keep).indices).values


#: The error when a backbone has nothing :func:`prune_structured` can shrink (``name``: the backbone).
STRUCTURED_REFUSAL = ("structured pruning: backbone '{name}' has no inverted-residual blocks, two-convolution blocks "
                      "or transformer feed-forward layers to shrink; leave 'structured' out of --variants and use "
                      "magnitude pruning.")


def prune_structured(model: nn.Module, amount: float, *, heads: float = 0.0) -> PruneReport:
    """Remove the fraction ``amount`` of expanded channels (CNN) or feed-forward neurons (transformer) of every
    block, and ``heads`` of the attention heads of BERT-style layers (module docstring). Permanent; shapes shrink."""
    amount = _check_amount(amount)
    if heads:
        _check_amount(heads, "heads")
    backbone = model.backbone
    before = count_parameters(backbone)
    changes: list[dict[str, Any]] = list(getattr(backbone, "architecture_changes", []) or [])
    prefix_root = backbone
    blocks = _inverted_residual_blocks(prefix_root)
    conv_pairs = _two_convolution_blocks(prefix_root)
    pairs = _feed_forward_pairs(prefix_root)
    attention = _bert_attention(prefix_root) if heads else []
    if not structured_units(prefix_root):
        raise ConfigError(STRUCTURED_REFUSAL.format(name=backbone.name))
    with torch.no_grad():
        for name, block in conv_pairs:
            gamma = block.bn1.weight.abs() if block.bn1.weight is not None else torch.ones(block.bn1.num_features)
            scores = gamma * block.conv2.weight.abs().sum(dim=(0, 2, 3))
            index = _keep(scores, amount)
            for attr, kind in (("conv1", "out"), ("bn1", "norm"), ("conv2", "in")):
                _slice(block.get_submodule(attr), kind, index)
                changes.append({"module": f"{name}.{attr}" if name else attr, "kind": kind, "size": len(index)})
        for name, block in blocks:
            gamma = block.bn2.weight.abs() if getattr(block.bn2, "weight", None) is not None \
                else torch.ones(block.conv_dw.out_channels)
            scores = gamma * block.conv_pwl.weight.abs().sum(dim=(0, 2, 3))
            index = _keep(scores, amount)
            parts = [("conv_pw", "out"), ("bn1", "norm"), ("conv_dw", "depthwise"), ("bn2", "norm"), ("conv_pwl", "in")]
            if isinstance(getattr(getattr(block, "se", None), "conv_reduce", None), nn.Conv2d):
                parts += [("se.conv_reduce", "in"), ("se.conv_expand", "out")]
            for attr, kind in parts:
                _slice(block.get_submodule(attr), kind, index)
                changes.append({"module": f"{name}.{attr}", "kind": kind, "size": len(index)})
        for up_name, down_name in pairs:
            up, down = _module(prefix_root, up_name), _module(prefix_root, down_name)
            scores = up.weight.norm(dim=1) * down.weight.norm(dim=0)
            index = _keep(scores, amount)
            _slice(up, "out", index)
            _slice(down, "in", index)
            changes += [{"module": up_name, "kind": "out", "size": len(index)},
                        {"module": down_name, "kind": "in", "size": len(index)}]
        for name, attn, projection in attention:
            size, n = attn.attention_head_size, attn.num_attention_heads
            per_head = lambda w: w.reshape(n, size, -1).norm(dim=(1, 2))  # noqa: E731
            scores = per_head(attn.query.weight) + per_head(attn.key.weight) + per_head(attn.value.weight) \
                + projection.weight.reshape(projection.out_features, n, size).norm(dim=(0, 2))
            keep = _keep(scores, heads)
            index = (keep[:, None] * size + torch.arange(size)[None, :]).reshape(-1)
            for layer in (attn.query, attn.key, attn.value):
                _slice(layer, "out", index)
            _slice(projection, "in", index)
            attn.num_attention_heads = len(keep)
            attn.all_head_size = len(keep) * size
            projection_name = name.rsplit(".self", 1)[0] + ".output.dense"
            changes += [{"module": f"{name}.{a}", "kind": "out", "size": len(index)} for a in ("query", "key", "value")]
            changes += [{"module": projection_name, "kind": "in", "size": len(index)},
                        {"module": name, "kind": "heads", "size": len(keep)}]
    backbone.architecture_changes = changes
    _invalidate(model)
    after = count_parameters(backbone)
    return PruneReport("structured", amount, before[0], after[0], before[1], after[1],
                       len(blocks) + len(conv_pairs) + len(pairs) + len(attention), changes)


def _invalidate_backbone(backbone: nn.Module) -> None:
    if hasattr(backbone, "invalidate_digest"):
        backbone.invalidate_digest()
    backbone.__dict__.pop("_inference_state", None)


def _invalidate(model: nn.Module) -> None:
    _invalidate_backbone(model.backbone)


class _KeepZeros:
    """A gradient hook keeping pruned (zero) weights at zero during recovery fine-tuning: with a zero gradient
    from the start, AdamW's moments stay zero and its decoupled weight decay of a zero is zero."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.mask.to(grad.device)


def recover(model: nn.Module, train: Any, *, val: Any = None, epochs: int = 1, lr: float = 1e-4,
            batch_size: int = 32, seed: int = 0, work_dir: str | None = None, device: str = "cpu",
            keep_zeros: bool = True, progress: bool = False, **options: Any) -> dict[str, Any]:
    """A short fine-tune of the pruned ``model`` on labelled ``train`` (``finetune`` on the shared engine, the
    model's own head kept); returns the engine's account. With ``keep_zeros`` the zeros of magnitude pruning stay."""
    import tempfile

    from transferkit.config import make_config
    from transferkit.data.splits import stratified_split
    from transferkit.engine.data import LabelledCollate, LabelledExamples
    from transferkit.engine.trainer import run_training
    from transferkit.strategies.finetune import FineTune
    from transferkit.strategies.run import engine_settings

    from transferkit.tasks import task_of

    classes = list(model.classes)
    task = task_of(model)  # its loss and targets: class indices, values, label matrices
    if val is None:
        train, val = stratified_split(train, 0.15, seed, names=("train", "validation"))
    config = make_config(strategy="finetune", epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                         device=device, tracking_uri="off", progress=progress, patience=0, augment="none", **options)
    folder = work_dir or tempfile.mkdtemp(prefix="transferkit-recover-")
    from pathlib import Path

    settings = engine_settings(config, Path(folder), lr=lr, run_name="prune recovery", log_params=None)
    strategy = FineTune(head_lr=lr)
    strategy.task_type = task.name
    strategy.prepare(model, {})
    handles = []
    if keep_zeros:
        for _, layer in prunable_layers(model.backbone):
            mask = (layer.weight.detach() != 0).float()
            if float(mask.mean()) < 1.0:
                handles.append(layer.weight.register_hook(_KeepZeros(mask)))
    backbone = model.backbone
    train_set = LabelledExamples(train.items, task.targets(train, classes), backbone.prepare)
    val_set = LabelledExamples(val.items, task.targets(val, classes), backbone.prepare)
    try:
        outcome = run_training(model, strategy, train_set, val_set, settings,
                               train_collate=LabelledCollate(backbone.collate),
                               val_collate=LabelledCollate(backbone.collate))
    finally:
        for handle in handles:
            handle.remove()
    model.eval()
    _invalidate(model)
    return outcome.to_dict()
