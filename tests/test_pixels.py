"""The Pillow pipeline on its own: every mode, colour profiles, limits, formats."""

import io
import struct
import zlib

import PIL.Image
import PIL.ImageCms
import PIL.ImageFile
import PIL.ImageStat
import pytest

from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.errors import UnsupportedImage
from asgilook.pictures import decoding
from asgilook.pictures import pixels
from tests.helpers import decode
from tests.helpers import draw_image

MAX_PIXELS = 50_000_000


def encode(image, format, **params):
    """``image`` saved in ``format``, as bytes."""
    output = io.BytesIO()
    image.save(output, format, **params)
    return output.getvalue()


def convert(data, max_pixels=MAX_PIXELS):
    """Run the pipeline; return the stored picture, decoded."""
    jpeg, size = pixels.convert(data, max_pixels)
    image = decode(jpeg)
    assert image.size == size
    assert image.mode == 'RGB'
    return image


def mean(image, box):
    """The average grey level of a region (0 black, 255 white)."""
    return PIL.ImageStat.Stat(image.crop(box).convert('L')).mean[0]


def png_chunk(kind, data):
    crc = struct.pack('>I', zlib.crc32(kind + data))
    return struct.pack('>I', len(data)) + kind + data + crc


def png_header_only(width, height):
    """A PNG of nothing but a header that claims ``width`` x ``height``."""
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', header) + png_chunk(b'IEND', b'')


def gif_descriptor(gif):
    """Where the first image descriptor (``,``) of a GIF starts."""
    flags = gif[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while gif[at] == 0x21:  # An extension: its label, then sub-blocks.
        at += 2
        while gif[at]:
            at += gif[at] + 1
        at += 1
    assert gif[at] == 0x2C
    return at


def _s15(value):
    return struct.pack('>i', round(value * 65536))


def gray_profile(gamma):
    """An ICC v2 grey profile with a plain gamma curve and a D50 white."""
    white = _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    curve = struct.pack('>IH', 1, round(gamma * 256)) + b'\0\0'
    tags = [(b'wtpt', b'XYZ \0\0\0\0' + white), (b'kTRC', b'curv\0\0\0\0' + curve)]
    offset = 128 + 4 + 12 * len(tags)
    table = body = b''
    for signature, data in tags:
        table += signature + struct.pack('>II', offset + len(body), len(data))
        body += data
    header = struct.pack(
        '>I4sI4s4s4s', offset + len(body), b'\0\0\0\0', 0x02100000, b'mntr', b'GRAY',
        b'XYZ ',
    )  # fmt: skip
    header += b'\0' * 12 + b'acsp' + b'\0' * 28 + white
    header += b'\0' * (128 - len(header))
    return header + struct.pack('>I', len(tags)) + table + body


def swapped_profile():
    """sRGB with its red and blue primaries swapped: its red is sRGB's blue."""
    srgb = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile('sRGB'))
    profile = bytearray(srgb.tobytes())
    (count,) = struct.unpack('>I', profile[128:132])
    entries = {
        bytes(profile[at : at + 4]): at for at in range(132, 132 + 12 * count, 12)
    }
    red, blue = entries[b'rXYZ'] + 4, entries[b'bXYZ'] + 4
    profile[red : red + 8], profile[blue : blue + 8] = (
        profile[blue : blue + 8],
        profile[red : red + 8],
    )
    return bytes(profile)


def gradient(mode, size=(64, 32)):
    """Black on the left to white on the right, in ``mode``."""
    grey = PIL.Image.linear_gradient('L').rotate(90).resize(size)
    if mode == 'I;16':
        return grey.convert('I').point(lambda value: value * 257).convert('I;16')
    if mode == 'I':
        return grey.convert('I').point(lambda value: value * 257)
    if mode == 'I 8-bit':
        return grey.convert('I')
    if mode == 'I signed':
        return grey.convert('I').point(lambda value: value * 1000 - 100_000)
    if mode == 'F':
        return grey.convert('F').point(lambda value: value / 255)
    if mode == 'F 8-bit':
        return grey.convert('F')
    if mode == 'F wide':
        return grey.convert('F').point(lambda value: value * 40 - 5000)
    return grey.convert(mode)


@pytest.mark.parametrize(
    ('mode', 'format'),
    [
        ('1', 'PNG'), ('1', 'TIFF'), ('L', 'PNG'), ('L', 'JPEG'), ('LA', 'PNG'),
        ('LA', 'TIFF'), ('P', 'PNG'), ('P', 'TIFF'), ('RGB', 'WEBP'),
        ('RGB', 'BMP'), ('RGBA', 'PNG'), ('RGBA', 'TIFF'), ('CMYK', 'JPEG'),
        ('CMYK', 'TIFF'), ('YCbCr', 'TIFF'), ('I;16', 'PNG'), ('I;16', 'TIFF'),
        ('I', 'TIFF'), ('I 8-bit', 'TIFF'), ('I signed', 'TIFF'), ('F', 'TIFF'),
        ('F 8-bit', 'TIFF'), ('F wide', 'TIFF'),
    ],
)  # fmt: skip
def test_every_mode_keeps_its_tones(mode, format):
    upload = encode(gradient(mode), format)
    assert PIL.Image.open(io.BytesIO(upload)).mode == mode.split()[0]

    image = convert(upload)

    assert image.size == (64, 32)
    # Black stays black, white stays white, and the middle stays grey: deep
    # modes are scaled, neither clipped to white nor to black.
    assert mean(image, (0, 0, 6, 32)) < 40
    assert mean(image, (58, 0, 64, 32)) > 215
    assert 90 < mean(image, (28, 0, 36, 32)) < 165


def test_float_pixels_out_of_every_range_do_not_break_the_scaling():
    infinite = gradient('F 8-bit')
    infinite.putpixel((0, 0), float('inf'))
    constant = PIL.Image.new('F', (64, 32), -7.5)

    assert mean(convert(encode(infinite, 'TIFF')), (58, 0, 64, 32)) > 215
    assert mean(convert(encode(constant, 'TIFF')), (0, 0, 64, 32)) < 5


def test_lab_pixels_are_converted_colorimetrically():
    srgb = PIL.ImageCms.createProfile('sRGB')
    lab = PIL.ImageCms.createProfile('LAB')
    to_lab = PIL.ImageCms.buildTransform(srgb, lab, 'RGB', 'LAB')
    red = PIL.ImageCms.applyTransform(PIL.Image.new('RGB', (16, 16), 'red'), to_lab)

    image = convert(encode(red, 'TIFF'))

    red_channel, green, blue = image.getpixel((8, 8))
    assert red_channel > 230 and green < 30 and blue < 30


def half_transparent(mode):
    """Left half fully transparent, right half opaque dark red (or dark grey)."""
    image = PIL.Image.new('RGBA', (40, 20), (0, 0, 0, 0))
    image.paste((128, 0, 0, 255), (20, 0, 40, 20))
    if mode == 'RGBA':
        return image, {}
    if mode == 'LA':
        return image.convert('LA'), {}
    if mode == 'P':
        palette = image.convert('RGB').quantize(4)
        return palette, {'transparency': palette.getpixel((0, 0))}
    colour = (0, 0, 255) if mode == 'RGB' else 7
    keyed = PIL.Image.new(mode, (40, 20), colour)
    keyed.paste((128, 0, 0) if mode == 'RGB' else 64, (20, 0, 40, 20))
    return keyed, {'transparency': colour}


@pytest.mark.parametrize(
    ('mode', 'format'),
    [
        ('RGBA', 'PNG'), ('RGBA', 'WEBP'), ('RGBA', 'TIFF'), ('LA', 'PNG'),
        ('P', 'PNG'), ('P', 'GIF'), ('RGB', 'PNG'), ('L', 'PNG'),
    ],
)  # fmt: skip
def test_transparency_is_flattened_onto_white(mode, format):
    image, params = half_transparent(mode)

    stored = convert(encode(image, format, **params))

    assert min(stored.getpixel((5, 10))) > 245
    assert mean(stored, (25, 0, 40, 20)) < 100


def test_half_transparent_black_becomes_grey():
    image = convert(encode(PIL.Image.new('RGBA', (16, 16), (0, 0, 0, 128)), 'PNG'))
    assert 110 < mean(image, (0, 0, 16, 16)) < 145


def test_an_opaque_alpha_channel_keeps_the_colours():
    image = convert(encode(PIL.Image.new('RGBA', (16, 16), (200, 30, 30, 255)), 'PNG'))
    red, green, blue = image.getpixel((8, 8))
    assert red > 185 and green < 45 and blue < 45


@pytest.mark.parametrize('format', ['PNG', 'JPEG', 'TIFF', 'WEBP'])
def test_an_rgb_profile_is_converted_to_srgb(format):
    # Red in a space whose red primary is sRGB's blue is, to the eye, blue.
    red = PIL.Image.new('RGB', (32, 32), (255, 0, 0))
    upload = encode(red, format, icc_profile=swapped_profile())

    red_channel, green, blue = convert(upload).getpixel((16, 16))

    assert blue > 200 and red_channel < 40 and green < 40


def test_a_grey_profile_is_converted_to_srgb():
    # Grey 128 with a linear (gamma 1) curve is brighter in sRGB's curve.
    grey = PIL.Image.new('L', (16, 16), 128)
    image = convert(encode(grey, 'PNG', icc_profile=gray_profile(1.0)))
    assert 175 < mean(image, (0, 0, 16, 16)) < 200


@pytest.mark.parametrize(
    ('mode', 'profile'),
    [
        ('RGB', b'not an ICC profile at all' * 8),
        ('RGB', None),
        ('L', 'swapped'),
        ('RGB', 'grey'),
    ],
    ids=['broken', 'missing', 'rgb-profile-on-grey', 'grey-profile-on-rgb'],
)
def test_an_unusable_profile_is_ignored(mode, profile):
    profile = {'swapped': swapped_profile(), 'grey': gray_profile(1.0)}.get(
        profile, profile
    )
    image = PIL.Image.new(mode, (16, 16), 128 if mode == 'L' else (128, 128, 128))
    params = {'icc_profile': profile} if profile else {}

    stored = convert(encode(image, 'PNG', **params))

    assert 120 < mean(stored, (0, 0, 16, 16)) < 136


def test_a_cmyk_jpeg_keeps_its_colour():
    red = PIL.Image.new('CMYK', (16, 16), (0, 255, 255, 0))
    red_channel, green, blue = convert(encode(red, 'JPEG')).getpixel((8, 8))
    assert red_channel > 230 and green < 30 and blue < 30


def test_only_the_first_frame_of_an_animation_is_decoded():
    frames = [PIL.Image.new('RGB', (16, 16), colour) for colour in ('red', 'blue')]
    gif = encode(frames[0], 'GIF', save_all=True, append_images=frames[1:])
    # Everything after the first frame is garbage: decoding it would fail.
    second = gif.index(b'\x21\xf9', gif_descriptor(gif))
    gif = gif[:second] + b'\x2c' + b'\xff' * 64

    red, green, blue = convert(gif).getpixel((8, 8))

    assert red > 230 and green < 30 and blue < 30


@pytest.mark.parametrize('format', ['PNG', 'WEBP', 'TIFF'])
def test_animations_and_pages_keep_their_first_frame(format):
    frames = [PIL.Image.new('RGB', (16, 16), colour) for colour in ('red', 'blue')]
    upload = encode(frames[0], format, save_all=True, append_images=frames[1:])
    red, green, blue = convert(upload).getpixel((8, 8))
    assert red > 230 and green < 30 and blue < 30


def test_the_pixel_limit_is_checked_before_anything_is_decoded(monkeypatch):
    def load(self):
        raise AssertionError('the bitmap was decoded')

    monkeypatch.setattr(PIL.ImageFile.ImageFile, 'load', load)
    upload = encode(PIL.Image.new('RGB', (300, 200)), 'PNG')

    with pytest.raises(ImageTooLarge, match='300x200 is 60,000'):
        pixels.convert(upload, 59_999)


def test_the_pixel_limit_does_not_rely_on_pillows_global_limit(monkeypatch):
    monkeypatch.setattr(PIL.Image, 'MAX_IMAGE_PIXELS', None)
    with pytest.raises(ImageTooLarge, match='too many pixels'):
        pixels.convert(png_header_only(100_000, 100_000), MAX_PIXELS)


@pytest.mark.parametrize(
    'size',
    [(100_000, 100_000), (10_000, 10_000)],
    ids=['over-pillows-error-limit', 'over-pillows-warning-limit'],
)
def test_pillows_own_bomb_checks_also_answer_too_large(size):
    with pytest.raises(ImageTooLarge, match='at most 50,000,000'):
        pixels.convert(png_header_only(*size), MAX_PIXELS)


def test_a_side_longer_than_jpeg_allows_is_too_large():
    with pytest.raises(ImageTooLarge, match='70000x10 pixels'):
        pixels.convert(png_header_only(70_000, 10), MAX_PIXELS)


def webp(kind, size=(64, 32)):
    """A WebP with a ``VP8X``, ``VP8L`` or ``VP8 `` (lossy) first chunk."""
    image = PIL.Image.new('RGB', size, 'red')
    if kind == 'VP8X':
        frames = [image, PIL.Image.new('RGB', size, 'blue')]
        data = encode(frames[0], 'WEBP', save_all=True, append_images=frames[1:])
    else:
        data = encode(image, 'WEBP', lossless=kind == 'VP8L')
    assert data[12:16] == kind.ljust(4).encode()
    return data


@pytest.mark.parametrize('kind', ['VP8X', 'VP8L', 'VP8'])
def test_a_webp_canvas_is_checked_before_pillow_opens_it(monkeypatch, kind):
    # libwebp allocates the whole canvas as Pillow opens a WebP.
    def never(*args, **kwargs):
        raise AssertionError('Pillow opened the WebP')

    monkeypatch.setattr(PIL.Image, 'open', never)

    with pytest.raises(ImageTooLarge, match='64x32 is 2,048'):
        pixels.convert(webp(kind), 2047)


def test_a_webp_canvas_of_a_bomb_is_refused():
    bomb = bytearray(webp('VP8X'))
    bomb[24:30] = (12_999).to_bytes(3, 'little') * 2

    with pytest.raises(ImageTooLarge, match='13000x13000'):
        pixels.convert(bytes(bomb), MAX_PIXELS)


def test_a_webp_without_pixels_is_invalid():
    empty = bytearray(webp('VP8'))
    empty[26:28] = b'\0\0'

    with pytest.raises(InvalidImage, match='0x32: it has no pixels'):
        pixels.convert(bytes(empty), MAX_PIXELS)


def test_a_webp_of_an_unknown_layout_is_not_an_image():
    odd = bytearray(webp('VP8L'))
    odd[12:16] = b'VP8?'

    with pytest.raises(UnsupportedImage, match='not an image'):
        pixels.convert(bytes(odd), MAX_PIXELS)


@pytest.mark.parametrize(
    ('data', 'words'),
    [
        (encode(PIL.Image.new('RGB', (16, 16)), 'ICO'), 'in the ICO format'),
        (encode(PIL.Image.new('RGB', (16, 16)), 'PCX'), 'in the PCX format'),
        (encode(PIL.Image.new('RGB', (16, 16)), 'PPM'), 'in the PPM format'),
        (b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n', 'in the EPS format'),
        (b'<html><body>not a picture</body></html>', 'not an image'),
        (b'', 'not an image'),
        (b'\0', 'not an image'),
    ],
    ids=['ico', 'pcx', 'ppm', 'eps', 'html', 'empty', 'one-byte'],
)
def test_other_formats_are_unsupported_and_named(data, words):
    with pytest.raises(UnsupportedImage, match=words) as raised:
        pixels.convert(data, MAX_PIXELS)
    assert 'send JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC or AVIF' in str(raised.value)


def test_a_corrupt_header_of_an_accepted_format_is_invalid():
    png = bytearray(encode(PIL.Image.new('RGB', (16, 16)), 'PNG'))
    png[20] ^= 0x01  # A bit of the width: the header's checksum fails.

    with pytest.raises(InvalidImage, match='looks like a PNG') as raised:
        pixels.convert(bytes(png), MAX_PIXELS)
    assert not isinstance(raised.value, UnsupportedImage)


def test_a_header_its_plugin_cannot_handle_is_invalid():
    bmp = bytearray(encode(PIL.Image.new('RGB', (16, 16)), 'BMP'))
    bmp[28:30] = struct.pack('<H', 152)  # Bits per pixel.

    with pytest.raises(InvalidImage, match='header is truncated or corrupt'):
        pixels.convert(bytes(bmp), MAX_PIXELS)


@pytest.mark.parametrize('format', ['JPEG', 'PNG', 'GIF', 'WEBP', 'BMP', 'TIFF'])
def test_a_truncated_image_is_invalid(format):
    noise = PIL.Image.effect_noise((64, 64), 60).convert('RGB')
    data = encode(noise, format)

    with pytest.raises(InvalidImage, match='truncated or corrupt') as raised:
        pixels.convert(data[: len(data) * 2 // 3], MAX_PIXELS)
    assert not isinstance(raised.value, (UnsupportedImage, ImageTooLarge))


def exif_with_orientation(kind, value):
    """A big-endian EXIF block whose only tag is an orientation of ``kind``."""
    tag = struct.pack('>HHI', decoding.ORIENTATION_TAG, kind, 1)
    entry = tag + value.ljust(4, b'\0')
    return b'Exif\0\0MM\0\x2a\0\0\0\x08' + b'\0\x01' + entry + b'\0' * 4


@pytest.mark.parametrize(
    ('exif', 'size'),
    [
        (exif_with_orientation(3, struct.pack('>H', 6)), (20, 40)),
        (exif_with_orientation(3, struct.pack('>H', 9)), (40, 20)),
        (exif_with_orientation(2, b'6\0'), (40, 20)),
        (b'Exif\0\0MM?*\0\0\0\x08' + b'\0' * 20, (40, 20)),
    ],
    ids=['six', 'nine', 'text', 'broken'],
)
def test_only_a_sound_orientation_turns_the_picture(exif, size):
    upload = encode(PIL.Image.new('RGB', (40, 20), 'red'), 'PNG', exif=exif)
    assert convert(upload).size == size


def test_a_memory_error_in_decoding_is_not_blamed_on_the_upload(monkeypatch):
    def exhausted(self):
        raise MemoryError

    monkeypatch.setattr(PIL.ImageFile.ImageFile, 'load', exhausted)
    with pytest.raises(MemoryError):
        pixels.convert(encode(PIL.Image.new('RGB', (8, 8)), 'PNG'), MAX_PIXELS)


def test_thumbnails_have_exactly_the_size_asked_for():
    stored, _ = pixels.convert(encode(gradient('RGB', (333, 211)), 'PNG'), MAX_PIXELS)

    sizes = [(166, 105), (83, 52), (41, 26), (20, 13)]
    thumbnails = pixels.thumbnails(stored, sizes)
    assert [decode(thumbnail).size for thumbnail in thumbnails] == sizes


@pytest.mark.parametrize('format', ['PNG', 'JPEG'])
def test_a_picture_smaller_than_the_smallest_thumbnail_gets_none(format):
    upload = draw_image((60, 200), format=format)
    ingested = pixels.ingest(upload, MAX_PIXELS, 64)
    assert ingested.thumbnails == ()
    assert decode(ingested.original).size == (60, 200)
    assert ingested.lossless == (format == 'JPEG')
