"""Image decoding and preprocessing with Pillow + numpy (no torchvision: PyPI's torchvision
does not import beside the pinned torch).

Every image, whatever its mode, becomes RGB the same way: EXIF orientation applied,
transparency composited on white (emoji and logos are drawn on transparent canvases; black
behind them would change what the backbone sees), palette/CMYK/grayscale converted.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Images above this many pixels are refused before decoding (decompression bombs).
MAX_PIXELS = 50_000_000
# Large images are reduced at decode time (JPEG draft mode) and then thumbnailed to this side,
# so a 10k x 10k photo costs about as much as a 1k one.
DECODE_SIDE = 1024


class ImageError(ValueError):
    """An image that cannot be used: unreadable, truncated, empty or too large."""


def open_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode a file path or raw bytes into an RGB image ready for `to_array`."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes) and not source:
        raise ImageError("empty image (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"{name}: {width}x{height} exceeds {max_pixels} pixels")
            image.draft("RGB", (DECODE_SIDE, DECODE_SIDE))
            image.load()
    except ImageError:
        raise
    except FileNotFoundError as err:
        raise ImageError(f"{name}: no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{name}: not a readable image ({err})") from err
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if max(image.size) > DECODE_SIDE:
        image.thumbnail((DECODE_SIDE, DECODE_SIDE), Image.Resampling.BILINEAR)
    return image.convert("RGB")


def to_array(image: Image.Image, size: int = 224) -> np.ndarray:
    """Resize (shorter side to `size`), centre-crop, scale to [-1, 1]: float32 (3, size, size).

    EfficientNet-Lite was trained on inputs normalised as (x - 0.5) / 0.5.
    """
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return ((pixels - 0.5) / 0.5).transpose(2, 0, 1).copy()
