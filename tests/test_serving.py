"""The serving path as users meet it: uvicorn with two workers, a real Redis."""

import io
import os
import signal
import uuid

import httpx
import PIL.Image
import pytest
import redis

from asgilook.pictures import jpeg
from tests.helpers import decode
from tests.helpers import draw_image
from tests.servers import Uvicorn

pytestmark = pytest.mark.e2e

# Requests enough that both workers answer some of each kind.
ROUNDS = 12


@pytest.fixture(scope='module')
def workers(tmp_path_factory, redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    server = Uvicorn(
        tmp_path_factory.mktemp('serving'), redis_server.url, '--workers', '2'
    )
    yield server
    assert server.stop() in (0, -signal.SIGTERM)


@pytest.fixture
def http(workers):
    # NOTE: A new connection per request, so that both workers take turns.
    with httpx.Client(
        base_url=workers.url,
        timeout=30,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        yield client


def photo():
    """A camera-like JPEG: upright, with EXIF (a GPS position) and a comment."""
    exif = PIL.Image.Exif()
    exif[0x0112] = 1
    exif[0x8825] = {1: 'N', 2: (48.0, 51.0, 24.0)}
    output = io.BytesIO()
    PIL.Image.open(io.BytesIO(draw_image((900, 600)))).save(
        output, 'JPEG', quality=92, exif=exif.tobytes(), comment=b'holiday'
    )
    return output.getvalue()


def noise(size=(1200, 900)):
    """A JPEG of random pixels: over a megabyte, as a camera's original is."""
    image = PIL.Image.frombytes('RGB', size, os.urandom(size[0] * size[1] * 3))
    output = io.BytesIO()
    image.save(output, 'JPEG', quality=95)
    return output.getvalue()


def compared(resp):
    """The headers a HEAD must share with its GET: all but the date, the
    cache's, and the request's own id."""
    return {
        name: value
        for name, value in resp.headers.items()
        if name not in ('date', 'x-asgilook-cache', 'cache-status', 'x-request-id')
    }


def uris(document):
    return [document['image'], *document['thumbnails']]


def test_an_uploaded_photo_is_served_with_its_own_pixels(http):
    upload = photo()
    document = http.post('/images', content=upload).json()
    served = http.get(document['image']).content
    assert served == jpeg.strip_metadata(upload)
    assert decode(served).tobytes() == decode(upload).tobytes()
    assert b'holiday' not in served


def test_every_url_answers_304_to_its_etag_and_head_like_get(http):
    document = http.post('/images', content=photo()).json()
    for uri in [*uris(document), '/images']:
        get = http.get(uri)
        assert get.status_code == 200
        for _ in range(ROUNDS // 2):
            again = http.get(uri, headers={'If-None-Match': get.headers['etag']})
            assert (again.status_code, again.content) == (304, b'')
            assert again.headers['etag'] == get.headers['etag']
            head = http.head(uri)
            assert (head.status_code, head.content) == (200, b'')
            assert compared(head) == compared(get)


def test_the_first_get_is_a_miss_and_every_repeat_a_hit_in_any_worker(http):
    document = http.post('/images', content=photo()).json()
    for uri in uris(document):
        answers = [http.get(uri) for _ in range(ROUNDS)]
        states = [resp.headers['x-asgilook-cache'] for resp in answers]
        assert states == ['Miss'] + ['Hit'] * (ROUNDS - 1), uri
        assert {resp.content for resp in answers} == {answers[0].content}


def test_an_original_over_a_megabyte_is_answered_whole_and_in_parts_by_any_worker(
    http,
):
    # NOTE: Bigger than Redis keeps: each worker's memory keeps it from its
    #   second GET there, and sends it in one piece from then on.
    document = http.post('/images', content=noise()).json()
    uri = document['image']
    answers = [http.get(uri) for _ in range(ROUNDS)]
    whole = answers[0].content
    assert len(whole) > 1024 * 1024
    assert {resp.content for resp in answers} == {whole}
    states = [resp.headers['x-asgilook-cache'] for resp in answers]
    assert states == ['Miss'] + ['Hit'] * (ROUNDS - 1)
    for _ in range(ROUNDS // 2):
        part = http.get(uri, headers={'Range': 'bytes=1048570-1048579'})
        assert (part.status_code, part.content) == (206, whole[1048570:1048580])
        head = http.head(uri)
        assert (head.headers['content-length'], head.content) == (str(len(whole)), b'')


def test_junk_queries_and_spellings_do_not_grow_redis(http, redis_server):
    document = http.post('/images', content=photo()).json()
    plain = uuid.UUID(document['id'])
    spellings = [str(plain), str(plain).upper(), plain.hex, plain.hex.upper()]
    client = redis.Redis.from_url(redis_server.url)
    for uri in uris(document):
        http.get(uri)
    before = client.info('memory')['used_memory']
    keys = client.dbsize()

    for number in range(100):
        spelt = spellings[number % len(spellings)]
        for uri in uris(document):
            resp = http.get(
                uri.replace(document['id'], spelt),
                params={'junk': str(number), 'pad': 'x' * 1000},
            )
            assert resp.status_code == 200

    assert client.dbsize() == keys
    assert client.info('memory')['used_memory'] - before < 1_000_000
    client.close()
