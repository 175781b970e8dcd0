"""Animated GIF, WebP and APNG uploads: their animation, as an animated WebP."""

import io
import struct

import PIL.Image
import PIL.ImageFile
import PIL.ImageSequence
import pytest

from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.pictures import animation as animation_module
from asgilook.pictures import decoding
from tests.test_hostile import GPS
from tests.test_hostile import XMP
from tests.test_hostile import colour_at
from tests.test_hostile import exif_source
from tests.test_hostile import gif_of_many_frames
from tests.test_pixels import encode
from tests.test_pixels import gif_descriptor
from tests.test_pixels import swapped_profile

MAX_PIXELS = 50_000_000
COLOURS = [(220, 0, 0), (0, 160, 0), (0, 0, 220)]


def animation(format, colours=COLOURS, size=(64, 48), **params):
    """An animation of frames of one colour each, in ``format``."""
    frames = [PIL.Image.new('RGB', size, colour) for colour in colours]
    return encode(frames[0], format, save_all=True, append_images=frames[1:], **params)


def animate(data, **limits):
    return animation_module.animate(
        data, limits.pop('max_pixels', MAX_PIXELS), **limits
    )


def frames_of(webp):
    """An animated WebP's frames (RGBA) and durations, and its loop count."""
    image = PIL.Image.open(io.BytesIO(webp))
    assert image.format == 'WEBP'
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        image.load()
        frames.append((image.convert('RGBA'), image.info['duration']))
    return frames, image.info['loop']


def chunks(webp):
    """The types of a WebP's top-level RIFF chunks."""
    assert webp[:4] == b'RIFF' and webp[8:12] == b'WEBP'
    found, at = [], 12
    while at < len(webp):
        (size,) = struct.unpack('<I', webp[at + 4 : at + 8])
        found.append(webp[at : at + 4])
        at += 8 + size + (size & 1)
    return found


def frame_rects(webp):
    """Where an animated WebP's frames are drawn: ``(x, y, width, height)``."""
    rects, at = [], 12
    while at < len(webp):
        (size,) = struct.unpack('<I', webp[at + 4 : at + 8])
        if webp[at : at + 4] == b'ANMF':
            x, y, width, height = (
                int.from_bytes(webp[at + 8 + k : at + 11 + k], 'little')
                for k in (0, 3, 6, 9)
            )
            rects.append((x * 2, y * 2, width + 1, height + 1))
        at += 8 + size + (size & 1)
    return rects


def near(colour, expected, tolerance=40):
    return all(
        abs(got - want) <= tolerance for got, want in zip(colour, expected, strict=True)
    )


def second_descriptor(gif):
    """Where a GIF's second image descriptor (after its control block) starts."""
    at = gif.index(b'\x21\xf9', gif_descriptor(gif)) + 8
    assert gif[at] == 0x2C
    return at


# What is kept


@pytest.mark.parametrize('format', ['GIF', 'WEBP', 'PNG'])
def test_an_animation_keeps_its_frames_and_their_durations(format):
    upload = animation(format, duration=[100, 200, 300], loop=0)

    frames, loop = frames_of(animate(upload))

    assert [duration for _, duration in frames] == [100, 200, 300]
    assert loop == 0
    for (frame, _), colour in zip(frames, COLOURS, strict=True):
        assert frame.size == (64, 48)
        assert near(frame.getpixel((32, 24)), (*colour, 255))


@pytest.mark.parametrize(
    ('format', 'params', 'loop'),
    [
        ('GIF', {}, 1),
        ('GIF', {'loop': 0}, 0),
        ('GIF', {'loop': 2}, 3),
        ('WEBP', {'loop': 5}, 5),
        ('PNG', {'loop': 4}, 4),
    ],
    ids=['gif-once', 'gif-for-ever', 'gif-repeated', 'webp', 'apng'],
)
def test_it_plays_as_many_times_as_the_upload(format, params, loop):
    # A GIF's count is of repeats after the first showing, and a GIF without
    # one is shown once; WebP and APNG count every showing.
    assert frames_of(animate(animation(format, **params)))[1] == loop


def test_transparency_is_kept():
    frames = []
    for colour in COLOURS:
        frame = PIL.Image.new('RGBA', (64, 48), (*colour, 255))
        frame.paste((0, 0, 0, 0), (16, 12, 48, 36))
        frames.append(frame)
    upload = encode(frames[0], 'GIF', save_all=True, append_images=frames[1:])

    for (frame, _), colour in zip(frames_of(animate(upload))[0], COLOURS, strict=True):
        assert frame.getpixel((32, 24))[3] == 0
        assert near(frame.getpixel((4, 4)), (*colour, 255))


def test_transparency_around_the_frames_is_canvas_left_uncovered():
    # libwebp crops each frame to what it draws: a frame opaque where it is
    # not transparent is stored without alpha, on a canvas that viewers
    # start transparent (Pillow reads such a WebP as RGB, black there).
    frames = []
    for colour in COLOURS:
        frame = PIL.Image.new('RGBA', (64, 48), (0, 0, 0, 0))
        frame.paste((*colour, 255), (32, 0, 64, 48))
        frames.append(frame)
    upload = encode(frames[0], 'GIF', save_all=True, append_images=frames[1:])

    assert frame_rects(animate(upload))[0] == (32, 0, 32, 48)


def test_grey_frames_become_rgb():
    frames = [PIL.Image.new('L', (16, 16), level) for level in (0, 128, 255)]
    upload = encode(
        frames[0], 'GIF', save_all=True, append_images=frames[1:], optimize=False
    )
    assert PIL.Image.open(io.BytesIO(upload)).mode == 'L'

    frames, _ = frames_of(animate(upload))

    assert [frame.getpixel((8, 8))[:3] for frame, _ in frames] == [
        (0, 0, 0),
        (128, 128, 128),
        (255, 255, 255),
    ]


def test_the_frames_are_upright():
    upright = exif_source(120, 80, 6)
    frames = [upright, upright.copy()]
    frames[1].putpixel((0, 0), (255, 255, 255))
    exif = PIL.Image.Exif()
    exif[decoding.ORIENTATION_TAG] = 6
    upload = encode(
        frames[0], 'WEBP', save_all=True, append_images=frames[1:], exif=exif.tobytes()
    )

    for frame, _ in frames_of(animate(upload))[0]:
        assert frame.size == (120, 80)
        assert colour_at(frame.convert('RGB'), 25, 20) == 'red'
        assert colour_at(frame.convert('RGB'), 95, 20) == 'blue'
        assert colour_at(frame.convert('RGB'), 60, 65) == 'green'


@pytest.mark.parametrize('format', ['WEBP', 'PNG'])
def test_the_colours_are_converted_to_srgb_and_no_metadata_is_kept(format):
    # Red in a space whose red primary is sRGB's blue is, to the eye, blue.
    exif = PIL.Image.Exif()
    exif[0x010F] = 'Nikon'
    exif.get_ifd(0x8825).update(GPS)
    upload = animation(
        format,
        colours=[(255, 0, 0), (128, 0, 0)],
        icc_profile=swapped_profile(),
        exif=exif.tobytes(),
        **({'xmp': XMP} if format == 'WEBP' else {}),
    )
    assert b'Nikon' in upload

    webp = animate(upload)

    assert set(chunks(webp)) == {b'VP8X', b'ANIM', b'ANMF'}
    assert not [secret for secret in (b'Nikon', b'xmpmeta', b'Exif') if secret in webp]
    bright, dark = (frame.getpixel((32, 24)) for frame, _ in frames_of(webp)[0])
    assert bright[2] > 200 and max(bright[:2]) < 50
    assert 80 < dark[2] < 160 and max(dark[:2]) < 50


def test_an_apngs_default_picture_is_not_a_frame():
    default = PIL.Image.new('RGB', (64, 48), 'white')
    frames = [PIL.Image.new('RGB', (64, 48), colour) for colour in COLOURS]
    upload = encode(
        default, 'PNG', save_all=True, append_images=frames, default_image=True
    )
    assert PIL.Image.open(io.BytesIO(upload)).n_frames == 4

    frames, _ = frames_of(animate(upload))

    assert len(frames) == 3
    assert near(frames[0][0].getpixel((8, 8)), (*COLOURS[0], 255))


def test_a_frame_past_the_screen_enlarges_the_canvas():
    upload = bytearray(animation('GIF', colours=['red', 'blue'], size=(8, 8)))
    at = second_descriptor(upload)
    upload[at + 1 : at + 5] = struct.pack('<HH', 4, 4)  # Its left and top.

    webp = animate(bytes(upload))

    first, second = frames_of(webp)[0]
    assert first[0].size == second[0].size == (12, 12)
    assert near(first[0].getpixel((2, 2)), (255, 0, 0, 255))
    assert near(second[0].getpixel((10, 10)), (0, 0, 255, 255))
    # The first frame leaves the rest of the canvas transparent.
    assert frame_rects(webp)[0] == (0, 0, 8, 8)


def test_a_gif_without_its_trailer_keeps_its_frames():
    upload = animation('GIF')
    assert upload.endswith(b'\x3b')

    assert len(frames_of(animate(upload[:-1]))[0]) == 3


def test_frames_past_a_byte_that_starts_no_block_are_not_kept():
    # Pillow would search on, one byte at a time; browsers stop there.
    upload = animation('GIF')
    third = upload.index(b'\x21\xf9', second_descriptor(upload))
    upload = upload[:third] + b'\x00' + upload[third:]
    assert PIL.Image.open(io.BytesIO(upload)).n_frames == 3

    assert len(frames_of(animate(upload))[0]) == 2


def test_the_encoder_sees_only_the_frames_counted():
    upload = animation('GIF')
    frames = animation_module._Animation(
        PIL.Image.open(io.BytesIO(upload)), 0, 2, (64, 48), upright=None
    )

    colours = [frame.getpixel((8, 8)) for frame in PIL.ImageSequence.Iterator(frames)]

    assert len(colours) == 2
    with pytest.raises(EOFError):
        frames.seek(-1)


@pytest.mark.parametrize(
    'upload',
    [
        animation('GIF', colours=['red']),
        animation('PNG', colours=['red']),
        animation('WEBP', colours=['red']),
        encode(PIL.Image.new('RGB', (8, 8)), 'JPEG'),
        animation('TIFF'),
        animation('HEIF'),
        animation('AVIF'),
        encode(
            PIL.Image.new('RGB', (8, 8)),
            'PNG',
            save_all=True,
            append_images=[PIL.Image.new('RGB', (8, 8), 'red')],
            default_image=True,
        ),
    ],
    ids=['gif', 'png', 'webp', 'jpeg', 'tiff-pages', 'heic-burst', 'avif-sequence',
         'apng-of-one-frame'],
)  # fmt: skip
def test_a_still_picture_has_no_animation(upload):
    assert animate(upload) is None


# Limits: checked from the headers, before any frame is decoded


def never(self):
    raise AssertionError('a frame was decoded')


@pytest.fixture
def no_decoding(monkeypatch):
    monkeypatch.setattr(PIL.ImageFile.ImageFile, 'load', never)


@pytest.mark.parametrize('frames', [1_001, 200_000])
def test_too_many_gif_frames_are_refused_before_any_is_decoded(no_decoding, frames):
    # Counting stops past the limit: Pillow would read every frame's header.
    upload = gif_of_many_frames(frames)

    with pytest.raises(ImageTooLarge, match='more than 1,000 frames'):
        animate(upload)


@pytest.mark.parametrize('format', ['WEBP', 'PNG'])
def test_too_many_frames_are_refused_before_any_is_decoded(no_decoding, format):
    with pytest.raises(ImageTooLarge, match='more than 2 frames'):
        animate(animation(format), max_frames=2)


@pytest.mark.parametrize('format', ['GIF', 'WEBP', 'PNG'])
def test_too_many_pixels_in_all_are_refused_before_any_is_decoded(format):
    upload = animation(format, size=(100, 100))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PIL.ImageFile.ImageFile, 'load', never)
        with pytest.raises(ImageTooLarge, match='3 frames of 100x100 are 30,000'):
            animate(upload, max_total_pixels=29_999)
    assert animate(upload, max_total_pixels=30_000) is not None


def test_a_later_frame_too_large_is_refused_before_any_is_decoded(no_decoding):
    upload = bytearray(animation('GIF', colours=['red', 'blue'], size=(8, 8)))
    at = second_descriptor(upload)
    upload[at + 5 : at + 9] = struct.pack('<HH', 9_000, 9_000)  # Its size.

    with pytest.raises(ImageTooLarge, match='9000x9000 is 81,000,000'):
        animate(bytes(upload))


def test_a_canvas_wider_than_a_webp_is_refused(no_decoding):
    upload = bytearray(animation('GIF', colours=['red', 'blue'], size=(1, 1)))
    upload[6:10] = struct.pack('<HH', 20_000, 2)  # The screen.

    with pytest.raises(ImageTooLarge, match='at most 16,383 pixels on a side'):
        animate(bytes(upload))


# Broken: a 400, never a 500


def test_an_animation_cut_short_is_invalid():
    upload = animation('GIF', size=(64, 48), colours=['red', 'blue', 'green'])
    third = upload.index(b'\x21\xf9', second_descriptor(upload)) + 8

    with pytest.raises(InvalidImage, match='The GIF image is truncated or corrupt'):
        animate(upload[: third + 20])


def test_a_broken_apng_is_invalid():
    upload = animation('PNG')
    last = upload.rindex(b'fdAT')

    with pytest.raises(InvalidImage, match='The PNG image is truncated or corrupt'):
        animate(upload[: last + 12])


def test_a_memory_error_is_not_blamed_on_the_upload(monkeypatch):
    upload = animation('GIF')

    def exhausted(self):
        raise MemoryError

    monkeypatch.setattr(PIL.ImageFile.ImageFile, 'load', exhausted)
    with pytest.raises(MemoryError):
        animate(upload)


def test_what_decode_refuses_animate_refuses():
    with pytest.raises(InvalidImage):
        animate(b'GIF89a')
    with pytest.raises(ImageTooLarge):
        animate(animation('GIF'), max_pixels=1000)


@pytest.mark.parametrize(
    ('format', 'frames', 'expected'),
    [
        ('GIF', 1, True),
        ('WEBP', 1, True),
        ('PNG', 2, True),
        ('PNG', 1, False),
        ('JPEG', 1, False),
        ('BMP', 1, False),
    ],
)
def test_only_what_may_be_animated_is_asked(format, frames, expected):
    images = [PIL.Image.new('RGB', (8, 8), colour) for colour in ('red', 'blue')]
    output = io.BytesIO()
    extra = {'save_all': True, 'append_images': images[1:frames]} if frames > 1 else {}
    images[0].save(output, format, **extra)
    assert animation_module.may_animate(output.getvalue()) is expected
