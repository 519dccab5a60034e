"""Training and validation data for the engine: labelled examples, seeded shuffling, per-process shards."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.data import Dataset as TorchDataset

from transferkit.errors import ConfigError


class LabelledExamples(TorchDataset):
    """``(prepare(items[i]), labels[i])`` pairs. ``prepare`` runs in loader workers (decoding, augmentation).

    ``labels`` are the task's targets: class indices ``(N,)`` (kept as int64), values ``(N,)`` or 0/1 label
    matrices ``(N, labels)`` (kept as float32)."""

    def __init__(self, items: Sequence[Any] | np.ndarray, labels: np.ndarray, prepare: Callable[[Any], Any]) -> None:
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        self.items = items
        labels = np.asarray(labels)
        self.labels = labels.astype(np.int64) if labels.dtype.kind in "iub" else labels.astype(np.float32)
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        label = self.labels[index]
        return self.prepare(self.items[index]), int(label) if self.labels.dtype == np.int64 else label


class LabelledCollate:
    """Stacks prepared examples with ``collate`` and labels into a tensor; ``batch_transform`` (mixup, cutmix,
    token masking) then sees the whole batch. A class, not a closure, so that loader workers can pickle it."""

    def __init__(self, collate: Callable[[list[Any]], Any],
                 batch_transform: Callable[[Any, torch.Tensor], tuple[Any, torch.Tensor]] | None = None) -> None:
        self.collate = collate
        self.batch_transform = batch_transform

    def __call__(self, batch: list[tuple[Any, int]]) -> tuple[Any, torch.Tensor]:
        inputs = self.collate([example for example, _ in batch])
        labels = [label for _, label in batch]
        targets = torch.tensor(labels, dtype=torch.int64) if all(isinstance(label, int) for label in labels) \
            else torch.as_tensor(np.stack(labels))
        if self.batch_transform is not None:
            inputs, targets = self.batch_transform(inputs, targets)
        return inputs, targets


class EngineData(pl.LightningDataModule):
    """Loaders for one run. The training order is a seeded permutation per epoch (``DistributedSampler``'s), split
    across processes; one process with batch ``B`` sees, step by step, the union of what ``k`` processes with
    batch ``B / k`` see, so single- and multi-process runs make the same updates.

    Multi-task runs pass mappings ``{task: dataset}`` (and ``{task: collate}``) and ``task_batch_sizes``: each
    training step then holds one batch of every task (Lightning's ``CombinedLoader``, ``max_size_cycle``: an epoch
    ends when the task with the most batches has seen each of its examples once; the others start over), and
    validation has one loader per task, in the mapping's order.
    """

    def __init__(self, train: TorchDataset | Mapping[str, TorchDataset], val: TorchDataset | Mapping[str, TorchDataset],
                 *, batch_size: int, seed: int, train_collate: Callable | Mapping[str, Callable],
                 val_collate: Callable | Mapping[str, Callable], num_workers: int = 0, pin_memory: bool = False,
                 task_batch_sizes: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.train_set, self.val_set = train, val
        self.batch_size, self.seed, self.num_workers, self.pin_memory = batch_size, seed, num_workers, pin_memory
        self.train_collate, self.val_collate = train_collate, val_collate
        self.task_batch_sizes = dict(task_batch_sizes or {})

    def _per_process_batch(self, size: int | None = None, option: str = "batch_size") -> tuple[int, int, int]:
        size = self.batch_size if size is None else size
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if size % world:
            raise ConfigError(
                f"option '{option}' ({size}) must be divisible by the number of processes ({world}); "
                f"it is the global batch, split evenly across processes."
            )
        return size // world, world, rank

    def _loader(self, dataset: TorchDataset, shuffle: bool, collate: Callable, size: int | None = None,
                option: str = "batch_size") -> DataLoader:
        batch, world, rank = self._per_process_batch(size, option)
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=self.seed)
        return DataLoader(dataset, batch_size=batch, sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> Any:
        if isinstance(self.train_set, Mapping):
            from lightning.pytorch.utilities import CombinedLoader

            loaders = {task: self._loader(dataset, True, self.train_collate[task], self.task_batch_sizes[task],
                                          f"batch size of task {task}")
                       for task, dataset in self.train_set.items()}
            return CombinedLoader(loaders, mode="max_size_cycle")
        return self._loader(self.train_set, True, self.train_collate)

    def val_dataloader(self) -> Any:
        if isinstance(self.val_set, Mapping):
            return [self._loader(dataset, False, self.val_collate[task]) for task, dataset in self.val_set.items()]
        return self._loader(self.val_set, False, self.val_collate)
