"""This process's memory of image responses: the fast path in front of Falcon."""

import asyncio
import datetime

import fakeredis
import falcon
import falcon.testing
import pytest

from asgilook.caching.memory import Remembered
from asgilook.caching.memory import ResponseMemory
from asgilook.errors import Unsure
from asgilook.http.app import create_app
from asgilook.storage.blobs.local import LocalBlobs
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image

MODIFIED = datetime.datetime(2026, 11, 22, 12, 0, 0, tzinfo=datetime.UTC)


class Index:
    """Stands in for the store: the current file of each image id."""

    def __init__(self, **files):
        self.files = files
        self.unsure = False

    def __call__(self, image_id):
        if self.unsure:
            raise Unsure
        return self.files.get(image_id)


def response(body=b'picture', file='a.1.jpeg', image_id='a'):
    return Remembered.of(
        '/{name}',
        image_id,
        file,
        'image/jpeg',
        [
            ('etag', '"1"'),
            ('last-modified', falcon.dt_to_http(MODIFIED)),
            ('cache-control', 'public, max-age=60'),
        ],
        body,
        len(body or b'x' * 1000),
    )


def scope(path='/a', method='GET', query=b'', headers=()):
    return {
        'type': 'http',
        'method': method,
        'path': path,
        'query_string': query,
        'headers': [(name.encode(), value.encode()) for name, value in headers],
    }


def replay(memory, **kwargs):
    """What ``memory.replay`` sent, as (status, headers, body), or None."""
    sent = []

    async def send(event):
        sent.append(event)

    if not asyncio.run(memory.replay(scope(**kwargs), send)):
        assert sent == []
        return None
    start, body = sent
    return start['status'], dict(start['headers']), body['body']


def test_a_remembered_response_is_replayed_whole():
    memory = ResponseMemory(1000, Index(a='a.1.jpeg'))
    memory.remember('/a', response())
    status, headers, body = replay(memory)
    assert (status, body) == (200, b'picture')
    assert headers == {
        b'content-type': b'image/jpeg',
        b'content-length': b'7',
        b'etag': b'"1"',
        b'last-modified': falcon.dt_to_http(MODIFIED).encode(),
        b'cache-control': b'public, max-age=60',
        b'x-asgilook-cache': b'Hit',
        b'cache-status': b'asgilook; hit',
    }


def test_head_gets_the_headers_and_no_body():
    memory = ResponseMemory(1000, Index(a='a.1.jpeg'))
    memory.remember('/a', response())
    status, headers, body = replay(memory, method='HEAD')
    assert (status, headers[b'content-length'], body) == (200, b'7', b'')


@pytest.mark.parametrize(
    'headers',
    [
        [('if-none-match', '"1"')],
        [('if-none-match', 'W/"0", W/"1"')],
        [('if-modified-since', falcon.dt_to_http(MODIFIED))],
    ],
)
def test_a_conditional_request_gets_a_304_with_its_validators(headers):
    memory = ResponseMemory(1000, Index(a='a.1.jpeg'))
    memory.remember('/a', response())
    status, sent, body = replay(memory, headers=headers)
    assert (status, body) == (304, b'')
    assert set(sent) == {
        b'etag',
        b'last-modified',
        b'cache-control',
        b'x-asgilook-cache',
        b'cache-status',
    }


def test_a_stale_validator_gets_the_picture():
    memory = ResponseMemory(1000, Index(a='a.1.jpeg'))
    memory.remember('/a', response())
    status, _, body = replay(memory, headers=[('if-none-match', '"0"')])
    assert (status, body) == (200, b'picture')


def test_only_remembered_targets_and_versions_are_replayed():
    index = Index(a='a.1.jpeg')
    memory = ResponseMemory(1000, index)
    memory.remember('/a', response())
    memory.remember('/a?v=1', response())
    assert replay(memory, query=b'v=1')[0] == 200
    for kwargs in (
        {'path': '/b'},
        {'method': 'POST'},
        {'query': b'v=2'},
        {'query': b'junk=1'},
        {'query': b'v=1&junk=1'},
    ):
        assert replay(memory, **kwargs) is None, kwargs

    # The index cannot tell at once: the long way, and nothing forgotten.
    index.unsure = True
    assert replay(memory) is None
    index.unsure = False
    assert replay(memory)[0] == 200

    # Another version is current now: forgotten.
    index.files['a'] = 'a.2.jpeg'
    assert replay(memory) is None
    assert not memory.given('/a', 'a.1.jpeg')
    index.files['a'] = 'a.1.jpeg'
    assert replay(memory) is None


def test_a_response_too_big_to_keep_is_only_known_as_given():
    memory = ResponseMemory(1000, Index(a='a.1.jpeg'))
    memory.remember('/a', response(body=None))
    assert memory.given('/a', 'a.1.jpeg')
    assert not memory.given('/a', 'a.2.jpeg')
    assert replay(memory) is None


def test_it_lacks_a_target_it_does_not_keep_current_and_would_keep():
    files = Index(a='a.1.jpeg')
    memory = ResponseMemory(100, files)
    assert memory.lacks('/a', 100)
    assert not memory.lacks('/a', 101)
    memory.remember('/a', response(b'x' * 10))
    assert not memory.lacks('/a', 10)
    files.unsure = True
    assert replay(memory, path='/a') is None
    assert not memory.lacks('/a', 10)  # not known stale: still kept
    files.unsure = False
    files.files['a'] = 'a.2.jpeg'
    assert replay(memory, path='/a') is None
    assert memory.lacks('/a', 10)  # found stale, and forgotten


def test_memory_stays_within_its_capacity_least_recently_used_first():
    memory = ResponseMemory(25, Index(a='1', b='2', c='3', d='4'))
    memory.remember('/huge', response(b'x' * 26))
    assert not memory.given('/huge', 'a.1.jpeg')
    for name, file in (('a', '1'), ('b', '2')):
        memory.remember(f'/{name}', response(b'x' * 10, file, name))
    assert replay(memory, path='/a')[0] == 200  # /a is now the most recent.
    memory.remember('/c', response(b'x' * 10, '3', 'c'))
    assert [memory.given(f'/{name}', file) for name, file in 'a1 b2 c3'.split()] == [
        True,
        False,
        True,
    ]
    # Remembering a target again replaces it.
    memory.remember('/c', response(b'y' * 10, '3', 'c'))
    assert replay(memory, path='/c')[2] == b'y' * 10
    memory.remember('/d', response(b'x' * 5, '4', 'd'))
    assert all(memory.given(f'/{name}', file) for name, file in 'a1 c3 d4'.split())


# Through the app


class Counting:
    """Middleware that counts the requests Falcon itself handled."""

    def __init__(self):
        self.requests = 0

    async def process_request(self, req, resp):
        self.requests += 1


def test_repeats_are_answered_before_falcon(config):
    app = create_app(config)
    counting = Counting()
    app.add_middleware(counting)
    client = falcon.testing.TestClient(app)
    document = client.simulate_post('/images', body=draw_image()).json

    for uri in (document['image'], *document['thumbnails']):
        first = client.simulate_get(uri)
        handled = counting.requests
        again = [client.simulate_get(uri) for _ in range(3)]
        head = client.simulate_head(uri)
        assert counting.requests == handled
        assert [resp.content for resp in again] == [first.content] * 3
        assert head.headers['Content-Length'] == str(len(first.content))
        # Any other spelling goes the long way, and gets the same picture.
        upper = client.simulate_get(uri.replace(FIRST_IDS[0], FIRST_IDS[0].upper()))
        assert counting.requests == handled + 1
        assert upper.content == first.content


def test_a_change_made_elsewhere_is_seen_at_once(config):
    ids = iter([FIRST_IDS[0]] * 3)
    config.uuid_generator = lambda: __import__('uuid').UUID(next(ids))
    worker = falcon.testing.TestClient(create_app(config))
    other = falcon.testing.TestClient(create_app(config))
    document = worker.simulate_post('/images', body=draw_image((640, 360))).json
    uri = document['image']
    assert worker.simulate_get(uri).headers['X-ASGILook-Cache'] == 'Miss'
    assert worker.simulate_get(uri).headers['X-ASGILook-Cache'] == 'Hit'

    replaced = other.simulate_post('/images', body=draw_image((200, 100))).json
    resp = worker.simulate_get(uri)
    assert resp.headers['ETag'] == f'"{replaced["version"]}"'
    assert PIL_size(resp.content) == (200, 100)

    token = replaced['delete_token']
    other.simulate_delete(uri, headers={'Authorization': f'Bearer {token}'})
    assert worker.simulate_get(uri).status_code == 404


def test_a_process_that_did_not_render_the_listing_still_answers_it_from_memory(
    config, png_image
):
    # One Redis for both, as a restarted process or a second worker has: the
    # listing that Redis holds is rendered once more, for the memory to keep.
    server = fakeredis.FakeServer()
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=server)
    first = falcon.testing.TestClient(create_app(config))
    uploaded = first.simulate_post('/images', body=png_image).json
    listed = first.simulate_get('/images').json
    app = create_app(config)
    counting = Counting()
    app.add_middleware(counting)
    second = falcon.testing.TestClient(app)

    def answers(uri='/images'):
        """The documents of a few GETs; the last ones from memory, before Falcon."""
        documents = [second.simulate_get(uri).json]
        handled = counting.requests
        documents += [second.simulate_get(uri).json for _ in range(3)]
        assert counting.requests == handled
        assert all(document == documents[0] for document in documents)
        return documents[0]

    assert answers() == listed
    # Another process's changes are seen at once, and remembered again.
    other = first.simulate_post('/images', body=png_image).json
    assert [document['id'] for document in answers()] == [
        uploaded['id'],
        other['id'],
    ]
    token = other['delete_token']
    first.simulate_delete(other['image'], headers={'Authorization': f'Bearer {token}'})
    assert [document['id'] for document in answers()] == [uploaded['id']]
    assert answers('/images?limit=1') == listed
    # HEAD and other spellings are answered from Redis, not rendered again.
    first.simulate_get('/images?limit=2')
    handled = counting.requests
    for method, query in (('HEAD', 'limit=2'), ('GET', 'limit=2&junk=1')):
        resp = second.simulate_request(method, '/images', query_string=query)
        assert resp.headers['X-ASGILook-Cache'] == 'Hit'
    assert counting.requests == handled + 2


def PIL_size(data):
    import io

    import PIL.Image

    return PIL.Image.open(io.BytesIO(data)).size


def test_a_big_original_is_streamed_in_chunks_and_known_as_given(config, monkeypatch):
    config.cache_max_entry = 1000
    monkeypatch.setattr(LocalBlobs, 'CHUNK', 4096)
    client = falcon.testing.TestClient(create_app(config))
    document = client.simulate_post('/images', body=draw_image((400, 300))).json
    uri = document['image']

    first = client.simulate_get(uri)
    second = client.simulate_get(uri)
    head = client.simulate_head(uri)
    assert len(first.content) > 4096 * 2
    assert second.content == first.content
    assert int(head.headers['Content-Length']) == len(first.content)
    assert head.content == b''
    assert [r.headers['X-ASGILook-Cache'] for r in (first, second, head)] == [
        'Miss',
        'Hit',
        'Hit',
    ]


def test_a_file_that_shrank_ends_its_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(LocalBlobs, 'CHUNK', 1000)
    blobs = LocalBlobs(tmp_path)
    path = tmp_path / 'images' / 'picture.jpeg'
    path.parent.mkdir()
    path.write_bytes(b'x' * 3000)

    async def read_all():
        found = await blobs.open('images/picture.jpeg', 1000)
        assert found.size == 3000 and found.body.length == 3000
        # Truncated in place: never done to a stored version, but not a hang.
        path.write_bytes(b'')
        return [chunk async for chunk in found.body]

    assert asyncio.run(read_all()) == [b'x' * 1000]
