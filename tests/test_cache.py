import asyncio
import uuid

import fakeredis
import falcon.testing
import msgpack
import pytest
import redis.asyncio

from asgilook.app import create_app
from asgilook.cache import RedisCache
from tests.conftest import FIRST_IDS
from tests.test_faults import ONE_ID
from tests.test_faults import FlakyServer
from tests.test_faults import colour_of
from tests.test_faults import flaky_client
from tests.test_faults import solid


@pytest.fixture
def fake_server():
    return fakeredis.FakeServer()


@pytest.fixture
def inspectable(config, fake_server):
    """A client whose fake Redis the test can look into afterwards."""
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=fake_server)
    return falcon.testing.TestClient(create_app(config))


def test_entry_is_msgpack_of_content_type_and_body_with_ttl(inspectable, fake_server):
    listing = inspectable.simulate_get('/images')

    redis = fakeredis.FakeRedis(server=fake_server)
    entry = redis.get('asgilook:/images')
    assert msgpack.unpackb(entry, raw=False) == [
        'application/json', listing.content
    ]  # fmt: skip
    assert 3590 < redis.ttl('asgilook:/images') <= 3600


def test_query_string_is_part_of_the_key(inspectable, fake_server):
    assert inspectable.simulate_get('/images').headers['X-ASGILook-Cache'] == 'Miss'
    with_query = inspectable.simulate_get('/images', query_string='limit=5')
    assert with_query.headers['X-ASGILook-Cache'] == 'Miss'
    assert (
        fakeredis.FakeRedis(server=fake_server).exists(
            'asgilook:/images', 'asgilook:/images?limit=5'
        )
        == 2
    )


def test_post_drops_every_cached_listing(client, png_image):
    client.simulate_get('/images')
    client.simulate_get('/images', query_string='page=2')

    assert client.simulate_post('/images', body=png_image).status_code == 201

    plain = client.simulate_get('/images')
    query = client.simulate_get('/images', query_string='page=2')
    assert plain.headers['X-ASGILook-Cache'] == 'Miss'
    assert query.headers['X-ASGILook-Cache'] == 'Miss'
    assert [item['id'] for item in plain.json] == [FIRST_IDS[0]]


def test_invalidating_methods_say_miss_and_are_not_cached(client, png_image):
    first = client.simulate_post('/images', body=png_image)
    assert first.headers['X-ASGILook-Cache'] == 'Miss'
    second = client.simulate_post('/images', body=png_image)
    assert second.headers['X-ASGILook-Cache'] == 'Miss'
    assert second.json['id'] == FIRST_IDS[1]


def test_errors_are_not_cached(client):
    uri = '/images/1a256a8a-2063-46ff-b53f-d04d5bcf5eee.jpeg'
    for _ in range(2):
        resp = client.simulate_get(uri)
        assert resp.status_code == 404
        assert resp.headers['X-ASGILook-Cache'] == 'Miss'


def test_options_does_not_poison_the_get_entry(client):
    options = client.simulate_options('/images')
    assert options.status_code == 200
    assert client.simulate_get('/images').headers['X-ASGILook-Cache'] == 'Miss'
    assert client.simulate_get('/images').json == []


def test_real_redis_across_many_lifespans(config, redis_server, png_image):
    # NOTE: falcon.testing runs a new event loop and lifespan per request: the
    #   one real client must reconnect each time after process_shutdown.
    config.redis_from_url = redis.asyncio.from_url
    config.redis_host = redis_server.url
    client = falcon.testing.TestClient(create_app(config))
    client.simulate_post('/images', body=png_image)
    uri = f'/thumbnails/{FIRST_IDS[0]}/160x90.jpeg'

    states = [client.simulate_get(uri).headers['X-ASGILook-Cache'] for _ in range(3)]
    assert states == ['Miss', 'Hit', 'Hit']

    cached = redis.Redis.from_url(redis_server.url)
    try:
        assert cached.exists(f'{RedisCache.PREFIX}{uri}') == 1
        cached.flushall()
    finally:
        cached.close()


class _Streamed:
    async def on_get(self, req, resp):
        async def chunks():
            yield b'streamed '
            yield b'body'

        resp.stream = chunks()
        resp.content_type = 'text/plain'


def test_a_streamed_body_is_served_but_not_cached(config):
    app = create_app(config)
    app.add_route('/streamed', _Streamed())
    client = falcon.testing.TestClient(app)

    for _ in range(2):
        resp = client.simulate_get('/streamed')
        assert resp.text == 'streamed body'
        assert resp.headers['X-ASGILook-Cache'] == 'Miss'


def test_lifespan_pings_at_startup_and_closes_at_shutdown(config):
    calls = []

    class Recording(fakeredis.FakeAsyncRedis):
        async def ping(self, *args, **kwargs):
            calls.append('ping')
            return await super().ping(*args, **kwargs)

        async def aclose(self, *args, **kwargs):
            calls.append('aclose')
            return await super().aclose(*args, **kwargs)

    config.redis_from_url = lambda url: Recording(server=fakeredis.FakeServer())
    client = falcon.testing.TestClient(create_app(config))
    client.simulate_get('/images')
    client.simulate_get('/images')
    assert calls == ['ping', 'aclose', 'ping', 'aclose']


# Several workers share one Redis: a render that an invalidation overtook is
# never stored, and an invalidation never unhooks a fresh entry from its tags.


class _PauseAfterResponder:
    """Holds the next GET between its responder and the cache's store."""

    def __init__(self):
        self.armed = True
        self.reached = asyncio.Event()
        self.proceed = asyncio.Event()

    async def process_response(self, req, resp, resource, req_succeeded):
        if req.method == 'GET' and self.armed:
            self.armed = False
            self.reached.set()
            await self.proceed.wait()


def test_a_render_overtaken_by_an_invalidation_is_not_stored(config, fake_server):
    # Two workers: A renders the red picture; meanwhile B replaces it with a
    # blue one and invalidates; only then does A come to store its render.
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=fake_server)
    config.uuid_generator = lambda: uuid.UUID(ONE_ID)
    pause = _PauseAfterResponder()
    worker_a = create_app(config)
    # NOTE: Added last, so its process_response runs before the cache's.
    worker_a.add_middleware(pause)
    worker_b = create_app(config)
    uri = f'/images/{ONE_ID}.jpeg'

    async def race():
        async with falcon.testing.TestClient(worker_a) as a:
            async with falcon.testing.TestClient(worker_b) as b:
                await a.simulate_post('/images', body=solid('red'))
                slow = asyncio.create_task(a.simulate_get(uri))
                await pause.reached.wait()
                await b.simulate_post('/images', body=solid('blue'))
                pause.proceed.set()
                overtaken = await slow
                return overtaken, [await a.simulate_get(uri) for _ in range(2)]

    overtaken, after = asyncio.run(race())
    assert (overtaken.headers['X-ASGILook-Cache'], colour_of(overtaken.content)) == (
        'Miss',
        'red',
    )
    assert [resp.headers['X-ASGILook-Cache'] for resp in after] == ['Miss', 'Hit']
    assert [colour_of(resp.content) for resp in after] == ['blue', 'blue']


def test_an_invalidation_between_watch_and_exec_stops_the_store(config):
    flaky = FlakyServer()
    config.redis_from_url = lambda url: flaky_client(flaky)
    client = falcon.testing.TestClient(create_app(config))
    elsewhere = fakeredis.FakeRedis(server=flaky)

    def invalidate_elsewhere(command):
        if b'EXEC' in command:
            flaky.before_send = None
            elsewhere.incr(RedisCache.GENERATION_KEY)

    flaky.before_send = invalidate_elsewhere
    first = client.simulate_get('/images')
    assert flaky.before_send is None  # The store did get as far as EXEC.
    assert elsewhere.exists('asgilook:/images') == 0
    second = client.simulate_get('/images')
    assert [first.headers['X-ASGILook-Cache'], second.headers['X-ASGILook-Cache']] == [
        'Miss',
        'Miss',
    ]


def test_an_entry_stored_during_an_invalidation_keeps_its_tag(config, png_image):
    flaky = FlakyServer()
    config.redis_from_url = lambda url: flaky_client(flaky)
    client = falcon.testing.TestClient(create_app(config))
    elsewhere = fakeredis.FakeRedis(server=flaky)
    fresh = f'{RedisCache.PREFIX}/images?page=2'
    listing = f'{RedisCache.TAG_PREFIX}listing'
    client.simulate_get('/images')

    deletes = []

    def store_elsewhere(command):
        # Another worker stores a listing it rendered after the INCR, just
        # before this invalidation deletes what it read from the tag set.
        # An upload invalidates twice (before its commit and after it); this
        # happens during the second.
        if b'DEL' in command:
            deletes.append(command)
        if len(deletes) == 2:
            flaky.before_send = None
            elsewhere.set(fresh, msgpack.packb(['application/json', b'[]']))
            elsewhere.sadd(listing, fresh)

    flaky.before_send = store_elsewhere
    client.simulate_post('/images', body=png_image)
    assert flaky.before_send is None
    assert elsewhere.exists('asgilook:/images') == 0
    assert elsewhere.smembers(listing) == {fresh.encode()}

    client.simulate_post('/images', body=png_image)
    assert elsewhere.exists(fresh) == 0


@pytest.mark.parametrize(
    'entry',
    [
        b'\xc1 not msgpack',
        msgpack.packb([1, 2]),
        msgpack.packb('just text'),
        msgpack.packb(['image/jpeg', 'a str, not bytes']),
    ],
    ids=['garbage', 'numbers', 'not-a-list', 'text-body'],
)
def test_an_unreadable_entry_is_a_miss_and_gets_replaced(
    inspectable, fake_server, caplog, entry
):
    fakeredis.FakeRedis(server=fake_server).set('asgilook:/images', entry)
    with caplog.at_level('WARNING', logger='asgilook.cache'):
        first = inspectable.simulate_get('/images')
    assert (first.status_code, first.json) == (200, [])
    assert first.headers['X-ASGILook-Cache'] == 'Miss'
    assert 'unreadable cache entry under asgilook:/images' in caplog.text
    assert inspectable.simulate_get('/images').headers['X-ASGILook-Cache'] == 'Hit'
