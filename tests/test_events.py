"""Live events: uploads and deletions reach every open event stream, through Redis."""

import asyncio
import json
import time

import fakeredis
import falcon.asgi
import falcon.testing
import pytest

from asgilook.http.app import create_app
from asgilook.http.events import Events
from tests.helpers import draw_image
from tests.test_faults import FlakyServer
from tests.test_faults import flaky_client

LIMIT = 10.0


@pytest.fixture
def shared(config):
    """Two workers' apps on one fake Redis and one storage directory."""
    server = fakeredis.FakeServer()
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=server)
    config.events_keepalive = 0.2
    return create_app(config), create_app(config), server


def parse(text):
    """Server-sent events as dicts of their fields (comments under ':')."""
    events = []
    for block in text.split('\n\n'):
        if not block.strip():
            continue
        fields = {}
        for line in block.split('\n'):
            name, _, value = line.partition(':')
            fields.setdefault(name, []).append(value.removeprefix(' '))
        events.append({name: '\n'.join(values) for name, values in fields.items()})
    return events


async def read_until(stream, done, limit=LIMIT):
    """Read a streamed body until ``done(events)``; the events read."""
    text = ''
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        text += (await stream.read()).decode()
        events = parse(text)
        if done(events):
            return events
        await asyncio.sleep(0.01)
    raise AssertionError(f'not seen within {limit} s: {text!r}')


def named(events, kind):
    return [event for event in events if event.get('event') == kind]


def test_uploads_and_deletions_reach_a_stream_in_another_worker(shared):
    one, other, _ = shared

    async def scenario():
        async with falcon.testing.ASGIConductor(one) as listener:
            async with falcon.testing.ASGIConductor(other) as changer:
                async with listener.simulate_get_stream('/events') as sr:
                    assert sr.headers['content-type'] == 'text/event-stream'
                    assert sr.headers['cache-control'] == 'no-store'
                    opening = await read_until(sr.stream, lambda events: events)
                    upload = await changer.simulate_post('/images', body=draw_image())
                    created = await read_until(
                        sr.stream, lambda events: named(events, 'image-created')
                    )
                    token = upload.json['delete_token']
                    await changer.simulate_delete(
                        upload.json['image'],
                        headers={'Authorization': f'Bearer {token}'},
                    )
                    deleted = await read_until(
                        sr.stream, lambda events: named(events, 'image-deleted')
                    )
                    return opening, upload.json, created, deleted

    opening, upload, created, deleted = asyncio.run(scenario())
    document = {key: value for key, value in upload.items() if key != 'delete_token'}
    assert opening[0]['retry'] == str(Events.RETRY)
    [event] = named(created, 'image-created')
    assert json.loads(event['data']) == document
    assert 'delete_token' not in event['data']
    [gone] = named(deleted, 'image-deleted')
    assert json.loads(gone['data'])['id'] == document['id']
    assert gone['id'] > event['id']


def test_a_quiet_stream_sends_keep_alive_comments(shared):
    one, _, _ = shared

    async def scenario():
        async with falcon.testing.ASGIConductor(one) as conductor:
            async with conductor.simulate_get_stream('/events') as sr:
                return await read_until(
                    sr.stream,
                    lambda events: [e for e in events if e.get('') == 'keep-alive'],
                )

    events = asyncio.run(scenario())
    assert [event for event in events if event.get('') == 'keep-alive']
    assert not named(events, 'image-created')


def test_a_reconnecting_page_gets_what_it_missed_first(shared):
    one, other, _ = shared
    other_client = falcon.testing.TestClient(other)
    first = other_client.simulate_post('/images', body=draw_image()).json

    async def last_event_id():
        async with falcon.testing.ASGIConductor(one) as conductor:
            async with conductor.simulate_get_stream(
                '/events', headers={'Last-Event-ID': '0-0'}
            ) as sr:
                events = await read_until(
                    sr.stream, lambda events: named(events, 'image-created')
                )
        return named(events, 'image-created')[-1]['id']

    seen = asyncio.run(last_event_id())
    missed = [
        other_client.simulate_post('/images', body=draw_image()).json['id']
        for _ in range(2)
    ]

    async def reconnect(header):
        async with falcon.testing.ASGIConductor(one) as conductor:
            async with conductor.simulate_get_stream(
                '/events', headers={'Last-Event-ID': header}
            ) as sr:
                events = await read_until(
                    sr.stream, lambda events: len(named(events, 'image-created')) >= 2
                )
                # Nothing more: what was replayed is not sent again live.
                await asyncio.sleep(0.3)
                events += parse((await sr.stream.read()).decode())
        return [json.loads(e['data'])['id'] for e in named(events, 'image-created')]

    assert asyncio.run(reconnect(seen)) == missed
    assert first['id'] not in missed

    async def garbage(header):
        async with falcon.testing.ASGIConductor(one) as conductor:
            async with conductor.simulate_get_stream(
                '/events', headers={'Last-Event-ID': header}
            ) as sr:
                events = await read_until(sr.stream, lambda events: events)
            listing = await conductor.simulate_get('/images', query_string='limit=7')
            return events, listing.headers['X-ASGILook-Cache']

    # Ids Redis would refuse are not sent to it: a refusal would make the
    # guard leave Redis alone, for every request of the process.
    for header in ('not-an-id', '1_000-0', '-1-0', f'{2**64}-0', '1-2-3'):
        events, cache = asyncio.run(garbage(header))
        assert not named(events, 'image-created'), header
        assert not named(events, 'unavailable'), header
        assert cache != 'Bypass', header


def test_a_stream_says_so_and_ends_when_redis_is_away(config):
    flaky = FlakyServer()
    flaky.connected = False
    config.redis_from_url = lambda url: flaky_client(flaky)
    config.redis_timeout = 0.05
    client = falcon.testing.TestClient(create_app(config))

    async def scenario(headers):
        async with client as conductor:
            async with conductor.simulate_get_stream('/events', headers=headers) as sr:
                return await read_until(
                    sr.stream, lambda events: named(events, 'unavailable')
                )

    for headers in ({}, {'Last-Event-ID': '1-0'}):
        [event] = named(asyncio.run(scenario(headers)), 'unavailable')
        assert 'poll' in json.loads(event['data'])['description']
    # Uploads go on: their events are lost, nothing else.
    assert client.simulate_post('/images', body=draw_image()).status_code == 201


def test_a_client_that_falls_behind_is_cut_off_not_buffered(shared, monkeypatch):
    one, other, server = shared
    monkeypatch.setattr(Events, 'BACKLOG', 3)
    events = next(mw for mw in one._unprepared_middleware if isinstance(mw, Events))

    async def scenario():
        async with falcon.testing.ASGIConductor(one):
            stream = events.stream()
            first = await anext(stream)
            # The page reads nothing more while six changes happen.
            redis = fakeredis.FakeAsyncRedis(server=server)
            name = await events._stream()
            for _ in range(6):
                await redis.xadd(name, {'kind': 'image-created', 'data': '{}'})
            deadline = time.monotonic() + LIMIT
            while len(events._subscribers) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            rest = [event async for event in stream]
            return first, rest, len(events._subscribers)

    first, rest, left = asyncio.run(scenario())
    assert first.retry == Events.RETRY
    # What had queued up is sent, then the stream ends: its EventSource
    # reconnects with Last-Event-ID and catches up from Redis.
    assert [event.event for event in rest] == ['image-created'] * 3
    assert left == 0


def test_streams_open_in_one_process_share_one_reader(shared):
    one, other, _ = shared
    events = next(mw for mw in one._unprepared_middleware if isinstance(mw, Events))

    async def scenario():
        async with falcon.testing.ASGIConductor(one) as listener:
            async with falcon.testing.ASGIConductor(other) as changer:
                async with listener.simulate_get_stream('/events') as first:
                    await read_until(first.stream, lambda events: events)
                    reader = events._reader
                    async with listener.simulate_get_stream('/events') as second:
                        await read_until(second.stream, lambda events: events)
                        assert events._reader is reader
                        await changer.simulate_post('/images', body=draw_image())
                        return [
                            await read_until(
                                sr.stream,
                                lambda events: named(events, 'image-created'),
                            )
                            for sr in (first, second)
                        ]

    for events_seen in asyncio.run(scenario()):
        assert len(named(events_seen, 'image-created')) == 1


def test_images_work_without_events_as_the_tutorial_builds_them(config, png_image):
    # The contract's Images(config, store): no event stream to publish to.
    from asgilook.http.images import Images
    from asgilook.storage.store import Store

    app = falcon.asgi.App()
    images = Images(config, Store(config))
    app.add_route('/images', images)
    app.add_route('/images/{image_id:uuid}.jpeg', images, suffix='image')
    client = falcon.testing.TestClient(app)
    upload = client.simulate_post('/images', body=png_image)
    assert upload.status_code == 201
    token = upload.json['delete_token']
    deleted = client.simulate_delete(
        upload.json['image'], headers={'Authorization': f'Bearer {token}'}
    )
    assert deleted.status_code == 204
