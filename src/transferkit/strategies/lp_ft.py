"""``lp-ft``: linear probe first, then fine-tune from the probe's head (Kumar et al. 2022, "Fine-Tuning can
Distort Pretrained Features and Underperform Out-of-Distribution").

Stage one is the linear probe on frozen, cached features (:class:`~transferkit.strategies.linear_probe.LinearProbe`,
its ``C`` chosen on the validation data); :meth:`~LinearProbe.to_head` turns it into the model's head. Stage two
fine-tunes backbone and head together, as ``finetune`` does with the same options. Because the head starts
good, the early gradients do not tear the pretrained features apart; the head trains at the backbone's learning
rate rather than ten times it, and BatchNorm layers keep their pretrained statistics by default (the probe was
fitted on features computed with them; ``bn_statistics = "update"`` lets them move).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from transferkit.strategies.finetune import FineTune


class LinearProbeThenFineTune(FineTune):
    """:class:`FineTune` whose head is first fitted as a linear probe on the pretrained features."""

    name = "lp-ft"
    freezes_batchnorm_statistics_by_default = True

    def head_learning_rate(self, lr: float) -> float:
        return self.head_lr if self.head_lr is not None else lr

    def prepare(self, model: nn.Module, context: dict[str, Any]) -> None:
        from transferkit.backbones.packaged import cache_root
        from transferkit.features.cache import FeatureCache
        from transferkit.features.extract import extract_features
        from transferkit.strategies.linear_probe import LinearProbe

        config, classes = context["config"], context["classes"]
        train, val = context["train"], context["val"]
        cache = None if config.no_cache else FeatureCache(config.cache_dir or cache_root() / "features")
        extract = dict(cache=cache, batch_size=config.batch_size, device=config.device,
                       num_workers=config.num_workers, progress=config.progress)
        X_train = extract_features(model.backbone, train, **extract)
        X_val = extract_features(model.backbone, val, **extract)
        y_val = val.label_array(classes)
        probe = LinearProbe(C=config.probe_c, random_state=config.seed)
        probe.fit(X_train, train.label_array(classes), X_val, y_val)
        model.head = probe.to_head()
        self.probe_ = probe
        self.probe_val_accuracy_ = float(np.mean(probe.predict(X_val) == y_val))
        super().prepare(model, context)

    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {**super().describe(model), "probe_C": self.probe_.C_, "probe_val_accuracy": self.probe_val_accuracy_}
