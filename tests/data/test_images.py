import io

import numpy as np
import pytest
from PIL import Image

from models.data.images import ImageError, open_image, to_array


def encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    rgb = open_image(encode(image))
    assert rgb.mode == "RGB"
    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "1", "I;16"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = Image.new(mode, (10, 6))
    assert open_image(encode(image, fmt)).mode == "RGB"


def test_palette_with_transparency_is_white() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    assert open_image(encode(image, transparency=0)).getpixel((1, 1)) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    assert open_image(encode(image, "JPEG", exif=exif)).size == (20, 40)


def test_tiny_and_large_images_give_fixed_arrays() -> None:
    tiny = open_image(encode(Image.new("RGB", (1, 1), (255, 255, 255))))
    large = open_image(encode(Image.new("RGB", (5000, 3000), (0, 0, 0)), "JPEG"))
    assert max(large.size) <= 1024  # reduced at decode time
    for image, value in ((tiny, 1.0), (large, -1.0)):
        array = to_array(image)
        assert array.shape == (3, 224, 224) and array.dtype == np.float32
        assert np.allclose(array, value, atol=0.02)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image"),
        (b"not an image at all", "not a readable image"),
        (encode(Image.new("RGB", (64, 64)), "PNG")[:60], "not a readable image"),
    ],
    ids=["zero-byte", "garbage", "truncated"],
)
def test_bad_bytes_raise_image_error(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        open_image(data)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = encode(Image.new("1", (12000, 12000)))  # 144 Mpx in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="exceeds"):
        open_image(bomb)
