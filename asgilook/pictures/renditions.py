"""Thumbnails in the format the browser takes best: AVIF, WebP or JPEG.

A thumbnail URL (``/thumbnails/{id}/{w}x{h}.jpeg``) answers AVIF when the
request's ``Accept`` names ``image/avif``, else WebP when it names
``image/webp``, else JPEG: ``*/*`` or ``image/*`` alone get JPEG, which every
client shows. ``?format=avif|webp|jpeg`` chooses for clients that cannot set
headers. The JPEG series is made at upload; the AVIF and WebP series of a
version are rendered the first time a client asks for them, once, from its
original, and stored beside it. Until they are there, the JPEG is the
answer, marked to be asked for again.

NOTE: Qualities are chosen from measurements (``bench/formats.py``): the
lowest quality whose SSIM against a Lanczos resize of the full photo is at
least that of the JPEG thumbnail at its quality, 85, on the photos in
``../shared/photos/``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable

import PIL.Image

from asgilook.pictures import Size

JPEG = 'jpeg'
WEBP = 'webp'
AVIF = 'avif'
#: In order of preference: the first the client takes is its answer.
PREFERRED = (AVIF, WEBP)
FORMATS = (JPEG, WEBP, AVIF)
#: An animated picture's animated rendition, an animated WebP.
ANIMATION = 'animation'
MEDIA_TYPES = {
    JPEG: 'image/jpeg',
    WEBP: 'image/webp',
    AVIF: 'image/avif',
    ANIMATION: 'image/webp',
}

#: Quality of each rendered format; AVIF's encoder effort too (0 slowest to
#: 10 fastest), and WebP's (0 fastest to 6 slowest).
AVIF_QUALITY = 75
AVIF_SPEED = 6
WEBP_QUALITY = 90
WEBP_METHOD = 4

#: The longest side of a placeholder, in pixels, and its WebP quality: a few
#: hundred bytes (200 for a photo, 400 for a busy drawing), that a browser
#: stretches (smoothly, so it looks blurred) over the space of the picture.
PLACEHOLDER_SIDE = 24
PLACEHOLDER_QUALITY = 70


def accepted(accept: str | None) -> set[str]:
    """The media types an ``Accept`` header takes (``q`` above zero)."""
    taken = set()
    for part in (accept or '').split(','):
        media_type, *parameters = part.split(';')
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition('=')
            if name.strip().lower() == 'q':
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            taken.add(media_type.strip().lower())
    return taken


def negotiate(accept: str | None) -> str:
    """The thumbnail format for a request with that ``Accept`` header."""
    taken = accepted(accept)
    for name in PREFERRED:
        if MEDIA_TYPES[name] in taken:
            return name
    return JPEG


def variant(name: str) -> str:
    """What a cache key adds for a format: nothing for JPEG."""
    return '' if name == JPEG else f' {MEDIA_TYPES[name]}'


def render(original: bytes, sizes: Iterable[Size], name: str) -> list[bytes]:
    """A version's thumbnail series (``sizes``, largest first) in format ``name``.

    Made from its stored original, decoded at the smallest scale libjpeg
    offers that is still at least as large as the largest thumbnail, and
    resized level by level (Lanczos).
    """
    sizes = list(sizes)
    image = PIL.Image.open(io.BytesIO(original), formats=['JPEG'])
    image.draft('RGB', sizes[0])
    level = image.convert('RGB')
    series = []
    for size in sizes:
        if level.size != size:
            level = level.resize(size, PIL.Image.Resampling.LANCZOS)
        series.append(encode(level, name))
    return series


def encode(image: PIL.Image.Image, name: str) -> bytes:
    """``image`` in format ``name``, with no metadata."""
    output = io.BytesIO()
    if name == AVIF:
        image.save(output, 'AVIF', quality=AVIF_QUALITY, speed=AVIF_SPEED)
    else:
        image.save(output, 'WEBP', quality=WEBP_QUALITY, method=WEBP_METHOD)
    return output.getvalue()


def placeholder(jpeg: bytes) -> str:
    """A stand-in for a JPEG while it loads: a tiny WebP, as a data URI.

    Made from the smallest rendition there is (the last thumbnail, or the
    original of a picture too small for thumbnails), so it costs little.
    """
    image = PIL.Image.open(io.BytesIO(jpeg), formats=['JPEG'])
    image.draft('RGB', (PLACEHOLDER_SIDE * 2, PLACEHOLDER_SIDE * 2))
    return placeholder_of(image)


def placeholder_of(image: PIL.Image.Image) -> str:
    """As :func:`placeholder`, of pixels already decoded (left unchanged).

    NOTE: For a picture too small for thumbnails, from the pixels its JPEG
    was encoded from: decoding that JPEG again was a fifth of such an
    upload's work in its thread.
    """
    small = image.convert('RGB')
    small.thumbnail((PLACEHOLDER_SIDE, PLACEHOLDER_SIDE), PIL.Image.Resampling.LANCZOS)
    output = io.BytesIO()
    # NOTE: method 2: a third faster than the default 4, and no bigger at
    #   this size.
    small.save(output, 'WEBP', quality=PLACEHOLDER_QUALITY, method=2)
    return 'data:image/webp;base64,' + base64.b64encode(output.getvalue()).decode()
