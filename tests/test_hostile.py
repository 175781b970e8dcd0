"""A corpus of hostile and awkward uploads, each with the answer it must get."""

import io
import json
import os
import pathlib
import socket
import struct
import subprocess
import sys
import time

import httpx
import PIL.Image
import PIL.ImageStat
import PIL.PngImagePlugin
import pytest
import redis

from tests.helpers import decode
from tests.helpers import draw_image
from tests.servers import Uvicorn
from tests.test_pixels import encode
from tests.test_pixels import gif_descriptor
from tests.test_pixels import gradient
from tests.test_pixels import png_header_only
from tests.test_pixels import swapped_profile


def stored_files(config):
    return sorted(os.listdir(os.fspath(config.storage_path)))


def mean(image, box):
    return PIL.ImageStat.Stat(image.crop(box).convert('L')).mean[0]


def corrupt(data, marker, offset, value=None):
    """``data`` with the byte at ``offset`` past ``marker`` set to ``value``.

    ``marker`` is bytes to look for, or a position; without a value, the
    byte's bits are all flipped.
    """
    at = (marker if isinstance(marker, int) else data.index(marker)) + offset
    value = data[at] ^ 0xFF if value is None else value
    return data[:at] + bytes([value]) + data[at + 1 :]


def gif_with_screen(width, height, frame=None):
    """A one-pixel GIF whose header claims a ``width`` x ``height`` screen."""
    gif = bytearray(encode(PIL.Image.new('P', (1, 1)), 'GIF'))
    gif[6:10] = struct.pack('<HH', width, height)
    if frame is not None:
        descriptor = gif_descriptor(gif)
        gif[descriptor + 5 : descriptor + 9] = struct.pack('<HH', *frame)
    return bytes(gif)


def gif_of_many_frames(count):
    """A red GIF followed by ``count`` more (blue) frames, a few bytes each."""
    frames = [PIL.Image.new('RGB', (8, 8), colour) for colour in ('red', 'blue')]
    gif = encode(frames[0], 'GIF', save_all=True, append_images=frames[1:])
    second = gif.index(b'\x21\xf9', gif_descriptor(gif))
    return gif[:second] + gif[second:-1] * count + b'\x3b'


def webp_canvas_bomb():
    frames = [PIL.Image.new('RGB', (16, 16), colour) for colour in ('red', 'blue')]
    webp = bytearray(encode(frames[0], 'WEBP', save_all=True, append_images=frames[1:]))
    webp[24:30] = (16_000 - 1).to_bytes(3, 'little') * 2
    return bytes(webp)


JPEG = draw_image((320, 240), format='JPEG')
PNG = draw_image((320, 240))
GIF = draw_image((320, 240), format='GIF')
HTML = b'<!DOCTYPE html><html><body><script>alert(1)</script></body></html>'

INVALID = (400, 'Invalid Image')
UNSUPPORTED = (415, 'Unsupported Image Format')
TOO_LARGE = (413, 'Image Too Large')

CORPUS = {
    'zero-bytes': (b'', INVALID, 'empty'),
    'html': (HTML, UNSUPPORTED, 'not an image'),
    'text': (b'P is for picture, not for a PPM file', UNSUPPORTED, 'not an image'),
    'jpeg-truncated': (JPEG[: len(JPEG) // 2], INVALID, 'truncated or corrupt'),
    'jpeg-header-only': (JPEG[:40], INVALID, 'looks like a JPEG'),
    'jpeg-bad-precision': (corrupt(JPEG, b'\xff\xc0', 4, 9), INVALID,
                           'looks like a JPEG'),
    'jpeg-bad-huffman': (corrupt(corrupt(JPEG, b'\xff\xc4', 5), b'\xff\xc4', 6),
                         INVALID, 'truncated or corrupt'),
    'png-truncated': (PNG[: len(PNG) // 2], INVALID, 'truncated or corrupt'),
    'png-signature-only': (PNG[:8], INVALID, 'looks like a PNG'),
    'png-header-bit-flip': (corrupt(PNG, b'IHDR', 5), INVALID, 'looks like a PNG'),
    'png-data-bit-flip': (corrupt(PNG, b'IDAT', 10), INVALID, 'truncated or corrupt'),
    'gif-truncated': (GIF[: len(GIF) // 2], INVALID, 'truncated or corrupt'),
    'gif-bad-code-size': (corrupt(GIF, gif_descriptor(GIF), 10, 0x0F), INVALID,
                          'truncated or corrupt'),
    'gif-data-bit-flip': (corrupt(GIF, gif_descriptor(GIF), 14), INVALID,
                          'truncated or corrupt'),
    'png-claims-100000x100000': (png_header_only(100_000, 100_000), TOO_LARGE,
                                 'too many pixels'),
    'png-claims-70000x10': (png_header_only(70_000, 10), TOO_LARGE, '65,500 pixels'),
    'gif-bomb-screen': (gif_with_screen(65_535, 65_535), TOO_LARGE, 'too many pixels'),
    'gif-bomb-frame': (gif_with_screen(1, 1, frame=(9_000, 9_000)), TOO_LARGE,
                       'too many pixels'),
    'webp-canvas-bomb': (webp_canvas_bomb(), TOO_LARGE, 'too many pixels'),
    'ico': (encode(PIL.Image.new('RGB', (32, 32)), 'ICO'), UNSUPPORTED, 'ICO format'),
    'eps': (b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\nshowpage\n',
            UNSUPPORTED, 'EPS format'),
    'bmp-bad-depth': (corrupt(encode(PIL.Image.new('RGB', (8, 8)), 'BMP'), 0, 28, 152),
                      INVALID, 'looks like a BMP'),
}  # fmt: skip


@pytest.mark.parametrize(('body', 'answer', 'words'), CORPUS.values(), ids=list(CORPUS))
def test_a_hostile_upload_gets_a_clear_4xx_and_leaves_nothing(
    client, config, body, answer, words
):
    status, title = answer
    files_before = stored_files(config)

    resp = client.simulate_post('/images', body=body)

    assert resp.status_code == status
    assert resp.headers['Content-Type'] == 'application/json'
    assert resp.json['title'] == title
    assert words in resp.json['description']
    assert stored_files(config) == files_before
    assert client.simulate_get('/images').json == []


def test_html_named_like_a_picture_in_a_form_is_415(client, config):
    files_before = stored_files(config)
    request = httpx.Request(
        'POST', 'http://x/images', files={'image': ('cat.jpg', HTML, 'image/jpeg')}
    )

    resp = client.simulate_post(
        '/images',
        body=request.read(),
        headers={'Content-Type': request.headers['Content-Type']},
    )

    assert resp.status_code == 415
    assert 'not an image' in resp.json['description']
    assert stored_files(config) == files_before


def test_a_gif_of_thousands_of_frames_is_refused_before_they_are_decoded(
    client, config
):
    # NOTE: Animations are kept (as animated WebP), so every frame would be
    #   decoded and encoded: past animation.MAX_FRAMES, that is a bomb.
    files_before = stored_files(config)
    resp = client.simulate_post('/images', body=gif_of_many_frames(20_000))

    assert resp.status_code == 413
    assert 'frames' in resp.json['description']
    assert stored_files(config) == files_before


def test_a_gif_of_a_few_frames_keeps_the_first_as_its_picture(client):
    resp = client.simulate_post('/images', body=gif_of_many_frames(20))

    assert resp.status_code == 201
    stored = decode(client.simulate_get(resp.headers['Location']).content)
    red, green, blue = stored.getpixel((4, 4))
    assert red > 230 and green < 30 and blue < 30
    assert resp.json['animation'] == resp.headers['Location'].replace('.jpeg', '.webp')


def exif_source(width, height, orientation):
    """Stored pixels that show an upright picture when read with ``orientation``.

    The upright picture (``width`` x ``height``) is red in its top left
    quarter, blue in its top right quarter and green in its bottom half. Per
    EXIF, orientation N says which side of the upright picture the stored
    rows start at (row 0) and columns start at (column 0).
    """
    row0, column0 = {
        1: ('top', 'left'), 2: ('top', 'right'), 3: ('bottom', 'right'),
        4: ('bottom', 'left'), 5: ('left', 'top'), 6: ('right', 'top'),
        7: ('right', 'bottom'), 8: ('left', 'bottom'),
    }[orientation]  # fmt: skip

    def upright(x, y):
        if y >= height // 2:
            return (0, 160, 0)
        return (220, 0, 0) if x < width // 2 else (0, 0, 220)

    turned = row0 in ('left', 'right')
    stored_size = (height, width) if turned else (width, height)
    stored = PIL.Image.new('RGB', stored_size)
    pixels = stored.load()
    for column in range(stored_size[0]):
        for row in range(stored_size[1]):
            if turned:
                x = row if row0 == 'left' else width - 1 - row
                y = column if column0 == 'top' else height - 1 - column
            else:
                y = row if row0 == 'top' else height - 1 - row
                x = column if column0 == 'left' else width - 1 - column
            pixels[column, row] = upright(x, y)
    return stored


def colour_at(image, x, y):
    red, green, blue = image.getpixel((x, y))
    return max(('red', red), ('green', green), ('blue', blue), key=lambda c: c[1])[0]


@pytest.mark.parametrize(
    ('orientation', 'format'),
    [(n, 'JPEG') for n in range(1, 9)] + [(6, 'PNG'), (6, 'WEBP'), (8, 'TIFF')],
)
def test_exif_orientation_is_applied(client, orientation, format):
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    source = exif_source(120, 80, orientation)
    if format == 'TIFF':
        upload = encode(source, format, tiffinfo={0x0112: orientation})
    else:
        upload = encode(source, format, exif=exif.tobytes())

    resp = client.simulate_post('/images', body=upload)

    assert resp.status_code == 201
    assert resp.json['size'] == [120, 80]
    stored = decode(client.simulate_get(resp.headers['Location']).content)
    assert stored.size == (120, 80)
    assert colour_at(stored, 25, 20) == 'red'
    assert colour_at(stored, 95, 20) == 'blue'
    assert colour_at(stored, 60, 65) == 'green'


def jpeg_segments(data):
    """The markers of a JPEG's segments, from its start to its image data."""
    assert data[:2] == b'\xff\xd8'
    markers, at = [], 2
    while True:
        marker = data[at + 1]
        markers.append(marker)
        if marker == 0xDA:
            return markers
        (length,) = struct.unpack('>H', data[at + 2 : at + 4])
        at += 2 + length


GPS = {1: 'N', 2: (48.0, 51.0, 29.9), 3: 'E', 4: (2.0, 17.0, 40.2)}
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/'
    b'1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com'
    b'/exif/1.0/" exif:GPSLatitude="48,51.5N" exif:BodySerialNumber="SN-12345"/>'
    b'</rdf:RDF></x:xmpmeta>'
)
SECRETS = (b'Exif', b'GPS', b'48,51', b'SN-12345', b'xmpmeta', b'Nikon', b'Alice',
           b'ICC_PROFILE', b'Holiday at home')  # fmt: skip


def photo_with_metadata(format):
    exif = PIL.Image.Exif()
    exif[0x010F] = 'Nikon'  # Make
    exif[0x013B] = 'Alice'  # Artist
    exif.get_ifd(0x8825).update(GPS)
    image = PIL.Image.open(io.BytesIO(draw_image((320, 240), format='PNG')))
    params = {'exif': exif.tobytes(), 'icc_profile': swapped_profile()}
    if format == 'PNG':
        info = PIL.PngImagePlugin.PngInfo()
        info.add_text('Comment', 'Holiday at home')
        info.add_itxt('XML:com.adobe.xmp', XMP.decode())
        params['pnginfo'] = info
    elif format == 'JPEG':
        params.update(comment=b'Holiday at home', xmp=XMP)
    else:
        params['xmp'] = XMP
    return encode(image, format, **params)


@pytest.mark.parametrize('format', ['JPEG', 'PNG', 'WEBP'])
def test_no_metadata_survives_in_the_stored_jpeg(client, format):
    upload = photo_with_metadata(format)
    assert all(secret in upload for secret in (b'Nikon', b'Alice', b'xmpmeta'))

    resp = client.simulate_post('/images', body=upload)

    assert resp.status_code == 201
    stored = client.simulate_get(resp.headers['Location']).content
    # Only the JFIF header, tables, frame and scan: no APP1 (EXIF, XMP), APP2
    # (ICC), APP13 (IPTC) or COM (comment) segment.
    assert set(jpeg_segments(stored)) <= {0xE0, 0xDB, 0xC0, 0xC4, 0xDA}
    assert [secret for secret in SECRETS if secret in stored] == []
    thumbnail = client.simulate_get(resp.json['thumbnails'][0]).content
    assert [secret for secret in SECRETS if secret in thumbnail] == []


def test_a_colour_profile_is_converted_to_srgb(client):
    red = PIL.Image.new('RGB', (64, 64), (255, 0, 0))
    upload = encode(red, 'JPEG', icc_profile=swapped_profile())

    resp = client.simulate_post('/images', body=upload)

    stored = decode(client.simulate_get(resp.headers['Location']).content)
    red_channel, green, blue = stored.getpixel((32, 32))
    assert blue > 200 and red_channel < 40 and green < 40


@pytest.mark.parametrize(
    ('mode', 'format'),
    [
        ('1', 'PNG'), ('L', 'PNG'), ('LA', 'PNG'), ('P', 'GIF'), ('RGBA', 'PNG'),
        ('CMYK', 'JPEG'), ('YCbCr', 'TIFF'), ('I;16', 'PNG'), ('I', 'TIFF'),
        ('F', 'TIFF'),
    ],
)  # fmt: skip
def test_every_mode_is_stored_without_washing_out(client, mode, format):
    resp = client.simulate_post('/images', body=encode(gradient(mode), format))

    assert resp.status_code == 201
    stored = decode(client.simulate_get(resp.headers['Location']).content)
    assert mean(stored, (0, 0, 6, 32)) < 40
    assert mean(stored, (58, 0, 64, 32)) > 215


@pytest.fixture(scope='module')
def small_service(tmp_path_factory, redis_server):
    """A real uvicorn that takes uploads of at most 200,000 bytes."""
    redis.Redis.from_url(redis_server.url).flushall()
    storage = tmp_path_factory.mktemp('hostile-storage')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('ASGI_LOOK_MAX_UPLOAD_BYTES', '200000')
        server = Uvicorn(storage, redis_server.url)
    server.storage = storage
    yield server
    server.stop()


def send_and_hang_up(port, head, body):
    with socket.create_connection(('127.0.0.1', port), timeout=5) as sock:
        sock.sendall(head + body)
        time.sleep(0.2)


@pytest.mark.e2e
@pytest.mark.parametrize('is_form', [False, True], ids=['raw', 'form'])
def test_a_client_that_hangs_up_mid_upload_leaves_nothing(small_service, is_form):
    with httpx.Client(base_url=small_service.url, timeout=30) as http:
        assert http.post('/images', content=draw_image((64, 64))).status_code == 201
        listing = http.get('/images').json()
    files = sorted(os.listdir(small_service.storage))
    # A picture followed by padding: its first half alone still decodes, so
    # only noticing the missing half keeps it from being stored.
    picture = draw_image((64, 64)) + b'\0' * 60_000
    if is_form:
        request = httpx.Request(
            'POST', small_service.url + '/images', files={'image': ('p.png', picture)}
        )
        body, content_type = request.read(), request.headers['Content-Type']
    else:
        body, content_type = picture, 'image/png'
    head = (
        f'POST /images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}'
        f'\r\nContent-Length: {len(body)}\r\n\r\n'
    ).encode()

    send_and_hang_up(small_service.port, head, body[: len(body) // 2])
    time.sleep(1.0)

    assert sorted(os.listdir(small_service.storage)) == files
    with httpx.Client(base_url=small_service.url, timeout=30) as http:
        assert http.get('/images').json() == listing


@pytest.mark.e2e
@pytest.mark.parametrize('chunked', [False, True], ids=['length', 'chunked'])
def test_an_upload_over_the_limit_is_413_over_http(small_service, tmp_path, chunked):
    big = tmp_path / 'big.bin'
    big.write_bytes(b'\xff' * 300_000)
    headers = ['-H', 'Transfer-Encoding: chunked'] if chunked else []
    status, body = curl(
        *headers, '--data-binary', f'@{big}', f'{small_service.url}/images'
    )
    assert status == 413
    assert json.loads(body)['title'] == 'Upload Too Large'
    assert not [name for name in os.listdir(small_service.storage) if 'partial' in name]


def curl(*args):
    """Run curl; return the status code and the body of its answer."""
    done = subprocess.run(
        ['curl', '--silent', '--show-error', '--write-out', '\n%{http_code}', *args],
        capture_output=True,
        check=True,
    )
    body, _, status = done.stdout.rpartition(b'\n')
    return int(status), body


@pytest.mark.e2e
def test_forms_from_curl_and_httpie_are_stored(small_service, tmp_path):
    photo = tmp_path / 'photo.jpg'
    photo.write_bytes(draw_image((320, 240), format='JPEG'))
    httpie = pathlib.Path(sys.executable).parent / 'http'

    status, body = curl('-F', f'image=@{photo}', f'{small_service.url}/images')
    assert status == 201
    assert json.loads(body)['size'] == [320, 240]

    done = subprocess.run(
        [httpie, '--ignore-stdin', '--check-status', '--print=b', '-f', 'POST',
         f'{small_service.url}/images', f'image@{photo}'],
        capture_output=True,
        check=True,
    )  # fmt: skip
    assert json.loads(done.stdout)['size'] == [320, 240]
