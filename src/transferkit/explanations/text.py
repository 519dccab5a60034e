"""Explanations of a text model, word by word.

Methods (captum): ``integrated-gradients`` (layer integrated gradients on the token embeddings, from a baseline
text whose words are all padding, special tokens kept; summed over the embedding) and ``occlusion`` (each word
removed in turn: its tokens padded and masked out, the change of the score). A word's weight is the sum over its
tokens (integrated gradients) or the change when its tokens go (occlusion); positive weights support the target.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import torch

from transferkit.explanations.base import Explainer, Prepared, Rendering, Units


class TextExplainer(Explainer):
    def attributions(self) -> dict[str, Any]:
        return {"integrated-gradients": self._integrated_gradients, "occlusion": self._occlusion}

    def prepare(self, backbone: Any, item: Any) -> Prepared:
        text = str(item)
        tokenizer = backbone.tokenizer
        fast = bool(getattr(tokenizer, "is_fast", False))
        encoded = tokenizer([text], truncation=True, max_length=backbone.max_length, return_tensors="pt",
                            return_offsets_mapping=fast, return_special_tokens_mask=True)
        special = encoded["special_tokens_mask"][0].bool()
        if fast:
            word_ids = encoded.word_ids(0)
            offsets = encoded["offset_mapping"][0].tolist()
        else:  # every token its own word
            word_ids = [None if s else i for i, s in enumerate(special.tolist())]
            offsets = None
        order = list(dict.fromkeys(w for w in word_ids if w is not None))
        word_of_token = torch.tensor([-1 if w is None else order.index(w) for w in word_ids])
        words = _word_texts(text, tokenizer, encoded["input_ids"][0], word_of_token, len(order), offsets)
        batch = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return Prepared(batch, {"words": words, "word_of_token": word_of_token, "pad": int(pad), "text": text})

    def _integrated_gradients(self, network: Any, prepared: Prepared, target: int, options: Any) -> np.ndarray:
        from captum.attr import LayerIntegratedGradients

        ids, mask = prepared.batch["input_ids"], prepared.batch["attention_mask"]
        word_of_token = prepared.info["word_of_token"].to(ids.device)
        count = len(prepared.info["words"])
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        layer = network.backbone.model.get_input_embeddings()
        baseline = torch.where(word_of_token >= 0, torch.full_like(ids, prepared.info["pad"]), ids)
        per_token = LayerIntegratedGradients(lambda i, m: network({"input_ids": i, "attention_mask": m}), layer
                                             ).attribute(ids, baselines=baseline, additional_forward_args=(mask,),
                                                         target=target, n_steps=options.steps,
                                                         internal_batch_size=options.batch_size)
        per_token = per_token.detach().sum(dim=-1)[0]
        weights = torch.zeros(count, dtype=per_token.dtype, device=per_token.device)
        keep = word_of_token >= 0
        weights.index_add_(0, word_of_token[keep], per_token[keep])
        return weights.float().cpu().numpy()

    def _occlusion(self, network: Any, prepared: Prepared, target: int, options: Any) -> np.ndarray:
        from captum.attr import FeatureAblation

        ids, mask = prepared.batch["input_ids"], prepared.batch["attention_mask"]
        word_of_token = prepared.info["word_of_token"].to(ids.device)
        pad = prepared.info["pad"]
        count = len(prepared.info["words"])
        if count == 0:
            return np.zeros(0, dtype=np.float32)

        def scores(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return network({"input_ids": input_ids, "attention_mask": attention_mask * (input_ids != pad)
                            if pad is not None else attention_mask})

        groups = torch.where(word_of_token >= 0, word_of_token + 1, torch.zeros_like(word_of_token)).unsqueeze(0)
        ablation = FeatureAblation(scores).attribute(ids, baselines=pad, additional_forward_args=(mask,),
                                                     target=target, feature_mask=groups,
                                                     perturbations_per_eval=options.batch_size).detach()[0]
        weights = np.zeros(count, dtype=np.float32)
        for word in range(count):
            weights[word] = float(ablation[word_of_token == word][0])
        return weights

    def units(self, prepared: Prepared, attribution: np.ndarray) -> Units:
        ids, mask = prepared.batch["input_ids"], prepared.batch["attention_mask"]
        word_of_token = prepared.info["word_of_token"]
        pad = prepared.info["pad"]

        def remove(masks: np.ndarray) -> dict[str, torch.Tensor]:
            removed_words = torch.from_numpy(masks.astype(bool))
            padded = torch.cat([removed_words, torch.zeros(len(masks), 1, dtype=torch.bool)], dim=1)
            removed = padded[:, word_of_token.clamp_min(-1)].to(ids.device)  # -1 (special) reads the False column
            new_ids = torch.where(removed, torch.full_like(ids, pad), ids.expand(len(masks), -1))
            return {"input_ids": new_ids, "attention_mask": mask.expand(len(masks), -1) * (~removed)}

        return Units(np.asarray(attribution, dtype=np.float64), remove)

    def render(self, prepared: Prepared, attribution: np.ndarray, title: str) -> Rendering:
        words = prepared.info["words"]
        tokens = [[word, round(float(weight), 6)] for word, weight in zip(words, attribution)]
        return Rendering(html=highlighted_html(words, attribution), extra={"tokens": tokens})


def _word_texts(text: str, tokenizer: Any, ids: torch.Tensor, word_of_token: torch.Tensor, count: int,
                offsets: list | None) -> list[str]:
    words = []
    for word in range(count):
        positions = (word_of_token == word).nonzero().flatten().tolist()
        if offsets is not None:
            words.append(text[offsets[positions[0]][0]:offsets[positions[-1]][1]])
        else:
            words.append(tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(ids[positions].tolist())))
    return words


def highlighted_html(words: list[str], weights: np.ndarray) -> str:
    """Words as spans shaded by weight: red supports the target, blue speaks against it; the weight on hover."""
    top = float(np.abs(weights).max()) if len(weights) else 0.0
    spans = []
    for word, weight in zip(words, weights):
        alpha = abs(float(weight)) / top if top > 0 else 0.0
        colour = "220,40,40" if weight >= 0 else "40,90,220"
        spans.append(f'<span title="{float(weight):+.4f}" style="background:rgba({colour},{alpha:.2f});'
                     f'padding:1px 2px;border-radius:3px">{html.escape(word)}</span>')
    return '<p class="explained-text">' + " ".join(spans) + "</p>"
