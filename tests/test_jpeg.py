"""Lossless JPEG metadata removal: the same pixels without the metadata, or None."""

import io

import hypothesis
import hypothesis.strategies as st
import PIL.ExifTags
import PIL.Image
import PIL.ImageCms
import pytest

from asgilook.pictures.jpeg import strip_metadata
from tests.helpers import draw_image

XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF'
    b' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
)
COMMENT = 'Taken from the kitchen window'

SOF0 = 0xC0
SOF2 = 0xC2
RST0 = 0xD0
EOI = 0xD9
SOS = 0xDA
DQT = 0xDB
DNL = 0xDC
APP0 = 0xE0
APP1 = 0xE1
APP14 = 0xEE
COM = 0xFE


def picture(size=(640, 360), mode='RGB'):
    """A random picture in ``mode``."""
    return PIL.Image.open(io.BytesIO(draw_image(size))).convert(mode)


def encode(image, **params):
    """``image`` saved as a JPEG with Pillow's ``params``, as bytes."""
    output = io.BytesIO()
    image.save(output, 'JPEG', **params)
    return output.getvalue()


def metadata():
    """Save options that put EXIF, XMP, an ICC profile and a comment in a JPEG."""
    exif = PIL.Image.Exif()
    exif[PIL.ExifTags.Base.Orientation] = 6
    exif[PIL.ExifTags.Base.BodySerialNumber] = 'SN-20240611-0042'
    exif[PIL.ExifTags.IFD.GPSInfo] = {
        PIL.ExifTags.GPS.GPSLatitudeRef: 'N',
        PIL.ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        PIL.ExifTags.GPS.GPSLongitudeRef: 'E',
        PIL.ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
    }
    srgb = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile('sRGB'))
    return {
        'exif': exif,
        'icc_profile': srgb.tobytes(),
        'comment': COMMENT,
        'xmp': XMP,
    }


def decode(data):
    """Decode a JPEG completely."""
    image = PIL.Image.open(io.BytesIO(data))
    image.load()
    return image


def segment(marker, payload=b''):
    """A marker segment: 0xFF, the marker code, the length and the payload."""
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, 'big') + payload


def find(data, marker):
    """Where the first ``marker`` starts in ``data``."""
    return data.index(bytes([0xFF, marker]))


def insert_before(data, marker, extra):
    """``data`` with ``extra`` inserted before its first ``marker``."""
    at = find(data, marker)
    return data[:at] + extra + data[at:]


def remove_segment(data, marker):
    """``data`` without its first ``marker`` segment."""
    at = find(data, marker)
    length = int.from_bytes(data[at + 2 : at + 4], 'big')
    return data[:at] + data[at + 2 + length :]


def restart_markers(data):
    """How many restart markers ``data`` holds."""
    return sum(data.count(bytes([0xFF, RST0 + n])) for n in range(8))


JPEG = encode(picture((64, 48)))
PNG = draw_image((64, 48))


@pytest.mark.parametrize(
    ('size', 'mode', 'params'),
    [
        pytest.param((640, 360), 'RGB', {}, id='baseline'),
        pytest.param((640, 360), 'RGB', {'progressive': True}, id='progressive'),
        pytest.param((640, 360), 'RGB', {'optimize': True}, id='optimized'),
        pytest.param((640, 360), 'RGB', {'quality': 100}, id='quality-100'),
        pytest.param(
            (640, 360), 'RGB', {'restart_marker_blocks': 3}, id='restart-blocks'
        ),
        pytest.param((640, 360), 'RGB', {'restart_marker_rows': 1}, id='restart-rows'),
        pytest.param(
            (640, 360),
            'RGB',
            {'progressive': True, 'restart_marker_rows': 2},
            id='progressive-restart',
        ),
        pytest.param((640, 360), 'L', {}, id='grayscale'),
        pytest.param(
            (640, 360), 'L', {'progressive': True}, id='grayscale-progressive'
        ),
        pytest.param((640, 360), 'CMYK', {}, id='cmyk'),
        pytest.param((640, 360), 'CMYK', {'progressive': True}, id='cmyk-progressive'),
        pytest.param((640, 360), 'RGB', {'keep_rgb': True}, id='adobe-rgb'),
        pytest.param((640, 360), 'RGB', {'subsampling': 0}, id='4:4:4'),
        pytest.param((640, 360), 'RGB', {'subsampling': 1}, id='4:2:2'),
        pytest.param((640, 360), 'RGB', {'subsampling': 2}, id='4:2:0'),
        pytest.param((1, 1), 'RGB', {}, id='1x1'),
        pytest.param((1, 1), 'L', {'progressive': True}, id='1x1-grayscale'),
        pytest.param((17, 9), 'RGB', {'subsampling': 2}, id='17x9-4:2:0'),
        pytest.param((17, 9), 'RGB', {'progressive': True}, id='17x9-progressive'),
        pytest.param((17, 9), 'CMYK', {}, id='17x9-cmyk'),
    ],
)
def test_stripped_jpeg_decodes_to_the_same_pixels(size, mode, params):
    upload = encode(picture(size, mode), **metadata(), **params)

    stripped = strip_metadata(upload)

    assert stripped is not None
    assert len(stripped) < len(upload)
    original, result = decode(upload), decode(stripped)
    assert result.format == 'JPEG'
    assert (result.mode, result.size) == (original.mode, original.size) == (mode, size)
    assert result.tobytes() == original.tobytes()


@pytest.mark.parametrize(
    'params',
    [
        pytest.param({}, id='baseline'),
        pytest.param({'progressive': True}, id='progressive'),
        pytest.param({'optimize': True}, id='optimized'),
        pytest.param({'restart_marker_blocks': 1}, id='restart-blocks'),
        pytest.param({'subsampling': 0, 'dpi': (300, 300)}, id='4:4:4-300dpi'),
    ],
)
def test_stripping_gives_what_pillow_writes_without_metadata(params):
    image = picture()

    stripped = strip_metadata(encode(image, **metadata(), **params))

    assert stripped == encode(image, **params)


@pytest.mark.parametrize('mode', ['RGB', 'L', 'CMYK'])
def test_jpeg_without_metadata_comes_back_unchanged(mode):
    upload = encode(picture(mode=mode))

    assert strip_metadata(upload) == upload


def test_metadata_is_removed():
    upload = encode(picture(), **metadata())
    assert {'exif', 'icc_profile', 'comment', 'xmp'} <= set(decode(upload).info)

    stripped = strip_metadata(upload)

    assert stripped is not None
    info = decode(stripped).info
    assert not {'exif', 'icc_profile', 'comment', 'xmp'} & set(info)
    assert not decode(stripped).getexif()
    for trace in (b'Exif\x00', b'ICC_PROFILE\x00', b'xmpmeta', COMMENT.encode()):
        assert trace in upload
        assert trace not in stripped


def test_metadata_between_and_after_scans_is_removed():
    plain = encode(picture(), progressive=True)
    assert plain.count(bytes([0xFF, SOS])) > 1
    # Comments and application segments may sit between the scans of a
    # progressive JPEG, and after the last one.
    extra = segment(COM, b'between scans') + segment(APP1 + 1, b'APP2 data')
    upload = plain.replace(bytes([0xFF, SOS]), extra + bytes([0xFF, SOS]))
    upload = insert_before(upload, EOI, extra)

    assert strip_metadata(upload) == plain


def test_restart_markers_are_kept():
    upload = encode(picture(), restart_marker_rows=1, **metadata())
    assert restart_markers(upload) > 8

    stripped = strip_metadata(upload)

    assert stripped is not None
    assert restart_markers(stripped) == restart_markers(upload)
    assert decode(stripped).tobytes() == decode(upload).tobytes()


def test_jfif_thumbnail_is_dropped_and_density_kept():
    plain = encode(picture(), dpi=(300, 300))
    header = plain[6 : 6 + 12]
    assert header.startswith(b'JFIF\x00')
    # A 4x2 pixel RGB thumbnail after the JFIF header, as some cameras write.
    thumbnail = bytes([4, 2]) + bytes(range(24))
    upload = plain[:2] + segment(APP0, header + thumbnail) + plain[20:]

    stripped = strip_metadata(upload)

    assert stripped == plain
    assert decode(stripped).info['dpi'] == (300, 300)


@pytest.mark.parametrize(
    'payload',
    [
        pytest.param(b'JFXX\x00\x13' + bytes(range(48)), id='jfxx-thumbnail'),
        pytest.param(b'JFIF\x00\x01\x02\x00', id='short-jfif'),
        pytest.param(b'AVI1\x00' + bytes(9), id='motion-jpeg'),
    ],
)
def test_other_app0_segments_are_dropped(payload):
    upload = insert_before(JPEG, DQT, segment(APP0, payload))

    assert strip_metadata(upload) == JPEG


def test_adobe_segment_is_kept_and_other_app14_segments_dropped():
    plain = encode(picture(mode='CMYK'))
    assert plain[2:].startswith(b'\xff\xee\x00\x0eAdobe')
    upload = insert_before(plain, DQT, segment(APP14, b'Not Adobe'))

    stripped = strip_metadata(upload)

    assert stripped == plain
    assert decode(stripped).mode == 'CMYK'


def number_components(data):
    """``data`` with its three components named 1, 2, 3 in SOF0 and SOS."""
    data = bytearray(data)
    sof, sos = find(data, SOF0), find(data, SOS)
    for number, (in_frame, in_scan) in enumerate([(10, 5), (13, 7), (16, 9)], 1):
        assert data[sof + in_frame] == data[sos + in_scan]
        data[sof + in_frame] = data[sos + in_scan] = number
    return bytes(data)


def test_adobe_segment_is_kept_because_it_decides_the_colours():
    # NOTE: Decoders take three components numbered 1, 2, 3 for YCbCr unless
    #   an Adobe segment says they are RGB. (Pillow names them R, G, B, which
    #   libjpeg also reads as RGB, so this file is made by hand.)
    upload = number_components(encode(picture(), keep_rgb=True))
    unmarked = remove_segment(upload, APP14)
    assert decode(unmarked).tobytes() != decode(upload).tobytes()

    stripped = strip_metadata(upload)

    assert stripped == upload
    assert decode(stripped).tobytes() == decode(upload).tobytes()


def test_anything_after_the_end_of_the_image_is_dropped():
    upload = JPEG + b'\x00' * 64 + b'trailing junk' + b'\xff\xd9'

    stripped = strip_metadata(upload)

    assert stripped == JPEG


def test_mpo_keeps_only_its_first_picture():
    first, second = picture(), picture()
    output = io.BytesIO()
    first.save(output, 'MPO', save_all=True, append_images=[second])
    upload = output.getvalue()
    assert PIL.Image.open(io.BytesIO(upload)).n_frames == 2

    stripped = strip_metadata(upload)

    assert stripped is not None
    assert stripped.startswith(b'\xff\xd8')
    assert stripped.endswith(b'\xff\xd9')
    assert stripped.count(b'\xff\xd8') == 1
    result = decode(stripped)
    assert result.format == 'JPEG'
    assert result.tobytes() == decode(encode(first)).tobytes()


def test_fill_bytes_and_standalone_markers_between_segments_are_skipped():
    # NOTE: Any marker may be preceded by fill bytes (0xFF); TEM and restart
    #   markers outside entropy-coded data carry nothing and have no length.
    upload = insert_before(JPEG, DQT, b'\xff\x01\xff\xff\xd3\xff\xff\xff')

    assert strip_metadata(upload) == JPEG


def test_dnl_segment_is_kept():
    upload = insert_before(JPEG, EOI, segment(DNL, (48).to_bytes(2, 'big')))

    assert strip_metadata(upload) == upload


def change_marker(data, old, new):
    """``data`` with its first ``old`` marker code replaced by ``new``."""
    at = find(data, old) + 1
    return data[:at] + bytes([new]) + data[at + 1 :]


def set_length(data, marker, length):
    """``data`` with the length field of its first ``marker`` set to ``length``."""
    at = find(data, marker) + 2
    return data[:at] + length.to_bytes(2, 'big') + data[at + 2 :]


def cut_in_entropy_data(data):
    """``data`` cut halfway through the entropy-coded data of its last scan."""
    return data[: (data.rindex(bytes([0xFF, SOS])) + len(data)) // 2]


@pytest.mark.parametrize(
    'upload',
    [
        pytest.param(b'', id='empty'),
        pytest.param(PNG, id='png'),
        pytest.param(b'GIF89a' + bytes(64), id='gif'),
        pytest.param(b'not a picture at all', id='garbage'),
        pytest.param(b'\xff\xd8', id='soi-only'),
        pytest.param(b'\xff\xd8\xff\xd9', id='no-frame'),
        pytest.param(cut_in_entropy_data(JPEG), id='cut-in-entropy-data'),
        pytest.param(JPEG[:-2], id='no-eoi'),
        pytest.param(JPEG[:-1], id='cut-in-eoi'),
        pytest.param(JPEG[: find(JPEG, DQT) + 30], id='cut-in-dqt'),
        pytest.param(JPEG[: find(JPEG, DQT) + 3], id='cut-in-length'),
        pytest.param(JPEG[: find(JPEG, DQT) + 2], id='cut-after-marker'),
        pytest.param(JPEG[: find(JPEG, DQT) + 1], id='cut-in-marker'),
        pytest.param(change_marker(JPEG, SOF0, 0xC3), id='lossless-sof3'),
        pytest.param(change_marker(JPEG, SOF0, 0xC5), id='hierarchical-sof5'),
        pytest.param(change_marker(JPEG, SOF0, 0xC9), id='arithmetic-sof9'),
        pytest.param(change_marker(JPEG, SOF0, 0xCA), id='arithmetic-sof10'),
        pytest.param(change_marker(JPEG, SOF0, 0xCF), id='arithmetic-sof15'),
        pytest.param(insert_before(JPEG, SOS, segment(0xCC, b'\x00\x00')), id='dac'),
        pytest.param(insert_before(JPEG, DQT, segment(0xDE, bytes(9))), id='dhp'),
        pytest.param(insert_before(JPEG, SOS, segment(0xDF, b'\x11')), id='exp'),
        pytest.param(insert_before(JPEG, DQT, segment(0xC8)), id='jpg'),
        pytest.param(insert_before(JPEG, DQT, segment(0xF0)), id='jpg0'),
        pytest.param(insert_before(JPEG, DQT, segment(0xFD)), id='jpg13'),
        pytest.param(insert_before(JPEG, DQT, segment(0x02)), id='reserved-02'),
        pytest.param(insert_before(JPEG, DQT, segment(0xBF)), id='reserved-bf'),
        pytest.param(insert_before(JPEG, DQT, b'\xff\xd8'), id='second-soi'),
        pytest.param(insert_before(JPEG, DQT, b'\xff\x00'), id='stuffed-marker'),
        pytest.param(insert_before(JPEG, DQT, b'\x00'), id='not-a-marker'),
        pytest.param(remove_segment(JPEG, SOF0), id='no-sof'),
        pytest.param(insert_before(JPEG, SOS, b'\xff\xd9'), id='no-sos'),
        pytest.param(set_length(JPEG, DQT, 0xFFFF), id='length-past-end'),
        pytest.param(set_length(JPEG, APP0, 1), id='app0-length-1'),
        pytest.param(set_length(JPEG, SOS, 1), id='sos-length-1'),
        pytest.param(set_length(JPEG, SOS, 0), id='sos-length-0'),
    ],
)
def test_unsupported_or_damaged_data_gives_none(upload):
    assert strip_metadata(upload) is None


def test_arithmetic_coding_is_refused_in_a_progressive_jpeg():
    upload = encode(picture((64, 48)), progressive=True)

    assert strip_metadata(change_marker(upload, SOF2, 0xCA)) is None


SEEDS = (
    encode(picture((48, 32)), **metadata()),
    encode(picture((48, 32)), progressive=True, restart_marker_blocks=1),
)
MARKERS = [bytes([0xFF, code]) for code in (0x00, RST0, EOI, SOS, DQT, APP0, COM)]


@st.composite
def damaged_jpegs(draw):
    """A small JPEG with a few bytes flipped, inserted or deleted, maybe cut short."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    insertions = st.binary(min_size=1, max_size=4) | st.sampled_from(MARKERS)
    for _ in range(draw(st.integers(1, 4))):
        # Mostly in the headers, where the segments are walked.
        header = st.integers(0, min(len(data), 700) - 1)
        at = draw(header | st.integers(0, len(data) - 1))
        change = draw(st.sampled_from(['flip', 'insert', 'delete']))
        if change == 'flip':
            data[at] ^= draw(st.integers(1, 255))
        elif change == 'insert':
            data[at:at] = draw(insertions)
        else:
            del data[at]
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


# NOTE: Stripping a small JPEG takes microseconds; 200 examples are quick.
@hypothesis.settings(max_examples=200, deadline=None, database=None)
@hypothesis.given(damaged_jpegs())
def test_damaged_jpeg_gives_a_complete_jpeg_or_none(upload):
    stripped = strip_metadata(upload)

    if stripped is not None:
        assert isinstance(stripped, bytes)
        assert stripped.startswith(b'\xff\xd8')
        assert stripped.endswith(b'\xff\xd9')
        # What is left has nothing more to strip.
        assert strip_metadata(stripped) == stripped
