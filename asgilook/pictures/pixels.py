"""The pipeline the other layers call: an upload in, the JPEGs to store out.

Pillow work: synchronous functions from bytes to bytes, run in the store's
pool. Nothing here touches files, the event loop or HTTP. :func:`decode` checks
an upload and decides how to store it: a JPEG that is already upright and sRGB
keeps its own compressed data, anything else is converted, as :func:`convert`
does. The encodings of what it decoded may then run at once, each in a thread
of its own; :func:`ingest` runs them one after the other. :func:`thumbnails`
renders a stored JPEG's series again, and :func:`animate` keeps the frames of
an animation.

The work itself is done in the sibling modules (see :mod:`asgilook.pictures`):
where untrusted bytes meet Pillow, in :mod:`~asgilook.pictures.decoding`; the
colours, in :mod:`~asgilook.pictures.colour`; the JPEGs written, in
:mod:`~asgilook.pictures.encoding`; animations, in
:mod:`~asgilook.pictures.animation`. What the other layers use of them is
exported from here (``__all__``), so that they need know only this module.
"""

from __future__ import annotations

import dataclasses

import PIL.Image

from asgilook.pictures import Size
from asgilook.pictures import animation
from asgilook.pictures import colour
from asgilook.pictures import decoding
from asgilook.pictures import encoding
from asgilook.pictures import jpeg
from asgilook.pictures.animation import MAX_FRAMES
from asgilook.pictures.animation import animate
from asgilook.pictures.animation import may_animate
from asgilook.pictures.decoding import ACCEPTED_FORMATS
from asgilook.pictures.decoding import ACCEPTED_NAMES
from asgilook.pictures.decoding import ORIENTATION_TAG
from asgilook.pictures.encoding import Decoded
from asgilook.pictures.encoding import Series
from asgilook.pictures.encoding import encode_largest
from asgilook.pictures.encoding import encode_original
from asgilook.pictures.encoding import encode_smaller
from asgilook.pictures.encoding import thumbnail_sizes

__all__ = [
    'ACCEPTED_FORMATS',
    'ACCEPTED_NAMES',
    'MAX_FRAMES',
    'ORIENTATION_TAG',
    'Decoded',
    'Ingested',
    'Series',
    'Size',
    'animate',
    'convert',
    'decode',
    'encode_largest',
    'encode_original',
    'encode_smaller',
    'ingest',
    'may_animate',
    'thumbnail_sizes',
    'thumbnails',
]

# NOTE: The private names that tests reached in for before the split, kept
#   for any caller not yet pointed at the module they live in now.
_is_srgb = colour.is_srgb
_Animation = animation._Animation


@dataclasses.dataclass(frozen=True)
class Ingested:
    """An upload as the store keeps it: the original and its thumbnail series."""

    original: bytes
    size: Size
    thumbnails: Series
    #: Whether ``original`` is the upload's own compressed data.
    lossless: bool


def ingest(data: bytes, max_pixels: int, min_thumb_size: int) -> Ingested:
    """Check an upload, decide how to store it, and render its thumbnails.

    The same as :func:`decode` followed by the three encodings, one after
    the other.
    """
    decoded = decode(data, max_pixels, min_thumb_size)
    return Ingested(
        encode_original(decoded),
        decoded.size,
        encode_largest(decoded) + encode_smaller(decoded),
        lossless=decoded.kept is not None,
    )


def decode(data: bytes, max_pixels: int, min_thumb_size: int) -> Decoded:
    """Check an upload and decode what its original and thumbnails need.

    A JPEG that is already upright and sRGB is kept as it is, minus its
    metadata (see :mod:`asgilook.pictures.jpeg`): its pixels are exactly the upload's.
    It is still decoded in full (every scan, every block), at the reduced scale
    of its largest thumbnail, which both proves that it decodes and gives the
    thumbnails. Anything else is decoded as :func:`convert` does.

    Args:
        data: The uploaded bytes.
        max_pixels: The most pixels (width times height) to decode.
        min_thumb_size: The smallest side of a thumbnail.

    Raises:
        UnsupportedImage, ImageTooLarge, InvalidImage: as :func:`convert`.
    """
    decoding.check_declared_size(data, max_pixels)
    image = decoding.open_upload(data, max_pixels)
    decoding.check_size(image.size, max_pixels)
    kept = _keepable(image, data)
    if kept is not None:
        sizes = thumbnail_sizes(image.size, min_thumb_size)
        source = decoding.decode_jpeg(kept, sizes[0] if sizes else None)
        return Decoded(image.size, sizes, kept, None, source if sizes else None)
    rgb = decoding.converted(image)
    sizes = thumbnail_sizes(rgb.size, min_thumb_size)
    # NOTE: Read again after converted() did: decoded, its EXIF is at hand.
    turned = decoding.upright(image) is not None
    # NOTE: A box filter halves a full bitmap as well as any filter would,
    #   at a fraction of the cost: the source of the largest thumbnail.
    half = rgb.reduce(2) if sizes else None
    return Decoded(rgb.size, sizes, None, rgb, half, turned)


def convert(data: bytes, max_pixels: int) -> tuple[bytes, Size]:
    """Decode an upload and encode it as an upright, sRGB, metadata-free JPEG.

    Only the first frame of an animation is kept; transparency is flattened
    onto white.

    Args:
        data: The uploaded bytes.
        max_pixels: The most pixels (width times height) to decode.

    Returns:
        The JPEG and its (upright) size.

    Raises:
        UnsupportedImage: The bytes are not in an accepted format.
        ImageTooLarge: The image has more than ``max_pixels`` pixels, or a side
            longer than a JPEG can have. Nothing has been decoded then.
        InvalidImage: The image is truncated or corrupt.
    """
    decoding.check_declared_size(data, max_pixels)
    image = decoding.open_upload(data, max_pixels)
    decoding.check_size(image.size, max_pixels)
    rgb = decoding.converted(image)
    return encoding.encode_jpeg(rgb, encoding.ORIGINAL_QUALITY), rgb.size


def thumbnails(data: bytes, sizes: list[Size]) -> list[bytes]:
    """Render a stored JPEG's thumbnail series (``sizes``, largest first)."""
    source = decoding.decode_jpeg(data, sizes[0])
    decoded = Decoded(source.size, sizes, None, None, source)
    series = encode_largest(decoded) + encode_smaller(decoded)
    return [thumbnail for _, thumbnail in series]


def _keepable(image: PIL.Image.Image, data: bytes) -> bytes | None:
    """The upload minus its metadata, if it can be stored as it is.

    That is a JPEG (or MPO) of RGB or grey pixels, upright, and in sRGB: with
    no colour profile, an sRGB one, or one that :func:`convert` would ignore
    too. Anything else needs its pixels changed.

    NOTE: A profile of another colour space (Display P3, Adobe RGB, ...) is
    converted to sRGB rather than kept: the stored picture and its thumbnails
    then show the same colours in every viewer, including those that ignore
    profiles, and no metadata leaves the service.
    """
    if image.format not in ('JPEG', 'MPO') or image.mode not in ('RGB', 'L'):
        return None
    if decoding.upright(image) is not None:
        return None
    profile = image.info.get('icc_profile')
    source = colour.source_profile(profile, image.mode)
    if source is not None and not colour.is_srgb(source, image.mode):
        return None
    return jpeg.strip_metadata(data)
