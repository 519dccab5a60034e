"""The content projection trained on the shared engine: a linear map ``W`` ``(D, F)`` from frozen item features to
the id model's user space, by the Bayesian personalised ranking loss with the users' vectors held fixed.

The engine trains a classifier on ``(inputs, targets)``; a ranking pair is one: for user ``u``, an item ``pos`` the
user interacted with and a sampled item ``neg``, :class:`PairScorer` gives the two logits ``[p_u . W c_pos,
p_u . W c_neg]`` and the target is class 0. Softmax cross-entropy on those two logits is
``-log sigmoid(p_u . W c_pos - p_u . W c_neg)``, the BPR loss; the validation accuracy is the share of held-out
pairs ranked right (an estimate of the AUC). So the engine's default plan, optimiser, schedule, early stopping and
best-epoch selection train it unchanged.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import torch
from torch import nn

#: Pairs per optimiser step, and the most pairs held out to validate the projection.
BATCH_PAIRS = 1024
MAX_VALIDATION_PAIRS = 5000


class PairScorer(nn.Module):
    """``(users (N, F), positives (N, D), negatives (N, D))`` -> logits ``(N, 2)``: each user's score of the
    positive item's content and of the negative's, through one bias-free linear ``projection`` (D -> F)."""

    def __init__(self, in_features: int, factors: int) -> None:
        super().__init__()
        self.projection = nn.Linear(in_features, factors, bias=False)
        nn.init.normal_(self.projection.weight, std=1.0 / np.sqrt(in_features))

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        users, positives, negatives = inputs
        return torch.stack(((users * self.projection(positives)).sum(1), (users * self.projection(negatives)).sum(1)),
                           dim=1)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> int:
        return index


class _Collate:
    """Indices of pairs -> ``((users, positives, negatives), zeros)``; negatives drawn from ``warm`` items at each
    call (training, seeded by the engine), or fixed ones (validation)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, user_table: torch.Tensor, content: torch.Tensor,
                 warm: torch.Tensor, negatives: torch.Tensor | None = None) -> None:
        self.users, self.items, self.user_table, self.content = users, items, user_table, content
        self.warm, self.negatives = warm, negatives

    def __call__(self, indices: list[int]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        rows = torch.as_tensor(indices, dtype=torch.int64)
        negatives = self.negatives[rows] if self.negatives is not None else \
            self.warm[torch.randint(len(self.warm), (len(rows),))]
        inputs = (self.user_table[self.users[rows]], self.content[self.items[rows]], self.content[negatives])
        return inputs, torch.zeros(len(rows), dtype=torch.int64)


def train_projection(features: np.ndarray, user_vectors: np.ndarray, matrix: Any, config: Any,
                     run_name: str = "recommend") -> np.ndarray:
    """``W`` ``(D, F)`` trained on the positives of ``matrix`` (users x items) with fixed ``user_vectors``;
    ``features`` ``(I, D)`` already centred. A seeded share of the pairs (up to 5,000) validates each epoch; the
    best epoch's projection is returned. ``run_name`` leads the engine's progress lines."""
    from transferkit.engine import EngineSettings, TrainingPlan, run_training

    coo = matrix.tocoo()
    users = torch.from_numpy(coo.row.astype(np.int64))
    items = torch.from_numpy(coo.col.astype(np.int64))
    warm = torch.from_numpy(np.flatnonzero(np.asarray(matrix.sum(axis=0)).ravel() > 0))
    content = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    user_table = torch.from_numpy(np.ascontiguousarray(user_vectors, dtype=np.float32))
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(users))
    n_val = min(MAX_VALIDATION_PAIRS, max(1, len(users) // 20))
    val_rows, train_rows = torch.from_numpy(order[:n_val]), torch.from_numpy(order[n_val:])
    val_negatives = warm[torch.from_numpy(rng.integers(0, len(warm), size=n_val))]
    torch.manual_seed(config.seed)
    model = PairScorer(content.shape[1], user_table.shape[1])
    with tempfile.TemporaryDirectory(prefix="tk-recommend-") as work:
        settings = EngineSettings(work_dir=work, epochs=config.epochs, batch_size=min(BATCH_PAIRS, len(train_rows)),
                                  lr=config.lr, weight_decay=1e-4, patience=3, monitor="val_loss", seed=config.seed,
                                  device=config.device, tracking_uri="off", run_name=run_name,
                                  progress=config.progress, cpu_activation_budget_bytes=0)
        run_training(model, TrainingPlan(), _Pairs(len(train_rows)), _Pairs(n_val), settings,
                     train_collate=_Collate(users[train_rows], items[train_rows], user_table, content, warm),
                     val_collate=_Collate(users[val_rows], items[val_rows], user_table, content, warm,
                                          negatives=val_negatives))
    return model.projection.weight.detach().cpu().numpy().T.copy()


__all__ = ["PairScorer", "train_projection"]
