"""A detector as one ONNX file, post-processing inside, checked against PyTorch.

The file takes one image ``image``: ``(3, H, W)`` float32 RGB in 0..1 of the size it was exported for (the model
folder's input size unless another is given), and returns ``boxes`` ``(n, 4)`` (x1, y1, x2, y2 in the input's
pixels), ``scores`` ``(n,)`` and ``labels`` ``(n,)`` (indices into the classes, which the file's metadata lists as
JSON under ``classes``). Everything FCOS does after the network is in the graph: resizing and normalisation, box
decoding, the score threshold (0.05), per-class non-maximum suppression and the 100 best detections, traced by
``torch.onnx.export`` for that input size. Images of another size are refused; resize them first (the boxes are then
in the resized image's pixels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.errors import ConfigError, ExportError


@dataclass
class DetectorParity:
    """ONNX Runtime against PyTorch on ``images`` inputs: the largest box and score differences (matched in
    order), and whether every image gave as many detections in both."""

    images: int
    max_box_diff: float
    max_score_diff: float
    same_counts: bool


def export_detector(model: Any, path: str | Path, *, size: tuple[int, int] | None = None,
                    images: Sequence[Any] | None = None, tolerance: float = 1e-3) -> Any:
    """Write ``model`` (a :class:`~transferkit.models.detector.DetectionModel`) to ``path`` for inputs of ``size``
    ``(height, width)`` (default: the square input size it trained at) and check it on ``images`` (paths or arrays,
    resized to that size; default two random images). Returns the
    :class:`~transferkit.compress.onnx.OnnxExport`; a difference above ``tolerance`` (boxes in pixels, scores), or
    another number of detections, is an ExportError and the file is removed."""
    import time

    import onnx
    import torch

    from transferkit.compress.onnx import OnnxExport, ParityReport

    started = time.perf_counter()
    height, width = size or (int(model.spec["image_size"]),) * 2
    network = model.network.cpu().eval()
    example = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    path = Path(path)
    with torch.no_grad():
        torch.onnx.export(network, ([example],), str(path), opset_version=17, dynamo=False, input_names=["image"],
                          output_names=["boxes", "scores", "labels"])
    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = "classes", json.dumps(model.classes)
    onnx.save(graph, str(path))
    source = "the images given" if images is not None else "random images"
    if images is None:
        images = [torch.rand(3, height, width, generator=torch.Generator().manual_seed(1)).numpy() for _ in range(2)]
    parity = check_detector_parity(model, path, images)
    if not parity.same_counts or max(parity.max_box_diff, parity.max_score_diff) > tolerance:
        path.unlink()
        raise ExportError(f"{path}: ONNX Runtime differs from PyTorch (boxes by {parity.max_box_diff:.2e}, scores by "
                          f"{parity.max_score_diff:.2e}, same counts: {parity.same_counts}); nothing was written.")
    report = ParityReport(max(parity.max_box_diff, parity.max_score_diff), tolerance, parity.images, [1], source)
    return OnnxExport(path, f"boxes, scores, labels for a {height}x{width} image (post-processing inside)",
                      ["image"], report, time.perf_counter() - started, {"classes": json.dumps(model.classes)})


class OnnxDetector:
    """Detections from an exported file with ONNX Runtime (CPU), in the records of
    :meth:`~transferkit.models.detector.DetectionModel.detect`."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        self.size = (int(shape[1]), int(shape[2]))
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.classes = json.loads(metadata.get("classes", "[]"))

    def detect(self, images: Sequence[Any], score_threshold: float = 0.05) -> list[dict[str, np.ndarray]]:
        out = []
        for item, image in zip(images, _arrays(images)):
            if tuple(image.shape[1:]) != self.size:
                raise ConfigError(f"{item if isinstance(item, (str, Path)) else 'an input image'}: "
                                  f"{image.shape[1]}x{image.shape[2]} pixels, but {self.path} takes "
                                  f"{self.size[0]}x{self.size[1]}; resize it, or export for that size.")
            boxes, scores, labels = self.session.run(None, {"image": image})
            keep = scores >= score_threshold
            out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep].astype(np.int64)})
        return out


def _arrays(images: Sequence[Any]) -> list[np.ndarray]:
    from transferkit.models.detector import load_images

    return [np.asarray(i, dtype=np.float32) if isinstance(i, np.ndarray) and i.ndim == 3 and i.shape[0] == 3
            else load_images([i])[0].numpy() for i in images]


def check_detector_parity(model: Any, path: str | Path, images: Sequence[Any]) -> DetectorParity:
    """Run ``images`` (resized to the file's input size) through PyTorch and the ONNX file and compare their
    detections."""
    import torch
    from torch.nn.functional import interpolate

    runner = OnnxDetector(path)
    arrays = [a if tuple(a.shape[1:]) == runner.size else
              interpolate(torch.from_numpy(a)[None], size=runner.size, mode="bilinear")[0].numpy()
              for a in _arrays(images)]
    with torch.no_grad():
        reference = model.network.cpu().eval()([torch.from_numpy(a) for a in arrays])
    found = runner.detect(arrays, score_threshold=0.0)
    box_diff = score_diff = 0.0
    same = True
    for ref, got in zip(reference, found):
        if len(ref["scores"]) != len(got["scores"]):
            same = False
            continue
        if len(got["scores"]):
            box_diff = max(box_diff, float(np.abs(ref["boxes"].numpy() - got["boxes"]).max()))
            score_diff = max(score_diff, float(np.abs(ref["scores"].numpy() - got["scores"]).max()))
    return DetectorParity(len(arrays), box_diff, score_diff, same)
