"""HEIC and AVIF uploads: the same guarantees as every other accepted format."""

import base64
import dataclasses
import io
import struct
import tracemalloc
import zlib

import hypothesis
import hypothesis.strategies as st
import PIL.Image
import PIL.ImageFile
import pillow_heif
import pytest

from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.errors import UnsupportedImage
from asgilook.pictures import decoding
from asgilook.pictures import heif
from asgilook.pictures import pixels
from tests.helpers import decode
from tests.helpers import draw_image
from tests.test_hostile import GPS
from tests.test_hostile import SECRETS
from tests.test_hostile import XMP
from tests.test_hostile import colour_at
from tests.test_hostile import exif_source
from tests.test_hostile import jpeg_segments
from tests.test_hostile import stored_files
from tests.test_pixels import encode
from tests.test_pixels import gradient
from tests.test_pixels import half_transparent
from tests.test_pixels import mean
from tests.test_pixels import swapped_profile
from tests.test_uploads import form

MAX_PIXELS = 50_000_000
FORMATS = ['HEIF', 'AVIF']
NAMES = {'HEIF': 'HEIC', 'AVIF': 'AVIF'}


def convert(data, max_pixels=MAX_PIXELS):
    """Run the pipeline; return the stored picture, decoded."""
    jpeg, size = pixels.convert(data, max_pixels)
    image = decode(jpeg)
    assert image.size == size
    return image


def photo(format, size=(320, 240), **params):
    """A picture of random ellipses, saved as HEIC or AVIF."""
    return encode(PIL.Image.open(io.BytesIO(draw_image(size))), format, **params)


def exif(orientation=None, **tags):
    """EXIF of ``tags`` (numbers as keys), and an orientation if one is given."""
    data = PIL.Image.Exif()
    if orientation is not None:
        data[decoding.ORIENTATION_TAG] = orientation
    data.update({int(tag, 16): value for tag, value in tags.items()})
    return data.tobytes()


def patched_ispe(data, width, height):
    """``data`` with the first picture size (``ispe``) it declares replaced."""
    at = data.index(b'ispe') + 8  # After the box's type, its version and flags.
    return data[:at] + struct.pack('>II', width, height) + data[at + 8 :]


def box(kind, body, size=None):
    """An ISO BMFF box: its size (by default, its own), type and body."""
    return struct.pack('>I', 8 + len(body) if size is None else size) + kind + body


FTYP = box(b'ftyp', b'heic\0\0\0\0mif1heic')


def item_claiming(width, height):
    """The ``ipco`` box of an item of ``width`` x ``height``."""
    ispe = box(b'ispe', b'\0\0\0\0' + struct.pack('>II', width, height))
    return box(b'iprp', box(b'ipco', ispe))


def track_claiming(width, height, version):
    """The ``moov`` box of a track of that size, with a ``tkhd`` of ``version``."""
    times = 32 if version else 20  # 64-bit times and duration, or 32-bit.
    body = bytes([version]) + b'\0' * (3 + times + 52)
    body += struct.pack('>II', width << 16, height << 16)
    return box(b'moov', box(b'trak', box(b'tkhd', body)))


def heif_claiming(width, height):
    """An HEIF header of one item of ``width`` x ``height``, and no picture."""
    return FTYP + box(b'meta', b'\0\0\0\0' + item_claiming(width, height))


# Accepted, and stored like any other format


def test_each_format_has_its_plugin_and_only_the_pictures_are_read():
    # pillow-heif reads HEIF alone; Pillow's own plugin reads AVIF.
    assert PIL.Image.open(io.BytesIO(photo('HEIF'))).format == 'HEIF'
    assert PIL.Image.open(io.BytesIO(photo('AVIF'))).format == 'AVIF'
    assert PIL.Image.OPEN['HEIF'][0].__module__.startswith('pillow_heif')
    assert PIL.Image.OPEN['AVIF'][0].__module__ == 'PIL.AvifImagePlugin'
    options = pillow_heif.options
    assert not (options.THUMBNAILS or options.AUX_IMAGES or options.DEPTH_IMAGES)


@pytest.mark.parametrize('format', FORMATS)
def test_an_upload_is_stored_as_a_jpeg_with_its_thumbnails(client, format):
    resp = client.simulate_post('/images', body=photo(format, (640, 360)))

    assert resp.status_code == 201
    assert resp.json['size'] == [640, 360]
    stored = decode(client.simulate_get(resp.headers['Location']).content)
    assert stored.size == (640, 360)
    thumbnails = [client.simulate_get(uri).content for uri in resp.json['thumbnails']]
    assert [decode(data).size for data in thumbnails] == [(320, 180), (160, 90)]


@pytest.mark.parametrize('format', FORMATS)
def test_an_upload_in_a_form_is_stored(client, format):
    name = f'IMG_0001.{NAMES[format].lower()}'
    body, headers = form(('image', (name, photo(format))))

    resp = client.simulate_post('/images', body=body, headers=headers)

    assert resp.status_code == 201
    assert resp.json['size'] == [320, 240]


@pytest.mark.parametrize(
    ('format', 'brand'),
    [('HEIF', b'heic'), ('HEIF', b'mif1'), ('AVIF', b'avif'), ('AVIF', b'mif1')],
)
def test_each_format_goes_to_its_own_plugin_whatever_its_brand(format, brand):
    # Both plugins claim the generic brand "mif1": AVIF is tried first, and
    # a HEIC that it cannot read goes on to pillow-heif.
    upload = photo(format, (64, 32))
    upload = upload[:8] + brand + upload[12:]

    opened = PIL.Image.open(io.BytesIO(upload), formats=decoding.ACCEPTED_FORMATS)
    assert opened.format == format
    assert convert(upload).size == (64, 32)


@pytest.mark.parametrize('format', FORMATS)
def test_a_sequence_keeps_its_first_picture(format):
    # An AVIF sequence (animation), or a HEIC of several pictures (a burst).
    frames = [PIL.Image.new('RGB', (64, 32), colour) for colour in ('red', 'blue')]
    upload = encode(frames[0], format, save_all=True, append_images=frames[1:])
    assert PIL.Image.open(io.BytesIO(upload)).n_frames == 2

    red, green, blue = convert(upload).getpixel((32, 16))

    assert red > 200 and green < 40 and blue < 40


def test_other_formats_are_still_unsupported_and_the_list_names_these_two():
    for format in ('ICO', 'PPM', 'TGA', 'PCX'):
        with pytest.raises(UnsupportedImage) as raised:
            pixels.convert(encode(PIL.Image.new('RGB', (16, 16)), format), MAX_PIXELS)
        assert 'send JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC or AVIF.' in str(
            raised.value
        )


# Upright: the container's rotation and mirroring, applied exactly once


@pytest.mark.parametrize('format', FORMATS)
@pytest.mark.parametrize('orientation', [1, 2, 3, 5, 6, 8])
def test_the_orientation_is_applied_once(client, format, orientation):
    # Both encoders write an EXIF orientation as the container's rotation
    # and mirror (irot, imir); pillow-heif applies them as it decodes, and
    # Pillow's AVIF plugin reports them as the EXIF orientation.
    upload = encode(exif_source(120, 80, orientation), format, exif=exif(orientation))
    assert (b'irot' in upload or b'imir' in upload) == (orientation != 1)

    resp = client.simulate_post('/images', body=upload)

    assert resp.status_code == 201
    assert resp.json['size'] == [120, 80]
    stored = decode(client.simulate_get(resp.headers['Location']).content)
    assert stored.size == (120, 80)
    assert colour_at(stored, 25, 20) == 'red'
    assert colour_at(stored, 95, 20) == 'blue'
    assert colour_at(stored, 60, 65) == 'green'


@pytest.mark.parametrize('format', FORMATS)
def test_an_exif_orientation_the_container_does_not_have_is_ignored(format):
    # In HEIF (and so AVIF), irot and imir are the orientation; an EXIF one
    # without them is not applied, as browsers showing AVIF do not (here,
    # tag 0x0128, a SHORT of 2, becomes an orientation of 6 after the encoder
    # has had its say).
    upload = encode(exif_source(120, 80, 1), format, exif=exif(**{'0128': 2}))
    tag = upload.index(b'\x01\x28\x00\x03\x00\x00\x00\x01\x00\x02')
    upload = (
        upload[:tag] + b'\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06' + upload[tag + 10 :]
    )
    assert b'irot' not in upload and b'imir' not in upload

    stored = convert(upload)

    assert stored.size == (120, 80)
    assert colour_at(stored, 25, 20) == 'red'
    assert colour_at(stored, 60, 65) == 'green'


# No metadata, the right colours


@pytest.mark.parametrize('format', FORMATS)
def test_no_metadata_survives_in_the_stored_jpeg(client, format):
    upload = photo(
        format,
        exif=exif(**{'010F': 'Nikon', '013B': 'Alice', '8825': GPS}),
        xmp=XMP,
        icc_profile=swapped_profile(),
    )
    assert all(secret in upload for secret in (b'Nikon', b'Alice', b'xmpmeta', b'GPS'))
    assert PIL.Image.open(io.BytesIO(upload)).getexif().get_ifd(0x8825)

    resp = client.simulate_post('/images', body=upload)

    assert resp.status_code == 201
    stored = client.simulate_get(resp.headers['Location']).content
    assert set(jpeg_segments(stored)) <= {0xE0, 0xDB, 0xC0, 0xC4, 0xDA}
    assert [secret for secret in SECRETS if secret in stored] == []
    for uri in resp.json['thumbnails']:
        thumbnail = client.simulate_get(uri).content
        assert [secret for secret in SECRETS if secret in thumbnail] == []


@pytest.mark.parametrize('format', FORMATS)
def test_a_colour_profile_is_converted_to_srgb(format):
    # Red in a space whose red primary is sRGB's blue is, to the eye, blue.
    red = PIL.Image.new('RGB', (32, 32), (255, 0, 0))
    # NOTE: Made once: a profile says the second it was made in its header.
    profile = swapped_profile()
    upload = encode(red, format, icc_profile=profile)
    assert PIL.Image.open(io.BytesIO(upload)).info['icc_profile'] == profile

    red_channel, green, blue = convert(upload).getpixel((16, 16))

    assert blue > 200 and red_channel < 40 and green < 40


@pytest.mark.parametrize(
    ('mode', 'format'),
    [('RGB', 'HEIF'), ('RGB', 'AVIF'), ('L', 'HEIF'), ('L', 'AVIF'), ('I;16', 'HEIF')],
)
def test_every_mode_keeps_its_tones(mode, format):
    # A 16-bit grey picture is a 10-bit HEIC, which pillow-heif gives as I;16.
    upload = encode(gradient(mode), format)
    assert PIL.Image.open(io.BytesIO(upload)).mode == mode

    image = convert(upload)

    assert mean(image, (0, 0, 6, 32)) < 40
    assert mean(image, (58, 0, 64, 32)) > 215
    assert 90 < mean(image, (28, 0, 36, 32)) < 165


def test_a_10_bit_colour_heic_becomes_8_bits_without_losing_its_tones():
    rgb = gradient('RGB').tobytes()
    deep = pillow_heif.from_bytes(
        mode='RGB;16',
        size=(64, 32),
        data=struct.pack(f'<{len(rgb)}H', *(value * 257 for value in rgb)),
    )
    output = io.BytesIO()
    deep.save(output, quality=90)
    upload = output.getvalue()
    assert PIL.Image.open(io.BytesIO(upload)).info['bit_depth'] == 10

    image = convert(upload)

    assert mean(image, (0, 0, 6, 32)) < 40
    assert mean(image, (58, 0, 64, 32)) > 215
    assert 90 < mean(image, (28, 0, 36, 32)) < 165


@pytest.mark.parametrize('format', FORMATS)
def test_transparency_is_flattened_onto_white(format):
    image, _ = half_transparent('RGBA')
    upload = encode(image, format)
    assert PIL.Image.open(io.BytesIO(upload)).mode == 'RGBA'

    stored = convert(upload)

    assert min(stored.getpixel((5, 10))) > 245
    assert mean(stored, (25, 0, 40, 20)) < 100


# Too large: from the sizes the container declares, before Pillow opens it


@pytest.mark.parametrize('format', FORMATS)
@pytest.mark.parametrize(
    ('size', 'words'),
    [
        ((100_000, 100_000), '100000x100000 is 10,000,000,000'),
        ((8_000, 8_000), '8000x8000 is 64,000,000'),
        ((70_000, 10), 'at most 65,500 pixels on a side'),
    ],
)
def test_a_bomb_header_is_refused_before_pillow_opens_it(
    monkeypatch, format, size, words
):
    upload = patched_ispe(photo(format, (64, 32)), *size)

    def never(*args, **kwargs):
        raise AssertionError('Pillow opened the upload')

    monkeypatch.setattr(PIL.Image, 'open', never)
    with pytest.raises(ImageTooLarge, match=words):
        pixels.convert(upload, MAX_PIXELS)


@pytest.mark.parametrize('format', FORMATS)
def test_a_bomb_header_is_413_over_http_and_leaves_nothing(client, config, format):
    files_before = stored_files(config)

    resp = client.simulate_post(
        '/images', body=patched_ispe(photo(format, (64, 32)), 100_000, 100_000)
    )

    assert resp.status_code == 413
    assert resp.json['title'] == 'Image Too Large'
    assert 'too many pixels' in resp.json['description']
    assert stored_files(config) == files_before


def test_the_pixel_limit_is_checked_before_anything_is_decoded(monkeypatch):
    uploads = [photo(format) for format in FORMATS]

    def load(self):
        raise AssertionError('the bitmap was decoded')

    monkeypatch.setattr(PIL.ImageFile.ImageFile, 'load', load)
    for upload in uploads:
        with pytest.raises(ImageTooLarge, match='320x240 is 76,800'):
            pixels.convert(upload, 76_799)


@pytest.mark.parametrize('size', [(9_000, 9_000), (20_000, 20_000)])
def test_an_avif_sequence_is_checked_by_its_track_size(size):
    # libavif takes the size of a sequence from its track header, not its
    # items; over its own limit of 16,384 a side it would not even open it.
    frames = [PIL.Image.new('RGB', (64, 32), colour) for colour in ('red', 'blue')]
    upload = encode(frames[0], 'AVIF', save_all=True, append_images=frames[1:])
    track = upload.index(b'tkhd') - 4
    end = track + struct.unpack('>I', upload[track : track + 4])[0]
    assert PIL.Image.open(io.BytesIO(upload)).n_frames == 2
    declared = struct.pack('>II', size[0] << 16, size[1] << 16)
    upload = upload[: end - 8] + declared + upload[end:]

    with pytest.raises(ImageTooLarge, match=f'{size[0]}x{size[1]}'):
        pixels.convert(upload, MAX_PIXELS)


@pytest.mark.parametrize(
    'upload',
    [
        heif_claiming(60_000, 1_000),
        FTYP + box(b'meta', b'\0\0\0\0' + item_claiming(60_000, 1_000), size=0),
        FTYP + struct.pack('>I', 1) + b'meta'
        + struct.pack('>Q', 16 + 4 + len(item_claiming(60_000, 1_000)))
        + b'\0\0\0\0' + item_claiming(60_000, 1_000),
        FTYP + box(b'free', b'') + track_claiming(60_000, 1_000, version=0),
        FTYP + box(b'moov', b'') + track_claiming(60_000, 1_000, version=1),
    ],
    ids=['item', 'last-box', 'large-box', 'track-v0', 'track-v1'],
)  # fmt: skip
def test_every_size_the_container_declares_is_checked(upload):
    with pytest.raises(ImageTooLarge, match='60000x1000 is 60,000,000'):
        pixels.convert(upload, MAX_PIXELS)


@pytest.mark.parametrize(
    'upload',
    [
        FTYP + box(b'meta', b'\0\0\0\0' + item_claiming(100_000, 10), size=4),
        FTYP + box(b'meta', b'\0\0\0\0' + item_claiming(100_000, 10), size=999),
        FTYP + struct.pack('>I', 1) + b'meta' + struct.pack('>Q', 8),
        heif_claiming(64, 32),
    ],
    ids=['too-short', 'too-long', 'large-too-short', 'sizes-fine'],
)
def test_a_container_that_does_not_add_up_is_left_to_the_decoder(upload):
    with pytest.raises(InvalidImage, match='looks like a HEIC image, but its header'):
        pixels.convert(upload, MAX_PIXELS)


# Too large in the AV1 bitstream: what the decoder allocates, whatever the
# container says


def genuine(encoded):
    """An AVIF kept in the source as base64 of its zlib compression."""
    return zlib.decompress(base64.b64decode(''.join(encoded)))


# A 16384x16384 grey picture that Pillow saved (speed 10, quality 10): 2 kB.
AVIF_16384 = genuine([
    'eNpjYGCQSSupLEgsy0xjAAIQnZuZZpibmQjiv8xNLUlkgADFjJScIiiboSAzuYQBDfAVZJbkglmM',
    'QCyXmZOfDOK4gPiMEFFGXgYGdmkgWyMzMy8NrlYKyEllgvISywwMnfNz8sF2ZWQWFBUAac/MguR8',
    'IC2SWVyQCrHOAYpB9lZkgjVzAAmexDJD50Z5GZCAcHJ+TlFeck4F0FxeBrYGoJB4ZkEuzEdAZ7Ew',
    'MjWzAN2knJuSWCLEwMUt/73+//+/y5ikeB2MOvkkmDeGlf/vtmdgMDt/ymrRuzYL2fXTpRbfEuZ7',
    'sDDtknv1ZqWTMQutl5xjuvDHcEb9l74Plu0HflV+nS660TcgQ8tda5LPqL5RfaP6RvWN6hvVNxj0',
    'kakNAMXGxV0=',
])  # fmt: skip
# The same, its ispe shrunk to 64x64, its sequence header rewritten to declare
# frames of 64x64 at most (in 14-bit fields, with frame IDs), and its frame
# header to override that with 16384x16384 (AV1 specification, 5.9.5).
AVIF_16384_OVERRIDDEN = genuine([
    'eNpjYGCQSSupLEgsy0xjAAIQnZuZZpibmQjiv8xNLUlkgADFjJScIiiboSAzuYQBDfAVZJbkglmM',
    'QCyXmZOfDOK4gPiMEFFGXgYGdhUgWyMzMy8NrlYKyEllgvISywwMnfNz8sF2ZWQWFBUAac/MguR8',
    'IC2SWVyQCrXPAYqB9lZkgjVzAAmexDJD50Z5GZCAcHJ+TlFeck4F0FxeBrYGoJB4ZkEuzEdAZ7Ew',
    'MjWzAN2kk5uSWCLEwMUvwMDwu4T5A/+TCJMDzo4rjPr4BOL///+/g3ljWPn/bnsGBrPzp6wWvWuz',
    'kF0/XWrxLWG+BwvTLrlXb1Y6GbPQesk5pgt/DGfUf+n7YNl+4Ffl1+miG30DMrTctSb5jOob1Teq',
    'b1TfqL5RfYNBH5naAGytycI=',
])  # fmt: skip


@pytest.mark.parametrize(
    'upload',
    [patched_ispe(AVIF_16384, 64, 64), AVIF_16384_OVERRIDDEN],
    ids=['max-frame-size', 'frame-size-override'],
)
def test_a_bitstream_larger_than_its_container_is_refused_fast_and_small(
    monkeypatch, upload
):
    # Pillow (libavif) opens it as 64x64; dav1d would decode 16384x16384
    # (0.6 s and 380 MB more), and the service would store a 64x64 picture.
    assert PIL.Image.open(io.BytesIO(upload)).size == (64, 64)

    def never(*args, **kwargs):
        raise AssertionError('Pillow opened the upload')

    monkeypatch.setattr(PIL.Image, 'open', never)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match='16384x16384 is 268,435,456'):
            pixels.convert(upload, MAX_PIXELS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_a_bitstream_bomb_is_413_over_http_and_leaves_nothing(client, config):
    files_before = stored_files(config)

    resp = client.simulate_post('/images', body=patched_ispe(AVIF_16384, 64, 64))

    assert resp.status_code == 413
    assert '16384x16384 is 268,435,456' in resp.json['description']
    assert stored_files(config) == files_before


def test_the_limit_applies_to_the_bitstream_of_a_picture_pillow_made():
    upload = patched_ispe(encode(PIL.Image.new('L', (512, 384), 90), 'AVIF'), 32, 24)

    with pytest.raises(ImageTooLarge, match='512x384 is 196,608'):
        pixels.convert(upload, 100_000)


@pytest.mark.parametrize(
    ('image', 'params'),
    [
        (PIL.Image.new('RGB', (321, 241), 'teal'), {}),
        (half_transparent('RGBA')[0], {}),
        (gradient('L'), {}),
        (PIL.Image.new('RGB', (300, 200), 'teal'), {'subsampling': '4:4:4'}),
        (PIL.Image.new('RGB', (300, 200), 'teal'), {'range': 'limited'}),
        (PIL.Image.new('RGB', (600, 300), 'teal'), {'tile_rows': 1, 'tile_cols': 1}),
        (PIL.Image.new('RGB', (200, 100), 'teal'), {'exif': exif(6), 'xmp': XMP}),
    ],
    ids=['rgb', 'alpha', 'grey', '444', 'limited', 'tiles', 'metadata'],
)
def test_a_picture_pillow_made_passes_at_exactly_the_limit(image, params):
    upload = encode(image, 'AVIF', **params)
    width, height = image.size

    assert convert(upload, width * height).size in (image.size, (height, width))
    with pytest.raises(ImageTooLarge):
        pixels.convert(upload, width * height - 1)


def test_a_sequence_pillow_made_passes_at_exactly_the_limit():
    # Its frame headers do not override the frame size (else its frames
    # could be 128x64, 8,192 pixels); hidden frames come in later samples.
    frames = [PIL.Image.effect_noise((100, 60), 20 * index) for index in range(1, 7)]
    upload = encode(frames[0], 'AVIF', save_all=True, append_images=frames[1:])
    assert PIL.Image.open(io.BytesIO(upload)).n_frames == 6
    assert list(heif.declared_sizes(upload)) == [(100, 60)] * 4

    assert convert(upload, 6_000).size == (100, 60)


class Bits:
    """Writes a header bit by bit, most significant first."""

    def __init__(self):
        self.value, self.count = 0, 0

    def put(self, count, value=0):
        value = int(value) if count else 0
        assert 0 <= value < 1 << count or value == count == 0
        self.value, self.count = self.value << count | value, self.count + count
        return self

    def uvlc(self, value):
        """A variable-length number (AV1 specification, 4.10.3)."""
        zeros = (value + 1).bit_length() - 1
        return self.put(zeros).put(zeros + 1, value + 1)

    def bytes(self):
        """The bits, then the trailing bits: a 1, and 0s to the byte."""
        self.put(1, 1)
        self.put(-self.count % 8)
        return self.value.to_bytes(self.count // 8, 'big')


def leb128(value, length=None):
    """``value`` in 7-bit groups, least significant first (padded to ``length``)."""
    groups = []
    while value or not groups or (length and len(groups) < length):
        groups.append(value & 0x7F)
        value >>= 7
    return bytes(group | 0x80 for group in groups[:-1]) + bytes(groups[-1:])


def obu(kind, payload, extension=False, sized=True):
    """An OBU: its header byte, extension byte, size (if it has one), payload."""
    header = bytes([kind << 3 | extension << 2 | sized << 1])
    return (
        header
        + (b'\x08' if extension else b'')
        + (leb128(len(payload)) if sized else b'')
        + payload
    )


TEMPORAL_DELIMITER = obu(2, b'')
SWITCH, KEY, INTER = 3, 0, 1
SELECT = 2


@dataclasses.dataclass
class Sequence:
    """An AV1 sequence header, and the frame headers that go with it.

    ``timing`` is None (no timing_info), or the num_ticks_per_picture less
    one of an equal picture interval (or ``('zeros', n)``, a number of
    ``n`` leading zeros), or False for none; ``decoder_model``
    is None or its buffer delay and presentation time bits; ``points`` the
    operating points, each its seq_level_idx and whether it has decoder
    model parameters and an initial display delay; ``frame_ids`` is None or
    the delta and the additional frame ID bits; ``screen_tools`` and
    ``integer_mv`` are fixed (0 or 1) or left to each frame (SELECT).
    """

    width: int
    height: int
    bits: tuple = None
    reduced: bool = False
    timing: object = None
    decoder_model: tuple = None
    display_delay: bool = False
    points: tuple = ((8, False, False),)
    frame_ids: tuple = None
    order_hint: bool = False
    screen_tools: int = SELECT
    integer_mv: int = SELECT

    def __post_init__(self):
        if self.bits is None:
            self.bits = tuple(max(1, (side - 1).bit_length()) for side in self.size)

    @property
    def size(self):
        return self.width, self.height

    def payload(self):
        bits = Bits().put(3).put(1, self.reduced).put(1, self.reduced)
        if self.reduced:
            bits.put(5, 31)
        else:
            self.put_timing(bits)
            self.put_points(bits)
        width_bits, height_bits = self.bits
        bits.put(4, width_bits - 1).put(4, height_bits - 1)
        bits.put(width_bits, self.width - 1).put(height_bits, self.height - 1)
        if not self.reduced:
            bits.put(1, self.frame_ids is not None)
            if self.frame_ids is not None:
                delta, additional = self.frame_ids
                bits.put(4, delta - 2).put(3, additional - 1)
        bits.put(3, 0b011)  # Superblocks of 64, filter intra and edge filter.
        if not self.reduced:
            self.put_tools(bits)
        # Superres, CDEF, restoration; 8-bit 4:2:0 with no colour description,
        # full range, chroma position unknown, one delta q; no film grain.
        return bits.put(3, 0b011).put(6, 0b000100).put(1).bytes()

    def put_timing(self, bits):
        """The timing info and the decoder model info, if there are any."""
        bits.put(1, self.timing is not None)
        if self.timing is None:
            return
        bits.put(32, 1001).put(32, 30_000).put(1, self.timing is not False)
        if isinstance(self.timing, tuple):  # That many zeros, and no value.
            bits.put(self.timing[1]).put(1, 1)
        elif self.timing is not False:
            bits.uvlc(self.timing)
        bits.put(1, self.decoder_model is not None)
        if self.decoder_model is not None:
            delay_bits, time_bits = self.decoder_model
            bits.put(5, delay_bits - 1).put(32, 1001).put(5, 9)
            bits.put(5, time_bits - 1)

    def put_points(self, bits):
        """The operating points, with their decoder models and display delays."""
        bits.put(1, self.display_delay).put(5, len(self.points) - 1)
        for level, model, delay in self.points:
            bits.put(12, 0x103 if len(self.points) > 1 else 0).put(5, level)
            if level > 7:
                bits.put(1, 1)
            if self.decoder_model is not None:
                delay_bits = self.decoder_model[0]
                bits.put(1, model)
                if model:
                    bits.put(delay_bits, 5).put(delay_bits, 7).put(1, 1)
            if self.display_delay:
                bits.put(1, delay)
                if delay:
                    bits.put(4, 9)

    def put_tools(self, bits):
        """Order hints, and the screen content tools and integer motion vectors."""
        bits.put(4).put(1, self.order_hint)
        if self.order_hint:
            bits.put(2, 0b11)
        bits.put(1, self.screen_tools == SELECT)
        if self.screen_tools != SELECT:
            bits.put(1, self.screen_tools)
        if self.screen_tools:
            bits.put(1, self.integer_mv == SELECT)
            if self.integer_mv != SELECT:
                bits.put(1, self.integer_mv)
        if self.order_hint:
            bits.put(3, 6)

    def obu(self, **params):
        return obu(1, self.payload(), **params)

    def frame(self, frame_type=KEY, shown=True, override=False, existing=False):
        """A frame OBU's header up to the frame size, and a little more."""
        bits = Bits()
        time_bits = 0
        if self.decoder_model is not None and self.timing is False:
            time_bits = self.decoder_model[1]
        if not self.reduced:
            bits.put(1, existing)
            if existing:
                return obu(3, bits.put(3, 2).put(time_bits, 1).bytes())
            bits.put(2, frame_type).put(1, shown)
            if shown:
                bits.put(time_bits, 1)
            else:
                bits.put(1, 1)  # Showable.
            if frame_type != SWITCH and not (frame_type == KEY and shown):
                bits.put(1, 0)  # Not error resilient.
        bits.put(1, 1)  # disable_cdf_update.
        screen_tools = self.screen_tools
        if screen_tools == SELECT:
            screen_tools = 1
            bits.put(1, 1)
        if screen_tools and self.integer_mv == SELECT:
            bits.put(1, 0)
        if self.frame_ids is not None:
            bits.put(sum(self.frame_ids), 5)
        if frame_type != SWITCH and not self.reduced:
            bits.put(1, override)
        return obu(6, bits.put(8, 0x5A).bytes() + b'\x42' * 40)


def container(stream, kind=b'av01', iinf=None, iloc=None, idat=None, ipco=b''):
    """An AVIF of one item of ``kind``: ``stream``, after ``ftyp``, in ``mdat``."""
    iinf = iinf or full_box(b'iinf', 0, b'\0\1' + item_info(1, kind))
    iloc = iloc or location(0, [(1, 0, 0, [(len(AVIF_FTYP) + 8, len(stream))])])
    children = iinf + iloc + (box(b'idat', idat) if idat is not None else b'')
    ispe = full_box(b'ispe', 0, struct.pack('>II', 64, 64))
    children += box(b'iprp', box(b'ipco', ispe + ipco))
    return AVIF_FTYP + box(b'mdat', stream) + full_box(b'meta', 0, children)


AVIF_FTYP = box(b'ftyp', b'avif\0\0\0\0mif1avif')


def full_box(kind, version, body):
    return box(kind, bytes([version, 0, 0, 0]) + body)


def item_info(item, kind, version=2):
    """An ``infe`` box: ID, protection index, type and an empty name."""
    return full_box(
        b'infe',
        version,
        item.to_bytes(4 if version == 3 else 2) + b'\0\0' + kind + b'\0',
    )


def location(version, items, sizes=(4, 4, 0, 0)):
    """An ``iloc`` box of ``items``: ID, method, base offset and extents."""
    offset_size, length_size, base_size, index_size = sizes
    id_size = 4 if version == 2 else 2
    body = bytes([offset_size << 4 | length_size, base_size << 4 | index_size])
    body += len(items).to_bytes(id_size)
    for item, method, base, extents in items:
        body += item.to_bytes(id_size)
        body += method.to_bytes(2) if version else b''
        body += b'\0\0' + base.to_bytes(base_size) + len(extents).to_bytes(2)
        for offset, length in extents:
            body += b'\0' * (index_size if version else 0)
            body += offset.to_bytes(offset_size) + length.to_bytes(length_size)
    return full_box(b'iloc', version, body)


def av1_config(stream=b''):
    """An ``av1C`` box: the codec configuration, then ``stream`` (configOBUs)."""
    return box(b'av1C', b'\x81\x00\x0c\x00' + stream)


def declared(upload):
    return list(heif.declared_sizes(upload))


@pytest.mark.parametrize(
    'sequence',
    [
        Sequence(200, 100, reduced=True),
        Sequence(200, 100),
        Sequence(200, 100, timing=False),
        Sequence(200, 100, timing=0),
        Sequence(200, 100, timing=1000),
        Sequence(200, 100, timing=2**31, decoder_model=(10, 24)),
        Sequence(200, 100, timing=2**32 - 2),
        Sequence(200, 100, timing=('zeros', 32)),
        Sequence(200, 100, timing=('zeros', 40)),
        Sequence(200, 100, timing=False, decoder_model=(10, 24)),
        Sequence(
            200,
            100,
            timing=False,
            decoder_model=(32, 32),
            display_delay=True,
            points=((8, True, True), (7, False, True), (31, True, False), (0, 0, 0)),
        ),
        Sequence(200, 100, display_delay=True, points=((8, 0, 1), (7, 0, 0))),
        Sequence(200, 100, points=tuple((level, 0, 0) for level in range(32))),
        Sequence(200, 100, frame_ids=(15, 8), order_hint=True),
        Sequence(200, 100, screen_tools=0),
        Sequence(200, 100, screen_tools=1, integer_mv=0),
        Sequence(200, 100, screen_tools=1, integer_mv=1),
        Sequence(65_536, 65_536),
        Sequence(1, 1),
    ],
)
def test_every_form_of_sequence_header_gives_its_frame_size(sequence):
    stream = TEMPORAL_DELIMITER + sequence.obu() + sequence.frame()

    assert declared(container(stream)) == [(64, 64), sequence.size]


def test_every_sequence_header_of_an_item_counts_wherever_it_is():
    small, large = Sequence(64, 64), Sequence(640, 64)
    stream = small.obu() + small.frame() + large.obu() + large.frame()

    assert declared(container(stream)) == [(64, 64), (64, 64), (640, 64)]


@pytest.mark.parametrize(
    ('frame', 'size'),
    [
        ({'override': True}, (16384, 1024)),
        ({'override': False}, None),
        ({'shown': False, 'override': True}, (16384, 1024)),
        ({'frame_type': INTER, 'override': True}, (16384, 1024)),
        ({'frame_type': INTER, 'override': False}, None),
        ({'frame_type': SWITCH}, (16384, 1024)),
        ({'existing': True}, None),
    ],
)
@pytest.mark.parametrize(
    'sequence',
    [
        Sequence(100, 100, bits=(14, 10)),
        Sequence(100, 100, bits=(14, 10), timing=False, decoder_model=(8, 20)),
        Sequence(100, 100, bits=(14, 10), timing=5, decoder_model=(8, 20)),
        Sequence(100, 100, bits=(14, 10), frame_ids=(9, 4), screen_tools=0),
        Sequence(100, 100, bits=(14, 10), screen_tools=1, integer_mv=1),
    ],
)
def test_a_frame_header_may_override_the_size_up_to_its_fields(sequence, frame, size):
    # A frame that overrides the size can declare any it has the bits for,
    # and dav1d decodes it: so that is its size here.
    stream = sequence.obu() + sequence.frame(**frame)
    sizes = declared(container(stream))

    assert sizes == [(64, 64), (100, 100)] + ([size] if size else [])


def test_a_reduced_still_picture_header_never_overrides():
    sequence = Sequence(100, 100, bits=(14, 14), reduced=True)
    stream = sequence.obu() + sequence.frame()

    assert declared(container(stream)) == [(64, 64), (100, 100)]


def test_frames_before_any_sequence_header_are_passed_over():
    # dav1d cannot decode them: they have no sequence to belong to.
    sequence = Sequence(100, 100, bits=(14, 10))
    stream = sequence.frame(override=True) + sequence.obu() + sequence.frame()

    assert declared(container(stream)) == [(64, 64), (100, 100)]


SEQUENCE_300 = Sequence(300, 200).payload()


@pytest.mark.parametrize(
    'stream',
    [
        obu(1, SEQUENCE_300, extension=True),
        obu(1, SEQUENCE_300, sized=False),
        obu(1, SEQUENCE_300, extension=True, sized=False),
        b'\x0a' + leb128(len(SEQUENCE_300), 8) + SEQUENCE_300,
        obu(15, b'\0' * 300) + obu(5, b'\x01' * 20) + obu(1, SEQUENCE_300),
        obu(1, SEQUENCE_300 + b'\0' * 5000),
    ],
    ids=[
        'extension', 'unsized', 'extension-unsized', 'long-size', 'after-others',
        'padded',
    ],
)  # fmt: skip
def test_every_form_of_obu_is_read(stream):
    assert declared(container(stream)) == [(64, 64), (300, 200)]


@pytest.mark.parametrize(
    'stream',
    [
        b'',
        TEMPORAL_DELIMITER,
        obu(15, b'\0' * 40),
        b'\x0a' + b'\x80' * 8 + SEQUENCE_300,
        b'\x0a' + b'\x80' * 3,
        b'\x0a' + leb128(1000) + SEQUENCE_300,
        b'\x0e',
        b'\x0c',
        Sequence(300, 200).frame(),
    ],
    ids=[
        'empty', 'delimiter-only', 'padding-only', 'unending-size', 'cut-size',
        'past-the-end', 'no-extension', 'unsized-no-extension', 'frame-only',
    ],
)  # fmt: skip
def test_an_item_without_a_sequence_header_is_400(stream):
    upload = container(stream)

    with pytest.raises(heif.Corrupt, match='has no sequence header'):
        declared(upload)
    with pytest.raises(InvalidImage, match='looks like an AVIF image, but its header'):
        pixels.convert(upload, MAX_PIXELS)


@pytest.mark.parametrize(
    'sequence',
    [
        Sequence(30_000, 20_000, reduced=True),
        Sequence(
            30_000,
            20_000,
            timing=7,
            decoder_model=(16, 16),
            display_delay=True,
            points=((9, True, True),) * 2,
            frame_ids=(8, 8),
        ),
    ],
    ids=['reduced', 'full'],
)
def test_a_truncated_header_is_400_not_a_guess(sequence):
    # Cut anywhere before the last three bytes: in what is read.
    payload = sequence.payload()
    for length in range(len(payload) - 2):
        stream = obu(1, payload[:length])

        with pytest.raises(InvalidImage, match=r'\(an AV1 header is cut short\)'):
            pixels.convert(container(stream), MAX_PIXELS)


def test_a_truncated_frame_header_is_400():
    sequence = Sequence(300, 200, frame_ids=(16, 8))
    stream = sequence.obu() + obu(6, b'\x10')

    with pytest.raises(InvalidImage, match=r'\(an AV1 header is cut short\)'):
        pixels.convert(container(stream), MAX_PIXELS)


def test_an_unending_variable_length_number_is_a_truncated_header():
    # A sequence header whose timing info's number of ticks never ends.
    bits = Bits().put(5).put(1, 1).put(64).put(1, 1).put(41)
    stream = obu(1, bits.value.to_bytes(bits.count // 8))

    with pytest.raises(heif.Corrupt, match='cut short'):
        declared(container(stream))


def test_the_codec_configuration_is_read_and_may_be_empty():
    stream = Sequence(100, 50, reduced=True).obu()
    configs = av1_config() + av1_config(Sequence(16384, 64).obu())

    assert declared(container(stream, ipco=configs)) == [
        (64, 64),
        (16384, 64),
        (100, 50),
    ]


def test_the_item_data_of_every_location_form_is_read():
    stream = TEMPORAL_DELIMITER + Sequence(100, 50, reduced=True).obu()
    at = len(AVIF_FTYP) + 8
    head, tail = stream[:3], stream[3:]
    items = [
        (1, 0, 0, [(at, len(stream))]),  # One extent.
        (2, 0, at, [(0, 3), (3, 0)]),  # A base offset; to the end of the file.
        (3, 1, 0, [(4, len(stream))]),  # In idat.
        (4, 0, 0, []),  # No extent, and no item information.
        (5, 0, 0, [(at, len(stream))]),  # Not an AV1 item.
        (7, 0, 0, [(at, len(stream))]),  # Item information without a type.
    ]
    iinf = full_box(
        b'iinf',
        1,
        (4).to_bytes(4)
        + item_info(1, b'av01')
        + item_info(2, b'av01', version=3)
        + item_info(3, b'av01')
        + item_info(5, b'Exif')
        + item_info(7, b'av01', version=1),
    )
    for version in (1, 2):
        for sizes in [(4, 4, 4, 0), (8, 8, 4, 4), (4, 2, 8, 0)]:
            upload = container(
                head + tail,
                iinf=iinf,
                iloc=location(version, items, sizes),
                idat=b'\0' * 4 + stream,
            )
            assert declared(upload) == [(64, 64)] + [(100, 50)] * 3, (version, sizes)


@pytest.mark.parametrize('method', [2, 15])
def test_an_item_made_another_way_has_no_data(method):
    stream = Sequence(100, 50, reduced=True).obu()
    iloc = location(1, [(1, method, 0, [(len(AVIF_FTYP) + 8, len(stream))])])

    with pytest.raises(heif.Corrupt, match='has no sequence header'):
        declared(container(stream, iloc=iloc))


def test_an_item_in_extents_past_the_end_or_in_pieces_is_joined():
    stream = Sequence(100, 50, reduced=True).obu() + Sequence(200, 20).obu()
    at = len(AVIF_FTYP) + 8
    pieces = [(at + index, 1) for index in range(len(stream) - 1)]
    iloc = location(0, [(1, 0, 0, [*pieces, (at + len(stream) - 1, 10**6)])])

    assert declared(container(stream, iloc=iloc)) == [(64, 64), (100, 50), (200, 20)]


def test_items_of_more_data_than_the_file_are_refused():
    stream = Sequence(100, 50, reduced=True).obu()
    at = len(AVIF_FTYP) + 8
    iloc = location(0, [(1, 0, 0, [(0, 0), (at, len(stream))])] * 2)

    with pytest.raises(heif.Corrupt, match='more data than the file holds'):
        declared(container(stream, iloc=iloc))


def test_a_truncated_item_location_ends_there():
    stream = Sequence(100, 50, reduced=True).obu()
    at = len(AVIF_FTYP) + 8
    whole = location(0, [(1, 0, 0, [(at, len(stream))]), (2, 0, 0, [(at, 1)])])
    iloc = box(b'iloc', whole[8:-3])

    assert declared(container(stream, iloc=iloc)) == [(64, 64), (100, 50)]


@pytest.mark.parametrize(
    ('flags', 'size', 'field'),
    [(0, (4032, 3024), '>HH'), (1, (100_000, 9_000), '>II')],
)
def test_a_grid_is_checked_by_its_output_size(flags, size, field):
    grid = bytes([0, flags, 7, 5]) + struct.pack(field, *size)
    iinf = full_box(b'iinf', 0, b'\0\1' + item_info(1, b'grid'))
    iloc = location(1, [(1, 1, 0, [(0, len(grid))])])
    upload = container(b'', iinf=iinf, iloc=iloc, idat=grid)

    assert declared(upload) == [(64, 64), size]
    if size[0] > 65_500:
        with pytest.raises(ImageTooLarge, match='100000x9000 is 900,000,000'):
            pixels.convert(upload, MAX_PIXELS)


def sample_table(*children, entry=b'av01', configs=()):
    """A ``moov`` of one track: an AV1 sample entry and ``children``."""
    sample_entry = box(entry, b'\0' * 78 + b''.join(configs))
    stsd = full_box(b'stsd', 0, (1).to_bytes(4) + sample_entry)
    stbl = box(b'stbl', stsd + b''.join(children))
    return box(b'moov', box(b'trak', box(b'mdia', box(b'minf', stbl))))


def track_of(stream, *children, **params):
    """An AVIF sequence whose track's first sample is ``stream``, in ``mdat``."""
    at = len(AVIF_FTYP) + 8
    defaults = (
        full_box(b'stco', 0, struct.pack('>II', 1, at)),
        full_box(b'stsz', 0, struct.pack('>III', 0, 2, len(stream)) + b'\0' * 4),
    )
    return (
        AVIF_FTYP + box(b'mdat', stream) + sample_table(*children or defaults, **params)
    )


@pytest.mark.parametrize(
    'tables',
    [
        (),
        ('co64', 'stsz'),
        ('stco', 'constant-stsz'),
        ('empty-stco', 'stco', 'empty-stsz', 'stsz'),
    ],
)
def test_the_first_sample_of_a_track_is_read(tables):
    sequence = Sequence(100, 50, bits=(12, 12))
    stream = sequence.obu() + sequence.frame(frame_type=SWITCH)
    at = len(AVIF_FTYP) + 8
    boxes = {
        'stco': full_box(b'stco', 0, struct.pack('>II', 1, at)),
        'empty-stco': full_box(b'stco', 0, struct.pack('>II', 0, at)),
        'co64': full_box(b'co64', 0, struct.pack('>IQ', 1, at)),
        'stsz': full_box(b'stsz', 0, struct.pack('>IIII', 0, 2, len(stream), 9)),
        'empty-stsz': full_box(b'stsz', 0, struct.pack('>III', 5, 0, 5)),
        'constant-stsz': full_box(b'stsz', 0, struct.pack('>II', len(stream), 2)),
    }
    upload = track_of(stream, *(boxes[name] for name in tables))

    assert declared(upload) == [(100, 50), (4096, 4096)]


@pytest.mark.parametrize(
    'tables',
    [
        ('stco',),
        ('stsz',),
        ('empty-stco', 'stsz'),
        ('stco', 'empty-stsz'),
        ('stco', 'zero'),
    ],
)
def test_a_track_without_a_first_sample_is_400(tables):
    sequence = Sequence(100, 50)
    stream = sequence.obu() + sequence.frame()
    at = len(AVIF_FTYP) + 8
    boxes = {
        'stco': full_box(b'stco', 0, struct.pack('>II', 1, at)),
        'empty-stco': full_box(b'stco', 0, struct.pack('>II', 0, at)),
        'stsz': full_box(b'stsz', 0, struct.pack('>III', 0, 1, len(stream))),
        'empty-stsz': full_box(b'stsz', 0, struct.pack('>III', 0, 0, 9)),
        'zero': full_box(b'stsz', 0, struct.pack('>III', 0, 1, 0)),
    }
    upload = track_of(stream, *(boxes[name] for name in tables))

    with pytest.raises(heif.Corrupt, match='has no sequence header'):
        declared(upload)


def test_a_track_reads_its_codec_configuration_and_others_are_not_av1():
    stream = Sequence(100, 50).obu()
    configs = [av1_config(Sequence(300, 20).obu()), box(b'colr', b'nclx')]

    assert declared(track_of(stream, configs=configs)) == [(300, 20), (100, 50)]
    assert declared(track_of(b'', entry=b'hvc1')) == []


def test_reading_stops_after_a_bounded_number_of_steps(monkeypatch):
    stream = obu(15, b'') * (heif.MAX_STEPS + 1)

    with pytest.raises(InvalidImage, match='more than 100,000 boxes, item extents'):
        pixels.convert(container(stream), MAX_PIXELS)

    extents = location(0, [(9, 0, 0, [(0, 0)] * 60_000)] * 2)
    with pytest.raises(heif.Corrupt, match='more than 100,000 boxes'):
        declared(container(b'', iloc=extents))

    monkeypatch.setattr(heif, 'MAX_STEPS', 7)
    with pytest.raises(heif.Corrupt, match='more than 7 boxes'):
        declared(AVIF)


# Broken: always a 400 that names the format


def corrupt_after(data, marker, value):
    """``data`` with every byte after the first ``marker`` set to ``value``."""
    at = data.index(marker) + len(marker)
    return data[:at] + bytes([value]) * (len(data) - at)


HEIC = photo('HEIF', (96, 64))
AVIF = photo('AVIF', (96, 64))

BROKEN = {
    'heic-header-only': (HEIC[:40], 'looks like a HEIC image, but its header'),
    'heic-cut-in-half': (HEIC[: len(HEIC) // 2], 'HEIC image'),
    'heic-cut-short': (HEIC[:-10], 'HEIC image'),
    'heic-data-zeroed': (corrupt_after(HEIC, b'mdat', 0),
                         'The HEIC image is truncated'),
    'heic-data-garbage': (corrupt_after(HEIC, b'mdat', 0xFF),
                          'The HEIC image is truncated'),
    'avif-header-only': (AVIF[:40], 'looks like an AVIF image, but its header'),
    'avif-cut-in-half': (AVIF[: len(AVIF) // 2], 'looks like an AVIF image'),
    'avif-cut-short': (AVIF[:-10], 'The AVIF image is truncated or corrupt'),
    'avif-data-garbage': (corrupt_after(AVIF, b'mdat', 0xFF),
                          'looks like an AVIF image, but its header'),
}  # fmt: skip


@pytest.mark.parametrize(('upload', 'words'), BROKEN.values(), ids=list(BROKEN))
def test_a_broken_upload_is_400_and_says_which_format(client, config, upload, words):
    with pytest.raises(InvalidImage, match=words) as raised:
        pixels.convert(upload, MAX_PIXELS)
    assert not isinstance(raised.value, (UnsupportedImage, ImageTooLarge))
    files_before = stored_files(config)

    resp = client.simulate_post('/images', body=upload)

    assert resp.status_code == 400
    assert resp.json['title'] == 'Invalid Image'
    assert words in resp.json['description']
    assert stored_files(config) == files_before


@st.composite
def mutations(draw):
    """A HEIC or AVIF with bits flipped, bytes inserted, or cut short."""
    data = bytearray(draw(st.sampled_from([HEIC, AVIF])))
    kind = draw(st.sampled_from(['flip', 'insert', 'cut']))
    if kind == 'cut':
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == 'insert':
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:])
    header = st.integers(0, 399)
    anywhere = st.integers(0, len(data) - 1)
    for at in draw(st.lists(st.one_of(header, anywhere), min_size=1, max_size=6)):
        data[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@hypothesis.settings(max_examples=150, deadline=None, database=None)
@hypothesis.given(mutations())
def test_a_mutated_upload_is_stored_or_refused_with_a_domain_error(upload):
    try:
        jpeg, size = pixels.convert(upload, 1_000_000)
    except InvalidImage as ex:
        assert str(ex)
    else:
        assert decode(jpeg).size == size
