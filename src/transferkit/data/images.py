"""Image decoding with the conversions every backbone needs: any colour mode in, 8-bit RGB out."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from transferkit.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".apng", ".bmp", ".dib", ".gif",
                            ".tif", ".tiff", ".webp", ".avif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga"})
#: Image files Pillow cannot decode: skipped with a warning that says to convert them (not just "not an image").
UNSUPPORTED_IMAGE_SUFFIXES = frozenset({".heic", ".heif", ".svg", ".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf",
                                        ".raf", ".rw2"})

# Pillow's default guard is about 89 megapixels; anything larger is refused with a clear message instead of a
# DecompressionBombWarning, because decoding it would take gigabytes of memory.
MAX_IMAGE_PIXELS = 89_478_485


_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa"})
_EXIF_ORIENTATION = 0x0112


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned the way its EXIF orientation tag says it is shown (phone photos are often stored sideways
    with a tag instead of rotated pixels); unchanged when there is no tag or the tag is unreadable."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block: the pixels are still usable as stored
        return image
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return image
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded Pillow image as upright 8-bit RGB: what every backbone, baseline and exported model sees.

    The EXIF orientation is applied first (:func:`upright`), so that training, prediction, the HTTP service and
    export checks all see a photo the way a viewer shows it. 16-bit, 32-bit and floating-point greyscale is
    rescaled to 0..255 by its own range; an alpha channel (RGBA, LA, a palette with a transparent colour, also
    premultiplied) is composited on white (transparent regions of cut-out photos are background, not black);
    CMYK, YCbCr, LAB, HSV, 1-bit and palette images are converted by Pillow. Of an animated or multi-page file
    only the frame Pillow has loaded (the first) is used.
    """
    image = upright(image)
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        array = np.asarray(image, dtype=np.float64)
        finite = np.isfinite(array)
        if not finite.all():
            array = np.where(finite, array, np.nan)
        low = float(np.nanmin(array)) if finite.any() else 0.0
        high = float(np.nanmax(array)) if finite.any() else 0.0
        scaled = np.zeros_like(array) if high <= low else (np.nan_to_num(array, nan=low) - low) / (high - low) * 255.0
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "La":  # premultiplied grey + alpha: over white is value + (255 - alpha)
        grey, alpha = (np.asarray(band, dtype=np.int32) for band in image.split())
        return Image.fromarray(np.clip(grey + 255 - alpha, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def check_image_file(path: str | Path) -> str | None:
    """Return a problem description if ``path`` is not a decodable image, else ``None`` (cheap: the header, and the
    end of a JPEG file to catch one cut short)."""
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
                if width == 0 or height == 0:
                    return f"is {width}x{height} pixels: an image without pixels"
                image_format = image.format
                image.verify()
        if image_format in ("JPEG", "MPO") and not _jpeg_has_end(path, size):
            return "is truncated (its JPEG data has no end marker); re-save or remove it"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"is larger than the {MAX_IMAGE_PIXELS:,} pixels allowed; downscale it first"
    except PermissionError:
        return "cannot be read (permission denied); give read access (chmod u+r) or remove it"
    except Exception as exc:  # Pillow raises many types for broken files
        return f"is not a readable image ({type(exc).__name__}: {exc})"
    return None


def _jpeg_has_end(path: Path, size: int) -> bool:
    """Whether a JPEG file holds an end-of-image marker in its last megabyte (a file cut short by a failed copy or
    download has none; cameras may append data after it, hence not only the last two bytes)."""
    with open(path, "rb") as handle:
        handle.seek(max(0, size - (1 << 20)))
        return b"\xff\xd9" in handle.read()


def load_rgb(path: str | Path, at_least: tuple[int, int] | None = None) -> Image.Image:
    """Decode ``path`` as RGB; a file that fails here (for example truncated) gets a DataError naming it.

    ``at_least = (width, height)``: the caller only needs that many pixels, so a JPEG may be decoded at 1/2, 1/4 or
    1/8 scale (in the DCT domain, several times faster on photos) as long as both sides stay at least that large.
    Other formats are decoded fully.
    """
    try:
        with Image.open(path) as image:
            if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: image is {image.size[0]}x{image.size[1]} pixels; downscale it first.")
            if at_least is not None and image.format == "JPEG":
                side = max(at_least)  # the EXIF orientation may swap width and height
                image.draft(image.mode, (side, side))
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
