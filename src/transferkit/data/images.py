"""Image decoding with the conversions every backbone needs: any colour mode in, 8-bit RGB out."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})

# Pillow's default guard is about 89 megapixels; anything larger is refused with a clear message instead of a
# DecompressionBombWarning, because decoding it would take gigabytes of memory.
MAX_IMAGE_PIXELS = 89_478_485


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit and floating-point greyscale is rescaled to 0..255 by its own range; an alpha channel is composited on
    white (transparent regions of cut-out photos are background, not black).
    """
    if image.mode == "RGB":
        return image
    if image.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = np.zeros_like(array) if high <= low else (array - low) / (high - low) * 255.0
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "PA"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def check_image_file(path: str | Path) -> str | None:
    """Return a problem description if ``path`` is not a decodable image, else ``None`` (cheap: header only)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "is an empty (zero-byte) file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    return f"is {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} allowed; downscale it first"
                image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"is larger than the {MAX_IMAGE_PIXELS:,} pixels allowed; downscale it first"
    except Exception as exc:  # Pillow raises many types for broken files
        return f"is not a readable image ({type(exc).__name__}: {exc})"
    return None


def load_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` fully as RGB; a file that fails here (for example truncated) gets a DataError naming it."""
    try:
        with Image.open(path) as image:
            if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: image is {image.size[0]}x{image.size[1]} pixels; downscale it first.")
            image.load()
            return to_rgb(image)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{path}: the image cannot be decoded ({type(exc).__name__}: {exc}). Remove or re-save the file."
        ) from exc


def array_to_rgb(array: np.ndarray) -> Image.Image:
    """An ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array as an RGB image."""
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return to_rgb(Image.fromarray(array))
