"""The from-scratch baseline: the same architecture from random weights, trained for the same budget.

It answers "did the *pretraining* help, or would this network have learnt the task anyway?". It is trained by the
same engine as the run it is compared with: the same epochs, batch, augmentation, early stopping and validation
data; every layer trains (there is nothing pretrained to protect), at learning rate :data:`SCRATCH_LR`, the usual
AdamW rate for training from random weights (the pretrained backbone's small rate would handicap it).
"""

from __future__ import annotations

from typing import Any

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.evaluation.baseline_result import BaselineResult

SCRATCH_LR = 1e-3


def scratch_baseline(train: Dataset, test: Dataset, classes: list[str], seed: int = 0, *, config: Any = None,
                     backbone: str | None = None, val: Dataset | None = None, **_: Any):
    """Train ``random:<backbone>`` on ``train`` (validated on ``val`` or a held-out part) and predict ``test``."""
    from transferkit.backbones import create_backbone
    from transferkit.config import FitConfig
    from transferkit.strategies.finetune import FineTune
    from transferkit.strategies.options import FineTuneConfig
    from transferkit.strategies.run import train_with_strategy

    if backbone is None:
        raise ConfigError("the scratch baseline needs the backbone name of the run it is compared with.")
    config = (config or FitConfig()).model_copy(update={"init_from": None, "seed": seed})
    name = backbone if backbone.startswith("random:") else f"random:{backbone}"
    options = config.backbone_options(train.modality)
    import torch

    torch.manual_seed(seed)  # the same random start for the same seed
    network = create_backbone(name, **options)
    trained = train_with_strategy(config, network, train, val, classes,
                                  strategy=FineTune(FineTuneConfig(), head_lr=SCRATCH_LR), stage="scratch",
                                  lr=SCRATCH_LR)
    extra = {"epochs_run": trained.outcome.epochs_run, "best_epoch": trained.outcome.best_epoch,
             "lr": SCRATCH_LR, "seconds": trained.outcome.seconds}
    description = f"{name} trained from random weights for the same budget"
    if not trained.is_main_process:
        return BaselineResult("scratch", description, None, None, extra)
    proba = trained.model.predict_proba(test, batch_size=config.batch_size, device=config.device,
                                        num_workers=config.num_workers, cache=None, progress=config.progress)
    from transferkit.tasks import get_task

    return BaselineResult("scratch", description, get_task(train.task).predictions(proba), proba, extra)
