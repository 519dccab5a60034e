"""``contrastive``: contrastive fine-tuning of the encoder, then the linear probe on the tuned embeddings.

SetFit's idea (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts"): with a handful of labelled
examples per class, first teach the encoder that same-class examples belong together, then fit a simple head.
SetFit samples sentence pairs and encodes both sides of each pair; here every pair of a batch comes from one
forward pass (:class:`~transferkit.losses.contrastive.SupervisedContrastiveLoss` or
:class:`~transferkit.losses.contrastive.CoSENTLoss`). By default every layer group trains, at a low learning rate
(2e-5): on WordNet glosses at 8 per class (all-MiniLM-L6-v2, seed 0) that scored 0.616 against 0.598 for the top
three layers at 5e-5, and SupCon measured above CoSENT (``benchmarks/README.md``); ``top_layers`` k > 0 trains the
top k groups only (a cheaper step on a CPU).

While the encoder trains, the head learns beside it on the *detached* embeddings (cross-entropy, no gradient into
the backbone), so that the engine's validation accuracy, early stopping and checkpoint choice measure how well the
current embeddings separate the classes. After training, the head is replaced by the linear probe
(:class:`~transferkit.estimators.linear_probe.LinearProbe`, ``C`` by cross-validation) fitted on the tuned
embeddings of the training examples, and, when the validation examples were held out of the training data, fitted
again on all of them. The saved model is a backbone and a linear head, like every other strategy's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from transferkit.backbones.base import Backbone
from transferkit.engine.freezing import set_trainable
from transferkit.engine.plan import ParamGroup
from transferkit.errors import ConfigError
from transferkit.strategies.base import TrainingStrategy
from transferkit.strategies.options import ContrastiveConfig


class ContrastiveTuning(TrainingStrategy):
    """The layer groups (all, or the top ``top_layers``) trained by a pair loss on the pooled embeddings; the head is
    the probe fitted after."""

    name = "contrastive"
    #: Every layer trains by default: a low rate, as sentence-pair fine-tuning of a whole encoder uses.
    default_lr = 2e-5
    #: Few examples: BatchNorm layers (of an image backbone) keep their pretrained statistics.
    batchnorm_eval = True
    #: The head's rate when ``head_lr`` is not given. It learns on detached embeddings (a convex problem) and its
    #: validation accuracy drives early stopping and the checkpoint choice, so it must follow the embeddings from
    #: the first epochs: at 10 x the encoder's rate it stayed near chance, and early stopping kept an early epoch.
    default_head_lr = 1e-2
    #: The head's validation loss, not its accuracy: a few validation examples per class give an accuracy that
    #: stops changing after two epochs (early stopping then kept the third epoch: 0.594 on WordNet, the tenth 0.616).
    monitor = "val_loss"

    def __init__(self, config: ContrastiveConfig | None = None, head_lr: float | None = None) -> None:
        super().__init__(head_lr)
        self.config = config or ContrastiveConfig()
        self.pair_loss = self._make_loss()
        self._groups: list[nn.Module] = []
        self._context: dict[str, Any] = {}

    def _make_loss(self) -> nn.Module:
        from transferkit.losses import create_loss

        options = {"temperature": self.config.temperature} if self.config.loss == "supcon" else {}
        return create_loss(self.config.loss, **options)

    def head_learning_rate(self, lr: float) -> float:
        return self.head_lr if self.head_lr is not None else self.default_head_lr

    def check(self, backbone: Backbone) -> None:
        n = len(backbone.layer_groups())
        if self.config.top_layers > n:
            raise ConfigError(
                f"option 'contrastive.top_layers' (--top-layers) is {self.config.top_layers}, but backbone "
                f"'{backbone.name}' has {n} layer groups; give 1 to {n}, or 0 to train them all."
            )

    def trained_groups(self) -> list[nn.Module]:
        """The layer groups that train: the top ``top_layers`` (all of them for 0)."""
        k = self.config.top_layers
        return self._groups[-k:] if k else list(self._groups)

    def prepare(self, model: nn.Module, context: dict[str, Any]) -> None:
        self._context = {key: context.get(key) for key in ("train", "val", "classes", "config", "val_held_out")}
        self._groups = list(model.backbone.layer_groups())
        set_trainable(model.backbone, False)
        set_trainable(self.trained_groups(), True)
        set_trainable(model.head, True)

    def training_examples(self, train: Any, labels: Any, prepare: Any) -> Any:
        values = np.asarray(labels)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise ConfigError("--strategy contrastive pairs examples of the same class, so it needs one class per "
                              f"example (labels of shape {values.shape} given); use --strategy finetune or lp-ft "
                              "for this task.")
        if len(np.unique(values)) < 2:
            raise ConfigError("--strategy contrastive needs at least 2 classes in the training data (it pulls "
                              "same-class examples together and pushes the others away); found one. Add examples "
                              "of another class.")
        return super().training_examples(train, labels, prepare)

    def param_groups(self, model: nn.Module, lr: float) -> list[ParamGroup]:
        backbone = [p for group in self.trained_groups() for p in group.parameters() if p.requires_grad]
        return [ParamGroup("backbone-top", backbone, lr),
                ParamGroup("head", list(model.head.parameters()), self.head_learning_rate(lr))]

    def loss_terms(self, model: nn.Module, inputs: Any, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        embeddings = model.backbone.forward_features(inputs)
        return {"contrastive": self.pair_loss(embeddings, targets),
                "head_cross_entropy": F.cross_entropy(model.head(embeddings.detach()), targets)}

    def after_training(self, model: nn.Module, outcome: Any) -> dict[str, Any]:
        """Replace the head by the linear probe on the tuned embeddings (its validation accuracy measured on the
        validation data, then refitted on training + validation data when those were held out of the training
        data)."""
        from transferkit.features.extract import extract_features
        from transferkit.estimators.linear_probe import LinearProbe

        context, self._context = self._context, {}
        config, classes, train, val = context["config"], context["classes"], context["train"], context["val"]
        extract = dict(cache=None, batch_size=config.batch_size, device=config.device,
                       num_workers=config.num_workers, progress=config.progress)
        X_train, X_val = extract_features(model.backbone, train, **extract), extract_features(model.backbone, val,
                                                                                            **extract)
        y_train, y_val = train.label_array(classes), val.label_array(classes)
        probe = LinearProbe(C=config.probe_c, random_state=config.seed).fit(X_train, y_train)
        score = float(np.mean(probe.predict(X_val) == y_val))
        facts = {"head": "linear probe on the tuned embeddings", "probe_C": probe.C_, "score": score,
                 "head_during_training_val_accuracy": outcome.best_score}
        if context.get("val_held_out"):
            probe = LinearProbe(C=config.probe_c, random_state=config.seed).fit(
                np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val]))
            facts.update(probe_refit_on=len(y_train) + len(y_val), probe_C=probe.C_)
        self._check_head_classes(probe, len(classes))
        model.head.load_state_dict(probe.to_head().state_dict())
        return facts

    @staticmethod
    def _check_head_classes(probe: Any, n_classes: int) -> None:
        if len(probe.classes_) != n_classes:
            missing = sorted(set(range(n_classes)) - set(int(c) for c in probe.classes_))
            raise ConfigError(f"--strategy contrastive: classes {missing} have no training example left after the "
                              "validation split; give --val, or more examples of those classes.")

    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {**super().describe(model), "contrastive": self.config.model_dump()}
