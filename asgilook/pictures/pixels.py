"""Pillow work: synchronous functions from bytes to bytes, run in the store's pool.

Nothing here touches files, the event loop or HTTP. :func:`convert` is where
untrusted bytes meet Pillow, so it decodes only an allowlist of formats, checks
the pixel count before anything is decoded, and turns every way a decoder can
fail into one of the store's domain errors. :func:`animate` does the same for
the frames of an animation.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import cast

import PIL.Image
import PIL.ImageCms
import pillow_heif

from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.errors import UnsupportedImage
from asgilook.pictures import heif
from asgilook.pictures import jpeg

Size = tuple[int, int]
#: Thumbnails, largest first, each as ``(size, JPEG)``.
Series = tuple[tuple[Size, bytes], ...]

# NOTE: Pillow registers its plugins lazily, on the first open() that needs
#   them; this does it once, at import, rather than from a pool thread, and
#   lets the error messages ask every plugin whether it knows an upload.
PIL.Image.init()
# NOTE: pillow-heif adds the HEIF plugin (HEIC photos, decoded by libheif and
#   libde265). Pillow's own AVIF plugin (libavif) reads AVIF. Embedded
#   thumbnails, depth maps and auxiliary pictures are never used here, so
#   pillow-heif is told not to read them either.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


# NOTE: Quality 90 for the stored original keeps re-encoding loss invisible;
#   thumbnails are small and viewed small, so 85 is plenty there.
ORIGINAL_QUALITY = 90
THUMBNAIL_QUALITY = 85

#: The formats whose animations :func:`animate` keeps (PNG: APNG).
ANIMATED_FORMATS = ('GIF', 'WEBP', 'PNG')
# NOTE: The limits of an animation. Its time goes in proportion to frames
#   times canvas: 7 to 9 million pixels a second on one core, decoding twice
#   and encoding (measured: a GIF of 100 frames of 480x270, 1.4 to 1.9 s), so
#   the most pixels in all, the default limit of a still picture, is 6 to 7
#   seconds of a pool thread. Memory does not grow with the frames: they are
#   decoded one at a time, as the encoder takes them (7 MB more for that GIF,
#   9 MB for 400 frames). A thousand frames is over a minute at 15 a second.
MAX_FRAMES = 1_000
MAX_ANIMATION_PIXELS = 50_000_000
# NOTE: libwebp's animation encoder tries each frame lossy (quality 80) and
#   lossless, and keeps the smaller ("allow_mixed"): lossless wins for drawn
#   GIFs, lossy for photos (a dithered photo GIF of 100 frames: 1.4 MB mixed,
#   18 MB lossless). Method 2 rather than 0 (the fastest) costs a fifth more
#   time and saves 20 to 30% of the size, measured on those two GIFs: at
#   method 0 the drawn one came out larger than the GIF itself.
ANIMATION_QUALITY = 80
ANIMATION_METHOD = 2
# An animated WebP can be at most this wide and high.
MAX_WEBP_SIDE = 16_383

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

# Modes of more than 8 bits per pixel (grey): scaled to 8 bits, never clipped.
_DEEP_MODES = ('I', 'F', 'I;16', 'I;16L', 'I;16B', 'I;16N')

# Modes that the colour conversion takes as they are.
_PLAIN_MODES = ('L', 'LA', 'RGB', 'RGBA', 'CMYK', 'LAB')

# The colour space (ICC signature) a profile must have to apply to a mode.
_PROFILE_SPACE = {'RGB': 'RGB ', 'L': 'GRAY', 'CMYK': 'CMYK'}


@dataclasses.dataclass(frozen=True)
class Ingested:
    """An upload as the store keeps it: the original and its thumbnail series."""

    original: bytes
    size: Size
    thumbnails: Series
    #: Whether ``original`` is the upload's own compressed data.
    lossless: bool


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
    _check_declared_size(data, max_pixels)
    image = _open(data, max_pixels)
    _check_size(image.size, max_pixels)
    kept = _keepable(image, data)
    if kept is not None:
        sizes = thumbnail_sizes(image.size, min_thumb_size)
        source = _decode_jpeg(kept, sizes[0] if sizes else None)
        return Decoded(image.size, sizes, kept, None, source if sizes else None)
    rgb = _converted(image)
    sizes = thumbnail_sizes(rgb.size, min_thumb_size)
    # NOTE: A box filter halves a full bitmap as well as any filter would,
    #   at a fraction of the cost: the source of the largest thumbnail.
    return Decoded(rgb.size, sizes, None, rgb, rgb.reduce(2) if sizes else None)


def encode_original(decoded: Decoded) -> bytes:
    """The JPEG to store as the original."""
    if decoded.kept is not None:
        return decoded.kept
    assert decoded.pixels is not None
    return _encode(decoded.pixels, ORIGINAL_QUALITY)


def encode_largest(decoded: Decoded) -> Series:
    """The largest thumbnail, as ``((size, JPEG),)``; none if there is none."""
    if decoded.source is None:
        return ()
    size = decoded.sizes[0]
    return ((size, _encode(_fit(_rgb(decoded.source), size), THUMBNAIL_QUALITY)),)


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
        encoded.append((size, _encode(level, THUMBNAIL_QUALITY)))
    return tuple(encoded)


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
    rgb = _converted(image)
    return _encode(rgb, ORIGINAL_QUALITY), rgb.size


def thumbnails(data: bytes, sizes: list[Size]) -> list[bytes]:
    """Render a stored JPEG's thumbnail series (``sizes``, largest first)."""
    source = _decode_jpeg(data, sizes[0])
    decoded = Decoded(source.size, sizes, None, None, source)
    series = encode_largest(decoded) + encode_smaller(decoded)
    return [thumbnail for _, thumbnail in series]


def may_animate(data: bytes) -> bool:
    """Whether an upload may be an animation, from its first bytes.

    A GIF or a WebP may; a PNG only with an animation control chunk (APNG),
    which comes before its pixels. Everything else is a still picture, and
    :func:`animate` need not be asked.
    """
    if data[:6] in (b'GIF87a', b'GIF89a'):
        return True
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return True
    return data[:8] == b'\x89PNG\r\n\x1a\n' and b'acTL' in data[: data.find(b'IDAT')]


def animate(
    data: bytes,
    max_pixels: int,
    max_frames: int = MAX_FRAMES,
    max_total_pixels: int = MAX_ANIMATION_PIXELS,
) -> bytes | None:
    """The animation of an animated GIF, WebP or PNG (APNG), as an animated WebP.

    Its frames show what :func:`decode` stores of the first one, upright and
    in sRGB, but keep their transparency; each keeps its duration, and the
    animation plays as many times as the upload's. No metadata is written.
    Anything else, a GIF, WebP or PNG of one frame included, is None.

    The number of frames and the pixels of all of them (frames times canvas)
    are checked from the headers, before any frame is decoded. Every frame is
    then decoded once, to check it and read its duration, and once more as
    the encoder takes it: one frame at a time, never the whole animation.

    Args:
        data: The uploaded bytes.
        max_pixels: The most pixels of the canvas, as for :func:`decode`.
        max_frames: The most frames.
        max_total_pixels: The most pixels of all frames together.

    Raises:
        UnsupportedImage, ImageTooLarge, InvalidImage: as :func:`decode`.
        ImageTooLarge: Too many frames or pixels in all, or a canvas wider or
            higher than a WebP can be. Nothing has been decoded then.
        InvalidImage: A frame is truncated or corrupt.
    """
    _check_declared_size(data, max_pixels)
    image = _open(data, max_pixels)
    _check_size(image.size, max_pixels)
    if image.format not in ANIMATED_FORMATS:
        return None
    first, frames, canvas = _count_frames(image, data, max_frames)
    if frames < 2:
        return None
    _check_animation(frames, canvas, max_pixels, max_frames, max_total_pixels)
    try:
        durations = []
        for index in range(first, first + frames):
            image.seek(index)
            image.load()
            durations.append(image.info.get('duration', 0))
        upright = _upright(image)
    except MemoryError:
        raise
    except Exception as ex:
        raise _undecodable(image.format, ex) from ex
    # NOTE: Opened afresh rather than sought back to the start: Pillow keeps a
    #   GIF canvas that a later frame enlarged, and would draw the first frame
    #   on it with background where there is no picture.
    animation = _Animation(_open(data, max_pixels), first, frames, canvas, upright)
    output = io.BytesIO()
    animation.save(
        output,
        'WEBP',
        save_all=True,
        duration=durations,
        loop=_loop(image),
        quality=ANIMATION_QUALITY,
        method=ANIMATION_METHOD,
        allow_mixed=True,
    )
    return output.getvalue()


def _count_frames(
    image: PIL.Image.Image, data: bytes, max_frames: int
) -> tuple[int, int, Size]:
    """An animation's first frame, its number of frames, and its canvas.

    NOTE: libwebp's demuxer counts a WebP's frames from their headers, and an
    APNG declares its number (``acTL``); its default picture, when it is not
    a frame of the animation (no ``fcTL`` before it), is Pillow's frame 0 and
    is left out. Pillow counts a GIF's frames by reading the whole file in
    Python (seconds for an upload of a million tiny frames), so the GIF's own
    block structure is read instead, up to one frame past the limit.
    """
    if image.format == 'GIF':
        frames, canvas = _gif_frames(data, max_frames + 1)
        return 0, frames, canvas
    first = 1 if getattr(image, 'default_image', False) else 0
    return first, getattr(image, 'n_frames', 1) - first, image.size


def _check_animation(
    frames: int, canvas: Size, max_pixels: int, max_frames: int, max_total: int
) -> None:
    if frames > max_frames:
        raise ImageTooLarge(
            f'The animation has more than {max_frames:,} frames, the most this '
            'service keeps.'
        )
    _check_not_too_large(canvas, max_pixels)
    width, height = canvas
    if max(width, height) > MAX_WEBP_SIDE:
        raise ImageTooLarge(
            f'The animation is {width}x{height} pixels; an animated WebP, as the '
            f'service keeps it, can be at most {MAX_WEBP_SIDE:,} pixels on a side.'
        )
    if frames * width * height > max_total:
        raise ImageTooLarge(
            f'The animation has too many pixels: {frames:,} frames of '
            f'{width}x{height} are {frames * width * height:,}, and this service '
            f'decodes at most {max_total:,}.'
        )


def _gif_frames(data: bytes, limit: int) -> tuple[int, Size]:
    """Count a GIF's frames, up to ``limit``, and the canvas they need.

    NOTE: Read from the block structure alone (GIF89a): nothing is decoded.
    A frame may reach past the GIF's screen, which Pillow then enlarges as it
    gets to that frame; the canvas here is the screen enlarged for every frame
    counted. The count ends at the trailer, the end of the data, or a byte
    that starts no block (where Pillow would search further for one, one
    byte at a time; browsers stop there too).
    """
    width, height = _uint16(data, 6), _uint16(data, 8)
    at = _after_colour_table(data, 10, 13)
    frames = 0
    while frames < limit and at < len(data):
        if data[at] == 0x21:  # An extension: its label, then sub-blocks.
            at = _after_sub_blocks(data, at + 2)
        elif data[at] == 0x2C:  # A frame: position, size, colours, then data.
            left, top = _uint16(data, at + 1), _uint16(data, at + 3)
            width = max(width, left + _uint16(data, at + 5))
            height = max(height, top + _uint16(data, at + 7))
            # The LZW code size comes before the sub-blocks of data.
            at = _after_sub_blocks(data, _after_colour_table(data, at + 9, at + 10) + 1)
            frames += 1
        else:
            break
    return frames, (width, height)


def _uint16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], 'little')


def _after_colour_table(data: bytes, flags: int, end: int) -> int:
    """Where the colour table that the ``flags`` byte may announce ends."""
    bits = int.from_bytes(data[flags : flags + 1], 'little')
    return end + (3 << ((bits & 7) + 1) if bits & 0x80 else 0)


def _after_sub_blocks(data: bytes, at: int) -> int:
    """Where the sub-blocks starting at ``at`` (length, then bytes) end."""
    while at < len(data) and data[at]:
        at += data[at] + 1
    return at + 1


def _loop(image: PIL.Image.Image) -> int:
    """How many times the animation plays, as a WebP says it (0: for ever).

    NOTE: An APNG and a WebP say it in the same way. A GIF with no loop count
    plays once; one with a count plays once and then repeats that many times,
    as browsers and libwebp's gif2webp read it.
    """
    loop = cast(int | None, image.info.get('loop'))
    if image.format != 'GIF':
        return loop or 0
    if loop is None:
        return 1
    return min(loop + 1, 0xFFFF) if loop else 0


class _Animation(PIL.Image.Image):
    """An animation as a multi-frame image whose frames are decoded when sought.

    NOTE: Pillow's WebP encoder takes a multi-frame image one frame at a
    time (seek, then its pixels), so only the frame it encodes is decoded
    and converted: memory does not grow with the number of frames.
    """

    def __init__(
        self,
        source: PIL.Image.Image,
        first: int,
        frames: int,
        canvas: Size,
        upright: PIL.Image.Transpose | None,
    ) -> None:
        super().__init__()
        self._source = source
        self._first = first
        self._frames = frames
        self._canvas = canvas
        self._upright = upright
        self._profile = cast(bytes | None, source.info.get('icc_profile'))
        self._frame = -1
        self.seek(0)

    @property
    def n_frames(self) -> int:
        return self._frames

    def tell(self) -> int:
        return self._frame

    def seek(self, frame: int) -> None:
        if frame == self._frame:
            return
        # NOTE: The frames counted and checked, however many the source has.
        if not 0 <= frame < self._frames:
            raise EOFError(f'no frame {frame} in an animation of {self._frames}')
        self._source.seek(self._first + frame)
        pixels = self._pixels(self._source)
        self.im = pixels.im
        self._mode = pixels.mode
        self._size = pixels.size
        self._frame = frame

    def _pixels(self, frame: PIL.Image.Image) -> PIL.Image.Image:
        """A decoded frame upright, in sRGB, on the whole canvas, with its alpha."""
        image = _normalise(frame)
        # NOTE: Converting to the same mode copies: the frame's own pixels
        #   are the canvas the next frame is drawn on, and must not change.
        colours = image.convert(image.mode.removesuffix('A'))
        rgb = _colour_to_srgb(colours, self._profile)
        if image.mode.endswith('A'):
            rgb.putalpha(image.getchannel('A'))
        if rgb.size != self._canvas:
            canvas = PIL.Image.new('RGBA', self._canvas)
            canvas.paste(rgb)
            rgb = canvas
        return rgb if self._upright is None else rgb.transpose(self._upright)


def _converted(image: PIL.Image.Image) -> PIL.Image.Image:
    """Decode an opened upload to upright, 8-bit sRGB ``RGB`` pixels."""
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
        raise _undecodable(image.format, ex) from ex
    if upright is not None:
        rgb = rgb.transpose(upright)
    return rgb


def _undecodable(format: str | None, ex: Exception) -> InvalidImage:
    return InvalidImage(
        f'The {_name(format)} image is truncated or corrupt and cannot be '
        f'decoded ({ex}).'
    )


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
    if _upright(image) is not None:
        return None
    profile = image.info.get('icc_profile')
    source = _source_profile(profile, image.mode)
    if source is not None and not _is_srgb(source, image.mode):
        return None
    return jpeg.strip_metadata(data)


def _is_srgb(profile: PIL.ImageCms.ImageCmsProfile, mode: str) -> bool:
    """Whether converting ``mode`` pixels from ``profile`` to sRGB changes nothing.

    NOTE: Measured rather than read from the profile's name: a profile may
    call itself sRGB and still differ (and many that do not are close). A
    few colours, corners and middle of the cube (or a ramp of greys), are
    converted; no channel may move by more than ``_SRGB_TOLERANCE``.
    """
    srgb = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile('sRGB'))
    try:
        transform = PIL.ImageCms.buildTransform(profile, srgb, mode, 'RGB')
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


def _decode_jpeg(data: bytes, size: Size | None) -> PIL.Image.Image:
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
        raise _undecodable(image.format, ex) from ex
    return image


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


def _encode(image: PIL.Image.Image, quality: int) -> bytes:
    # NOTE: Pillow writes some metadata from image.info by itself (a JPEG
    #   comment, at least), so info goes, and nothing else is passed: no EXIF
    #   (GPS, camera serial), XMP, comment or ICC profile leaves the service.
    image.info = {}
    output = io.BytesIO()
    image.save(output, 'JPEG', quality=quality)
    return output.getvalue()


def _a(name: str) -> str:
    """``name`` after its indefinite article: "a JPEG", "an AVIF"."""
    return f'{"an" if name[0] in "AEIOU" else "a"} {name}'


def _name(format: str | None) -> str:
    """How the README names a format, for the messages."""
    names = {'WEBP': 'WebP', 'MPO': 'JPEG', 'HEIF': 'HEIC'}
    return names.get(format or '', format or 'known')


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


def _check_size(size: Size, max_pixels: int) -> None:
    _check_not_too_large(size, max_pixels)
    width, height = size
    if min(width, height) < 1:
        raise InvalidImage(f'The image is {width}x{height}: it has no pixels.')


def _check_not_too_large(size: Size, max_pixels: int) -> None:
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


def _check_declared_size(data: bytes, max_pixels: int) -> None:
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
                _check_not_too_large(size, max_pixels)
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


def _source_profile(
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


def _transform(
    profile: bytes | None, srgb: PIL.ImageCms.ImageCmsProfile, mode: str
) -> PIL.ImageCms.ImageCmsTransform | None:
    """From the embedded ICC profile to sRGB, if the profile is usable."""
    source = _source_profile(profile, mode)
    if source is None:
        return None
    try:
        return PIL.ImageCms.buildTransform(source, srgb, mode, 'RGB')
    except (PIL.ImageCms.PyCMSError, OSError, ValueError):
        return None
