"""Pillow work: synchronous functions from bytes to bytes, run in the store's pool.

Nothing here touches files, the event loop or HTTP. :func:`convert` is where
untrusted bytes meet Pillow, so it decodes only an allowlist of formats, checks
the pixel count before anything is decoded, and turns every way a decoder can
fail into one of the store's domain errors.
"""

from __future__ import annotations

import io
import math
from typing import cast

import PIL.Image
import PIL.ImageCms

from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.errors import UnsupportedImage

Size = tuple[int, int]

# NOTE: Pillow registers its plugins lazily, on the first open() that needs
#   them; this does it once, at import, rather than from a pool thread, and
#   lets the error messages ask every plugin whether it knows an upload.
PIL.Image.init()


# NOTE: Quality 90 for the stored original keeps re-encoding loss invisible;
#   thumbnails are small and viewed small, so 85 is plenty there.
ORIGINAL_QUALITY = 90
THUMBNAIL_QUALITY = 85

# NOTE: Only these plugins ever see an upload. Pillow reads dozens of formats,
#   some through parsers that are rarely exercised (or, for EPS, through
#   Ghostscript); photos and web pictures come in these six. The JPEG plugin
#   also opens what Pillow calls MPO: the JPEGs many cameras write, with a
#   second picture (a preview, or the other eye) appended.
ACCEPTED_FORMATS = ('JPEG', 'PNG', 'GIF', 'WEBP', 'BMP', 'TIFF')
ACCEPTED_NAMES = 'JPEG, PNG, GIF, WebP, BMP or TIFF'

# libjpeg cannot write a JPEG wider or taller than this.
MAX_JPEG_SIDE = 65_500

# EXIF orientation: how to turn the stored pixels upright (EXIF 2.3, tag 0x0112).
ORIENTATION_TAG = 0x0112
_UPRIGHT = {
    2: PIL.Image.Transpose.FLIP_LEFT_RIGHT,
    3: PIL.Image.Transpose.ROTATE_180,
    4: PIL.Image.Transpose.FLIP_TOP_BOTTOM,
    5: PIL.Image.Transpose.TRANSPOSE,
    6: PIL.Image.Transpose.ROTATE_270,
    7: PIL.Image.Transpose.TRANSVERSE,
    8: PIL.Image.Transpose.ROTATE_90,
}

# Modes of more than 8 bits per pixel (grey): scaled to 8 bits, never clipped.
_DEEP_MODES = ('I', 'F', 'I;16', 'I;16L', 'I;16B', 'I;16N')

# Modes that the colour conversion takes as they are.
_PLAIN_MODES = ('L', 'LA', 'RGB', 'RGBA', 'CMYK', 'LAB')

# The colour space (ICC signature) a profile must have to apply to a mode.
_PROFILE_SPACE = {'RGB': 'RGB ', 'L': 'GRAY', 'CMYK': 'CMYK'}


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
    _check_declared_size(data, max_pixels)
    image = _open(data, max_pixels)
    _check_size(image.size, max_pixels)
    try:
        image.load()
        # NOTE: Read after load(): a PNG may keep its EXIF after the pixels.
        upright = _upright(image)
        rgb = _to_srgb(image)
    except MemoryError:
        raise
    # NOTE: Decoders raise many types (OSError, ValueError, SyntaxError,
    #   struct.error, ...) for bad input; all of them mean the client's bytes
    #   are broken, which is a 400, never a 500.
    except Exception as ex:
        raise InvalidImage(
            f'The {_name(image.format)} image is truncated or corrupt and cannot '
            f'be decoded ({ex}).'
        ) from ex
    if upright is not None:
        rgb = rgb.transpose(upright)
    return _encode(rgb, ORIGINAL_QUALITY), rgb.size


def thumbnail(data: bytes, size: Size) -> bytes:
    """Scale a stored JPEG to exactly ``size``.

    ``draft`` lets the JPEG decoder itself downscale by 1/2, 1/4 or 1/8 while
    decoding, so a thumbnail of a big photo never decodes the full bitmap.
    """
    image = PIL.Image.open(io.BytesIO(data), formats=['JPEG'])
    image.draft('RGB', size)
    resized = image.convert('RGB').resize(size, PIL.Image.Resampling.LANCZOS)
    return _encode(resized, THUMBNAIL_QUALITY)


def _encode(image: PIL.Image.Image, quality: int) -> bytes:
    # NOTE: Pillow writes some metadata from image.info by itself (a JPEG
    #   comment, at least), so info goes, and nothing else is passed: no EXIF
    #   (GPS, camera serial), XMP, comment or ICC profile leaves the service.
    image.info = {}
    output = io.BytesIO()
    image.save(output, 'JPEG', quality=quality)
    return output.getvalue()


def _name(format: str | None) -> str:
    """How the README names a format, for the messages."""
    return {'WEBP': 'WebP', 'MPO': 'JPEG'}.get(format or '', format or 'known')


def _open(data: bytes, max_pixels: int) -> PIL.Image.Image:
    """Identify the upload among the accepted formats, reading headers only."""
    try:
        return PIL.Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except PIL.UnidentifiedImageError as ex:
        raise _unidentified(data) from ex
    # NOTE: Pillow's own bomb check runs inside open(), against its global
    #   MAX_IMAGE_PIXELS (about 89 million for the warning, which is only an
    #   exception where warnings are errors, as in the tests; twice that for
    #   the error). Nothing was decoded yet; the image is over max_pixels
    #   unless that was set higher than Pillow's limit.
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as ex:
        raise ImageTooLarge(
            'The image has too many pixels: this service accepts at most '
            f'{max_pixels:,} (width times height).'
        ) from ex
    except MemoryError:
        raise
    except Exception as ex:
        raise _corrupt_header(_accepted_format(data), f' ({ex})') from ex


def _corrupt_header(format: str | None, reason: str = '') -> InvalidImage:
    return InvalidImage(
        f'The upload looks like a {_name(format)} image, but its header is '
        f'truncated or corrupt and cannot be read{reason}.'
    )


def _accepted_format(data: bytes) -> str | None:
    """The accepted format whose magic number the upload starts with, if any."""
    for format in ACCEPTED_FORMATS:
        if _looks_like(format, data):
            return format
    return None


def _unidentified(data: bytes) -> InvalidImage:
    """Say why no accepted plugin opened the upload: corrupt, or another format."""
    format = _accepted_format(data)
    if format is not None:
        return _corrupt_header(format)
    for format in sorted(PIL.Image.OPEN):
        if _looks_like(format, data):
            return UnsupportedImage(
                f'The upload is in the {format} format, which this service does not '
                f'accept: send {ACCEPTED_NAMES}.'
            )
    return UnsupportedImage(
        'The upload is not an image in a format this service reads: send '
        f'{ACCEPTED_NAMES}.'
    )


def _looks_like(format: str, data: bytes) -> bool:
    """Whether the plugin of ``format`` recognises the upload's magic number."""
    _, accept = PIL.Image.OPEN.get(format, (None, None))
    try:
        # NOTE: Only a plain True counts: some plugins answer a warning text
        #   for "maybe", and many formats have no magic number at all.
        return accept is not None and accept(data[:16]) is True
    except Exception:
        return False


def _check_size(size: Size, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f'The image has too many pixels: {width}x{height} is '
            f'{width * height:,}, and this service accepts at most {max_pixels:,}.'
        )
    if max(width, height) > MAX_JPEG_SIDE:
        raise ImageTooLarge(
            f'The image is {width}x{height} pixels; a JPEG, as the service stores '
            f'it, can be at most {MAX_JPEG_SIDE:,} pixels on a side.'
        )
    if min(width, height) < 1:
        raise InvalidImage(f'The image is {width}x{height}: it has no pixels.')


def _check_declared_size(data: bytes, max_pixels: int) -> None:
    """Check the canvas size a WebP header declares, before Pillow opens it.

    NOTE: Pillow's WebP plugin creates libwebp's animation decoder inside
    ``Image.open``, and that decoder allocates two canvases of the declared
    size straight away; every other accepted plugin allocates only in
    ``load()``. So for WebP alone the size is read from the RIFF header here.
    """
    if len(data) < 30 or data[:4] != b'RIFF' or data[8:12] != b'WEBP':
        return
    chunk = data[12:16]
    if chunk == b'VP8X':
        width = 1 + int.from_bytes(data[24:27], 'little')
        height = 1 + int.from_bytes(data[27:30], 'little')
    elif chunk == b'VP8L':
        bits = int.from_bytes(data[21:25], 'little')
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b'VP8 ':
        width = int.from_bytes(data[26:28], 'little') & 0x3FFF
        height = int.from_bytes(data[28:30], 'little') & 0x3FFF
    else:
        return
    _check_size((width, height), max_pixels)


def _upright(image: PIL.Image.Image) -> PIL.Image.Transpose | None:
    """How to turn the pixels upright by their EXIF orientation, if at all.

    NOTE: A broken EXIF block, or an orientation outside 1 to 8, costs the
    upload its orientation, not its acceptance: the pixels decoded fine.
    """
    try:
        return _UPRIGHT.get(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:
        return None


def _to_srgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Any Pillow mode to 8-bit sRGB ``RGB``, transparency flattened onto white."""
    profile = image.info.get('icc_profile')
    image = _normalise(image)
    if image.mode in ('LA', 'RGBA'):
        image = _flatten(image)
    return _colour_to_srgb(image, profile)


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


def _normalise(image: PIL.Image.Image) -> PIL.Image.Image:
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


def _colour_to_srgb(image: PIL.Image.Image, profile: bytes | None) -> PIL.Image.Image:
    """Convert L, RGB, CMYK or LAB pixels to sRGB, through their ICC profile."""
    srgb = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile('sRGB'))
    if image.mode == 'LAB':
        # NOTE: Pillow's plain LAB conversion is not colorimetric.
        lab = PIL.ImageCms.createProfile('LAB')
        return PIL.ImageCms.buildTransform(lab, srgb, 'LAB', 'RGB').apply(image)
    transform = _transform(profile, srgb, image.mode)
    if transform is None:
        # NOTE: No profile (or an unusable one) means sRGB, as browsers assume.
        return image if image.mode == 'RGB' else image.convert('RGB')
    if image.mode == 'RGB':
        return transform.apply_in_place(image)
    return transform.apply(image)


def _transform(
    profile: bytes | None, srgb: PIL.ImageCms.ImageCmsProfile, mode: str
) -> PIL.ImageCms.ImageCmsTransform | None:
    """From the embedded ICC profile to sRGB, if the profile is usable.

    NOTE: A profile that is broken, or for another colour space than the
    pixels, is ignored rather than failing the upload: the pixels are fine,
    and without a profile they are taken as sRGB.
    """
    if not profile:
        return None
    try:
        source = PIL.ImageCms.ImageCmsProfile(io.BytesIO(profile))
        if source.profile.xcolor_space != _PROFILE_SPACE[mode]:
            return None
        return PIL.ImageCms.buildTransform(source, srgb, mode, 'RGB')
    except (PIL.ImageCms.PyCMSError, OSError, ValueError):
        return None
