"""Int8 quantization for CPU inference, done by ONNX Runtime on the exported model.

Why ONNX Runtime: ``torch.ao.quantization.quantize_dynamic`` still runs in torch 2.14 but is deprecated (its
replacement, torchao, was slower than float32 on the CPUs measured here), while ONNX Runtime's int8 kernels are
maintained and were both about 4x smaller and about 2x faster than float32 for Linear-heavy models. Two methods:

- ``dynamic`` (text encoders and other Linear-heavy models): weights of ``MatMul`` / ``Gemm`` and embedding tables
  (``Gather``) stored as int8, the activations' scale computed per batch at run time; no calibration data. Each
  weight matrix shrinks 4x.
- ``static`` (convolutional networks): QDQ format, weights int8 per output channel, activation ranges fixed
  beforehand from ``calibration`` examples run through the float model (min-max). This is the path for
  convolutions: dynamic quantization of ``Conv`` makes ``ConvInteger`` nodes that ONNX Runtime runs slowly.

``auto`` picks ``dynamic`` for text and ``static`` for images (``dynamic`` when no calibration data is given,
with a warning). Nothing is assumed about accuracy: :func:`quantize_model` runs the float and the int8 file on the
check examples and reports the largest logit difference and how often the top class agrees;
:mod:`transferkit.compress.tradeoff` measures test accuracy.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from transferkit._io import keep_mode
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, ExportError
from transferkit.modalities import get_modality

log = logging.getLogger("transferkit")

METHODS = ("auto", "dynamic", "static")
#: Calibration examples used by static quantization at most (a few hundred give stable min-max ranges).
DEFAULT_CALIBRATION_EXAMPLES = 256


@dataclass
class QuantizationReport:
    """What :func:`quantize_model` wrote and how far the int8 file is from the float one on the check examples.

    ``agreement`` is the fraction of check examples whose top class is the same for both; ``max_abs_diff`` the
    largest absolute logit difference.
    """

    path: str
    float_path: str
    method: str
    size_bytes: int
    float_size_bytes: int
    calibration_examples: int
    check_examples: int
    agreement: float
    max_abs_diff: float
    seconds: float

    @property
    def size_ratio(self) -> float:
        return self.size_bytes / max(1, self.float_size_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size_ratio": round(self.size_ratio, 4)}


def resolve_method(method: str, modality: str, has_calibration: bool) -> str:
    """The method ``auto`` stands for (see the module docstring); checks the name."""
    if method not in METHODS:
        raise ConfigError(f"quantization method must be one of {', '.join(METHODS)}; got {method!r}.")
    if method == "static" and not has_calibration:
        raise ConfigError("static quantization needs calibration examples (--calibration DATA, a few hundred "
                          "examples of the model's input); or use --method dynamic.")
    if method != "auto":
        return method
    if not get_modality(modality).prefers_static_quantization:
        return "dynamic"
    if has_calibration:
        return "static"
    warnings.warn(f"quantization of an {modality} model without calibration data: dynamic int8 (weights only) is "
                  "used; give calibration data for static int8, which is faster for convolutions.", stacklevel=3)
    return "dynamic"


class _BatchReader:
    """ONNX Runtime's calibration reader over collated batches (``get_next`` returns input feeds, then None)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # pragma: no cover - not used by min-max calibration
        pass


def _preprocess(float_path: Path, out: Path) -> Path:
    """ONNX Runtime's recommended pre-processing (shape inference, graph optimisation) before quantization;
    the float file itself when that step fails (the quantizer then works on the plain graph)."""
    import contextlib
    import tempfile

    from onnxruntime.quantization import quant_pre_process

    # Both paths are made absolute before the working directory changes: a relative path would otherwise be read
    # and written inside the scratch folder, the step would fail, and quantization would silently work on the
    # unprepared graph (an int8 file about as large as the float one).
    source, target = float_path.resolve(), out.resolve()
    for symbolic in (True, False):  # symbolic shape inference fails on some dynamic text graphs; ONNX's then
        try:
            # When symbolic inference fails, ONNX Runtime dumps the half-inferred graph and its weights (hundreds
            # of MB) into the working directory: let it dump them into a folder that is then removed.
            with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
                quant_pre_process(str(source), str(target), skip_symbolic_shape=not symbolic)
            return out
        except Exception as exc:  # noqa: BLE001 - an optional optimisation step
            log.info("quantization pre-processing%s failed (%s: %s)", " with symbolic shapes" if symbolic else "",
                     type(exc).__name__, exc)
    warnings.warn(f"quantization pre-processing (shape inference, graph optimisation) failed for {float_path}; the "
                  "int8 file is made from the plain graph and may be larger and slower.", stacklevel=3)
    return float_path


#: Ops that pool a feature map into the feature vector the head reads.
_POOLING_OPS = ("GlobalAveragePool", "ReduceMean", "GlobalMaxPool")


def float_nodes(onnx_path: str | Path) -> list[str]:
    """Names of the nodes of a convolutional graph that static quantization leaves in float: the first
    convolution (the stem, reading the input image) and the last pooling node with everything after it (the head).

    First and last layers are the most sensitive to int8 and hold the fewest weights. The stem reads normalised
    pixels whose range int8 covers coarsely; on EfficientNet-Lite0 (Fashion-MNIST, 64 px) keeping it in float took
    the accuracy loss from 1.3 to 0.5 points at the same size. Pooled feature vectors have per-dimension ranges
    that differ by orders of magnitude, and the head's standardisation ``(x - mean) / scale`` multiplies the rounding
    error of the small ones. Empty for graphs without convolutions (text encoders)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if not convs:
        return []
    inputs = {i.name for i in graph.input}
    kept = [n.name for n in convs if inputs & set(n.input)] or [convs[0].name]
    pools = [n for n in graph.node if n.op_type in _POOLING_OPS]
    if not pools:
        return kept
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    frontier, seen = [pools[-1]], set(kept)
    while frontier:
        node = frontier.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        kept.append(node.name)
        for output in node.output:
            frontier.extend(readers.get(output, []))
    return kept


def quantize_onnx(float_path: str | Path, output: str | Path, *, method: str,
                  calibration_feeds: Iterable[dict[str, np.ndarray]] | None = None, per_channel: bool = True,
                  signed_activations: bool = False) -> Path:
    """Write the int8 version of the float ONNX file ``float_path`` to ``output`` (``dynamic`` or ``static``).

    ``calibration_feeds`` (static only): ONNX Runtime input feeds ``{name: array}``, e.g. from
    :func:`calibration_feeds`. ``signed_activations`` (static only): int8 symmetric activations (S8S8) instead of
    uint8 asymmetric ones (U8S8); on the x86 CPU measured here S8S8 lost less accuracy on EfficientNet-Lite0 but ran
    about 3x slower. The stem and the head stay in float (:func:`float_nodes`).
    Written atomically.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    float_path, output = Path(float_path).absolute(), Path(output).absolute()
    if method not in ("dynamic", "static"):
        raise ConfigError(f"method must be dynamic or static; got {method!r}.")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".quantize-") as tmp:
        source = _preprocess(float_path, Path(tmp) / "prepared.onnx")
        partial = Path(tmp) / "int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "dynamic":
                quantize_dynamic(str(source), str(partial), weight_type=QuantType.QInt8, per_channel=per_channel,
                                 op_types_to_quantize=["MatMul", "Gemm", "Attention", "Gather"])
            else:
                feeds = list(calibration_feeds or [])
                if not feeds:
                    raise ConfigError("static quantization needs at least one calibration batch.")
                quantize_static(str(source), str(partial), _BatchReader(feeds), quant_format=QuantFormat.QDQ,
                                per_channel=per_channel, nodes_to_exclude=float_nodes(source),
                                activation_type=QuantType.QInt8 if signed_activations else QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                                extra_options={"ActivationSymmetric": signed_activations, "WeightSymmetric": True})
        keep_mode(output, partial)
        os.replace(partial, output)
    return output



def calibration_feeds(backbone: Any, data: Dataset, *, max_examples: int = DEFAULT_CALIBRATION_EXAMPLES,
                      batch_size: int = 32, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Input feeds of up to ``max_examples`` examples of ``data`` (a seeded sample), prepared by ``backbone``."""
    from transferkit.backbones.onnx_graph import onnx_feed
    from transferkit.features.extract import batches_in_order

    if data.modality != backbone.modality:
        raise ConfigError(f"{data.origin}: holds {data.modality} data, but the model takes {backbone.modality} input; "
                          "give calibration data of the model's kind.")
    if len(data) == 0:
        raise ConfigError(f"{data.origin}: no calibration examples.")
    if len(data) > max_examples:
        chosen = np.sort(np.random.default_rng(seed).choice(len(data), size=max_examples, replace=False))
        data = data.subset(chosen)
    loader, _ = batches_in_order(backbone, data, batch_size=batch_size)
    return [onnx_feed(batch, backbone.modality) for batch in loader]


def compare_sessions(float_path: str | Path, int8_path: str | Path,
                     feeds: list[dict[str, np.ndarray]]) -> tuple[float, float, int]:
    """``(top-1 agreement, max abs logit difference, examples)`` between two ONNX files on the same feeds."""
    from transferkit.backbones.onnx_graph import onnx_session

    reference, quantized = onnx_session(float_path), onnx_session(int8_path)
    same, total, worst = 0, 0, 0.0
    for feed in feeds:
        a = reference.run(None, feed)[0]
        b = quantized.run(None, feed)[0]
        same += int(np.sum(a.argmax(axis=1) == b.argmax(axis=1)))
        total += len(a)
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0)
    return (same / total if total else float("nan")), worst, total


def quantize_model(model: Any, output: str | Path, *, method: str = "auto", calibration: Dataset | None = None,
                   check: Dataset | None = None, float_path: str | Path | None = None,
                   max_calibration: int = DEFAULT_CALIBRATION_EXAMPLES, per_channel: bool = True,
                   signed_activations: bool = False, seed: int = 0) -> QuantizationReport:
    """Export ``model`` (a :class:`~transferkit.models.model.TransferModel`) to ONNX (parity-checked, unless
    ``float_path`` names an export of it already) and write its int8 version to ``output``.

    ``calibration`` feeds static quantization; ``check`` (default: the calibration data, else generated inputs)
    gives the agreement figures of the report.
    """
    from transferkit.backbones.onnx_graph import onnx_feed, sample_batches
    from transferkit.compress.onnx import export_model

    start = time.perf_counter()
    output = Path(output)
    if output.is_dir():
        raise ConfigError(f"output {output} is a folder; give a file path such as {output / 'model.int8.onnx'}.")
    resolved = resolve_method(method, model.modality, calibration is not None and len(calibration) > 0)
    with tempfile.TemporaryDirectory() as tmp:
        if float_path is None:
            float_path = Path(tmp) / "model.onnx"
            export_model(model, float_path, data=check if check is not None else calibration)
        float_path = Path(float_path)
        if not float_path.is_file():
            raise ExportError(f"{float_path}: no such ONNX file.")
        feeds = calibration_feeds(model.backbone, calibration, max_examples=max_calibration, seed=seed) \
            if resolved == "static" else None
        quantize_onnx(float_path, output, method=resolved, calibration_feeds=feeds, per_channel=per_channel,
                      signed_activations=signed_activations)
        if check is not None:
            check_feeds = calibration_feeds(model.backbone, check, max_examples=max_calibration, seed=seed + 1)
        elif feeds:
            check_feeds = feeds
        else:
            batches, _ = sample_batches(model.backbone)
            check_feeds = [onnx_feed(b, model.modality) for b in batches]
        agreement, worst, n = compare_sessions(float_path, output, check_feeds)
        float_size = float_path.stat().st_size
    report = QuantizationReport(str(output), str(float_path), resolved, output.stat().st_size, float_size,
                                sum(len(next(iter(f.values()))) for f in feeds) if feeds else 0, n,
                                round(agreement, 4), worst, round(time.perf_counter() - start, 2))
    log.info("int8 (%s) %s: %.1f MB (%.0f%% of float), top-1 agreement with float %.3f on %d examples",
             resolved, output, report.size_bytes / 1e6, 100 * report.size_ratio, agreement, n)
    return report
