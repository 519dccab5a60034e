"""The accuracy / size / latency trade-off of a model and its compressed variants, measured side by side.

:func:`transferkit.workflows.compress.compress_model` (``transferkit compress MODEL --data TEST``; this module
holds its table, timers and checks) makes the variants of a saved model and
measures every one on the same test examples, with the same thread count, in one run:

==================  ==============  =====================================================================
variant             runtime         what it is
==================  ==============  =====================================================================
``float``           PyTorch eager   the model as saved
``onnx``            ONNX Runtime    the float32 export (parity-checked against PyTorch on the test inputs)
``int8``            ONNX Runtime    int8 quantization of the export (dynamic for text, static QDQ with
                                    calibration data for images; :mod:`transferkit.compress.quantize`)
``magnitude``       PyTorch eager   global magnitude pruning (``magnitude_amount`` of the weights zeroed),
                                    then a short recovery fine-tune when training data is given
``structured``      PyTorch eager   channels / feed-forward neurons (and ``heads``) removed, then recovery
==================  ==============  =====================================================================

Columns: test accuracy (and its difference from ``float``), file size (safetensors for PyTorch variants, the
``.onnx`` file for ONNX Runtime ones), parameters (non-zero ones for magnitude pruning, whose file does not
shrink), and the median CPU latency of one forward pass at batch 1 and batch 32 (inputs already prepared; a
warm-up run first; the variants take turns, round after round, so that a change of load on the machine affects
them alike). Every variant that is a model is saved as a model folder under ``output``
(``load_model`` loads it; ONNX variants hold their ``model.onnx`` for ``predict --runtime onnx``). The table is
returned, printed by the CLI, and saved as ``tradeoff.json`` in the model folder and in ``output``.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")

VARIANTS = ("float", "onnx", "int8", "magnitude", "structured")
DEFAULT_VARIANTS = VARIANTS
LATENCY_BATCHES = (1, 32)
TRADEOFF_FILE = "tradeoff.json"


@dataclass
class VariantRow:
    """One row of the trade-off table."""

    name: str
    runtime: str
    description: str
    accuracy: float
    size_bytes: int
    parameters: int
    latency_ms: dict[str, float]
    accuracy_change: float = 0.0
    size_ratio: float = 1.0
    path: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TradeoffReport:
    """The table of :func:`compress_model` (rows in the order made) and how it was measured."""

    model: str
    test: str
    n_test: int
    threads: int
    rows: list[VariantRow]
    seconds: float = 0.0
    output: str | None = None
    measure: str = "accuracy"  # what the accuracy column holds: the model task's measure (r2, example_f1)

    def row(self, name: str) -> VariantRow:
        return next(r for r in self.rows if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "test": self.test, "n_test": self.n_test, "threads": self.threads,
                "seconds": self.seconds, "output": self.output, "measure": self.measure,
                "rows": [r.to_dict() for r in self.rows]}

    def table(self) -> str:
        """A plain-text table: one line per variant."""
        header = (f"{'variant':<11} {'runtime':<13} {self.measure[:10]:>10} {'change':>7} {'size MB':>8} {'size':>6} "
                  f"{'params':>11} {'ms @1':>8} {'ms @32':>8}")
        lines = [header, "-" * len(header)]
        for r in self.rows:
            lines.append(f"{r.name:<11} {r.runtime:<13} {r.accuracy:10.4f} {100 * r.accuracy_change:+6.1f}p "
                         f"{r.size_bytes / 1e6:8.2f} {100 * r.size_ratio:5.0f}% {r.parameters:>11,} "
                         f"{r.latency_ms.get('1', float('nan')):8.2f} {r.latency_ms.get('32', float('nan')):8.2f}")
        lines.append(f"({self.n_test} test examples of {self.test}; latency: median over interleaved rounds, "
                     f"{self.threads} thread{'s' if self.threads != 1 else ''}; size relative to float)")
        return "\n".join(lines)


def latency_batches(backbone: Any, data: Dataset, sizes: Sequence[int] = LATENCY_BATCHES) -> dict[int, Any]:
    """Collated batches of each size from ``data``'s first examples (repeated when there are fewer)."""
    out = {}
    for size in sizes:
        items = [data.items[i % len(data)] for i in range(size)]
        out[size] = backbone.collate([backbone.prepare(item) for item in items])
    return out


def pytorch_calls(model: torch.nn.Module, batches: dict[int, Any]) -> dict[str, Callable[[], Any]]:
    """One eager PyTorch forward pass per batch size: ``model(batch)`` in inference mode."""
    model.eval()

    def call(batch: Any) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return model(batch)
        return run

    return {str(size): call(batch) for size, batch in batches.items()}


def onnx_calls(session: Any, batches: dict[int, Any], modality: str) -> dict[str, Callable[[], Any]]:
    """One ONNX Runtime ``session.run`` per batch size."""
    from transferkit.backbones.onnx_graph import onnx_feed

    feeds = {str(size): onnx_feed(batch, modality) for size, batch in batches.items()}
    return {size: (lambda feed=feed: session.run(None, feed)) for size, feed in feeds.items()}


def interleaved_latency(timers: dict[str, dict[str, Callable[[], Any]]], *, min_rounds: int = 5,
                        min_seconds: float = 2.0, max_rounds: int = 50) -> dict[str, dict[str, float]]:
    """Median milliseconds of every call, measured in rounds that run each variant and batch size once in turn
    (after one warm-up call each), so that a change of machine load affects every variant alike; at least
    ``min_rounds`` rounds and ``min_seconds`` in all, at most ``max_rounds``."""
    for calls in timers.values():
        for call in calls.values():
            call()
    times: dict[str, dict[str, list[float]]] = {n: {size: [] for size in calls} for n, calls in timers.items()}
    start, rounds = time.perf_counter(), 0
    while rounds < min_rounds or (time.perf_counter() - start < min_seconds and rounds < max_rounds):
        for name, calls in timers.items():
            for size, call in calls.items():
                begin = time.perf_counter()
                call()
                times[name][size].append(time.perf_counter() - begin)
        rounds += 1
    return {name: {size: round(1000.0 * statistics.median(values), 3) for size, values in sizes.items()}
            for name, sizes in times.items()}


def state_size_bytes(model: torch.nn.Module, *, include_source_classifier: bool = False) -> int:
    """Bytes of the model's weights as one safetensors file (the backbone's unused source classifier left out
    unless asked for)."""
    from safetensors.torch import save

    skip: set[str] = set()
    if not include_source_classifier:
        inner = getattr(model.backbone, "model", None)
        classifier = inner.get_classifier() if inner is not None and hasattr(inner, "get_classifier") else None
        if isinstance(classifier, torch.nn.Module):
            names = {id(p) for p in classifier.parameters()}
            skip = {f"backbone.{n}" for n, p in model.backbone.named_parameters() if id(p) in names}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in skip}
    return len(save(tensors))


def check_compress_output(output: Path, overwrite: bool, *, model_dir: Path,
                          inputs: Sequence[tuple[str, Any]] = ()) -> Path:
    """The variants' folder, checked before any work (a :class:`ConfigError` naming ``--output`` otherwise): not a
    file, not the model folder itself nor one of the data inputs, writable; a folder that holds earlier variants
    (a ``tradeoff.json``) is replaced only with ``overwrite``, a folder holding anything else is never written."""
    from transferkit._io import check_location, check_not_input, folder_is_empty
    from transferkit.models.folder import describe_folder, is_model_folder

    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} exists and is a file; give a folder path (a new or empty folder).")
    check_not_input(output, [("model folder", model_dir), *inputs], allow_inside=("model folder",))
    check_location(output)
    if not folder_is_empty(output):
        if is_model_folder(output) or not (output / TRADEOFF_FILE).is_file():
            raise ConfigError(f"--output {output} is not empty: it holds {describe_folder(output)}, not compressed "
                              "variants; nothing in it is replaced, even with --overwrite. Choose a new folder.")
        if not overwrite:
            raise ConfigError(f"--output {output} already holds compressed variants (it is not empty); pass "
                              "--overwrite to replace them (the old ones stay until the new ones are complete), or "
                              "choose another --output.")
    return output


def read_tradeoff(model_dir: str | Path) -> dict[str, Any] | None:
    """The trade-off table saved in a model folder by :func:`compress_model` (for reports), or ``None``."""
    import json

    path = Path(model_dir) / TRADEOFF_FILE
    return json.loads(path.read_text()) if path.is_file() else None


