"""Pillow work: synchronous functions from bytes to bytes, run in the store's pool.

Nothing here touches files, the event loop or HTTP.
"""

from __future__ import annotations

import io

import PIL.Image

from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.errors import UnsupportedImage

Size = tuple[int, int]


# NOTE: Quality 90 for the stored original keeps re-encoding loss invisible;
#   thumbnails are small and viewed small, so 85 is plenty there.
ORIGINAL_QUALITY = 90
THUMBNAIL_QUALITY = 85


def _flatten(image: PIL.Image.Image) -> PIL.Image.Image:
    """Convert any Pillow mode to RGB, putting transparency onto white."""
    if image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info:
        rgba = image.convert('RGBA')
        background = PIL.Image.new('RGB', rgba.size, 'white')
        background.paste(rgba, mask=rgba.getchannel('A'))
        return background
    return image.convert('RGB')


def convert(data: bytes, max_pixels: int) -> tuple[bytes, Size]:
    """Decode an upload of any format Pillow reads and encode it as JPEG."""
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
        rgb = _flatten(image)
    except PIL.UnidentifiedImageError as ex:
        raise UnsupportedImage(
            'The upload is not an image in a format this service reads.'
        ) from ex
    except PIL.Image.DecompressionBombError as ex:
        raise ImageTooLarge(f'The image has too many pixels: {ex}') from ex
    except MemoryError:
        raise
    # NOTE: Decoders raise many types (OSError, ValueError, SyntaxError,
    #   struct.error, ...) for bad input; all of them mean the client's bytes
    #   are broken, which is a 400, never a 500.
    except Exception as ex:
        raise InvalidImage(
            'The image is truncated or corrupt and cannot be decoded.'
        ) from ex
    output = io.BytesIO()
    rgb.save(output, 'JPEG', quality=ORIGINAL_QUALITY)
    return output.getvalue(), rgb.size


def thumbnail(data: bytes, size: Size) -> bytes:
    """Scale a stored JPEG to exactly ``size``.

    ``draft`` lets the JPEG decoder itself downscale by 1/2, 1/4 or 1/8 while
    decoding, so a thumbnail of a big photo never decodes the full bitmap.
    """
    image = PIL.Image.open(io.BytesIO(data))
    image.draft('RGB', size)
    resized = image.convert('RGB').resize(size, PIL.Image.Resampling.LANCZOS)
    output = io.BytesIO()
    resized.save(output, 'JPEG', quality=THUMBNAIL_QUALITY)
    return output.getvalue()
