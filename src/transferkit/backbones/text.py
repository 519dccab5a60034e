"""Text backbones: a transformers encoder with mean pooling (the sentence-transformers recipe)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from transferkit.backbones.base import Backbone


class HFTextBackbone(Backbone):
    """A transformers encoder (BERT, MiniLM, MPNet, ...) whose features are the mean of its last hidden states
    over non-padding tokens, optionally L2-normalised (as sentence-transformers models that declare it)."""

    modality = "text"

    def __init__(self, model: nn.Module, tokenizer: Any, name: str, *, max_length: int = 256,
                 normalize: bool = False) -> None:
        super().__init__(name)
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length))
        self.normalize = normalize
        self.num_features = int(model.config.hidden_size)

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {"kind": "text", "max_length": self.max_length, "pooling": "mean", "normalize": self.normalize,
                "tokenizer": type(self.tokenizer).__name__, "vocab_size": int(len(self.tokenizer))}

    def prepare(self, item: Any) -> str:
        return str(item)

    def collate(self, prepared: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(list(prepared), padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.model(**inputs).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def layer_groups(self) -> list[nn.Module]:
        """Embeddings, then each transformer layer, then the pooler if there is one."""
        embeddings = getattr(self.model, "embeddings", None)
        layers = None
        for module in self.model.modules():
            if isinstance(module, nn.ModuleList) and len(module) > 0 and module is not embeddings:
                layers = module
                break
        groups: list[nn.Module] = []
        if embeddings is not None:
            groups.append(embeddings)
        groups.extend(layers or [])
        covered = {id(p) for g in groups for p in g.parameters()}
        groups.extend(_uncovered(self.model, covered))
        return groups


def _uncovered(module: nn.Module, covered: set[int]) -> list[nn.Module]:
    """The smallest modules (or parameter lists) holding the parameters of ``module`` not in ``covered``."""
    params = list(module.parameters())
    if all(id(p) in covered for p in params):
        return []
    if not any(id(p) in covered for p in params):
        return [module]
    out: list[nn.Module] = []
    own = [p for p in module.parameters(recurse=False) if id(p) not in covered]
    if own:
        out.append(nn.ParameterList(own))
    for child in module.children():
        out.extend(_uncovered(child, covered))
    return out


def sentence_transformers_normalizes(folder: Path) -> bool:
    """Whether a sentence-transformers folder ends with a Normalize module (modules.json)."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return False
    try:
        return any("Normalize" in entry.get("type", "") for entry in json.loads(modules.read_text()))
    except (ValueError, AttributeError):
        return False
