"""Explanations over a 2-D input: an image's pixels ``(3, H, W)`` or a spectrogram's ``(frames, bands)``.

Methods (captum): ``gradcam`` (Grad-CAM, Selvaraju et al. 2017: the backbone's last feature map weighted by the
spatial mean of its gradients, ReLU, upsampled to the input), ``integrated-gradients`` (Sundararajan et al. 2017:
gradients averaged on the straight path from a baseline input, times the input minus the baseline; absolute value,
summed over colour channels) and ``smoothgrad`` (Smilkov et al. 2017: absolute gradients averaged over noisy copies).
The baseline, also what the faithfulness curves put in place of a removed cell, is the normalised mean colour for
images (zero after normalisation) and silence (the spectrogram's minimum) for audio.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch

from transferkit.errors import ConfigError
from transferkit.explanations.base import Explainer, Prepared, Rendering, Units

#: Faithfulness curves remove cells of about this many per side (a 224-pixel image: 16 x 16 cells of 14 pixels).
CELLS_PER_SIDE = 16


class GridExplainer(Explainer):
    """``channels``: True when the input has a leading channel axis (images); ``fill``: ``"zero"`` or ``"min"``, the
    value of a removed cell."""

    def __init__(self, *, channels: bool, fill: str) -> None:
        self.channels = channels
        self.fill = fill

    def available(self, network: Any) -> dict[str, str]:
        if network.feature_map is None:
            return {"gradcam": "it needs the single spatial feature map of one backbone (this model has none: an "
                               "ensemble, a stacked model, or a backbone without convolutional features)"}
        return {}

    def prepare(self, backbone: Any, item: Any) -> Prepared:
        x = backbone.collate([backbone.prepare(item)]).float()
        if x.dim() != (4 if self.channels else 3):
            raise ConfigError(f"explain: backbone {backbone.name} takes input of shape {tuple(x.shape[1:])}, not a "
                              "2-D grid (a spectrogram or an image); attributions over time and frequency need a "
                              "backbone whose input is a spectrogram (such as aisfx).")
        return Prepared(x.contiguous(), {"preprocessing": backbone.preprocessing})

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x) if self.fill == "zero" else torch.full_like(x, float(x.detach().min()))

    def attributions(self) -> dict[str, Any]:
        return {"integrated-gradients": self._integrated_gradients, "gradcam": self._gradcam,
                "smoothgrad": self._smoothgrad}

    def _gradcam(self, network: Any, prepared: Prepared, target: int, options: Any) -> np.ndarray:
        from captum.attr import LayerAttribution, LayerGradCam

        x = prepared.batch.detach().clone().requires_grad_(True)
        cam = LayerGradCam(network, network.feature_map).attribute(x, target=target, relu_attributions=True)
        heat = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")[0, 0]
        return self._as_map(heat)

    def _integrated_gradients(self, network: Any, prepared: Prepared, target: int, options: Any) -> np.ndarray:
        from captum.attr import IntegratedGradients

        x = prepared.batch.detach().clone().requires_grad_(True)
        heat = IntegratedGradients(network).attribute(
            x, baselines=self._baseline(x), target=target, n_steps=options.steps,
            internal_batch_size=options.batch_size).detach().abs()[0]
        return self._as_map(heat)

    def _smoothgrad(self, network: Any, prepared: Prepared, target: int, options: Any) -> np.ndarray:
        from captum.attr import NoiseTunnel, Saliency

        x = prepared.batch.detach().clone().requires_grad_(True)
        torch.manual_seed(options.seed)
        spread = float(x.detach().max() - x.detach().min()) or 1.0
        heat = NoiseTunnel(Saliency(network)).attribute(
            x, nt_type="smoothgrad", nt_samples=options.samples, nt_samples_batch_size=options.batch_size,
            stdevs=options.noise * spread, target=target).detach().abs()[0]
        return self._as_map(heat)

    def _as_map(self, heat: torch.Tensor) -> np.ndarray:
        """One non-negative value per cell of the grid (colour channels summed)."""
        if self.channels and heat.dim() == 3:
            heat = heat.sum(dim=0)
        return heat.float().cpu().numpy().clip(min=0)

    def units(self, prepared: Prepared, attribution: np.ndarray) -> Units:
        x = prepared.batch
        height, width = attribution.shape
        cell_h, cell_w = math.ceil(height / CELLS_PER_SIDE), math.ceil(width / CELLS_PER_SIDE)
        rows, cols = math.ceil(height / cell_h), math.ceil(width / cell_w)
        padded = np.zeros((rows * cell_h, cols * cell_w), dtype=np.float64)
        padded[:height, :width] = attribution
        scores = padded.reshape(rows, cell_h, cols, cell_w).sum(axis=(1, 3)).reshape(-1)
        baseline = self._baseline(x)

        def remove(masks: np.ndarray) -> torch.Tensor:
            cells = torch.from_numpy(masks.reshape(-1, rows, cols).astype(np.float32))
            pixels = cells.repeat_interleave(cell_h, dim=1).repeat_interleave(cell_w, dim=2)[:, :height, :width]
            pixels = pixels.to(x.device)
            if self.channels:
                pixels = pixels.unsqueeze(1)
            return x * (1 - pixels) + baseline * pixels

        return Units(scores, remove)

    def render(self, prepared: Prepared, attribution: np.ndarray, title: str) -> Rendering:
        if self.channels:
            return Rendering(png=_overlay_png(prepared, attribution))
        return Rendering(png=_spectrogram_png(prepared.batch[0].cpu().numpy(), attribution, title))


def _normalised(attribution: np.ndarray) -> np.ndarray:
    top = float(attribution.max())
    return attribution / top if top > 0 else np.zeros_like(attribution)


def _overlay_png(prepared: Prepared, attribution: np.ndarray) -> bytes:
    """The prepared image beside it with the heat map laid over it (``inferno``, 45 % opaque), at least 224 px."""
    from matplotlib import colormaps
    from PIL import Image

    pre = prepared.info["preprocessing"]
    mean = np.asarray(pre.get("mean", (0.0, 0.0, 0.0)), dtype=np.float32)
    std = np.asarray(pre.get("std", (1.0, 1.0, 1.0)), dtype=np.float32)
    image = (prepared.batch[0].detach().cpu().numpy().transpose(1, 2, 0) * std + mean).clip(0, 1)
    heat = colormaps["inferno"](_normalised(attribution))[..., :3]
    overlay = 0.55 * image + 0.45 * heat
    side = np.concatenate([image, np.ones((image.shape[0], max(1, image.shape[1] // 16), 3)), overlay], axis=1)
    picture = Image.fromarray((side * 255).round().astype(np.uint8))
    scale = max(1, math.ceil(224 / image.shape[0]))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _spectrogram_png(spectrogram: np.ndarray, attribution: np.ndarray, title: str) -> bytes:
    """The spectrogram (time across, frequency up) above its attribution over time and frequency."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4.5), dpi=100)
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.imshow(spectrogram.T, origin="lower", aspect="auto", cmap="magma")
    top.set_title(title, fontsize=9)
    top.set_ylabel("band")
    bottom.imshow(_normalised(attribution).T, origin="lower", aspect="auto", cmap="inferno", vmin=0, vmax=1)
    bottom.set_ylabel("band")
    bottom.set_xlabel("frame")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
