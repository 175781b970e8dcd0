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
#: Bodies of at most this many bytes are kept from their first answer.
AT_ONCE = 1000


class Index:
    """Stands in for the store: the current file of each image id."""

    def __init__(self, **files):
        self.files = files
        self.unsure = False
        self.asked = 0

    def __call__(self, image_id):
        self.asked += 1
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
    memory.remember('/a', response(), AT_ONCE)
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


def test_headers_of_any_iterable_are_read_once_and_left_as_a_list():
    memory = ResponseMemory(1000, Index(a='a.1.jpeg'))
    memory.remember('/a', response(), AT_ONCE)
    asked = scope(headers=[('if-none-match', '"1"')])
    asked['headers'] = iter([iter(pair) for pair in asked['headers']])
    sent = []

    async def send(event):
        sent.append(event)

    assert asyncio.run(memory.replay(asked, send))
    assert sent[0]['status'] == 304
    assert asked['headers'] == [(b'if-none-match', b'"1"')]


def test_head_gets_the_headers_and_no_body():
    memory = ResponseMemory(1000, Index(a='a.1.jpeg'))
    memory.remember('/a', response(), AT_ONCE)
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
    memory.remember('/a', response(), AT_ONCE)
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
    memory.remember('/a', response(), AT_ONCE)
    status, _, body = replay(memory, headers=[('if-none-match', '"0"')])
    assert (status, body) == (200, b'picture')


def test_only_remembered_targets_and_versions_are_replayed():
    index = Index(a='a.1.jpeg')
    memory = ResponseMemory(1000, index)
    memory.remember('/a', response(), AT_ONCE)
    memory.remember('/a?v=1', response(), AT_ONCE)
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


def test_the_index_is_asked_once_per_turn_of_the_event_loop():
    index = Index(a='a.1.jpeg', b='b.1.jpeg')
    memory = ResponseMemory(1000, index)
    memory.remember('/a', response(), AT_ONCE)
    memory.remember('/b', response(file='b.1.jpeg', image_id='b'), AT_ONCE)
    sent = []

    async def send(event):
        sent.append(event)

    async def turns():
        # Tasks started together take their first steps in one turn: as the
        # requests a server read together.
        together = [memory.replay(scope(path), send) for path in ('/a', '/a', '/b')]
        assert await asyncio.gather(*together) == [True] * 3
        assert index.asked == 2
        # A change seen in a later turn; the index is asked again.
        index.files['a'] = 'a.2.jpeg'
        assert not await memory.replay(scope(), send)
        assert index.asked == 3
        await asyncio.sleep(0)
        index.files['a'] = 'a.1.jpeg'
        assert await memory.replay(scope(path='/b'), send)
        assert index.asked == 4

    asyncio.run(turns())
    # A new event loop asks again, whatever the last one left.
    assert replay(memory, path='/b')[0] == 200
    assert index.asked == 5


def test_the_running_loop_is_asked_for_once_per_turn(monkeypatch):
    # NOTE: Asking for it costs a system call (getpid) in CPython 3.11: a
    #   replay knows its turn by the loop it saw, still running.
    memory = ResponseMemory(1000, Index(a='a.1.jpeg'))
    memory.remember('/a', response(), AT_ONCE)
    asked = []
    running = asyncio.get_running_loop

    def get_running_loop():
        asked.append(True)
        return running()

    monkeypatch.setattr(asyncio, 'get_running_loop', get_running_loop)

    async def send(event):
        pass

    async def turns():
        together = [memory.replay(scope(), send) for _ in range(3)]
        assert await asyncio.gather(*together) == [True] * 3
        assert len(asked) == 1
        await asyncio.sleep(0)
        assert await memory.replay(scope(), send)
        assert len(asked) == 2

    asyncio.run(turns())


def test_a_loop_closed_within_a_turn_ends_it():
    index = Index(a='a.1.jpeg')
    memory = ResponseMemory(1000, index)
    memory.remember('/a', response(), AT_ONCE)

    async def send(event):
        pass

    async def last_turn():
        # The loop stops after this step: the callback that would end the
        # turn never runs, as the loop is closed.
        asyncio.get_running_loop().stop()
        return await memory.replay(scope(), send)

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(last_turn())
    finally:
        loop.close()
    assert index.asked == 1
    index.files['a'] = 'a.2.jpeg'
    assert replay(memory) is None
    assert index.asked == 2


def test_a_response_too_big_to_keep_is_only_known_as_given():
    memory = ResponseMemory(1000, Index(a='a.1.jpeg'))
    memory.remember('/a', response(body=None), AT_ONCE)
    assert memory.given('/a', 'a.1.jpeg')
    assert not memory.given('/a', 'a.2.jpeg')
    assert replay(memory) is None


def test_no_body_takes_more_than_an_eighth_of_the_capacity():
    memory = ResponseMemory(8000, Index(a='a.1.jpeg', b='b.1.jpeg'))
    for _ in range(2):
        memory.remember('/a', response(b'x' * 1001), 2000)
        memory.remember('/b', response(b'x' * 1000, 'b.1.jpeg', 'b'), 2000)
    assert replay(memory) is None
    assert memory.given('/a', 'a.1.jpeg')
    assert replay(memory, path='/b')[2] == b'x' * 1000


def test_a_body_over_at_once_is_kept_from_its_second_answer():
    index = Index(a='a.1.jpeg')
    memory = ResponseMemory(80_000, index)
    memory.remember('/a', response(b'x' * (AT_ONCE + 1)), AT_ONCE)
    assert replay(memory) is None
    assert memory.given('/a', 'a.1.jpeg')
    memory.remember('/a', response(b'x' * (AT_ONCE + 1)), AT_ONCE)
    assert replay(memory)[2] == b'x' * (AT_ONCE + 1)

    # A new version is a new first answer.
    index.files['a'] = 'a.2.jpeg'
    memory.remember('/a', response(b'y' * (AT_ONCE + 1), 'a.2.jpeg'), AT_ONCE)
    assert replay(memory) is None
    memory.remember('/a', response(b'y' * (AT_ONCE + 1), 'a.2.jpeg'), AT_ONCE)
    assert replay(memory)[2] == b'y' * (AT_ONCE + 1)


def test_it_lacks_a_target_it_does_not_keep_current_and_would_keep():
    files = Index(a='a.1.jpeg')
    memory = ResponseMemory(800, files)
    assert memory.lacks('/a', 100)
    assert not memory.lacks('/a', 101)
    memory.remember('/a', response(b'x' * 10), AT_ONCE)
    assert not memory.lacks('/a', 10)
    files.unsure = True
    assert replay(memory, path='/a') is None
    assert not memory.lacks('/a', 10)  # not known stale: still kept
    files.unsure = False
    files.files['a'] = 'a.2.jpeg'
    assert replay(memory, path='/a') is None
    assert memory.lacks('/a', 10)  # found stale, and forgotten


def test_memory_stays_within_its_capacity_least_recently_used_first():
    # Room for eight bodies of 25 bytes, the most one may have.
    names = 'abcdefghij'
    memory = ResponseMemory(200, Index(**{name: name for name in names}))

    def remember(name, body=b'x' * 25):
        memory.remember(f'/{name}', response(body, name, name), AT_ONCE)

    for name in names[:8]:
        remember(name)
    assert replay(memory, path='/a')[0] == 200  # /a is now the most recent.
    remember('i')
    assert [memory.given(f'/{name}', name) for name in 'abci'] == [
        True,
        False,
        True,
        True,
    ]
    # Remembering a target again replaces it.
    remember('i', b'y' * 25)
    assert replay(memory, path='/i')[2] == b'y' * 25
    remember('j', b'x' * 5)
    assert [memory.given(f'/{name}', name) for name in 'acdij'] == [
        True,
        False,
        True,
        True,
        True,
    ]


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
    # Memory keeps no body over 1000 bytes either.
    config.memory_cache = 8000
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


def test_a_big_original_is_answered_from_memory_from_its_third_get(config):
    config.cache_max_entry = 1000
    app = create_app(config)
    counting = Counting()
    app.add_middleware(counting)
    client = falcon.testing.TestClient(app)
    document = client.simulate_post('/images', body=draw_image((400, 300))).json
    uri = document['image']

    answers = [client.simulate_get(uri) for _ in range(2)]
    assert counting.requests == 3
    answers += [client.simulate_get(uri) for _ in range(3)]
    head = client.simulate_head(uri)
    ranged = client.simulate_get(uri, headers={'Range': 'bytes=10-19'})
    assert counting.requests == 3
    assert len(answers[0].content) > 1000
    assert {resp.content for resp in answers} == {answers[0].content}
    assert [resp.headers['X-ASGILook-Cache'] for resp in answers] == [
        'Miss',
        *['Hit'] * 4,
    ]
    assert head.headers['Content-Length'] == str(len(answers[0].content))
    assert (ranged.status_code, ranged.content) == (206, answers[0].content[10:20])
    # Another spelling goes the long way, in chunks, and is kept by nobody.
    upper = uri.replace(FIRST_IDS[0], FIRST_IDS[0].upper())
    assert client.simulate_get(upper).content == answers[0].content
    assert client.simulate_get(upper).content == answers[0].content
    assert counting.requests == 5


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
