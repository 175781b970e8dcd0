"""Colour: any of Pillow's modes, through its ICC profile, to 8-bit sRGB.

Every picture the service stores or renders is 8-bit sRGB with no profile, so
that every viewer shows the same colours, including those that ignore
profiles. :func:`to_srgb` takes a still picture there, transparency flattened
onto white; an animation's frames keep their alpha, so they take the steps one
by one (:func:`normalise`, then :func:`colour_to_srgb`). :func:`is_srgb` tells
a profile that changes nothing, so that a JPEG in it may be kept as it is.
"""

from __future__ import annotations

import io
import math
from typing import cast

import PIL.Image
import PIL.ImageCms

# Modes of more than 8 bits per pixel (grey): scaled to 8 bits, never clipped.
_DEEP_MODES = ('I', 'F', 'I;16', 'I;16L', 'I;16B', 'I;16N')

# Modes that the colour conversion takes as they are.
_PLAIN_MODES = ('L', 'LA', 'RGB', 'RGBA', 'CMYK', 'LAB')

# The colour space (ICC signature) a profile must have to apply to a mode.
_PROFILE_SPACE = {'RGB': 'RGB ', 'L': 'GRAY', 'CMYK': 'CMYK'}


def to_srgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Any Pillow mode to 8-bit sRGB ``RGB``, transparency flattened onto white."""
    profile = image.info.get('icc_profile')
    image = normalise(image)
    if image.mode in ('LA', 'RGBA'):
        image = _flatten(image)
    return colour_to_srgb(image, profile)


def _flatten(image: PIL.Image.Image) -> PIL.Image.Image:
    """An LA or RGBA image onto white, as L or RGB.

    NOTE: Pasting the image through its own alpha needs no copy of either
    the alpha channel or the colours; an alpha channel that is opaque
    everywhere (as in many PNGs) is simply dropped.
    """
    colours = image.mode[:-1]
    if image.getextrema()[-1] == (255, 255):
        return image.convert(colours)
    background = PIL.Image.new(colours, image.size, 'white')
    background.paste(image, mask=image)
    return background


def normalise(image: PIL.Image.Image) -> PIL.Image.Image:
    """Bring any mode to one of L, LA, RGB, RGBA, CMYK or LAB."""
    if image.mode in _DEEP_MODES:
        # NOTE: A transparent colour key in a 16-bit grey image is dropped.
        return _scale_to_8_bits(image)
    if image.mode in _PLAIN_MODES and 'transparency' not in image.info:
        return image
    # 1, P, PA, YCbCr, RGBX, RGBa, HSV, and any mode with a transparent colour.
    return image.convert('RGBA' if image.has_transparency_data else 'RGB')


def _scale_to_8_bits(image: PIL.Image.Image) -> PIL.Image.Image:
    """Map a 16-bit, 32-bit or float grey image onto 0-255 without clipping.

    NOTE: 16-bit modes mean 0-65535 by definition, so they are scaled by that
    range. 32-bit integer and float data carry no range of their own: the
    first usual range that holds all of it (0-1 for floats, 0-255, 0-65535)
    is taken as its range, and any other data is stretched from its minimum
    to its maximum. Pillow's own conversion clips instead, turning a 16-bit
    image white and a 0-1 float image black.
    """
    if image.mode.startswith('I;16'):
        image = image.convert('I')
        low, high = 0.0, 65535.0
    else:
        low, high = _range(image)
    scale = 255 / (high - low) if high > low else 0.0
    offset = -low * scale
    return image.point(lambda value: value * scale + offset).convert('L')


def _range(image: PIL.Image.Image) -> tuple[float, float]:
    least, most = cast(tuple[float, float], image.getextrema())
    if not (math.isfinite(least) and math.isfinite(most)):
        return 0.0, 255.0
    ranges = [(0.0, 1.0)] if image.mode == 'F' else []
    for low, high in [*ranges, (0.0, 255.0), (0.0, 65535.0)]:
        if low <= least and most <= high:
            return low, high
    return float(least), float(most)


def colour_to_srgb(image: PIL.Image.Image, profile: bytes | None) -> PIL.Image.Image:
    """Convert L, RGB, CMYK or LAB pixels to sRGB, through their ICC profile."""
    if image.mode == 'LAB':
        # NOTE: Pillow's plain LAB conversion is not colorimetric.
        lab = PIL.ImageCms.createProfile('LAB')
        return PIL.ImageCms.buildTransform(lab, _srgb(), 'LAB', 'RGB').apply(image)
    transform = _transform(profile, image.mode)
    if transform is None:
        # NOTE: No profile (or an unusable one) means sRGB, as browsers assume.
        return image if image.mode == 'RGB' else image.convert('RGB')
    if image.mode == 'RGB':
        return transform.apply_in_place(image)
    return transform.apply(image)


def source_profile(
    profile: bytes | None, mode: str
) -> PIL.ImageCms.ImageCmsProfile | None:
    """The embedded ICC profile, if it is usable for pixels of ``mode``.

    NOTE: A profile that is broken, or for another colour space than the
    pixels, is ignored rather than failing the upload: the pixels are fine,
    and without a profile they are taken as sRGB.
    """
    if not profile:
        return None
    try:
        source = PIL.ImageCms.ImageCmsProfile(io.BytesIO(profile))
    except (PIL.ImageCms.PyCMSError, OSError, ValueError):
        return None
    if source.profile.xcolor_space != _PROFILE_SPACE.get(mode):
        return None
    return source


def _srgb() -> PIL.ImageCms.ImageCmsProfile:
    """A new sRGB profile.

    NOTE: Made only where it is used: making it takes longer than decoding a
    small PNG (0.2 ms), and most uploads carry no profile to convert from.
    Not shared between calls: a profile is not safe to use from several
    threads at once, and the Pillow pool has several.
    """
    return PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile('sRGB'))


def _transform(
    profile: bytes | None, mode: str
) -> PIL.ImageCms.ImageCmsTransform | None:
    """From the embedded ICC profile to sRGB, if the profile is usable."""
    source = source_profile(profile, mode)
    if source is None:
        return None
    try:
        return PIL.ImageCms.buildTransform(source, _srgb(), mode, 'RGB')
    except (PIL.ImageCms.PyCMSError, OSError, ValueError):
        return None


def is_srgb(profile: PIL.ImageCms.ImageCmsProfile, mode: str) -> bool:
    """Whether converting ``mode`` pixels from ``profile`` to sRGB changes nothing.

    NOTE: Measured rather than read from the profile's name: a profile may
    call itself sRGB and still differ (and many that do not are close). A
    few colours, corners and middle of the cube (or a ramp of greys), are
    converted; no channel may move by more than ``_SRGB_TOLERANCE``.
    """
    try:
        transform = PIL.ImageCms.buildTransform(profile, _srgb(), mode, 'RGB')
    except (PIL.ImageCms.PyCMSError, OSError, ValueError):
        return False
    if mode == 'L':
        levels = bytes(range(0, 256, 15))
        probe = PIL.Image.frombytes('L', (len(levels), 1), levels)
        expected = bytes(level for level in levels for _ in range(3))
    else:
        expected = bytes(_PROBE_COLOURS)
        probe = PIL.Image.frombytes('RGB', (len(expected) // 3, 1), expected)
    converted = transform.apply(probe).tobytes()
    return all(
        abs(got - want) <= _SRGB_TOLERANCE
        for got, want in zip(converted, expected, strict=True)
    )


_SRGB_TOLERANCE = 2
_PROBE_COLOURS = [
    channel
    for red in (0, 128, 255)
    for green in (0, 128, 255)
    for blue in (0, 128, 255)
    for channel in (red, green, blue)
]
