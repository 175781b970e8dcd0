"""Animation: an animated GIF, WebP or APNG kept as an animated WebP.

The first frame of an animation is stored as any still picture is (see
:mod:`asgilook.pictures.pixels`); :func:`animate` keeps the whole animation
beside it, its frames upright and in sRGB as that picture is, but with their
transparency. The limits here are an animation's own: frames, pixels of all
frames together, and the side of a WebP. They are checked from the headers
before any frame is decoded (a GIF's frames are counted from its block
structure, read here), and the frames are then decoded one at a time.
"""

from __future__ import annotations

import io
from typing import cast

import PIL.Image

from asgilook.errors import ImageTooLarge
from asgilook.pictures import Size
from asgilook.pictures import colour
from asgilook.pictures import containers
from asgilook.pictures import decoding

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


def may_animate(data: bytes) -> bool:
    """Whether an upload may be an animation, from its first bytes.

    A GIF or a WebP may; a PNG only with an animation control chunk (APNG),
    which comes before its pixels. Everything else is a still picture, and
    :func:`animate` need not be asked.
    """
    if data[:6] in containers.GIF_SIGNATURES:
        return True
    if containers.is_webp(data):
        return True
    return (
        data.startswith(containers.PNG_SIGNATURE)
        and b'acTL' in data[: data.find(b'IDAT')]
    )


def animate(
    data: bytes,
    max_pixels: int,
    max_frames: int = MAX_FRAMES,
    max_total_pixels: int = MAX_ANIMATION_PIXELS,
) -> bytes | None:
    """The animation of an animated GIF, WebP or PNG (APNG), as an animated WebP.

    Its frames show what :func:`~asgilook.pictures.pixels.decode` stores of
    the first one, upright and in sRGB, but keep their transparency; each
    keeps its duration, and the animation plays as many times as the
    upload's. No metadata is written. Anything else, a GIF, WebP or PNG of
    one frame included, is None.

    The number of frames and the pixels of all of them (frames times canvas)
    are checked from the headers, before any frame is decoded. Every frame is
    then decoded once, to check it and read its duration, and once more as
    the encoder takes it: one frame at a time, never the whole animation.

    Args:
        data: The uploaded bytes.
        max_pixels: The most pixels of the canvas, as for
            :func:`~asgilook.pictures.pixels.decode`.
        max_frames: The most frames.
        max_total_pixels: The most pixels of all frames together.

    Raises:
        UnsupportedImage, ImageTooLarge, InvalidImage: as
            :func:`~asgilook.pictures.pixels.decode`.
        ImageTooLarge: Too many frames or pixels in all, or a canvas wider or
            higher than a WebP can be. Nothing has been decoded then.
        InvalidImage: A frame is truncated or corrupt.
    """
    decoding.check_declared_size(data, max_pixels)
    image = decoding.open_upload(data, max_pixels)
    decoding.check_size(image.size, max_pixels)
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
        upright = decoding.upright(image)
    except MemoryError:
        raise
    except Exception as ex:
        raise decoding.undecodable(image.format, ex) from ex
    # NOTE: Opened afresh rather than sought back to the start: Pillow keeps a
    #   GIF canvas that a later frame enlarged, and would draw the first frame
    #   on it with background where there is no picture.
    animation = _Animation(
        decoding.open_upload(data, max_pixels), first, frames, canvas, upright
    )
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
    decoding.check_not_too_large(canvas, max_pixels)
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
        image = colour.normalise(frame)
        # NOTE: Converting to the same mode copies: the frame's own pixels
        #   are the canvas the next frame is drawn on, and must not change.
        colours = image.convert(image.mode.removesuffix('A'))
        rgb = colour.colour_to_srgb(colours, self._profile)
        if image.mode.endswith('A'):
            rgb.putalpha(image.getchannel('A'))
        if rgb.size != self._canvas:
            canvas = PIL.Image.new('RGBA', self._canvas)
            canvas.paste(rgb)
            rgb = canvas
        return rgb if self._upright is None else rgb.transpose(self._upright)
