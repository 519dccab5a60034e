"""Batched feature extraction in ``torch.inference_mode``, through the cache.

Two runtimes compute the same pooled features (to about 1e-5): ``"torch"`` (on the CPU a frozen, BatchNorm-folded
copy of a CNN runs in small chunks, see :func:`forward_batch`) and ``"onnx"`` (the backbone exported once to ONNX and
run by ONNX Runtime on the CPU; checked against PyTorch on the first batch of every run). ``"auto"`` (the default)
takes ONNX Runtime on the CPU when it is installed and at least :data:`AUTO_ONNX_MIN_EXAMPLES` examples are to be
computed (enough to repay the one-time export), PyTorch otherwise; it falls back to PyTorch, with a warning, when
the export or the parity check fails. ``benchmarks/extract_throughput.py`` measures the three.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, ExportError
from transferkit.features.cache import FeatureCache
from transferkit.modalities import get_modality

log = logging.getLogger("transferkit")


class PreparedItems(TorchDataset):
    """A dataset's items passed through ``backbone.prepare`` (decoding and resizing happen in loader workers)."""

    def __init__(self, dataset: Dataset, backbone: Backbone, order: np.ndarray | None = None) -> None:
        self.items = dataset.items
        self.prepare = backbone.prepare
        self.order = np.arange(len(dataset)) if order is None else order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> Any:
        return self.prepare(self.items[int(self.order[index])])


@dataclass
class ExtractionStats:
    """What the last extraction did: how many examples came from the cache and how many ran the backbone."""

    total: int = 0
    from_cache: int = 0
    computed: int = 0
    seconds: float = 0.0


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a torch device; a device that is not here, or a
    name that is none of these, is a :class:`~transferkit.errors.ConfigError` naming ``--device``."""
    if isinstance(device, torch.device):
        return device
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps: no Apple GPU (MPS) is available here; use --device cpu or auto.")
        return torch.device("mps")
    kind, _, index = text.partition(":")
    if kind == "cuda" and (not index or index.isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu (or auto, which "
                              "takes a GPU when there is one).")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
        return torch.device(text)
    raise ConfigError(f"--device {device!r}: expected cpu, cuda, cuda:N (a GPU's index), mps or auto.")


# On the CPU a batch runs through a CNN in chunks of about this many pixels (4 images at 224 px): each layer's
# activations then stay in the processor's cache and are reused by the allocator, instead of tens of megabytes
# freshly written to memory per layer. The loader's ``batch_size`` is unchanged; results are the same.
CPU_CHUNK_PIXELS = 4 * 224 * 224


def cpu_chunk_size(batch: Any) -> int:
    """Images per forward pass on the CPU for an image batch ``(N, C, H, W)`` (``N`` for anything else)."""
    if isinstance(batch, torch.Tensor) and batch.dim() == 4:
        return max(1, CPU_CHUNK_PIXELS // max(1, batch.shape[-1] * batch.shape[-2]))
    return len(batch) if isinstance(batch, torch.Tensor) else 0


def forward_batch(
    backbone: Backbone,
    batch: Any,
    output: Callable[[Backbone, Any], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``output(backbone, batch)`` (default: pooled features ``(N, num_features)``) for one batch already on the
    backbone's device, in inference mode; call it inside ``torch.inference_mode()``.

    With the default output, image backbones that offer ``inference_features`` (a faster frozen copy on the CPU)
    use it. On the CPU image batches run in chunks of :func:`cpu_chunk_size` images.
    """
    if output is None:
        fast = getattr(backbone, "inference_features", None)
        output = (lambda model, x: fast(x)) if fast is not None else (lambda model, x: model.forward_features(x))
    chunk = cpu_chunk_size(batch) if isinstance(batch, torch.Tensor) and batch.device.type == "cpu" else 0
    if 0 < chunk < len(batch):
        return torch.cat([output(backbone, part) for part in torch.split(batch, chunk)])
    return output(backbone, batch)


def batches_in_order(
    backbone: Backbone, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0, pin_memory: bool = False,
) -> tuple[DataLoader, np.ndarray | None]:
    """A loader of model-ready batches (``backbone.prepare`` then ``backbone.collate``) and the order it visits the
    examples in (``None``: the dataset's order). Texts are sorted by length so that batches carry less padding."""
    order = get_modality(dataset.modality).batch_order(dataset.items)
    loader = DataLoader(
        PreparedItems(dataset, backbone, order),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=backbone.collate,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
    return loader, order


def restore_order(outputs: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Rows computed in ``order`` (from :func:`batches_in_order`) put back in the dataset's order."""
    if order is None:
        return outputs
    restored = np.empty_like(outputs)
    restored[order] = outputs
    return restored


RUNTIMES = ("auto", "torch", "onnx")
#: runtime="auto" uses ONNX Runtime from this many examples to compute on: exporting a backbone once takes a few
#: seconds, which ONNX Runtime's speed-up over PyTorch on the CPU (1.3x on EfficientNet-Lite0) repays by then.
AUTO_ONNX_MIN_EXAMPLES = 1000


def choose_runtime(runtime: str, backbone: Backbone, device: str | torch.device, count: int,
                   custom_output: bool = False) -> str:
    """``"torch"`` or ``"onnx"`` for ``runtime`` (``auto``, ``torch`` or ``onnx``) on ``count`` examples: ``auto``
    is ``onnx`` on the CPU for pooled features of :data:`AUTO_ONNX_MIN_EXAMPLES` examples or more when ONNX Runtime
    is installed and the backbone's modality has an ONNX graph, ``torch`` otherwise."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}.")
    if runtime != "auto":
        return runtime
    import importlib.util

    if custom_output or count < AUTO_ONNX_MIN_EXAMPLES or resolve_device(device).type != "cpu":
        return "torch"
    if importlib.util.find_spec("onnxruntime") is None or not get_modality(backbone.modality).onnx_inputs:
        return "torch"
    return "onnx"
#: Examples extracted and written to the cache at a time (a shard each): 8,192 x 1,280 float32 features are 42 MB.
CACHE_CHUNK = 8192


def _torch_features(model: Backbone, batch: Any) -> torch.Tensor:
    fast = getattr(model, "inference_features", None)
    return fast(batch) if fast is not None else model.forward_features(batch)


#: Examples of the first batch on which ONNX Runtime's features are compared with PyTorch's. The reference is the
#: plain eager forward pass, the slowest one there is: run on a whole batch of 64 images at 224 px it cost about a
#: quarter of the extraction of 1,000 images, more than ONNX Runtime's gain over PyTorch.
PARITY_ROWS = 4
#: ONNX files whose features were checked against PyTorch in this process (one check per file and process, not one
#: per call: ``extract_features`` runs a call per cache chunk, cross-validation one per fold).
_CHECKED_FILES: set[str] = set()


def _first_rows(batch: Any, count: int) -> Any:
    """The first ``count`` examples of a collated batch (a tensor, or a mapping of tensors such as token ids)."""
    if isinstance(batch, Mapping):
        return {name: value[:count] for name, value in batch.items()}
    return batch[:count]


def _onnx_output(backbone: Backbone, fallback: bool = False) -> Callable[[Backbone, Any], torch.Tensor]:
    """Pooled features from ONNX Runtime, compared with PyTorch's on the first :data:`PARITY_ROWS` examples of the
    first batch, once per ONNX file and process (1e-4, scaled by the features' magnitude above 1); a larger
    difference raises rather than returning different features, or with ``fallback`` warns and computes every batch
    with PyTorch instead."""
    from transferkit.backbones.onnx_graph import feature_session, onnx_feed

    session, path = feature_session(backbone)
    use_torch = False

    def output(model: Backbone, batch: Any) -> torch.Tensor:
        nonlocal use_torch
        if use_torch:
            return _torch_features(model, batch)
        features = torch.from_numpy(session.run(None, onnx_feed(batch, model.modality))[0])
        if str(path) not in _CHECKED_FILES:
            expected = model.forward_features(_first_rows(batch, PARITY_ROWS)).float()
            got = features[:len(expected)]
            difference = float((got - expected).abs().max()) if expected.numel() else 0.0
            allowed = 1e-4 * max(1.0, float(expected.abs().max()) if expected.numel() else 1.0)
            if not difference <= allowed and fallback:
                log.warning("%s: ONNX Runtime's features differ from PyTorch's by %.2e (allowed %.1e); features are "
                            "computed with PyTorch (delete the file to re-export it)", path, difference, allowed)
                use_torch = True
                return _torch_features(model, batch)
            if not difference <= allowed:
                raise ExportError(f"{path}: ONNX Runtime's features differ from PyTorch's by {difference:.2e} "
                                  f"(allowed {allowed:.1e}); delete the file to re-export it, or use runtime='torch'.")
            _CHECKED_FILES.add(str(path))
        return features

    return output


def training_modes(module: torch.nn.Module) -> list[tuple[torch.nn.Module, bool]]:
    """Every submodule's train/eval flag, to put back after a temporary ``eval()``.

    ``module.train(flag)`` would not do: it sets every submodule alike, and a backbone is often a module in train
    mode wrapping a network in eval mode (frozen BatchNorm and dropout must stay off).
    """
    return [(m, m.training) for m in module.modules()]


def restore_training_modes(modes: list[tuple[torch.nn.Module, bool]]) -> None:
    """Undo ``eval()`` with the flags saved by :func:`training_modes`."""
    for m, flag in modes:
        m.training = flag


def run_backbone(
    backbone: Backbone,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    progress: bool = True,
    output: Callable[[Backbone, Any], torch.Tensor] | None = None,
    description: str = "extracting features",
    runtime: str = "auto",
    examples_planned: int | None = None,
) -> np.ndarray:
    """Run ``output(backbone, batch)`` (default: pooled features) over every example; returns ``(N, D)`` float32.

    Texts are batched by length (less padding), results are returned in the dataset's order. See
    :func:`forward_batch` for how each batch runs. ``runtime="onnx"`` computes the pooled features with ONNX
    Runtime on the CPU (exported once per backbone into the cache folder); it takes no custom ``output``.
    ``"auto"`` chooses between them (:func:`choose_runtime`) by ``examples_planned``: how many examples the caller
    computes in all, over several calls (default: this dataset's).
    """
    requested = runtime
    runtime = choose_runtime(runtime, backbone, device, len(dataset) if examples_planned is None else examples_planned,
                             custom_output=output is not None)
    if runtime == "onnx" and requested == "auto":
        try:
            output = _onnx_output(backbone, fallback=True)
        except Exception as exc:  # an architecture the exporter cannot trace: PyTorch computes the same features
            log.warning("backbone '%s' could not run in ONNX Runtime (%s: %s); features are computed with PyTorch",
                        backbone.name, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            runtime = "torch"
        else:
            device = "cpu"
    elif runtime == "onnx":
        if output is not None:
            raise ConfigError("runtime='onnx' computes pooled features only; use runtime='torch' for other outputs.")
        if resolve_device("cpu" if device == "auto" else device).type != "cpu":
            raise ConfigError(f"runtime='onnx' runs on the CPU; got device {device!r}. Use device='cpu' or "
                              "runtime='torch'.")
        device = "cpu"
        output = _onnx_output(backbone)
    device = resolve_device(device)
    loader, order = batches_in_order(backbone, dataset, batch_size=batch_size, num_workers=num_workers,
                                     pin_memory=device.type == "cuda")
    modes = training_modes(backbone)
    backbone.eval().to(device)
    if device.type == "cpu" and get_modality(dataset.modality).channels_last:
        backbone.to(memory_format=torch.channels_last)
    # Each batch's rows go straight to their place in the dataset's order: one (N, D) array, no list of batches to
    # concatenate and re-order (which held the features three times over at the end).
    rows = np.arange(len(dataset)) if order is None else np.asarray(order)
    features: np.ndarray | None = None
    done = 0
    reporter = _Progress(len(dataset), description, enabled=progress)
    use_amp = device.type == "cuda"
    try:
        with torch.inference_mode(), torch.autocast(device.type, enabled=use_amp, dtype=torch.float16):
            for batch in loader:
                batch = backbone.batch_to(batch, device)
                out = (output(backbone, batch) if runtime == "onnx" else forward_batch(backbone, batch, output))
                out = out.float().cpu().numpy()
                if features is None:
                    features = np.empty((len(dataset), *out.shape[1:]), dtype=np.float32)
                features[rows[done:done + len(out)]] = out
                done += len(out)
                reporter.advance(len(out))
    finally:
        reporter.close()
        restore_training_modes(modes)
    return features if features is not None else np.zeros((0, backbone.num_features), np.float32)


def extract_features(
    backbone: Backbone,
    dataset: Dataset,
    *,
    cache: FeatureCache | None = None,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    progress: bool = True,
    stats: ExtractionStats | None = None,
    runtime: str = "auto",
    examples_planned: int | None = None,
) -> np.ndarray:
    """Pooled features ``(N, backbone.num_features)`` of every example, reading and filling ``cache``.

    ``runtime`` is ``"auto"``, ``"torch"`` or ``"onnx"`` (see :func:`run_backbone`); all fill the same cache entries,
    since they compute the same features to about 1e-5. ``"auto"`` decides on the number of examples not yet cached
    (all of them in one decision, not chunk by chunk), or on ``examples_planned`` when the caller computes more
    over several calls (a prediction streamed in blocks). Several processes:
    :func:`~transferkit.features.sharded.extract_features_sharded`.
    """
    start = time.perf_counter()
    stats = stats if stats is not None else ExtractionStats()
    stats.total = len(dataset)
    if cache is None:
        features = run_backbone(backbone, dataset, batch_size=batch_size, device=device, num_workers=num_workers,
                                progress=progress, runtime=runtime, examples_planned=examples_planned)
        stats.computed, stats.from_cache = len(dataset), 0
    else:
        key = backbone.cache_key()
        keys = dataset.item_keys()
        features, hits = cache.lookup(key, keys)
        missing = np.flatnonzero(~hits)
        if len(missing):
            # Each distinct missing example runs once, even if it repeats in the data.
            first_of: dict[str, int] = {}
            for i in missing:
                first_of.setdefault(keys[i], int(i))
            unique = np.fromiter(first_of.values(), dtype=np.int64)
            # In chunks: each is cached as soon as it is computed (an interrupted run keeps what it finished), and
            # only one chunk's features exist twice in memory.
            for first in range(0, len(unique), CACHE_CHUNK):
                part = unique[first:first + CACHE_CHUNK]
                computed = run_backbone(backbone, dataset.subset(part), batch_size=batch_size, device=device,
                                        num_workers=num_workers, progress=progress, runtime=runtime,
                                        examples_planned=examples_planned or len(unique), description=f"extracting features ({first + len(part):,} of {len(unique):,})"
                                        if len(unique) > CACHE_CHUNK else "extracting features")
                require_finite_features(computed, backbone, dataset.subset(part))  # never cached
                cache.store(key, [keys[i] for i in part], computed, meta=backbone.describe())
                if features is None:
                    features = np.zeros((len(dataset), computed.shape[1]), dtype=np.float32)
                features[part] = computed
                del computed
            # copies of an example computed once take its features
            repeats = np.asarray([i for i in missing if first_of[keys[i]] != i], dtype=np.int64)
            if len(repeats):
                features[repeats] = features[[first_of[keys[i]] for i in repeats]]
            stats.computed = len(unique)
        else:
            stats.computed = 0
        stats.from_cache = int(hits.sum())
    require_finite_features(features, backbone, dataset)
    stats.seconds = time.perf_counter() - start
    log.info("features of %s: %d examples (%d from cache, %d computed) in %.1f s", dataset.origin, stats.total,
             stats.from_cache, stats.computed, stats.seconds)
    return features


def require_finite_features(features: np.ndarray, backbone: Backbone, dataset: Dataset) -> None:
    """A :class:`~transferkit.errors.BackboneError` naming the examples when any feature is NaN or infinite:
    a probe fitted on them, or a model saved from them, would predict NaN."""
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        from transferkit.errors import BackboneError

        rows = np.flatnonzero(bad)
        first = dataset.row_ids[int(rows[0])]
        raise BackboneError(
            f"backbone '{backbone.name}' gave NaN or infinite features for {len(rows)} of {len(dataset)} examples "
            f"of {dataset.origin} (first: {first}). Its weights hold NaN or infinite values (a diverged checkpoint, "
            "--init-from or a local model folder), or half precision overflowed; check the backbone's weights, or "
            "run on --device cpu.")


class _Progress:
    """A rich progress bar on a terminal; a few plain log lines otherwise (no per-step spam in CI logs)."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self.total, self.done, self.description = total, 0, description
        self.enabled = enabled and total > 0
        self.bar = None
        self.next_log = 0.25
        self.start = time.perf_counter()
        if self.enabled and sys.stderr.isatty():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(description, total=total)

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, advance=n)
        elif self.done / self.total >= self.next_log and self.done < self.total:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            log.info("%s: %d/%d (%.0f/s)", self.description, self.done, self.total, rate)
            self.next_log += 0.25

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
