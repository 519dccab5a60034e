"""Feature extraction over several processes, on Lightning Fabric (the engine that trains): the examples not yet
cached are split into shards of whole batches, each process runs its shard and writes it to the feature cache, and
the cache merges them (its entries are keyed by content, whichever process wrote them).

The shards are made of the batches the single-process run would form (texts sorted by length, then cut into
``batch_size`` batches), dealt to the processes in turn, so every example meets the same batch companions and the
same padding: with the same thread count per process the features are exactly the single-process ones.

One machine: ``processes`` CPU processes over gloo, forked when each runs one thread (see :func:`start_method`),
spawned otherwise. Several machines: see ``docs/scaling.md``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.features.cache import FeatureCache
from transferkit.modalities import get_modality

log = logging.getLogger("transferkit")


def shard_rows(dataset: Dataset, batch_size: int, processes: int) -> list[np.ndarray]:
    """Row indices of ``dataset`` per process: batch ``b`` of the single-process order goes to process
    ``b % processes``; each process's rows keep that order, so its own batching re-forms the same batches."""
    order = get_modality(dataset.modality).batch_order(dataset.items)
    order = np.arange(len(dataset)) if order is None else np.asarray(order)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    shards = [[b for k, b in enumerate(batches) if k % processes == rank] for rank in range(processes)]
    return [np.concatenate(s) if s else np.zeros(0, dtype=np.int64) for s in shards]


def start_method(threads: int) -> str:
    """Lightning's strategy for ``processes`` that run ``threads`` threads each: ``ddp_fork`` on Linux with one
    thread per process, ``ddp_spawn`` otherwise.

    A forked process starts at once (about 1 s for two, against 60 s for two spawned processes that import torch
    and unpickle the backbone on a loaded machine) and shares the backbone's weights with this one page by page. But
    GNU OpenMP, which PyTorch uses on Linux, deadlocks in a forked child that starts threads after the parent used
    them; with one thread per process it starts none. Spawning also needs the calling script's work under
    ``if __name__ == "__main__":``; forking does not. A process that has used CUDA cannot fork.
    """
    import torch

    forkable = sys.platform.startswith("linux") and not torch.cuda.is_initialized()
    return "ddp_fork" if threads == 1 and forkable else "ddp_spawn"


def _worker(fabric: Any, backbone: Backbone, dataset: Dataset, shards: list[np.ndarray], keys: list[str],
            cache_root: str, batch_size: int, threads: int, runtime: str) -> int:
    import torch

    from transferkit.features.extract import require_finite_features, run_backbone

    torch.set_num_threads(threads)
    rows = shards[fabric.global_rank]
    if len(rows):
        part = dataset.subset(rows)
        features = run_backbone(backbone, part, batch_size=batch_size, device="cpu", progress=False,
                                runtime=runtime, examples_planned=sum(len(s) for s in shards))
        require_finite_features(features, backbone, part)
        FeatureCache(cache_root).store(backbone.cache_key(), [keys[i] for i in rows], features,
                                       meta=backbone.describe())
    fabric.barrier()
    return int(len(rows))


def extract_sharded(backbone: Backbone, dataset: Dataset, *, processes: int, cache: FeatureCache,
                    batch_size: int = 64, threads: int | None = None, runtime: str = "auto") -> int:
    """Compute the features of every example of ``dataset`` missing from ``cache`` with ``processes`` CPU
    processes, each with ``threads`` threads (default: this process's count divided among them, at least 1);
    returns how many distinct examples were computed. Read them with
    :func:`~transferkit.features.extract.extract_features` afterwards (all from the cache)."""
    import torch

    if processes < 1:
        raise ConfigError(f"option 'processes' must be at least 1; got {processes}.")
    key = backbone.cache_key()
    keys = dataset.item_keys()
    _, hits = cache.lookup(key, keys)
    first_of: dict[str, int] = {}
    for i in np.flatnonzero(~hits):
        first_of.setdefault(keys[i], int(i))
    if not first_of:
        return 0
    unique = np.fromiter(first_of.values(), dtype=np.int64)
    missing = dataset.subset(unique)
    shards = shard_rows(missing, batch_size, processes)
    threads = threads or max(1, torch.get_num_threads() // processes)
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator="cpu", devices=processes, strategy=start_method(threads))
    fabric.launch(_worker, backbone, missing, shards, [keys[i] for i in unique], str(cache.root), batch_size, threads,
                  runtime)
    log.info("features of %s: %d examples computed by %d processes", dataset.origin, len(unique), processes)
    return len(unique)


def extract_features_sharded(backbone: Backbone, dataset: Dataset, *, processes: int = 1,
                             cache: FeatureCache | None = None, batch_size: int = 64, device: str = "auto",
                             stats: Any = None, runtime: str = "auto", **options: Any) -> np.ndarray:
    """:func:`~transferkit.features.extract.extract_features` (same arguments, ``options`` passed on) with the
    examples not yet cached computed first by ``processes`` CPU processes (:func:`extract_sharded`), into ``cache``
    or, without one, a temporary cache removed afterwards; the features are the single-process ones. One process:
    ``extract_features`` itself."""
    import tempfile
    import time

    from transferkit.features.extract import extract_features, resolve_device

    run = dict(batch_size=batch_size, stats=stats, runtime=runtime, **options)
    if processes <= 1:
        return extract_features(backbone, dataset, cache=cache, device=device, **run)
    if str(device) != "auto" and resolve_device(device).type != "cpu":
        raise ConfigError(f"option 'processes' (--processes {processes}): several extraction processes run on the "
                          f"CPU; got --device {device}. Use --device cpu, or --processes 1 on a GPU.")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="transferkit-features-") as scratch:
        target = cache if cache is not None else FeatureCache(scratch)
        computed = extract_sharded(backbone, dataset, processes=processes, cache=target, batch_size=batch_size,
                                   runtime=runtime)
        features = extract_features(backbone, dataset, cache=target, device="cpu", **run)
    if stats is not None:
        stats.computed, stats.from_cache = computed, len(dataset) - computed
        stats.seconds = time.perf_counter() - start
    return features
