"""``lp-ft``: linear probe first, then fine-tune from the probe's head (Kumar et al. 2022, "Fine-Tuning can
Distort Pretrained Features and Underperform Out-of-Distribution").

Stage one is the linear probe on frozen, cached features (:class:`~transferkit.estimators.linear_probe.LinearProbe`,
its ``C`` chosen by cross-validation on the training examples, so that the validation data stays unseen by the probe
and judges it fairly against the fine-tuned epochs); :meth:`~LinearProbe.to_head` turns it into the model's head. Stage two
fine-tunes backbone and head together, as ``finetune`` does with the same options. Because the head starts
good, the early gradients do not tear the pretrained features apart; the head trains at the backbone's learning
rate rather than ten times it, and BatchNorm layers keep their pretrained statistics by default (the probe was
fitted on features computed with them; ``bn_statistics = "update"`` lets them move).

The probe is the first candidate for the result: with ``keep_probe`` (the default), when no fine-tuning epoch
reaches the probe's validation accuracy (ties go to fine-tuning), the model goes back to the pretrained backbone and
the probe head: fine-tuning made the model worse on the data held out to judge it. (Choosing the probe's ``C`` on
that same validation data would have made the comparison unfair: the best of seven values of ``C`` on 150 examples
looked 4 points better than it was on Fashion-MNIST.) When the validation data was held out of the training data
(no ``--val``), the kept probe is fitted again on all of it, ``C`` again by cross-validation: the result is then the
probe of ``--strategy linear-probe`` on the same examples, rather than one that lost a validation split for nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from transferkit.strategies.finetune import FineTune

#: Validation accuracies closer than this are equal (the engine logs them in float32).
TIE_TOLERANCE = 1e-6


class LinearProbeThenFineTune(FineTune):
    """:class:`FineTune` whose head is first fitted as a linear probe on the pretrained features."""

    name = "lp-ft"
    freezes_batchnorm_statistics_by_default = True

    def head_learning_rate(self, lr: float) -> float:
        return self.head_lr if self.head_lr is not None else lr

    def prepare(self, model: nn.Module, context: dict[str, Any]) -> None:
        from transferkit.features.cache import FeatureCache, default_cache_dir
        from transferkit.features.extract import extract_features
        from transferkit.estimators.linear_probe import LinearProbe

        config, classes = context["config"], context["classes"]
        train, val = context["train"], context["val"]
        cache = None if config.no_cache else FeatureCache(config.cache_dir or default_cache_dir())
        extract = dict(cache=cache, batch_size=config.batch_size, device=config.device,
                       num_workers=config.num_workers, progress=config.progress)
        X_train = extract_features(model.backbone, train, **extract)
        X_val = extract_features(model.backbone, val, **extract)
        y_train, y_val = train.label_array(classes), val.label_array(classes)
        probe = LinearProbe(C=config.probe_c, random_state=config.seed)
        probe.fit(X_train, y_train)
        model.head = probe.to_head()
        self.probe_ = probe
        self.probe_val_accuracy_ = float(np.mean(probe.predict(X_val) == y_val))
        # the probe's weights, to go back to when fine-tuning does not beat it (a copy on the CPU)
        self._probe_state = ({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                             if self.config.keep_probe else None)
        self._refit_on = ((np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val]))
                          if self.config.keep_probe and context.get("val_held_out") else None)
        super().prepare(model, context)

    def after_training(self, model: nn.Module, outcome: Any) -> dict[str, Any]:
        state, self._probe_state = getattr(self, "_probe_state", None), None
        best = outcome.best_score if outcome.monitor == "val_accuracy" else None
        if state is None or best is None:
            return {}
        refit_on, self._refit_on = getattr(self, "_refit_on", None), None
        facts = {"probe_val_accuracy": self.probe_val_accuracy_, "finetuned_val_accuracy": best}
        if best >= self.probe_val_accuracy_ - TIE_TOLERANCE:
            return {**facts, "kept": "fine-tuned", "score": best}
        model.load_state_dict(state)
        if refit_on is not None:
            from sklearn.base import clone

            refit = clone(self.probe_).fit(*refit_on)  # the same options, C chosen again on all the data
            model.head.load_state_dict(refit.to_head().state_dict())
            facts["probe_refit_on"] = len(refit_on[1])
        return {**facts, "kept": "probe", "score": self.probe_val_accuracy_}

    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {**super().describe(model), "probe_C": self.probe_.C_, "probe_val_accuracy": self.probe_val_accuracy_}
