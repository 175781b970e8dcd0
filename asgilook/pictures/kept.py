"""The original kept as uploaded, beside the JPEG that the service stores.

Every upload is stored as an upright sRGB JPEG, which the contract serves;
for most formats that JPEG is a conversion, which flattens transparency,
keeps one frame of an animation, and loses some detail. :func:`keep` makes
the copy of the upload that is kept beside it, for people to download:

- a PNG (APNG too), GIF, WebP, HEIC or AVIF: the uploaded bytes with their
  metadata removed at the container level (see
  :mod:`asgilook.pictures.containers`), every pixel, frame and alpha value
  as uploaded;
- a BMP or TIFF: a lossless PNG of the pixels Pillow decodes, with their
  alpha and colour profile (a PNG is what browsers show; the upload's own
  metadata is not written again);
- a still PNG whose EXIF says to turn it: a lossless PNG of it upright, as
  its JPEG is (without its EXIF, a viewer would show the kept copy unturned).

None is kept for a JPEG (its stored JPEG is the download: the upload minus
its metadata if it was upright and sRGB, else its conversion), for an
animation, or a WebP, HEIC or AVIF, that is to be turned by its EXIF, for a
TIFF of several pages or whose pixels a PNG cannot hold as they are (CMYK,
Lab, floating point, 32-bit integers), and for a container that cannot be
rewritten safely.
"""

from __future__ import annotations

import io
from typing import NamedTuple

from asgilook.pictures import containers
from asgilook.pictures import decoding

PNG, GIF, WEBP, HEIC, AVIF = 'png', 'gif', 'webp', 'heic', 'avif'
#: The media type of a kept original, by its extension.
MEDIA_TYPES = {
    PNG: 'image/png',
    GIF: 'image/gif',
    WEBP: 'image/webp',
    HEIC: 'image/heic',
    AVIF: 'image/avif',
}
#: The brands (``ftyp``) of an AVIF file; any other HEIF file is a HEIC.
AVIF_BRANDS = (b'avif', b'avis')
#: The Pillow modes whose pixels a PNG holds exactly.
PNG_MODES = frozenset({'1', 'L', 'LA', 'I;16', 'I;16B', 'P', 'RGB', 'RGBA'})
#: How BMP and TIFF (little- and big-endian, classic and BigTIFF) files start.
_CONVERTED = (b'BM', b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')


class Kept(NamedTuple):
    """The original kept of an upload: its bytes, and their extension."""

    data: bytes
    #: One of :data:`MEDIA_TYPES`.
    extension: str


def may_keep(data: bytes) -> bool:
    """Whether an original may be kept of an upload, from its first bytes.

    For the caller to ask :func:`keep` (a hop to a thread) only when it may
    answer something.
    """
    return (
        data.startswith((containers.PNG_SIGNATURE, *containers.GIF_SIGNATURES))
        or containers.is_webp(data)
        or _is_heif(data)
        or data.startswith(_CONVERTED)
    )


def keep(data: bytes, turned: bool, max_pixels: int) -> Kept | None:
    """The original to keep of an upload that decoded, or None.

    Args:
        data: The uploaded bytes, which :func:`~asgilook.pictures.pixels.decode`
            accepted.
        turned: Whether its stored picture was turned upright (by its EXIF
            orientation).
        max_pixels: The most pixels, as for ``decode``.
    """
    if data.startswith(containers.PNG_SIGNATURE):
        if not turned:
            return _kept(containers.strip_png(data), PNG)
        # NOTE: A frame of an APNG turned would be another animation.
        if b'acTL' in data[: data.find(b'IDAT')]:
            return None
        return _lossless(data, max_pixels)
    if turned:
        still = not (containers.is_webp(data) or _is_heif(data))
        return _lossless(data, max_pixels) if still else None
    if _is_heif(data):
        return _kept(containers.strip_heif(data), _heif_extension(data))
    if data.startswith(containers.GIF_SIGNATURES):
        return _kept(containers.strip_gif(data), GIF)
    if containers.is_webp(data):
        return _kept(containers.strip_webp(data), WEBP)
    return _lossless(data, max_pixels)


def _is_heif(data: bytes) -> bool:
    """Whether ``data`` starts as an ISO BMFF file does (HEIF, AVIF)."""
    return data[4:8] == b'ftyp'


def _heif_extension(data: bytes) -> str:
    """``avif`` for an AVIF file, by its brands (``ftyp``); else ``heic``."""
    size = int.from_bytes(data[:4], 'big')
    brands = data[8 : min(size, 64)]
    found = {brands[at : at + 4] for at in range(0, len(brands), 4)}
    return AVIF if found.intersection(AVIF_BRANDS) else HEIC


def _kept(data: bytes | None, extension: str) -> Kept | None:
    return None if data is None else Kept(data, extension)


def _lossless(data: bytes, max_pixels: int) -> Kept | None:
    """A lossless PNG of a BMP, TIFF or still PNG, upright; None if there
    can be none (see the module)."""
    image = decoding.open_upload(data, max_pixels)
    if image.format not in ('BMP', 'TIFF', 'PNG') or image.mode not in PNG_MODES:
        return None
    try:
        # NOTE: Counting a TIFF's pages reads every page's header: one that
        #   is broken fails here, though the first page decoded.
        if getattr(image, 'n_frames', 1) > 1:
            return None
        image.load()
        turn = decoding.upright(image)
    except MemoryError:
        raise
    except Exception:
        # NOTE: Its JPEG was made of it, so this is not expected; the JPEG
        #   is the download then.
        return None
    profile = image.info.get('icc_profile')
    transparency = image.info.get('transparency')
    if turn is not None:
        image = image.transpose(turn)
    # NOTE: Pillow writes some of ``info`` by itself: only what is passed.
    image.info = {}
    params = {'icc_profile': profile, 'transparency': transparency}
    output = io.BytesIO()
    image.save(
        output,
        'PNG',
        **{name: value for name, value in params.items() if value is not None},
    )
    return Kept(output.getvalue(), PNG)
