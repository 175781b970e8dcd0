"""Where untrusted bytes meet Pillow: identifying, checking and decoding uploads.

Only an allowlist of plugins ever sees an upload (:data:`ACCEPTED_FORMATS`).
Its size is checked before anything is decoded: from the headers that some
plugins would act on inside ``Image.open`` (:func:`check_declared_size`), then
from what Pillow opened (:func:`check_size`). Every way a decoder can fail
becomes one of the store's domain errors, whose message says what the upload
looks like and what is wrong with it. EXIF orientation is read here too: it is
part of what the decoded pixels mean.
"""

from __future__ import annotations

import io

import PIL.Image
import pillow_heif

from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.errors import UnsupportedImage
from asgilook.pictures import Size
from asgilook.pictures import colour
from asgilook.pictures import heif

# NOTE: Pillow registers its plugins lazily, on the first open() that needs
#   them; this does it once, at import, rather than from a pool thread, and
#   lets the error messages ask every plugin whether it knows an upload.
PIL.Image.init()
# NOTE: pillow-heif adds the HEIF plugin (HEIC photos, decoded by libheif and
#   libde265). Pillow's own AVIF plugin (libavif) reads AVIF. Embedded
#   thumbnails, depth maps and auxiliary pictures are never used here, so
#   pillow-heif is told not to read them either.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# NOTE: Only these plugins ever see an upload. Pillow reads dozens of formats,
#   some through parsers that are rarely exercised (or, for EPS, through
#   Ghostscript); photos and web pictures come in these eight. The JPEG plugin
#   also opens what Pillow calls MPO: the JPEGs many cameras write, with a
#   second picture (a preview, or the other eye) appended. AVIF comes before
#   HEIF: both plugins claim files of the generic brand "mif1", and only
#   Pillow's decodes AV1 (pillow-heif's libheif here decodes HEVC alone).
ACCEPTED_FORMATS = ('JPEG', 'PNG', 'GIF', 'WEBP', 'BMP', 'TIFF', 'AVIF', 'HEIF')
ACCEPTED_NAMES = 'JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC or AVIF'

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


def open_upload(data: bytes, max_pixels: int) -> PIL.Image.Image:
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


def check_size(size: Size, max_pixels: int) -> None:
    check_not_too_large(size, max_pixels)
    width, height = size
    if min(width, height) < 1:
        raise InvalidImage(f'The image is {width}x{height}: it has no pixels.')


def check_not_too_large(size: Size, max_pixels: int) -> None:
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


def check_declared_size(data: bytes, max_pixels: int) -> None:
    """Check the sizes a WebP, HEIF or AVIF header declares, before Pillow opens it.

    NOTE: Pillow's WebP plugin creates libwebp's animation decoder inside
    ``Image.open``, and that decoder allocates two canvases of the declared
    size straight away; so the size of a WebP is read from its RIFF header
    here. HEIF and AVIF plugins allocate only in ``load()``, but libavif
    refuses to open a picture over its own limit (16,384 pixels a side),
    which would be a corrupt header (400) rather than too many pixels (413);
    and the AV1 decoder allocates what the bitstream says, whatever the
    container says. So for these every size the container declares, and
    every frame size of their AV1 bitstreams, is checked here (see
    :mod:`asgilook.pictures.heif`). Every other accepted plugin allocates only in
    ``load()``.
    """
    format = _accepted_format(data)
    if format in ('AVIF', 'HEIF'):
        try:
            for size in heif.declared_sizes(data):
                check_not_too_large(size, max_pixels)
        except heif.Corrupt as ex:
            raise _corrupt_header(format, f' ({ex})') from ex
        return
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
    check_size((width, height), max_pixels)


def converted(image: PIL.Image.Image) -> PIL.Image.Image:
    """Decode an opened upload to upright, 8-bit sRGB ``RGB`` pixels."""
    try:
        image.load()
        # NOTE: Read after load(): a PNG may keep its EXIF after the pixels.
        turn = upright(image)
        rgb = colour.to_srgb(image)
    except MemoryError:
        raise
    # NOTE: Decoders raise many types (OSError, ValueError, SyntaxError,
    #   struct.error, ...) for bad input; all of them mean the client's bytes
    #   are broken, which is a 400, never a 500.
    except Exception as ex:
        raise undecodable(image.format, ex) from ex
    if turn is not None:
        rgb = rgb.transpose(turn)
    return rgb


def decode_jpeg(data: bytes, size: Size | None) -> PIL.Image.Image:
    """Decode a JPEG whole, scaled down as far as ``size`` allows.

    ``draft`` makes libjpeg scale while it decodes (by 1/2, 1/4 or 1/8): every
    scan and block is still decoded, so a broken file fails as it would at
    full size, but the bitmap is a fraction of the size.
    """
    image = PIL.Image.open(io.BytesIO(data), formats=['JPEG'])
    if size is not None:
        image.draft(image.mode, size)
    try:
        image.load()
    except MemoryError:
        raise
    except Exception as ex:
        raise undecodable(image.format, ex) from ex
    return image


def upright(image: PIL.Image.Image) -> PIL.Image.Transpose | None:
    """How to turn the pixels upright by their EXIF orientation, if at all.

    NOTE: A broken EXIF block, or an orientation outside 1 to 8, costs the
    upload its orientation, not its acceptance: the pixels decoded fine.
    """
    try:
        return _UPRIGHT.get(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:
        return None


def undecodable(format: str | None, ex: Exception) -> InvalidImage:
    return InvalidImage(
        f'The {_name(format)} image is truncated or corrupt and cannot be '
        f'decoded ({ex}).'
    )


def _corrupt_header(format: str | None, reason: str = '') -> InvalidImage:
    return InvalidImage(
        f'The upload looks like {_a(_name(format))} image, but its header is '
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


def _a(name: str) -> str:
    """``name`` after its indefinite article: "a JPEG", "an AVIF"."""
    return f'{"an" if name[0] in "AEIOU" else "a"} {name}'


def _name(format: str | None) -> str:
    """How the docs (docs/uploads.rst) name a format, for the messages."""
    names = {'WEBP': 'WebP', 'MPO': 'JPEG', 'HEIF': 'HEIC'}
    return names.get(format or '', format or 'known')
