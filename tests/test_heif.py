"""HEIC and AVIF uploads: the same guarantees as every other accepted format."""

import io
import struct
import time

import hypothesis
import hypothesis.strategies as st
import PIL.Image
import PIL.ImageFile
import pillow_heif
import pytest

from asgilook import pixels
from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.errors import UnsupportedImage
from tests.conftest import decode
from tests.conftest import draw_image
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
        data[pixels.ORIENTATION_TAG] = orientation
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

    opened = PIL.Image.open(io.BytesIO(upload), formats=pixels.ACCEPTED_FORMATS)
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
    upload = encode(red, format, icc_profile=swapped_profile())
    assert PIL.Image.open(io.BytesIO(upload)).info['icc_profile'] == swapped_profile()

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
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=words):
        pixels.convert(upload, MAX_PIXELS)
    assert time.perf_counter() - started < 0.5


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
                          'The AVIF image is truncated or corrupt'),
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
