"""A generated corpus of every kind of damage web data shows, each sample with the outcome it must get."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

RED = (200, 40, 40)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def picture(size=(48, 32), mode="RGB") -> Image.Image:
    image = Image.new("RGB", size, RED)
    for x in range(0, size[0], 4):  # some structure, so codecs have something to encode
        for y in range(0, size[1], 3):
            image.putpixel((x, y), (x * 5 % 256, y * 7 % 256, 90))
    return image.convert(mode) if mode != "RGB" else image


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return encode(picture((40, 20)), "JPEG", exif=exif.tobytes())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` pixels: a decompression bomb's header, without the bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (16, 16))
    image.putdata([i * 250 for i in range(256)])
    return encode(image, "PNG")


# key -> (image member name suffix or None, image bytes, caption bytes or None, json bytes or None, expected status,
#         a fragment the error column must contain)
def decodable() -> dict:
    jpeg = encode(picture(), "JPEG")
    return {
        "jpeg_baseline": ("jpg", jpeg),
        "jpeg_progressive": ("jpg", encode(picture(), "JPEG", progressive=True)),
        "jpeg_cmyk": ("jpg", encode(picture(mode="CMYK"), "JPEG")),
        "jpeg_exif_rotated": ("jpeg", exif_rotated_jpeg()),
        "png_rgba": ("png", encode(picture(mode="RGBA"), "PNG")),
        "png_palette": ("png", encode(picture().convert("P"), "PNG")),
        "png_gray": ("png", encode(picture(mode="L"), "PNG")),
        "png_16bit": ("png", sixteen_bit_png()),
        "webp": ("webp", encode(picture(), "WEBP")),
        "gif": ("gif", encode(picture().convert("P"), "GIF")),
        "bmp": ("bmp", encode(picture(), "BMP")),
        "tiff": ("tif", encode(picture(), "TIFF")),
        "one_pixel": ("png", encode(picture((1, 1)), "PNG")),
        "wide_4000x3": ("jpg", encode(picture((4000, 3)), "JPEG")),
    }


def broken() -> dict:
    jpeg = encode(picture((64, 64)), "JPEG")
    return {
        "random_bytes": ("jpg", random.Random(1).randbytes(3000), "undecodable_image", "cannot identify"),
        "zero_bytes": ("jpg", b"", "undecodable_image", "cannot identify"),
        "html_page": (
            "jpg",
            b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
            "undecodable_image",
            "cannot identify",
        ),
        "jpeg_cut_short": ("jpg", jpeg[: len(jpeg) // 2], "undecodable_image", "truncated"),
        "pixel_bomb": ("png", png_header_only(100_000, 100_000), "image_too_large", "pixel limit"),
    }
