"""The service as users run it: real uvicorn, real Redis, HTTP over loopback."""

import io
import json
import pathlib
import shutil
import signal
import subprocess
import sys
import uuid

import httpx
import PIL.Image
import pytest
import redis

from tests.helpers import decode
from tests.helpers import draw_image
from tests.servers import Uvicorn

pytestmark = pytest.mark.e2e

HTTPIE = str(pathlib.Path(sys.executable).parent / 'http')


@pytest.fixture(scope='module')
def service(tmp_path_factory, redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    server = Uvicorn(tmp_path_factory.mktemp('e2e-storage'), redis_server.url)
    yield server
    assert server.stop() in (0, -signal.SIGTERM)


@pytest.fixture
def http(service):
    with httpx.Client(base_url=service.url, timeout=30) as client:
        yield client


def curl(*args):
    assert shutil.which('curl'), 'the end-to-end tests need curl (apt-get install curl)'
    done = subprocess.run(
        ['curl', '--silent', '--show-error', *args],
        capture_output=True,
        check=True,
    )
    return done.stdout


def httpie(*args):
    done = subprocess.run(
        [HTTPIE, '--ignore-stdin', '--check-status', '--print=b', *args],
        capture_output=True,
        check=True,
    )
    return done.stdout


def test_upload_list_fetch_and_thumbnails(service, http, tmp_path):
    png = tmp_path / 'drawing.png'
    png.write_bytes(draw_image((640, 360)))
    jpeg = tmp_path / 'photo.jpg'
    jpeg.write_bytes(draw_image((1024, 768), format='JPEG'))

    first = json.loads(curl('--data-binary', f'@{png}', f'{service.url}/images'))
    second = json.loads(httpie('POST', f'{service.url}/images', f'@{jpeg}'))
    assert first['size'] == [640, 360]
    assert second['size'] == [1024, 768]

    listing = http.get('/images')
    assert listing.status_code == 200
    assert [item['id'] for item in listing.json()] == [first['id'], second['id']]

    for document in (first, second):
        original = http.get(document['image'])
        assert original.headers['content-type'] == 'image/jpeg'
        assert decode(original.content).size == tuple(document['size'])

        assert document['thumbnails']
        for uri in document['thumbnails']:
            miss = http.get(uri)
            hit = http.get(uri)
            assert miss.headers['x-asgilook-cache'] == 'Miss'
            assert hit.headers['x-asgilook-cache'] == 'Hit'
            assert hit.content == miss.content
            width, height = uri.rsplit('/', 1)[1].removesuffix('.jpeg').split('x')
            assert decode(miss.content).size == (int(width), int(height))


def test_created_response_headers(service, tmp_path):
    png = tmp_path / 'headers.png'
    png.write_bytes(draw_image((200, 200)))
    head = curl('--include', '--data-binary', f'@{png}', f'{service.url}/images')
    status, _, rest = head.partition(b'\r\n')
    headers = rest.split(b'\r\n\r\n', 1)[0].decode().lower()
    assert status.startswith(b'HTTP/1.1 201')
    assert 'location: /images/' in headers
    assert 'content-type: application/json' in headers


def test_original_hit_is_byte_identical(service, http):
    body = io.BytesIO()
    PIL.Image.new('RGB', (300, 300), 'green').save(body, 'GIF')
    document = http.post('/images', content=body.getvalue()).json()
    miss = http.get(document['image'])
    hit = http.get(document['image'])
    assert (miss.headers['x-asgilook-cache'], hit.headers['x-asgilook-cache']) == (
        'Miss',
        'Hit',
    )
    assert hit.content == miss.content


def test_not_found(service, http):
    missing = http.get(f'/images/{uuid.uuid4()}.jpeg')
    assert missing.status_code == 404
    assert missing.json()['title'] == 'Not Found'
    assert http.get(f'/thumbnails/{uuid.uuid4()}/160x90.jpeg').status_code == 404

    document = http.post('/images', content=draw_image((640, 360))).json()
    odd = http.get(f'/thumbnails/{document["id"]}/480x270.jpeg')
    assert odd.status_code == 404
    assert 'thumbnail' in odd.json()['description']


def test_garbage_is_415_over_http(service, tmp_path):
    fake = tmp_path / 'fake.png'
    fake.write_text('<html>not a picture</html>')
    done = subprocess.run(
        [HTTPIE, '--ignore-stdin', '--print=hb', 'POST', f'{service.url}/images',
         f'@{fake}'],
        capture_output=True,
        check=True,
    )  # fmt: skip
    assert b'415 Unsupported Media Type' in done.stdout
    assert b'"title": "Unsupported Image Format"' in done.stdout
