"""Caches that can forget: surrogate keys on every answer that shows a picture,
and a purge by key after a deletion or a replacement (asgilook/http/purge.py)."""

import asyncio
import http.server
import logging
import threading
import time
import uuid

import falcon.testing
import httpx
import pytest

from asgilook.config import Config
from asgilook.http import purge
from asgilook.http.app import create_app
from asgilook.settings import method
from asgilook.settings import purge_url
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image
from tests.servers import Uvicorn
from tests.servers import free_port
from tests.test_animations import animation

IMAGE_ID = FIRST_IDS[0]
KEYS = f'asgilook-image-{IMAGE_ID} asgilook-images'
TAGS = f'asgilook-image-{IMAGE_ID},asgilook-images'
PURGED = f'asgilook-image-{IMAGE_ID} asgilook-listing'


class PurgeEndpoint:
    """A Varnish stand-in on a free loopback port: records each request it gets
    (method, path, Surrogate-Key) and answers ``status``."""

    def __init__(self, status=200):
        self.requests = []
        self.status = status
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_one_request(self):
                # NOTE: Any method: PURGE, BAN, POST ... all land here.
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    return
                endpoint.requests.append(
                    (self.command, self.path, self.headers.get('Surrogate-Key'))
                )
                self.send_response(endpoint.status)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_port}/purge'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.requests


@pytest.fixture
def endpoint():
    server = PurgeEndpoint()
    yield server
    server.close()


def upload(client, data=None):
    answer = client.simulate_post('/images', body=data or draw_image())
    assert answer.status_code == 201
    return answer.json


def keys_of(answer):
    return answer.headers.get('Surrogate-Key'), answer.headers.get('Cache-Tag')


def test_every_answer_that_shows_a_picture_names_it(client):
    document = upload(client)
    thumbnail = document['thumbnails'][0]
    versioned = f'{document["image"]}?v={document["version"]}'
    for uri in (document['image'], versioned, thumbnail):
        answer = client.simulate_get(uri)
        assert answer.status_code == 200
        assert keys_of(answer) == (KEYS, TAGS), uri
        etag = answer.headers['ETag']
        again = client.simulate_get(uri, headers={'If-None-Match': etag})
        assert again.status_code == 304
        part = client.simulate_get(uri, headers={'Range': 'bytes=0-9'})
        assert part.status_code == 206
        assert keys_of(part) == (KEYS, TAGS), uri
        head = client.simulate_head(uri)
        assert keys_of(head) == (KEYS, TAGS), uri


def test_the_app_304_names_it_too(config, png_image):
    # NOTE: No memory: every answer is the app's.
    config.memory_cache = 1
    client = falcon.testing.TestClient(create_app(config))
    document = upload(client, png_image)
    for uri in (document['image'], document['thumbnails'][0]):
        etag = client.simulate_get(uri).headers['ETag']
        again = client.simulate_get(uri, headers={'If-None-Match': etag})
        assert again.status_code == 304
        assert keys_of(again) == (KEYS, TAGS), uri


def test_an_animation_is_named_like_its_picture(client):
    document = upload(client, animation('GIF'))
    answer = client.simulate_get(document['animation'])
    assert answer.status_code == 200
    assert answer.headers['Content-Type'] == 'image/webp'
    assert keys_of(answer) == (KEYS, TAGS)


def test_a_replay_from_memory_carries_the_same_keys(client):
    document = upload(client)
    for uri in (document['image'], document['thumbnails'][-1], '/images'):
        # NOTE: A thumbnail may first be the JPEG sent while its format renders.
        answers = [client.simulate_get(uri) for _ in range(4)]
        made = next(a for a in answers if a.headers['X-ASGILook-Cache'] == 'Miss')
        replayed = answers[-1]
        assert replayed.headers['X-ASGILook-Cache'] == 'Hit', uri
        assert keys_of(replayed) == keys_of(made), uri
        assert keys_of(made)[0] is not None
        part = client.simulate_get(uri, headers={'Range': 'bytes=0-3'})
        assert keys_of(part) == keys_of(made), uri


def test_a_listing_names_the_pictures_it_shows(client):
    first = upload(client)
    second = upload(client)
    answer = client.simulate_get('/images')
    keys = [
        'asgilook-listing',
        f'asgilook-image-{first["id"]}',
        f'asgilook-image-{second["id"]}',
    ]
    assert keys_of(answer) == (' '.join(keys), ','.join(keys))
    page = client.simulate_get('/images', params={'limit': 1, 'order': 'newest'})
    assert page.headers['Surrogate-Key'] == f'asgilook-listing {keys[2]}'


def test_a_long_listing_says_listing_alone():
    ids = [str(uuid.UUID(int=number)) for number in range(1000)]
    assert purge.listing_keys(ids) == ['asgilook-listing']
    hundred = purge.listing_keys(ids[:100])
    assert len(hundred) == 101
    assert len(' '.join(hundred)) <= purge.MAX_KEYS_LENGTH


def test_a_delete_purges_its_keys(config, endpoint, png_image):
    config.purge_url = endpoint.url
    client = falcon.testing.TestClient(create_app(config))
    document = upload(client, png_image)
    # NOTE: A new id replaces nothing: no purge.
    assert endpoint.requests == []
    deleted = client.simulate_delete(
        document['image'],
        headers={'Authorization': f'Bearer {document["delete_token"]}'},
    )
    assert deleted.status_code == 204
    # NOTE: The app's lifespan ends after the answer and waits for the purge.
    assert endpoint.requests == [('PURGE', '/purge', PURGED)]


def test_a_replacement_purges_its_keys(config, endpoint, png_image):
    config.purge_url = endpoint.url
    config.purge_method = 'BAN'
    config.uuid_generator = lambda: uuid.UUID(IMAGE_ID)
    client = falcon.testing.TestClient(create_app(config))
    upload(client, png_image)
    assert endpoint.requests == []
    upload(client, png_image)
    assert endpoint.requests == [('BAN', '/purge', PURGED)]


def test_a_failing_purge_is_logged_once_per_outage(caplog):
    caplog.set_level(logging.WARNING, logger='asgilook.http.purge')
    dead = f'http://127.0.0.1:{free_port()}/'
    purger = purge.Purger(dead, 'PURGE')

    async def purges():
        for _ in range(3):
            purger.forget(['asgilook-listing'])
        await purger.process_shutdown(None, None)

    asyncio.run(purges())
    assert len(caplog.records) == 1
    assert 'The purge at' in caplog.records[0].getMessage()
    assert 'ConnectError' in caplog.records[0].getMessage()

    refusing = PurgeEndpoint(status=500)
    try:
        purger.url = refusing.url
        asyncio.run(purger.purge(['asgilook-listing']))
        assert len(caplog.records) == 1
        refusing.status = 200
        asyncio.run(purger.purge(['asgilook-listing']))
        asyncio.run(purger.purge(['asgilook-listing']))
    finally:
        refusing.close()
    assert [record.getMessage() for record in caplog.records[1:]] == [
        f'The purge at {refusing.url} answers again'
    ]
    refusing.status = 500
    first = PurgeEndpoint(status=503)
    try:
        purger.url = first.url
        asyncio.run(purger.purge(['asgilook-listing']))
    finally:
        first.close()
    assert '503 Service Unavailable' in caplog.records[-1].getMessage()


def test_no_url_no_purge():
    purger = purge.Purger(None, 'PURGE')
    purger.forget(['asgilook-listing'])
    asyncio.run(purger.process_shutdown(None, None))


def test_the_settings():
    assert purge_url('') is None
    assert purge_url(' https://varnish.internal/ ') == 'https://varnish.internal/'
    for bad in ('ftp://varnish/', 'http://', 'varnish'):
        with pytest.raises(ValueError, match='http:// or https:// URL'):
            purge_url(bad)
    assert method('purge') == 'PURGE'
    assert method('X-PURGE') == 'X-PURGE'
    for bad in ('', 'PURGE NOW', 'PÜRGE'):
        with pytest.raises(ValueError, match='an HTTP method'):
            method(bad)
    config = Config.from_environ(
        {
            'ASGI_LOOK_PURGE_URL': 'http://127.0.0.1:6081/',
            'ASGI_LOOK_PURGE_METHOD': 'ban',
        }
    )
    assert (config.purge_url, config.purge_method) == ('http://127.0.0.1:6081/', 'BAN')
    assert (Config.from_environ({}).purge_url, Config().purge_method) == (None, 'PURGE')


@pytest.mark.e2e
def test_a_delete_through_uvicorn_purges(tmp_path, redis_server, endpoint):
    server = Uvicorn(
        tmp_path, f'{redis_server.url}/7', env={'ASGI_LOOK_PURGE_URL': endpoint.url}
    )
    try:
        with httpx.Client(base_url=server.url) as client:
            document = client.post('/images', content=draw_image()).json()
            shown = client.get(document['image'])
            assert shown.headers['Surrogate-Key'] == (
                f'asgilook-image-{document["id"]} asgilook-images'
            )
            deleted = client.delete(
                document['image'],
                headers={'Authorization': f'Bearer {document["delete_token"]}'},
            )
            assert deleted.status_code == 204
            assert endpoint.wait_for(1) == [
                (
                    'PURGE',
                    '/purge',
                    f'asgilook-image-{document["id"]} asgilook-listing',
                )
            ]
    finally:
        server.stop()


@pytest.mark.e2e
def test_a_dead_purge_endpoint_changes_no_answer(tmp_path, redis_server):
    dead = f'http://127.0.0.1:{free_port()}/purge'
    log = tmp_path / 'uvicorn.log'
    with log.open('wb') as stderr:
        server = Uvicorn(
            tmp_path / 'store',
            f'{redis_server.url}/7',
            env={'ASGI_LOOK_PURGE_URL': dead},
            stderr=stderr,
        )
        try:
            with httpx.Client(base_url=server.url) as client:
                for _ in range(2):
                    document = client.post('/images', content=draw_image()).json()
                    deleted = client.delete(
                        document['image'],
                        headers={'Authorization': f'Bearer {document["delete_token"]}'},
                    )
                    assert deleted.status_code == 204
                    assert deleted.content == b''
                    time.sleep(0.5)
        finally:
            server.stop()
    text = log.read_text()
    assert text.count(f'The purge at {dead} failed') == 1, text
