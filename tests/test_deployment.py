"""Deployments that share a Redis, and the index a service says it uses.

Each index holds a deployment id; each store makes a scope of it (with the
storage directory's real path, for SQLite). The cache and the events keep
one deployment's keys apart from another's by that scope, so two services
on one Redis (or a service and a copy of its directory) never answer with
each other's listings or pictures, nor stream each other's events. A
service says which index and storage it uses at start-up and in /healthz,
and refuses to start on a database while its storage directory's SQLite
index still lists pictures. The end-to-end tests run uvicorn processes on
a real redis-server, and, for the refusal, a real PostgreSQL.
"""

import asyncio
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid

import fakeredis
import falcon.testing
import httpx
import pytest
import redis

from asgilook.commands import serve
from asgilook.commands.processes import free_port
from asgilook.config import Config
from asgilook.http.app import create_app
from asgilook.storage.index import NewerSchema
from asgilook.storage.index import left_behind
from asgilook.storage.index import redacted_database
from asgilook.storage.index import sqlite
from asgilook.storage.index.postgres import PostgresIndex
from asgilook.storage.index.sqlite import SCHEMA_VERSION
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.store import Store
from tests.helpers import draw_image
from tests.servers import Uvicorn
from tests.servers import stop
from tests.servers import wait_for_port

HEX = re.compile(r'[0-9a-f]{32}')


def deployment_of(path):
    path.mkdir(parents=True, exist_ok=True)

    async def ask():
        index = SQLiteIndex(path)
        try:
            return await index.deployment()
        finally:
            await index.close()

    return asyncio.run(ask())


def scope_of(config):
    async def ask():
        store = Store(config)
        try:
            return await store.scope()
        finally:
            await store.process_shutdown(None, None)

    return asyncio.run(ask())


def configured(path, **attributes):
    config = Config.from_environ({'ASGI_LOOK_STORAGE_PATH': str(path)})
    for name, value in attributes.items():
        setattr(config, name, value)
    return config


def fill(path, pictures):
    """Store ``pictures`` pictures in the SQLite index of ``path``."""

    async def save():
        store = Store(configured(path))
        try:
            for _ in range(pictures):
                await store.save(str(uuid.uuid4()), draw_image((96, 64)))
        finally:
            await store.process_shutdown(None, None)

    asyncio.run(save())


# The deployment id, in the index.


def test_a_sqlite_index_keeps_one_deployment_id(tmp_path):
    first = deployment_of(tmp_path / 'one')
    assert HEX.fullmatch(first)
    assert deployment_of(tmp_path / 'one') == first
    assert deployment_of(tmp_path / 'two') != first


def test_an_older_sqlite_index_gets_a_deployment_id_when_upgraded(tmp_path):
    path = tmp_path / SQLiteIndex.FILE
    connection = sqlite3.connect(path)
    connection.executescript(
        sqlite._MIGRATIONS[1] + sqlite._MIGRATIONS[2] + 'PRAGMA user_version = 2;'
    )
    connection.close()

    assert HEX.fullmatch(deployment_of(tmp_path))
    connection = sqlite3.connect(path)
    assert connection.execute('PRAGMA user_version').fetchone() == (SCHEMA_VERSION,)
    connection.close()


def test_a_sqlite_index_of_a_newer_asgilook_is_refused(tmp_path):
    deployment_of(tmp_path)
    path = tmp_path / SQLiteIndex.FILE
    connection = sqlite3.connect(path)
    connection.execute(f'PRAGMA user_version = {sqlite.SCHEMA_VERSION + 1}')
    connection.close()

    with pytest.raises(NewerSchema) as raised:
        deployment_of(tmp_path)
    assert str(raised.value) == (
        f'The index in {path} has schema version {sqlite.SCHEMA_VERSION + 1}; '
        f'this asgilook knows version {sqlite.SCHEMA_VERSION} only: upgrade it.'
    )


# The scope, from the store.


def test_a_copy_of_a_storage_directory_has_a_scope_of_its_own(tmp_path):
    one = tmp_path / 'one'
    scope = scope_of(configured(one))
    shutil.copytree(one, tmp_path / 'copy')
    (tmp_path / 'link').symlink_to(one)

    assert re.fullmatch(r'[0-9a-f]{16}', scope)
    assert scope_of(configured(one)) == scope
    # The same directory by another name: the same deployment.
    assert scope_of(configured(tmp_path / 'link')) == scope
    assert deployment_of(tmp_path / 'copy') == deployment_of(one)
    assert scope_of(configured(tmp_path / 'copy')) != scope


def test_the_scope_is_found_once_for_all_lifespans(config):
    app = create_app(config)
    (store,) = [mw for mw in app._unprepared_middleware if isinstance(mw, Store)]
    asked = []
    deployment = store.index.deployment

    async def counted():
        asked.append(1)
        return await deployment()

    store.index.deployment = counted
    client = falcon.testing.TestClient(app)
    for _ in range(3):
        assert client.simulate_get('/images').status_code == 200
        assert client.simulate_post('/images', body=draw_image()).status_code == 201
    assert len(asked) == 1
    assert re.fullmatch(r'[0-9a-f]{16}', asyncio.run(store.scope()))
    assert len(asked) == 1


# The cache and the events: one deployment's keys, and no other's.


@pytest.fixture
def shared_redis():
    server = fakeredis.FakeServer()
    return server, lambda url: fakeredis.FakeAsyncRedis(server=server)


def two_clients(tmp_path, redis_from_url, **attributes):
    clients = []
    for name in ('one', 'two'):
        config = configured(
            tmp_path / name, redis_from_url=redis_from_url, **attributes
        )
        clients.append(falcon.testing.TestClient(create_app(config)))
    return clients


def cached(resp):
    return resp.headers['X-ASGILook-Cache']


def test_another_deployments_listing_is_a_miss_and_replaced(tmp_path, shared_redis):
    server, redis_from_url = shared_redis
    one, two = two_clients(tmp_path, redis_from_url, memory_cache=1)
    ids = [one.simulate_post('/images', body=draw_image()).json['id'] for _ in range(5)]
    assert [cached(one.simulate_get('/images')) for _ in range(2)] == ['Miss', 'Hit']

    listed = two.simulate_get('/images')
    assert (listed.status_code, listed.json, cached(listed)) == (200, [], 'Miss')
    assert cached(two.simulate_get('/images')) == 'Hit'
    # The entry's name is the tutorial's: two's render replaced one's.
    keys = fakeredis.FakeRedis(server=server).keys('asgilook:*')
    assert keys == [b'asgilook:/images']
    again = one.simulate_get('/images')
    assert (cached(again), [doc['id'] for doc in again.json]) == ('Miss', ids)
    assert len(fakeredis.FakeRedis(server=server).keys('asgilook-generation:*')) == 2


def test_another_deployments_picture_entry_is_a_miss(tmp_path, shared_redis):
    _, redis_from_url = shared_redis
    one = falcon.testing.TestClient(
        create_app(configured(tmp_path / 'one', redis_from_url=redis_from_url))
    )
    uri = one.simulate_post('/images', body=draw_image()).json['image']
    assert cached(one.simulate_get(uri)) == 'Miss'
    shutil.copytree(tmp_path / 'one', tmp_path / 'copy')
    copy = falcon.testing.TestClient(
        create_app(configured(tmp_path / 'copy', redis_from_url=redis_from_url))
    )

    # The same id, the same file, the same headers: still not the same entry.
    assert [cached(copy.simulate_get(uri)) for _ in range(2)] == ['Miss', 'Hit']
    # The copy's entry replaced the first one's, which is then a miss.
    restarted = falcon.testing.TestClient(
        create_app(configured(tmp_path / 'one', redis_from_url=redis_from_url))
    )
    assert cached(restarted.simulate_get(uri)) == 'Miss'


def test_the_prefix_goes_before_every_key(tmp_path, shared_redis):
    server, redis_from_url = shared_redis
    one, two = two_clients(tmp_path, redis_from_url, redis_prefix='shared/')
    document = one.simulate_post('/images', body=draw_image()).json
    one.simulate_get('/images')
    one.simulate_get(document['image'])
    two.simulate_get('/images')

    keys = fakeredis.FakeRedis(server=server).keys('*')
    assert keys and all(key.startswith(b'shared/') for key in keys)
    assert b'shared/asgilook:/images' in keys
    assert {key.split(b':')[0] for key in keys} == {
        b'shared/asgilook',
        b'shared/asgilook-generation',
        b'shared/asgilook-events',
    }


def test_without_its_index_a_deployment_does_not_use_redis(tmp_path, shared_redis):
    server, redis_from_url = shared_redis
    config = configured(
        tmp_path,
        redis_from_url=redis_from_url,
        database_url=f'postgresql://nobody@127.0.0.1:{free_port()}/nothing',
    )
    client = falcon.testing.TestClient(create_app(config))

    listed = client.simulate_get('/images')
    assert (listed.status_code, cached(listed)) == (503, 'Bypass')
    posted = client.simulate_post('/images', body=draw_image())
    assert (posted.status_code, cached(posted)) == (503, 'Bypass')
    assert fakeredis.FakeRedis(server=server).keys('*') == []


# What a service says of its index and storage.


def test_healthz_names_the_index_and_the_storage(client, config):
    client.simulate_post('/images', body=draw_image())
    health = client.simulate_get('/healthz').json

    assert health['index'] == {
        'ok': True,
        'kind': 'sqlite',
        'location': str(config.storage_path / SQLiteIndex.FILE),
        'pictures': 1,
    }
    assert health['storage']['location'] == str(config.storage_path)
    assert health['storage']['ok'] is True


def test_healthz_says_when_the_index_cannot_be_read(config):
    port = free_port()
    config.database_url = f'postgresql://me:secret@127.0.0.1:{port}/pics'
    health = falcon.testing.TestClient(create_app(config)).simulate_get('/healthz')

    assert health.json['index'] == {
        'ok': False,
        'kind': 'postgresql',
        'location': f'me@127.0.0.1:{port}/pics',
        'pictures': None,
    }
    assert 'secret' not in health.text


def test_start_up_says_which_index_and_storage_once(client, config, caplog):
    caplog.set_level(logging.INFO, logger='asgilook.storage.store')
    client.simulate_get('/images')
    client.simulate_get('/images')

    said = [
        r.getMessage() for r in caplog.records if r.name == 'asgilook.storage.store'
    ]
    assert said == [
        f'Serving the pictures in {config.storage_path}, indexed by SQLite at '
        f'{config.storage_path / SQLiteIndex.FILE}'
    ]


@pytest.mark.parametrize(
    ('url', 'shown'),
    [
        ('postgresql://me:secret@db.example:6432/pics', 'me@db.example:6432/pics'),
        ('postgresql://db.example/pics', 'db.example/pics'),
        ('postgresql:///pics?host=/run/postgresql', '/pics'),
        ('postgresql://me@db.example:port/pics', 'me@db.example/pics'),
        ('postgresql://me@db.example', 'me@db.example/'),
    ],
)
def test_a_database_is_named_without_its_password(url, shown):
    assert redacted_database(url) == shown


# The wrong index, refused.

DATABASE = 'postgresql://me:secret@db.example:5432/pics'


def test_a_sqlite_index_with_pictures_beside_a_database_is_refused(tmp_path):
    fill(tmp_path, 2)

    said = left_behind(tmp_path, DATABASE)
    assert said is not None
    assert f'{tmp_path / SQLiteIndex.FILE} holds the SQLite index of 2 pictures' in (
        said
    )
    assert 'me@db.example:5432/pics' in said and 'secret' not in said
    assert '`asgilook migrate --to-database URL`' in said
    assert 'ASGI_LOOK_IGNORE_SQLITE_INDEX=1' in said
    assert '\n' not in said
    assert left_behind(tmp_path, DATABASE, ignore=True) is None
    assert left_behind(tmp_path, None) is None


def test_an_empty_or_foreign_sqlite_file_is_no_reason_to_refuse(tmp_path):
    assert left_behind(tmp_path, DATABASE) is None
    deployment_of(tmp_path)
    assert left_behind(tmp_path, DATABASE) is None
    (tmp_path / SQLiteIndex.FILE).unlink()
    (tmp_path / SQLiteIndex.FILE).write_bytes(b'not a database at all' * 100)
    assert left_behind(tmp_path, DATABASE) is None


def test_an_app_on_the_wrong_index_fails_its_start_up(tmp_path):
    fill(tmp_path, 1)
    store = Store(configured(tmp_path, database_url=DATABASE))
    with pytest.raises(RuntimeError, match='holds the SQLite index of 1 pictures'):
        asyncio.run(store.process_startup(None, None))
    store.config.ignore_sqlite_index = True
    asyncio.run(store.process_startup(None, None))


def test_serve_says_a_setting_to_start_anyway_that_is_no_flag(tmp_path):
    env = {'ASGI_LOOK_IGNORE_SQLITE_INDEX': 'maybe', 'ASGI_LOOK_DATABASE_URL': DATABASE}
    assert serve._refused(tmp_path, env) == (
        'ASGI_LOOK_IGNORE_SQLITE_INDEX must be 1 or 0 (also true or false, yes '
        "or no, on or off), not 'maybe'"
    )
    fill(tmp_path, 1)
    assert 'holds the SQLite index of 1 pictures' in serve._refused(
        tmp_path, {'ASGI_LOOK_DATABASE_URL': DATABASE}
    )
    env['ASGI_LOOK_IGNORE_SQLITE_INDEX'] = 'on'
    assert serve._refused(tmp_path, env) is None


def test_the_setting_to_start_anyway_is_a_flag(tmp_path):
    for raw, value in (('1', True), ('yes', True), ('off', False), ('', False)):
        environ = {'ASGI_LOOK_IGNORE_SQLITE_INDEX': raw}
        environ['ASGI_LOOK_STORAGE_PATH'] = str(tmp_path)
        assert Config.from_environ(environ).ignore_sqlite_index is value
    with pytest.raises(ValueError, match='must be 1 or 0'):
        Config.from_environ({'ASGI_LOOK_IGNORE_SQLITE_INDEX': 'maybe'})


# End to end: uvicorn processes on one real redis-server.


def upload(url):
    resp = httpx.post(f'{url}/images', content=draw_image((128, 96)), timeout=30)
    assert resp.status_code == 201
    return resp.json()


def get(url, path):
    return httpx.get(f'{url}{path}', timeout=30)


def missed_events(url):
    """The ids of the images that /events sends a page that saw none of them."""
    ids = []
    headers = {'Last-Event-ID': '0-0'}
    with httpx.stream('GET', f'{url}/events', headers=headers, timeout=30) as resp:
        for line in resp.iter_lines():
            if line.startswith('data:'):
                ids.append(json.loads(line.removeprefix('data:'))['id'])
            elif line == ': keep-alive':
                return ids
    raise AssertionError('the stream ended')


@pytest.fixture
def services(redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    started = []

    def start(storage, **env):
        env = {'ASGI_LOOK_EVENTS_KEEPALIVE': '0.3', **env}
        service = Uvicorn(storage, redis_server.url, env=env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.mark.e2e
@pytest.mark.parametrize('prefixes', [('', ''), ('one:', 'two:')])
def test_two_services_on_one_redis_keep_to_their_own(
    tmp_path, services, redis_server, prefixes
):
    one = services(tmp_path / 'one', ASGI_LOOK_REDIS_PREFIX=prefixes[0])
    two = services(tmp_path / 'two', ASGI_LOOK_REDIS_PREFIX=prefixes[1])
    ids = [upload(one.url)['id'] for _ in range(5)]
    newest = get(one.url, '/images?order=newest')
    assert [doc['id'] for doc in newest.json()] == ids[::-1]
    assert cached(get(one.url, '/images?order=newest')) == 'Hit'

    # The operator's case: the second service lists its own, empty, listing.
    listed = get(two.url, '/images?order=newest')
    assert (listed.json(), cached(listed)) == ([], 'Miss')
    assert get(two.url, f'/images/{ids[0]}.jpeg').status_code == 404
    own = upload(two.url)['id']
    assert [doc['id'] for doc in get(two.url, '/images').json()] == [own]
    # Each streams its own events only.
    assert missed_events(two.url) == [own]
    assert missed_events(one.url) == ids

    keys = redis.Redis.from_url(redis_server.url).keys('*')
    if prefixes[0]:
        assert all(key.startswith((b'one:', b'two:')) for key in keys)
    streams = [key for key in keys if b'asgilook-events:' in key]
    assert len(streams) == 2


@pytest.mark.e2e
def test_a_restarted_service_keeps_its_cache_and_a_copy_has_its_own(tmp_path, services):
    storage = tmp_path / 'one'
    one = services(storage)
    document = upload(one.url)
    assert cached(get(one.url, document['image'])) == 'Miss'
    one.stop()
    shutil.copytree(storage, tmp_path / 'copy')

    again = services(storage)
    assert cached(get(again.url, document['image'])) == 'Hit'
    copy = services(tmp_path / 'copy')
    assert cached(get(copy.url, document['image'])) == 'Miss'
    listed = get(copy.url, '/images')
    assert ([doc['id'] for doc in listed.json()], cached(listed)) == (
        [document['id']],
        'Miss',
    )


# End to end: the wrong index, with a real PostgreSQL.


def environment(**more):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith('ASGI_LOOK_')
    }
    env.update(more)
    return env


@pytest.mark.e2e
@pytest.mark.postgres
def test_a_service_refuses_a_database_beside_a_sqlite_index_with_pictures(
    tmp_path, postgres_server, redis_server
):
    storage = tmp_path / 'storage'
    fill(storage, 3)
    url = postgres_server.database().replace('asgilook@', 'asgilook:sekrit@')
    env = environment(ASGI_LOOK_DATABASE_URL=url)

    done = subprocess.run(
        [sys.executable, '-m', 'asgilook', 'serve', '--storage', str(storage),
         '--redis-url', redis_server.url, '--port', str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ''
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f'asgilook: {storage / SQLiteIndex.FILE} holds the SQLite index of 3 pictures'
    )
    assert redacted_database(url) in line and 'sekrit' not in line
    assert 'asgilook migrate --to-database URL' in line

    plain = subprocess.run(
        [sys.executable, '-m', 'uvicorn', 'asgilook.asgi:app',
         '--port', str(free_port())],
        env={**env, 'ASGI_LOOK_STORAGE_PATH': str(storage)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert plain.returncode != 0
    assert 'Application startup failed' in plain.stderr
    assert line.removeprefix('asgilook: ') in plain.stderr

    anyway = Uvicorn(
        storage, redis_server.url, env={**env, 'ASGI_LOOK_IGNORE_SQLITE_INDEX': '1'}
    )
    try:
        health = get(anyway.url, '/healthz')
        assert health.json()['index'] == {
            'ok': True,
            'kind': 'postgresql',
            'location': redacted_database(url),
            'pictures': 0,
        }
        assert 'sekrit' not in health.text
        assert get(anyway.url, '/images').json() == []
    finally:
        anyway.stop()

    # As `asgilook migrate --to-database` leaves it: the service starts, and
    # says which index it uses.
    (storage / SQLiteIndex.FILE).rename(storage / f'{SQLiteIndex.FILE}.migrated')
    port = free_port()
    migrated = subprocess.Popen(
        [sys.executable, '-m', 'asgilook', 'serve', '--storage', str(storage),
         '--redis-url', redis_server.url, '--port', str(port)],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert migrated.stdout.readline() == (
            f'asgilook: serving the images in {storage}, indexed in the '
            f'PostgreSQL database {redacted_database(url)}, cached in the Redis '
            f'at {redis_server.url}\n'
        )
        wait_for_port(port, migrated)
        health = get(f'http://127.0.0.1:{port}', '/healthz').json()
        assert health['index']['kind'] == 'postgresql'
    finally:
        assert stop(migrated) == 0
        migrated.stdout.close()


@pytest.mark.postgres
def test_a_database_keeps_one_deployment_id(postgres_server, tmp_path):
    url = postgres_server.database()

    async def ask(url):
        index = PostgresIndex(url)
        try:
            return await index.deployment()
        finally:
            await index.close()

    first = asyncio.run(ask(url))
    assert HEX.fullmatch(first)
    assert asyncio.run(ask(url)) == first
    assert asyncio.run(ask(postgres_server.database())) != first
    assert scope_of(configured(tmp_path, database_url=url)) == first
