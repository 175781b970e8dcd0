"""Upload rates (asgilook.caching.rates): a sliding minute, in Redis or memory."""

import asyncio
import logging
import pathlib
import subprocess
import sys
import textwrap
import time
import uuid

import fakeredis
import pytest

from asgilook.caching.guard import RedisGuard
from asgilook.caching.keys import Keys
from asgilook.caching.rates import Rates
from asgilook.errors import StorageUnavailable

SCOPE = 'test-scope'
T0 = 1_700_000_000.0
ROOT = pathlib.Path(__file__).resolve().parent.parent


class Clock:
    """A wall clock that tests move by hand."""

    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


def keys(scope=SCOPE, prefix=''):
    async def find():
        return scope

    return Keys(prefix, find)


def guard():
    return RedisGuard(1.0, logging.getLogger('test.rates'))


def rates(clock, server=None, scope=SCOPE):
    client = fakeredis.FakeAsyncRedis(server=server or fakeredis.FakeServer())
    return Rates(client, guard(), keys(scope), clock), client


async def take_all(rates, name, per_minute, times):
    return [await rates.take(name, per_minute) for _ in range(times)]


def test_the_key_of_a_rate_has_the_prefix_scope_and_name():
    assert keys().rate('abc', 'alice') == 'asgilook-rate:abc:alice'
    assert keys(prefix='mine:').rate('abc', 'bob') == 'mine:asgilook-rate:abc:bob'


def test_the_rate_allows_so_many_and_refuses_the_next_with_a_wait():
    async def run():
        clock = Clock()
        limiter, client = rates(clock)
        allowed = []
        for second in range(5):
            clock.now = T0 + second
            allowed.append(await limiter.take('alice', 5))
        clock.now = T0 + 10.5
        refused = await limiter.take('alice', 5)
        members = await client.zcard(keys().rate(SCOPE, 'alice'))
        ttl = await client.ttl(keys().rate(SCOPE, 'alice'))
        return allowed, refused, members, ttl

    allowed, refused, members, ttl = asyncio.run(run())
    assert allowed == [None] * 5
    # The oldest (T0) leaves the window at T0 + 60: 49.5 s away, said as 50.
    assert refused == 50.0
    # The refused attempt was taken out again.
    assert members == 5
    assert 0 < ttl <= 61


def test_refused_attempts_do_not_count_and_the_window_slides():
    async def run():
        clock = Clock()
        limiter, _ = rates(clock)
        results = [await limiter.take('alice', 2)]
        clock.now = T0 + 30
        results.append(await limiter.take('alice', 2))
        # Many refusals meanwhile change nothing.
        for second in range(31, 60):
            clock.now = T0 + second
            results.append(await limiter.take('alice', 2))
        # T0's upload has left the window: one place, and one only.
        clock.now = T0 + 60
        results.append(await limiter.take('alice', 2))
        results.append(await limiter.take('alice', 2))
        # T0 + 30's leaves at T0 + 90.
        clock.now = T0 + 89.9
        results.append(await limiter.take('alice', 2))
        clock.now = T0 + 90
        results.append(await limiter.take('alice', 2))
        return results

    results = asyncio.run(run())
    assert results[:2] == [None, None]
    assert results[2:31] == [float(60 - second) for second in range(31, 60)]
    assert results[31:] == [None, 30.0, 1.0, None]


def test_the_wait_is_a_whole_second_at_least():
    async def run():
        clock = Clock()
        limiter, _ = rates(clock)
        await limiter.take('alice', 1)
        clock.now = T0 + 59.999
        return await limiter.take('alice', 1)

    assert asyncio.run(run()) == 1.0


def test_names_and_deployments_have_rates_of_their_own():
    async def run():
        server = fakeredis.FakeServer()
        clock = Clock()
        here, _ = rates(clock, server)
        there, _ = rates(clock, server, scope='another-deployment')
        return [
            await here.take('alice', 1),
            await here.take('bob', 1),
            await there.take('alice', 1),
            await here.take('alice', 1),
            await there.take('bob', 1),
            await there.take('bob', 1),
        ]

    assert asyncio.run(run()) == [None, None, None, 60.0, None, 60.0]


def test_two_limiters_on_one_redis_share_the_rate():
    async def run():
        server = fakeredis.FakeServer()
        clock = Clock()
        one, _ = rates(clock, server)
        two, _ = rates(clock, server)
        answers = await asyncio.gather(
            *(limiter.take('alice', 5) for limiter in (one, two) * 5)
        )
        return answers

    answers = asyncio.run(run())
    assert answers.count(None) == 5
    assert all(wait == 60.0 for wait in answers if wait is not None)


def test_a_rate_of_zero_allows_nothing():
    async def run():
        limiter, _ = rates(Clock())
        return await take_all(limiter, 'alice', 0, 2)

    assert asyncio.run(run()) == [60.0, 60.0]


def test_without_redis_the_rate_is_kept_in_memory(caplog):
    async def run():
        clock = Clock()
        limiter = Rates(None, None, keys(), clock)
        results = await take_all(limiter, 'alice', 3, 4)
        results += await take_all(limiter, 'bob', 3, 1)
        clock.now = T0 + 59
        results += await take_all(limiter, 'alice', 3, 1)
        clock.now = T0 + 60
        results += await take_all(limiter, 'alice', 3, 4)
        return results

    with caplog.at_level(logging.WARNING, 'asgilook.caching.rates'):
        results = asyncio.run(run())
    assert results == [None, None, None, 60.0, None, 1.0, None, None, None, 60.0]
    # One warning, not one an upload.
    assert len(caplog.records) == 1
    assert 'each process on its own' in caplog.records[0].getMessage()


def test_in_memory_the_wait_is_for_the_place_that_frees_first():
    async def run():
        clock = Clock()
        limiter = Rates(None, None, keys(), clock)
        results = []
        for second in (0, 10, 20):
            clock.now = T0 + second
            results.append(await limiter.take('alice', 3))
        clock.now = T0 + 30
        # A lower rate now: two places must free, the second at T0 + 70.
        results.append(await limiter.take('alice', 2))
        results.append(await limiter.take('alice', 0))
        # T0's place is free again, and only that one.
        clock.now = T0 + 60
        results.append(await limiter.take('alice', 3))
        results.append(await limiter.take('alice', 3))
        return results

    assert asyncio.run(run()) == [None, None, None, 40.0, 60.0, None, 10.0]


def test_in_memory_idle_names_are_forgotten():
    async def run():
        clock = Clock()
        limiter = Rates(None, None, keys(), clock)
        for name in ('alice', 'bob', 'carol'):
            await limiter.take(name, 5)
        clock.now = T0 + 30
        await limiter.take('alice', 5)
        # Nobody is forgotten before a window has passed since the sweep.
        clock.now = T0 + 61
        await limiter.take('dave', 5)
        return set(limiter._memory._times)

    assert asyncio.run(run()) == {'alice', 'dave'}


def test_when_redis_fails_memory_takes_over_and_redis_comes_back(caplog):
    async def run():
        clock = Clock()
        server = fakeredis.FakeServer()
        limiter, client = rates(clock, server)
        limiter._guard.RETRY_INTERVAL = 0.0
        results = await take_all(limiter, 'alice', 2, 1)
        server.connected = False
        # In memory: its window starts empty.
        results += await take_all(limiter, 'alice', 2, 3)
        server.connected = True
        # Redis again: it holds the one upload it saw.
        results += await take_all(limiter, 'alice', 2, 2)
        server.connected = False
        results += await take_all(limiter, 'alice', 2, 1)
        return results

    with caplog.at_level(logging.WARNING, 'asgilook.caching.rates'):
        results = asyncio.run(run())
    assert results == [None, None, None, 60.0, None, 60.0, 60.0]
    # One warning an outage: two outages.
    warnings = [r for r in caplog.records if r.name == 'asgilook.caching.rates']
    assert len(warnings) == 2


def test_when_the_scope_cannot_be_found_memory_counts():
    async def missing():
        raise StorageUnavailable('the index is away')

    async def run():
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        limiter = Rates(client, guard(), Keys('', missing), Clock())
        results = await take_all(limiter, 'alice', 1, 2)
        return results, await client.keys('*')

    results, stored = asyncio.run(run())
    assert results == [None, 60.0]
    assert stored == []


# NOTE: Each process counts its own attempts with its own client, guard and
#   event loop: only Redis is shared, as between workers.
_ATTEMPTS = """
import asyncio, logging, sys, time
import redis.asyncio
from asgilook.caching.guard import RedisGuard
from asgilook.caching.keys import Keys
from asgilook.caching.rates import Rates

async def main(url, scope, start):
    async def find_scope():
        return scope

    client = redis.asyncio.from_url(url)
    guard = RedisGuard(2.0, logging.getLogger())
    rates = Rates(client, guard, Keys('', find_scope))
    await client.ping()
    await asyncio.sleep(max(0.0, start - time.time()))
    answers = [await rates.take('shared', 5) for _ in range(5)]
    await client.aclose()
    print(sum(answer is None for answer in answers))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


@pytest.mark.e2e
def test_two_processes_share_one_rate_through_redis(redis_server, tmp_path):
    script = tmp_path / 'attempts.py'
    script.write_text(textwrap.dedent(_ATTEMPTS))
    url = f'{redis_server.url}/9'
    scope = uuid.uuid4().hex
    start = time.time() + 1.5
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), url, scope, str(start)],
            cwd=ROOT,
            env={'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    allowed = [int(stdout) for stdout, _ in outputs]
    assert sum(allowed) == 5, allowed
