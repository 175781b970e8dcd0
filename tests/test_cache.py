import asyncio
import uuid

import fakeredis
import falcon.testing
import msgpack
import pytest
import redis.asyncio

from asgilook.caching.cache import RedisCache
from asgilook.http.app import create_app
from tests.helpers import FIRST_IDS


@pytest.fixture
def fake_server():
    return fakeredis.FakeServer()


def generation(redis):
    """The name of the one deployment's generation that ``redis`` holds."""
    (name,) = redis.keys(f'{RedisCache.GENERATION_KEY}:*')
    return name


@pytest.fixture
def inspectable(config, fake_server):
    """A client whose fake Redis the test can look into afterwards."""
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=fake_server)
    # NOTE: The process's memory of responses answers before Redis is asked;
    #   these tests watch Redis, so it keeps nothing here.
    config.memory_cache = 1
    return falcon.testing.TestClient(create_app(config))


def test_an_entry_is_the_whole_response_in_msgpack_with_a_ttl(inspectable, fake_server):
    listing = inspectable.simulate_get('/images')

    redis = fakeredis.FakeRedis(server=fake_server)
    entry = msgpack.unpackb(redis.get('asgilook:/images'), raw=False)
    content_type, body, status, headers, stamp = entry
    # The contract's [content_type, body] comes first.
    assert [content_type, body] == ['application/json', listing.content]
    assert status == 200
    assert dict(headers) == {
        'etag': listing.headers['ETag'],
        'cache-control': 'no-cache',
        'vary': 'Accept',
        'surrogate-key': 'asgilook-listing',
        'cache-tag': 'asgilook-listing',
    }
    assert stamp == redis.get(generation(redis))
    assert 3590 < redis.ttl('asgilook:/images') <= 3600


def test_known_parameters_are_part_of_the_key(inspectable, fake_server):
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
    assert (
        client.simulate_get('/images', query_string='limit=2').headers[
            'X-ASGILook-Cache'
        ]
        == 'Miss'
    )

    assert client.simulate_post('/images', body=png_image).status_code == 201

    plain = client.simulate_get('/images')
    query = client.simulate_get('/images', query_string='limit=2')
    assert plain.headers['X-ASGILook-Cache'] == 'Miss'
    assert query.headers['X-ASGILook-Cache'] == 'Miss'
    assert [item['id'] for item in plain.json] == [FIRST_IDS[0]]
    assert query.json == plain.json


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
    assert options.status_code == 204
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
    def cache_key(self, req, params):
        return '/streamed'

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
# never served, whoever stored it.


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


@pytest.mark.parametrize('generation', ['there', 'missing'])
def test_a_render_overtaken_by_an_invalidation_is_never_served(
    config, fake_server, png_image, generation
):
    # Two workers: A renders the empty listing; meanwhile B stores a picture
    # and invalidates; only then does A come to store its render.
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=fake_server)
    pause = _PauseAfterResponder()
    worker_a = create_app(config)
    # NOTE: Added last, so its process_response runs before the cache's.
    worker_a.add_middleware(pause)
    worker_b = create_app(config)

    async def race():
        async with falcon.testing.TestClient(worker_a) as a:
            async with falcon.testing.TestClient(worker_b) as b:
                if generation == 'there':
                    await b.simulate_get('/images', query_string='limit=5')
                slow = asyncio.create_task(a.simulate_get('/images'))
                await pause.reached.wait()
                await b.simulate_post('/images', body=png_image)
                pause.proceed.set()
                overtaken = await slow
                return overtaken, [await a.simulate_get('/images') for _ in range(2)]

    overtaken, after = asyncio.run(race())
    assert (overtaken.headers['X-ASGILook-Cache'], overtaken.json) == ('Miss', [])
    # Whether A stored its render (stamped with the generation it looked up
    # in) or not (there was none to look up), it is never served.
    assert [resp.headers['X-ASGILook-Cache'] for resp in after] == ['Miss', 'Hit']
    assert [len(resp.json) for resp in after] == [1, 1]


def test_a_lost_generation_is_made_again_and_caching_goes_on(inspectable, fake_server):
    inspectable.simulate_get('/images')
    # Redis restarted empty, or evicted the generation.
    fakeredis.FakeRedis(server=fake_server).flushall()
    states = [
        inspectable.simulate_get('/images').headers['X-ASGILook-Cache']
        for _ in range(2)
    ]
    assert states == ['Miss', 'Hit']
    assert generation(fakeredis.FakeRedis(server=fake_server))


@pytest.mark.parametrize(
    'entry',
    [
        b'\xc1 not msgpack',
        msgpack.packb([1, 2]),
        msgpack.packb('just text'),
        msgpack.packb(['image/jpeg', 'a str, not bytes']),
        msgpack.packb(['application/json', b'[]']),
        msgpack.packb(['application/json', b'[]', '200', [], b'x']),
    ],
    ids=['garbage', 'numbers', 'not-a-list', 'text-body', 'old', 'text-status'],
)
def test_an_unreadable_entry_is_a_miss_and_gets_replaced(
    inspectable, fake_server, caplog, entry
):
    fakeredis.FakeRedis(server=fake_server).set('asgilook:/images', entry)
    with caplog.at_level('WARNING', logger='asgilook.caching.cache'):
        first = inspectable.simulate_get('/images')
    assert (first.status_code, first.json) == (200, [])
    assert first.headers['X-ASGILook-Cache'] == 'Miss'
    assert 'unreadable cache entry under asgilook:/images' in caplog.text
    assert inspectable.simulate_get('/images').headers['X-ASGILook-Cache'] == 'Hit'


# The cache keeps whole responses, and nobody can flood it.


def test_a_hit_has_every_header_of_the_miss(client, png_image):
    for _ in range(2):
        client.simulate_post('/images', body=png_image)
    miss = client.simulate_get('/images', query_string='limit=1')
    hit = client.simulate_get('/images', query_string='limit=1')
    assert (miss.headers['X-ASGILook-Cache'], hit.headers['X-ASGILook-Cache']) == (
        'Miss',
        'Hit',
    )
    assert miss.headers['Link'] == (
        f'</images?limit=1&after={FIRST_IDS[0]}>; rel="next"'
    )
    assert (miss.headers['Cache-Status'], hit.headers['Cache-Status']) == (
        'asgilook; fwd=miss',
        'asgilook; hit',
    )
    for headers in (miss.headers, hit.headers):
        del headers['X-ASGILook-Cache']
        del headers['Cache-Status']
        del headers['X-Request-ID']  # each request's own
    assert hit.headers == miss.headers
    assert (hit.status_code, hit.content) == (miss.status_code, miss.content)


def spellings(image_id):
    plain = uuid.UUID(image_id)
    return [str(plain), str(plain).upper(), plain.hex, plain.hex.upper()]


def test_unknown_parameters_and_spellings_make_no_new_entries(
    inspectable, fake_server, png_image
):
    inspectable.simulate_post('/images', body=png_image)
    image_id = FIRST_IDS[0]
    redis = fakeredis.FakeRedis(server=fake_server)
    for spelling in spellings(image_id):
        for junk in range(10):
            query = f'n={junk}&x={"y" * 2000}'
            for uri in (
                f'/images/{spelling}.jpeg',
                f'/thumbnails/{spelling}/160x90.jpeg',
            ):
                assert (
                    inspectable.simulate_get(uri, query_string=query).status_code == 200
                )
            listing = inspectable.simulate_get(
                '/images', query_string=f'{query}&after={spelling}&limit=100'
            )
            assert listing.status_code == 200
    assert sorted(redis.keys(f'{RedisCache.PREFIX}*')) == [
        f'asgilook:/images/{image_id}.jpeg'.encode(),
        f'asgilook:/images?after={image_id}'.encode(),
        f'asgilook:/thumbnails/{image_id}/160x90.jpeg'.encode(),
    ]
    # Images and thumbnails are kept in files, not in Redis.
    assert all(
        len(redis.get(key)) < 1000
        for key in redis.keys(f'{RedisCache.PREFIX}*')
        if b'/images?' not in key
    )


def test_an_entry_over_the_size_limit_is_not_stored(config, png_image):
    config.cache_max_entry = 400
    client = falcon.testing.TestClient(create_app(config))
    assert client.simulate_get('/images').headers['X-ASGILook-Cache'] == 'Miss'
    assert client.simulate_get('/images').headers['X-ASGILook-Cache'] == 'Hit'
    for _ in range(3):
        client.simulate_post('/images', body=png_image)
    states = [
        client.simulate_get('/images').headers['X-ASGILook-Cache'] for _ in range(2)
    ]
    assert states == ['Miss', 'Miss']


def test_an_image_is_a_hit_in_another_worker_without_its_bytes_in_redis(
    config, fake_server, png_image
):
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=fake_server)
    one = falcon.testing.TestClient(create_app(config))
    document = one.simulate_post('/images', body=png_image).json
    other = falcon.testing.TestClient(create_app(config))
    for uri in (document['image'], *document['thumbnails']):
        first = one.simulate_get(uri)
        elsewhere = other.simulate_get(uri)
        assert first.headers['X-ASGILook-Cache'] == 'Miss'
        assert elsewhere.headers['X-ASGILook-Cache'] == 'Hit'
        assert elsewhere.content == first.content
        entry = msgpack.unpackb(
            fakeredis.FakeRedis(server=fake_server).get(f'asgilook:{uri}'), raw=False
        )
        assert entry[:3] == ['image/jpeg', b'', 200]
        assert dict(entry[3])['etag'] == first.headers['ETag']
