"""Redis going away costs nothing but speed: outages, hangs, and what comes after."""

import asyncio
import io
import itertools
import logging
import pathlib
import signal
import time
import uuid

import fakeredis
import fakeredis.aioredis
import falcon.asgi
import falcon.testing
import httpx
import PIL.Image
import pytest
import redis.exceptions

import asgilook.caching.guard
from asgilook.caching.cache import RedisCache
from asgilook.caching.guard import RedisGuard
from asgilook.commands.processes import RedisServer
from asgilook.commands.processes import free_port
from asgilook.config import Config
from asgilook.http.app import create_app
from tests.helpers import decode
from tests.helpers import draw_image
from tests.servers import Uvicorn

ONE_ID = '5c0ae7e4-8d35-4c53-9c0e-0f4b1b0fd3a5'
IMAGE = f'/images/{ONE_ID}.jpeg'
OUTAGE = 'Redis is unavailable'
RECOVERY = 'Redis answers again'


class FlakyServer(fakeredis.FakeServer):
    """A fake Redis that can also stop answering, like a paused redis-server.

    Set ``connected = False`` (fakeredis) for a Redis that is down. Set
    ``answers_left`` to let that many more commands through and then hang
    every command before it is sent (so it never runs), until ``resumed`` is
    set: an ``asyncio.Event``, or None to hang for good; ``hang_on`` (bytes)
    starts the hang at the first command that contains them. ``hung`` counts
    the commands that hung. ``before_send``, a plain function, sees each
    command (or pipeline) as bytes before it runs; ``sent`` records those
    that were delivered.
    """

    def __init__(self):
        super().__init__()
        self.answers_left = None
        self.hang_on = None
        self.resumed = None
        self.hung = 0
        self.sent = []
        self.before_send = None


class FlakyConnection(fakeredis.aioredis.FakeAsyncRedisConnection):
    """A fake connection that obeys its :class:`FlakyServer`."""

    async def send_packed_command(self, command, check_health=True):
        server = self._server
        data = command.encode() if isinstance(command, str) else command
        data = data if isinstance(data, bytes) else b''.join(data)
        if server.hang_on is not None and server.hang_on in data:
            server.answers_left = 0
        if server.answers_left == 0:
            server.hung += 1
            try:
                await (server.resumed or asyncio.Event()).wait()
            except BaseException:
                # As redis-py does: a command cut short spoils the connection.
                await self.disconnect(nowait=True)
                raise
        elif server.answers_left is not None:
            server.answers_left -= 1
        if server.before_send is not None:
            server.before_send(data)
        await super().send_packed_command(command, check_health)
        server.sent.append(data)


def flaky_client(server):
    return fakeredis.FakeAsyncRedis(server=server, connection_class=FlakyConnection)


class FakeClock:
    """Stands in for ``time`` in asgilook.caching.guard: time passes only when told."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def advance(self, seconds=RedisGuard.RETRY_INTERVAL):
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(asgilook.caching.guard, 'time', fake)
    return fake


@pytest.fixture
def flaky():
    return FlakyServer()


@pytest.fixture
def flaky_config(config, flaky, clock):
    config.redis_from_url = lambda url: flaky_client(flaky)
    # NOTE: Short, as every hang costs it; long enough that a busy machine
    #   (coverage, a browser in another test) does not make a slow answer
    #   of fakeredis a hang.
    config.redis_timeout = 0.25
    # NOTE: These tests watch what Redis does; the process's memory of
    #   responses, which answers before Redis is asked, is kept out of the way
    #   (it keeps no body of a byte or more).
    config.memory_cache = 1
    return config


@pytest.fixture
def one_id_config(flaky_config):
    """Every upload gets the same id: each one replaces the picture."""
    flaky_config.uuid_generator = lambda: uuid.UUID(ONE_ID)
    return flaky_config


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.WARNING, logger='asgilook.caching.cache')

    def messages():
        return [
            r.getMessage() for r in caplog.records if r.name == 'asgilook.caching.cache'
        ]

    return messages


def solid(colour, size=(640, 360)):
    output = io.BytesIO()
    PIL.Image.new('RGB', size, colour).save(output, 'PNG')
    return output.getvalue()


def colour_of(data):
    """'red', 'green' or 'blue': the strongest channel in the middle of a JPEG."""
    image = decode(data)
    pixel = image.getpixel((image.width // 2, image.height // 2))
    return ('red', 'green', 'blue')[pixel.index(max(pixel))]


def cache_state(resp):
    return resp.headers['X-ASGILook-Cache']


def kinds(messages):
    """'outage' or 'recovery' for each log message of the cache."""
    return [
        'outage' if message.startswith(OUTAGE) else 'recovery'
        for message in messages
        if message.startswith((OUTAGE, RECOVERY))
    ]


def listed(upload):
    """The image document of an upload as the listing shows it (no token)."""
    return {key: value for key, value in upload.json.items() if key != 'delete_token'}


def entries(server):
    """The cache entries (keys under the prefix) in a fake server."""
    return sorted(fakeredis.FakeRedis(server=server).keys(f'{RedisCache.PREFIX}*'))


# Redis down: answers stay right, say Bypass, and the outage is logged once.


def test_startup_survives_redis_down_and_every_route_still_answers(
    flaky_config, flaky, png_image, image_size, logs
):
    flaky.connected = False
    client = falcon.testing.TestClient(create_app(flaky_config))

    upload = client.simulate_post('/images', body=png_image)
    assert upload.status_code == 201
    assert cache_state(upload) == 'Bypass'
    document = listed(upload)

    listing = client.simulate_get('/images')
    assert listing.json == [document]
    original = client.simulate_get(document['image'])
    assert image_size(original.content) == (640, 360)
    thumbnail = client.simulate_get(document['thumbnails'][0])
    assert image_size(thumbnail.content) == (320, 180)
    for resp in (listing, original, thumbnail):
        assert resp.status_code == 200
        assert cache_state(resp) == 'Bypass'

    assert kinds(logs()) == ['outage']


def test_caching_resumes_by_itself_and_each_outage_is_logged_once(
    flaky_config, flaky, clock, logs
):
    client = falcon.testing.TestClient(create_app(flaky_config))
    states = []
    for _ in range(2):
        flaky.connected = False
        states += [cache_state(client.simulate_get('/images')) for _ in range(3)]
        flaky.connected = True
        clock.advance()
        states += [cache_state(client.simulate_get('/images')) for _ in range(2)]

    assert states == ['Bypass'] * 3 + ['Miss', 'Hit'] + ['Bypass'] * 3 + ['Hit'] * 2
    assert kinds(logs()) == ['outage', 'recovery'] * 2


def test_the_outage_warning_says_why(flaky_config, flaky, logs):
    flaky.answers_left = 0
    falcon.testing.TestClient(create_app(flaky_config)).simulate_get('/images')
    assert logs() == [
        'Redis is unavailable (no answer within 0.25 s): serving without the '
        'cache, trying again every 1 s'
    ]


def test_a_failing_close_does_not_break_shutdown(config, logs):
    class Unclosable(fakeredis.FakeAsyncRedis):
        async def aclose(self, *args, **kwargs):
            await super().aclose(*args, **kwargs)
            raise redis.exceptions.ConnectionError('connection reset')

    config.redis_from_url = lambda url: Unclosable(server=fakeredis.FakeServer())
    resp = falcon.testing.TestClient(create_app(config)).simulate_get('/images')
    assert (resp.status_code, cache_state(resp)) == (200, 'Miss')
    assert logs() == [
        'Could not close the Redis client: ConnectionError: connection reset'
    ]


# A hung Redis: bounded by the timeout, then skipped until the retry interval.


def test_a_hung_redis_does_not_stall_requests(flaky_config, flaky, png_image):
    flaky.answers_left = 0
    client = falcon.testing.TestClient(create_app(flaky_config))

    async def requests():
        # NOTE: Not a benchmark: 5 s only tells "answered" from "hung".
        async with asyncio.timeout(5):
            async with client as conductor:
                upload = await conductor.simulate_post('/images', body=png_image)
                listing = await conductor.simulate_get('/images')
                return upload, listing

    upload, listing = asyncio.run(requests())
    assert (upload.status_code, cache_state(upload)) == (201, 'Bypass')
    assert (listing.json, cache_state(listing)) == ([listed(upload)], 'Bypass')
    assert flaky.hung >= 1


def test_the_breaker_skips_redis_until_the_retry_interval_has_passed(
    flaky_config, flaky, clock
):
    client = falcon.testing.TestClient(create_app(flaky_config))

    async def requests():
        async with client as conductor:
            flaky.answers_left = 0
            first = await conductor.simulate_get('/images')
            hung = flaky.hung
            sent = len(flaky.sent)
            during = [await conductor.simulate_get('/images') for _ in range(5)]
            # Nothing was even tried while the breaker was open.
            assert (flaky.hung, len(flaky.sent)) == (hung, sent)

            flaky.answers_left = None
            clock.advance(RedisGuard.RETRY_INTERVAL / 2)
            still = await conductor.simulate_get('/images')
            clock.advance(RedisGuard.RETRY_INTERVAL / 2)
            probe = await conductor.simulate_get('/images')
            after = await conductor.simulate_get('/images')
            return [first, *during, still, probe, after]

    states = [cache_state(resp) for resp in asyncio.run(requests())]
    assert states == ['Bypass'] * 7 + ['Miss', 'Hit']


def test_only_one_request_probes_a_hung_redis(flaky_config, flaky, clock):
    client = falcon.testing.TestClient(create_app(flaky_config))

    async def requests():
        async with client as conductor:
            flaky.answers_left = 0
            await conductor.simulate_get('/images')
            clock.advance()
            hung = flaky.hung
            answers = await asyncio.gather(
                *(conductor.simulate_get('/images') for _ in range(5))
            )
            return answers, flaky.hung - hung

    answers, probes = asyncio.run(requests())
    assert [cache_state(resp) for resp in answers] == ['Bypass'] * 5
    assert probes == 1


def test_redis_hanging_at_any_point_never_hangs_a_request(one_id_config, clock):
    """Let Redis answer n commands and then hang, for every n of a session."""

    async def session(client, flaky):
        async with asyncio.timeout(5):
            async with client as conductor:
                red = await conductor.simulate_post('/images', body=solid('red'))
                first = await conductor.simulate_get(IMAGE)
                listed_red = await conductor.simulate_get('/images')
                second = await conductor.simulate_get(IMAGE)
                blue = await conductor.simulate_post(
                    '/images', body=solid('blue', (400, 400))
                )
                third = await conductor.simulate_get(IMAGE)
                flaky.answers_left = None
                clock.advance()
                healed = [await conductor.simulate_get(IMAGE) for _ in range(2)]
                listings = [await conductor.simulate_get('/images') for _ in range(2)]
        assert (red.status_code, blue.status_code) == (201, 201)
        assert [colour_of(resp.content) for resp in (first, second)] == ['red'] * 2
        assert [colour_of(resp.content) for resp in (third, *healed)] == ['blue'] * 3
        assert listed_red.json[0]['size'] == [640, 360]
        assert [listing.json[0]['size'] for listing in listings] == [[400, 400]] * 2
        return [cache_state(resp) for resp in listings]

    n = 0
    while True:
        flaky = FlakyServer()
        flaky.answers_left = n
        one_id_config.redis_from_url = lambda url, flaky=flaky: flaky_client(flaky)
        client = falcon.testing.TestClient(create_app(one_id_config))
        listings = asyncio.run(session(client, flaky))
        if not flaky.hung:
            # Redis answered all of it: caching went on as usual.
            assert listings == ['Miss', 'Hit']
            break
        # Any hang opened the breaker (for good: the clock stands still)
        # until the session healed it; the listing is right either way.
        assert listings == ['Miss', 'Hit'], n
        n += 1
    # Enough round trips (ping, lookups, stores, invalidations) were cut.
    assert n > 10


# After the outage: nothing stale, ever.


@pytest.mark.parametrize('how', ['failed', 'skipped'])
def test_a_replacement_during_an_outage_is_never_served_stale(
    one_id_config, flaky, clock, logs, how
):
    client = falcon.testing.TestClient(create_app(one_id_config))
    document = client.simulate_post('/images', body=solid('red')).json
    thumbnail = document['thumbnails'][0]
    for uri in (IMAGE, thumbnail, '/images', '/images?limit=2'):
        assert cache_state(client.simulate_get(uri)) == 'Miss'
        assert cache_state(client.simulate_get(uri)) == 'Hit'

    async def replace():
        async with client as conductor:
            flaky.connected = False
            if how == 'skipped':
                # The breaker is open already: the invalidation is not tried.
                await conductor.simulate_get('/images')
            sent = len(flaky.sent)
            replaced = await conductor.simulate_post(
                '/images', body=solid('blue', (400, 400))
            )
            # Redis is down: nothing reached it.
            assert len(flaky.sent) == sent
            return replaced

    replaced = asyncio.run(replace())
    assert (replaced.status_code, cache_state(replaced)) == (201, 'Bypass')
    flaky.connected = True
    clock.advance()

    image = client.simulate_get(IMAGE)
    assert (cache_state(image), colour_of(image.content)) == ('Miss', 'blue')
    assert client.simulate_get(thumbnail).status_code == 404
    for query in ('', 'limit=2'):
        listing = client.simulate_get('/images', query_string=query)
        assert (cache_state(listing), listing.json[0]['size']) == ('Miss', [400, 400])
    again = client.simulate_get(IMAGE)
    assert (cache_state(again), colour_of(again.content)) == ('Hit', 'blue')
    assert kinds(logs()) == ['outage', 'recovery']
    assert logs()[-1] == (
        'Redis answers again: caching resumed, with every response cached '
        'before it made stale, since an invalidation could not reach Redis'
    )


def test_a_deletion_during_an_outage_is_never_served_from_the_cache(
    flaky_config, flaky, clock, png_image
):
    client = falcon.testing.TestClient(create_app(flaky_config))
    upload = client.simulate_post('/images', body=png_image)
    uri = upload.json['image']
    for _ in range(2):
        client.simulate_get(uri)
        client.simulate_get('/images')

    flaky.connected = False
    deleted = client.simulate_delete(
        uri, headers={'Authorization': f'Bearer {upload.json["delete_token"]}'}
    )
    assert (deleted.status_code, cache_state(deleted)) == (204, 'Bypass')
    flaky.connected = True
    clock.advance()

    gone = client.simulate_get(uri)
    assert (gone.status_code, cache_state(gone)) == (404, 'Miss')
    assert client.simulate_get('/images').json == []


def generation_sets(server):
    """How many times a repair (a lone SET of the generation) reached Redis."""
    return sum(
        REPAIR in data and b'DEL' not in data and b'NX' not in data
        for data in server.sent
    )


# The deployment's generation: its name, and a scope of 16 hex digits.
REPAIR = b'SET\r\n$36\r\nasgilook-generation:'


def generation(redis):
    """The value of the one deployment's generation that ``redis`` holds."""
    (name,) = redis.keys(f'{RedisCache.GENERATION_KEY}:*')
    return redis.get(name)


def test_a_missed_invalidation_makes_every_entry_stale_and_nothing_else(
    flaky_config, flaky, clock, png_image
):
    client = falcon.testing.TestClient(create_app(flaky_config))
    for limit in range(1, 10):
        assert cache_state(client.simulate_get(f'/images?limit={limit}')) == 'Miss'
    other = fakeredis.FakeRedis(server=flaky)
    other.set('someone-else:key', 'kept')
    before = generation(other)

    flaky.connected = False
    client.simulate_post('/images', body=png_image)
    flaky.connected = True
    clock.advance()

    states = [
        cache_state(client.simulate_get(f'/images?limit={limit}'))
        for limit in range(1, 10)
    ]
    assert states == ['Miss'] * 9
    assert generation(other) != before
    assert other.get('someone-else:key') == b'kept'
    # One repair, however many entries there were: nothing is deleted.
    assert generation_sets(flaky) == 1


def test_a_repair_of_an_empty_cache_resumes_caching(flaky_config, flaky, clock, logs):
    # Redis came back empty (restarted): the repair makes a generation anew.
    client = falcon.testing.TestClient(create_app(flaky_config))
    flaky.connected = False
    client.simulate_post('/images', body=solid('green'))
    flaky.connected = True
    clock.advance()
    states = [cache_state(client.simulate_get('/images')) for _ in range(2)]
    assert states == ['Miss', 'Hit']
    assert logs()[-1].endswith('since an invalidation could not reach Redis')


def test_a_failed_repair_keeps_the_cache_bypassed(flaky_config, flaky, clock):
    client = falcon.testing.TestClient(create_app(flaky_config))
    # Cached in Redis before the outage; the upload below makes it stale.
    client.simulate_get('/images?limit=2')
    flaky.connected = False
    client.simulate_post('/images', body=solid('green'))
    flaky.connected = True
    clock.advance()
    # The startup probe repairs first, and its SET of the generation hangs.
    flaky.hang_on = REPAIR

    async def requests():
        async with client as conductor:
            cut = await conductor.simulate_get('/images')
            flaky.hang_on = flaky.answers_left = None
            clock.advance()
            return cut, await conductor.simulate_get('/images?limit=2')

    cut, healed = asyncio.run(requests())
    assert flaky.hung == 1
    assert (cache_state(cut), cache_state(healed)) == ('Bypass', 'Miss')
    assert len(healed.json) == 1


def test_invalidations_missed_during_a_repair_are_repaired_too(
    flaky_config, flaky, clock, logs
):
    # NOTE: The gate below, not the timeout, decides when Redis answers.
    flaky_config.redis_timeout = 5
    client = falcon.testing.TestClient(create_app(flaky_config))

    async def requests():
        async with client as conductor:
            # Cached in Redis before the outage; the uploads make it stale.
            await conductor.simulate_get('/images?limit=2')
            flaky.connected = False
            await conductor.simulate_post('/images', body=solid('green'))
            flaky.connected = True
            clock.advance()

            flaky.hang_on = REPAIR
            flaky.resumed = asyncio.Event()
            probe = asyncio.create_task(conductor.simulate_get('/images'))
            while not flaky.hung:
                await asyncio.sleep(0.01)
            # The probe is repairing; the breaker still holds back the rest.
            upload = await conductor.simulate_post('/images', body=solid('red'))
            flaky.hang_on = None
            flaky.resumed.set()
            probed = await probe
            return probed, upload, await conductor.simulate_get('/images?limit=2')

    probe, upload, after = asyncio.run(requests())
    assert (cache_state(probe), cache_state(upload)) == ('Miss', 'Bypass')
    # The probe's own store repaired again, so its render was not served.
    assert cache_state(after) == 'Miss'
    assert len(after.json) == 2
    assert kinds(logs()) == ['outage', 'recovery']
    assert generation_sets(flaky) == 2


def test_an_invalidation_finishes_even_if_its_request_is_cancelled(
    flaky_config, flaky, logs
):
    flaky_config.redis_timeout = 5
    cache = RedisCache(flaky_config)
    fake = fakeredis.FakeRedis(server=flaky)
    fake.set('asgilook:/notes', 'stale')

    async def cancelled_post():
        req = falcon.testing.create_asgi_req(method='POST', path='/notes')
        resp = falcon.asgi.Response()
        await cache.process_request(req, resp)
        flaky.answers_left = 0
        flaky.resumed = asyncio.Event()
        task = asyncio.create_task(cache.process_response(req, resp, None, True))
        while not flaky.hung:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        flaky.resumed.set()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=5)
        await cache.process_shutdown(None, None)

    asyncio.run(cancelled_post())
    assert not fake.exists('asgilook:/notes')
    assert generation(fake) is not None
    assert logs() == []


# The real thing: a uvicorn that keeps serving while its redis-server is
# absent, stopped, killed, paused and restarted on the same port.

ROOT = pathlib.Path(__file__).parent.parent
# NOTE: Small, to keep these tests short; the retry interval stays 1 s.
E2E_ENV = {'ASGI_LOOK_REDIS_TIMEOUT': '0.2'}


def one_image_app():
    """``uvicorn --factory`` target: every upload gets one id and replaces it."""
    config = Config()
    config.uuid_generator = lambda: uuid.UUID(ONE_ID)
    return create_app(config)


class RedisProcess:
    """A redis-server on a port of its own, which a test stops and restarts."""

    def __init__(self):
        self.port = free_port()
        self.url = f'redis://127.0.0.1:{self.port}'
        self.server = None

    def start(self):
        self.server = RedisServer(port=self.port)
        self.server.start()

    def stop(self, sig):
        self.server.process.send_signal(sig)
        self.server.process.wait(10)
        self.server.stop()
        self.server = None

    def signal(self, sig):
        self.server.process.send_signal(sig)

    def close(self):
        if self.server is not None:
            self.signal(signal.SIGCONT)
            self.server.stop()


class Service:
    """uvicorn serving asgilook, its stderr kept, and an HTTP client for it."""

    def __init__(self, tmp_path, redis_url, *args, app='asgilook.asgi:app'):
        self.log_path = tmp_path / 'uvicorn.log'
        with open(self.log_path, 'wb') as log:
            self.uvicorn = Uvicorn(
                tmp_path / 'storage', redis_url, '--app-dir', str(ROOT), *args,
                env=E2E_ENV, app=app, stderr=log,
            )  # fmt: skip
        # NOTE: The 5 s client timeout is the sanity bound: a request that
        #   waited on a paused Redis would not complete at all.
        self.http = httpx.Client(base_url=self.uvicorn.url, timeout=5)

    def messages(self):
        return self.log_path.read_text().splitlines()

    def close(self):
        self.http.close()
        assert self.uvicorn.stop() in (0, -signal.SIGTERM)


@pytest.fixture
def redis_process():
    process = RedisProcess()
    yield process
    process.close()


@pytest.fixture
def service_factory(tmp_path):
    services = []

    def start(*args, **kwargs):
        services.append(Service(tmp_path, *args, **kwargs))
        return services[-1]

    yield start
    for service in services:
        service.close()


# Page sizes no request used before: listing URLs that nothing has cached.
FRESH_LIMITS = itertools.count(500)


def wait_for_redis(http, limit=10.0):
    """GET never-asked-for listing pages until one takes the cache in again.

    NOTE: Always a new URL: an answer given while Redis was away is kept in
    the process's memory, which would then answer a repeat without Redis.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        resp = http.get(f'/images?limit={next(FRESH_LIMITS)}')
        if cache_state(resp) != 'Bypass':
            return
        time.sleep(0.1)
    raise AssertionError('Redis was not used again')


def check_every_route(http, documents, state):
    """The listing, the pictures and their thumbnails are right.

    The listing says ``state``; so does every picture and thumbnail of the
    last document, which were never asked for before. The others may also
    come from this process's memory, which needs no Redis: ``Hit``.
    """
    listing = http.get('/images')
    assert [item['id'] for item in listing.json()] == [d['id'] for d in documents]
    assert (listing.status_code, cache_state(listing)) == (200, state)
    for document in documents:
        fresh = document is documents[-1]
        answers = []
        original = http.get(document['image'])
        assert decode(original.content).size == tuple(document['size'])
        answers.append(original)
        for uri in document['thumbnails']:
            thumbnail = http.get(uri)
            width, height = uri.rsplit('/', 1)[1].removesuffix('.jpeg').split('x')
            assert decode(thumbnail.content).size == (int(width), int(height))
            answers.append(thumbnail)
        for resp in answers:
            assert resp.status_code == 200
            assert cache_state(resp) in ((state,) if fresh else (state, 'Hit'))


def check_caching_resumes(http):
    wait_for_redis(http)
    uri = f'/images?limit={next(FRESH_LIMITS)}'
    first = http.get(uri)
    second = http.get(uri)
    assert (cache_state(first), cache_state(second)) == ('Miss', 'Hit')
    assert second.content == first.content


@pytest.mark.e2e
def test_redis_absent_stopped_or_killed_costs_only_the_cache(
    redis_process, service_factory
):
    # Absent at startup: uvicorn starts all the same.
    service = service_factory(redis_process.url)
    http = service.http
    upload = http.post('/images', content=draw_image((640, 360)))
    assert (upload.status_code, cache_state(upload)) == (201, 'Bypass')
    documents = [upload.json()]
    check_every_route(http, documents, 'Bypass')

    redis_process.start()
    check_caching_resumes(http)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        redis_process.stop(sig)
        upload = http.post('/images', content=draw_image((512, 512)))
        assert (upload.status_code, cache_state(upload)) == (201, 'Bypass')
        documents.append(upload.json())
        check_every_route(http, documents, 'Bypass')

        redis_process.start()
        check_caching_resumes(http)
        assert len(http.get('/images').json()) == len(documents)

    assert kinds(service.messages()) == ['outage', 'recovery'] * 3


@pytest.mark.e2e
def test_a_paused_redis_stalls_nothing_and_nothing_stale_comes_back(
    redis_process, service_factory
):
    redis_process.start()
    service = service_factory(
        redis_process.url, '--factory', app='tests.test_faults:one_image_app'
    )
    http = service.http
    red = http.post('/images', content=solid('red')).json()
    old_thumbnail = red['thumbnails'][0]
    for uri in (IMAGE, old_thumbnail, '/images', '/images?limit=3'):
        assert cache_state(http.get(uri)) == 'Miss'
        assert cache_state(http.get(uri)) == 'Hit'

    # SIGSTOP: connections still open, commands are never answered.
    redis_process.signal(signal.SIGSTOP)
    try:
        paused = http.get(f'/images?limit={next(FRESH_LIMITS)}')
        assert (cache_state(paused), len(paused.json())) == ('Bypass', 1)
        # What is still current, this process's memory answers without Redis.
        assert cache_state(http.get('/images')) == 'Hit'
        remembered = http.get(IMAGE)
        assert (cache_state(remembered), colour_of(remembered.content)) == (
            'Hit',
            'red',
        )
        blue = http.post('/images', content=solid('blue', (400, 400)))
        assert (blue.status_code, cache_state(blue)) == (201, 'Bypass')
        check_every_route(http, [blue.json()], 'Bypass')
        assert http.get(old_thumbnail).status_code == 404
    finally:
        redis_process.signal(signal.SIGCONT)

    # Redis kept every entry through the pause: red ones must not come back.
    wait_for_redis(http)
    listing = http.get('/images?limit=3')
    assert (cache_state(listing), listing.json()[0]['size']) == ('Miss', [400, 400])
    assert http.get(old_thumbnail).status_code == 404
    for _ in range(2):
        image = http.get(IMAGE)
        assert (cache_state(image), colour_of(image.content)) == ('Hit', 'blue')
    check_caching_resumes(http)

    assert kinds(service.messages()) == ['outage', 'recovery']
    assert 'every response cached before it made stale' in service.messages()[-1]
