"""Encoding: a decoded upload's stored original and its series of JPEG thumbnails.

The series' sizes (:func:`thumbnail_sizes`) and the way each level is made
from the one above it (:func:`encode_smaller`) belong together: the second
level is a box-filter halving, which only works because each size halves the
one before. Every JPEG is written with no metadata (:func:`encode_jpeg`).
"""

from __future__ import annotations

import dataclasses
import io

import PIL.Image

from asgilook.pictures import Size

#: Thumbnails, largest first, each as ``(size, JPEG)``.
Series = tuple[tuple[Size, bytes], ...]

# NOTE: Quality 90 for the stored original keeps re-encoding loss invisible;
#   thumbnails are small and viewed small, so 85 is plenty there.
ORIGINAL_QUALITY = 90
THUMBNAIL_QUALITY = 85


def thumbnail_sizes(size: Size, min_size: int) -> list[Size]:
    """The fixed series of thumbnail sizes of a picture, largest first.

    Each halves the picture once more (mipmap style), for as long as both sides
    stay at least ``min_size`` pixels: ``(w // 2, h // 2)``, ``(w // 4, h // 4)``...
    """
    width, height = size
    sizes = []
    factor = 2
    while width // factor >= min_size and height // factor >= min_size:
        sizes.append((width // factor, height // factor))
        factor *= 2
    return sizes


@dataclasses.dataclass(frozen=True)
class Decoded:
    """An upload checked and decoded: all that is left is encoding.

    The three encodings (:func:`encode_original`, :func:`encode_largest`,
    :func:`encode_smaller`) read it and change nothing, so they may run in
    threads of their own, at once.
    """

    size: Size
    #: Its thumbnail series, largest first.
    sizes: list[Size]
    #: The upload minus its metadata, when it is stored as it is.
    kept: bytes | None
    #: Otherwise, the upright sRGB bitmap to store as the original.
    pixels: PIL.Image.Image | None
    #: At least as large as the largest thumbnail (None if there is none).
    source: PIL.Image.Image | None
    #: Whether the pixels were turned upright, by the upload's EXIF orientation.
    turned: bool = False


def encode_original(decoded: Decoded) -> bytes:
    """The JPEG to store as the original."""
    if decoded.kept is not None:
        return decoded.kept
    assert decoded.pixels is not None
    return encode_jpeg(decoded.pixels, ORIGINAL_QUALITY)


def encode_largest(decoded: Decoded) -> Series:
    """The largest thumbnail, as ``((size, JPEG),)``; none if there is none."""
    if decoded.source is None:
        return ()
    size = decoded.sizes[0]
    return ((size, encode_jpeg(_fit(_rgb(decoded.source), size), THUMBNAIL_QUALITY)),)


def encode_smaller(decoded: Decoded) -> Series:
    """The rest of the thumbnail series, each made from the one above it.

    NOTE: Measured on the photos in ``../shared/photos/`` against a Lanczos
    resize of the full picture: a box filter halving the largest level keeps
    40 dB or more and costs a few milliseconds; Lanczos from there down keeps
    43 dB or more, where box filters all the way fall to 30 dB. Lanczos for
    the second level as well would cost 80 ms more on a 20 MP photo. The
    second level is halved from the largest one's source, so that this does
    not wait for the largest one (which is made at the same time).
    """
    if decoded.source is None:
        return ()
    encoded = []
    level = _rgb(decoded.source)
    for index, size in enumerate(decoded.sizes[1:]):
        if index == 0:
            level = level.reduce(2)
        else:
            level = level.resize(size, PIL.Image.Resampling.LANCZOS)
        level = _fit(level, size)
        encoded.append((size, encode_jpeg(level, THUMBNAIL_QUALITY)))
    return tuple(encoded)


def encode_jpeg(image: PIL.Image.Image, quality: int) -> bytes:
    # NOTE: Pillow writes some metadata from image.info by itself (a JPEG
    #   comment, at least), so info goes, and nothing else is passed: no EXIF
    #   (GPS, camera serial), XMP, comment or ICC profile leaves the service.
    image.info = {}
    output = io.BytesIO()
    image.save(output, 'JPEG', quality=quality)
    return output.getvalue()


def _rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """``image`` in RGB: thumbnails are colour JPEGs, whatever the original."""
    return image if image.mode == 'RGB' else image.convert('RGB')


def _fit(image: PIL.Image.Image, size: Size) -> PIL.Image.Image:
    """``image`` at exactly ``size``: rounding up is cropped, anything else resized."""
    width, height = size
    if image.size == size:
        return image
    if image.width - width <= 1 and image.height - height <= 1:
        return image.crop((0, 0, width, height))
    return image.resize(size, PIL.Image.Resampling.LANCZOS)
