"""Pagination, deletion, and several apps (workers) sharing one store and cache."""

import errno
import logging
import os
import re
import sqlite3
import uuid

import fakeredis
import falcon.testing
import pytest

from asgilook.caching.cache import RedisCache
from asgilook.config import Config
from asgilook.http.app import create_app
from asgilook.storage.blobs import local as local_blobs
from asgilook.storage.index.sqlite import SQLiteIndex
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image

TINY = draw_image((64, 64))


def upload(client, body=TINY):
    resp = client.simulate_post('/images', body=body)
    assert resp.status_code == 201
    return resp.json


def next_link(resp):
    link = resp.headers.get('Link')
    if link is None:
        return None
    found = re.fullmatch(r'<(/images\?[^>]+)>; rel="next"', link)
    assert found, link
    return found.group(1)


def test_pages_follow_each_other_to_the_end(client):
    uploaded = [upload(client)['id'] for _ in range(5)]

    seen, target = [], '/images?limit=2'
    pages = 0
    while target:
        path, _, query = target.partition('?')
        resp = client.simulate_get(path, query_string=query)
        assert resp.status_code == 200
        assert len(resp.json) <= 2
        seen.extend(item['id'] for item in resp.json)
        target = next_link(resp)
        pages += 1
    assert seen == uploaded
    assert pages == 3


def test_an_exact_last_page_has_no_next_link(client):
    for _ in range(4):
        upload(client)
    resp = client.simulate_get('/images', query_string='limit=4')
    assert len(resp.json) == 4
    assert 'Link' not in resp.headers


def test_default_page_is_one_hundred(client):
    uploaded = [upload(client)['id'] for _ in range(101)]
    first = client.simulate_get('/images')
    assert [item['id'] for item in first.json] == uploaded[:100]
    assert next_link(first) == f'/images?limit=100&after={uploaded[99]}'
    path, _, query = next_link(first).partition('?')
    rest = client.simulate_get(path, query_string=query)
    assert [item['id'] for item in rest.json] == uploaded[100:]


@pytest.mark.parametrize(
    ('query', 'words'),
    [
        ('limit=0', 'limit'),
        ('limit=1001', 'limit'),
        ('limit=ten', 'limit'),
        (f'after={uuid.UUID(int=7)}', 'no image'),
    ],
)
def test_bad_paging_parameters_are_400(client, query, words):
    upload(client)
    resp = client.simulate_get('/images', query_string=query)
    assert resp.status_code == 400
    assert words in resp.json['description'] or words in resp.json['title'].lower()


def test_delete_token_is_shown_once(client):
    document = upload(client)
    assert len(document['delete_token']) >= 32
    listing = client.simulate_get('/images').json
    assert 'delete_token' not in listing[0]
    assert set(listing[0]) == {
        'id', 'image', 'modified', 'size', 'thumbnails', 'version', 'srcset',
        'placeholder', 'animation', 'page', 'name', 'visibility', 'original',
    }  # fmt: skip


def test_delete_with_its_token_removes_everything(client, config):
    document = upload(client, draw_image((640, 360)))
    kept = upload(client)
    uris = [document['image'], *document['thumbnails']]
    for uri in uris:  # fill the cache
        assert client.simulate_get(uri).status_code == 200
    assert client.simulate_get(uris[0]).headers['X-ASGILook-Cache'] == 'Hit'
    client.simulate_get('/images')
    client.simulate_get('/images', query_string='limit=1')

    resp = client.simulate_delete(
        document['image'],
        headers={'Authorization': f'Bearer {document["delete_token"]}'},
    )
    assert resp.status_code == 204

    for uri in uris:
        gone = client.simulate_get(uri)
        assert gone.status_code == 404
        assert gone.headers['X-ASGILook-Cache'] == 'Miss'
    for query in (None, 'limit=1'):
        listing = client.simulate_get('/images', query_string=query)
        assert listing.headers['X-ASGILook-Cache'] == 'Miss'
        assert [item['id'] for item in listing.json] == [kept['id']]
    remaining = (config.storage_path / 'images').listdir()
    # Its JPEG and the PNG kept as uploaded.
    assert [path.basename.split('.')[0] for path in remaining] == [kept['id']] * 2


def test_admin_token_deletes_any_image(config, caplog):
    config.admin_token = 'the-admin-token'
    client = falcon.testing.TestClient(create_app(config))
    document = upload(client)
    owned = upload(client)
    caplog.set_level(logging.INFO, logger='asgilook.storage.store')
    resp = client.simulate_delete(
        document['image'], headers={'Authorization': 'Bearer the-admin-token'}
    )
    assert resp.status_code == 204
    assert client.simulate_get(document['image']).status_code == 404
    resp = client.simulate_delete(
        owned['image'],
        headers={'Authorization': f'Bearer {owned["delete_token"]}'},
    )
    assert resp.status_code == 204
    # The log tells the admin's deletion from the uploader's own.
    deleted = [
        (record.image_id, record.deleted_by, record.getMessage())
        for record in caplog.records
        if hasattr(record, 'deleted_by')
    ]
    assert deleted == [
        (
            document['id'],
            'admin',
            f'Image {document["id"]} deleted with the admin token',
        ),
        (owned['id'], 'owner', f'Image {owned["id"]} deleted with its delete token'),
    ]


@pytest.mark.parametrize(
    ('authorization', 'status', 'title'),
    [
        (None, 401, 'Token Required'),
        ('Bearer ', 401, 'Token Required'),
        ('Basic dXNlcjpwYXNz', 401, 'Token Required'),
        ('Bearer not-the-token', 403, 'Forbidden'),
        ('Bearer the-admin-token', 403, 'Forbidden'),  # no admin token is set
    ],
)
def test_delete_without_the_right_token_deletes_nothing(
    client, authorization, status, title
):
    document = upload(client)
    headers = {'Authorization': authorization} if authorization else {}
    resp = client.simulate_delete(document['image'], headers=headers)
    assert resp.status_code == status
    assert resp.json['title'] == title
    if status == 401:
        assert resp.headers['WWW-Authenticate'] == 'Bearer'
    assert client.simulate_get(document['image']).status_code == 200
    assert [item['id'] for item in client.simulate_get('/images').json] == [
        document['id']
    ]


def test_delete_of_an_unknown_image_is_404(client):
    for headers in ({}, {'Authorization': 'Bearer whatever'}):
        resp = client.simulate_delete(f'/images/{uuid.uuid4()}.jpeg', headers=headers)
        assert resp.status_code == 404


def test_a_delete_token_works_once(client):
    document = upload(client)
    headers = {'Authorization': f'Bearer {document["delete_token"]}'}
    assert client.simulate_delete(document['image'], headers=headers).status_code == 204
    assert client.simulate_delete(document['image'], headers=headers).status_code == 404


def test_replacing_keeps_no_old_token(config):
    same = uuid.UUID(FIRST_IDS[0])
    config.uuid_generator = lambda: same
    client = falcon.testing.TestClient(create_app(config))
    old = upload(client)
    new = upload(client)
    stale = {'Authorization': f'Bearer {old["delete_token"]}'}
    assert client.simulate_delete(new['image'], headers=stale).status_code == 403
    fresh = {'Authorization': f'Bearer {new["delete_token"]}'}
    assert client.simulate_delete(new['image'], headers=fresh).status_code == 204


@pytest.fixture
def new_worker(storage_path):
    """Make apps on one storage directory and one (fake) Redis server."""
    server = fakeredis.FakeServer()

    def make():
        config = Config()
        config.storage_path = storage_path
        config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=server)
        return falcon.testing.TestClient(create_app(config))

    return make


@pytest.fixture
def two_workers(new_worker):
    return new_worker(), new_worker()


def test_workers_see_uploads_and_deletions_at_once(two_workers):
    one, two = two_workers
    document = upload(one, draw_image((256, 256)))
    assert [item['id'] for item in two.simulate_get('/images').json] == [document['id']]
    assert two.simulate_get(document['thumbnails'][0]).status_code == 200
    assert (
        one.simulate_get(document['thumbnails'][0]).headers['X-ASGILook-Cache'] == 'Hit'
    )

    headers = {'Authorization': f'Bearer {document["delete_token"]}'}
    assert two.simulate_delete(document['image'], headers=headers).status_code == 204
    assert one.simulate_get(document['image']).status_code == 404
    assert one.simulate_get(document['thumbnails'][0]).status_code == 404
    assert one.simulate_get('/images').json == []


def test_a_restarted_app_serves_the_same_documents(client, config):
    documents = [upload(client, draw_image((320, 200))) for _ in range(3)]
    listing = client.simulate_get('/images').json

    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(
        server=fakeredis.FakeServer()
    )
    restarted = falcon.testing.TestClient(create_app(config))
    assert restarted.simulate_get('/images').json == listing
    for document in documents:
        for uri in (document['image'], *document['thumbnails']):
            assert restarted.simulate_get(uri).status_code == 200


@pytest.mark.parametrize(
    ('code', 'status', 'title'),
    [
        (errno.ENOSPC, 507, 'Storage Full'),
        (errno.EROFS, 503, 'Storage Unavailable'),
        (errno.EACCES, 503, 'Storage Unavailable'),
    ],
)
def test_storage_failures_are_clear_5xx_and_leave_nothing(
    client, config, monkeypatch, code, status, title
):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(local_blobs, '_fsync_directory', fail)
    resp = client.simulate_post('/images', body=TINY)
    assert resp.status_code == status
    assert resp.json['title'] == title
    assert 'try again later' in resp.json['description']
    assert (config.storage_path / 'images').listdir() == []

    def broken(*args, **kwargs):
        error = sqlite3.OperationalError('disk I/O error')
        error.sqlite_errorcode = sqlite3.SQLITE_IOERR
        if code == errno.ENOSPC:
            error.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise error

    monkeypatch.setattr(SQLiteIndex, '_page', broken)
    listing = client.simulate_get('/images')
    assert listing.status_code == status
    assert listing.json['title'] == title


@pytest.mark.parametrize('method', ['POST', 'DELETE'])
def test_a_worker_dying_after_its_change_leaves_no_stale_cache(
    new_worker, monkeypatch, method
):
    two = new_worker()
    document = upload(two, draw_image((256, 256)))
    uris = ['/images', document['image'], document['thumbnails'][0]]
    for uri in uris:  # cached by the other worker
        two.simulate_get(uri)
        assert two.simulate_get(uri).headers['X-ASGILook-Cache'] == 'Hit'

    # The worker dies right after its change is committed: the invalidation
    # that follows the responder never happens.
    async def died(self, req, resp, resource, req_succeeded):
        pass

    monkeypatch.setattr(RedisCache, 'process_response', died)
    one = new_worker()
    if method == 'POST':
        upload(one)
        expected = 2
    else:
        headers = {'Authorization': f'Bearer {document["delete_token"]}'}
        assert (
            one.simulate_delete(document['image'], headers=headers).status_code == 204
        )
        expected = 0

    listing = two.simulate_get('/images')
    assert listing.headers['X-ASGILook-Cache'] == 'Miss'
    assert len(listing.json) == expected
    if method == 'DELETE':
        for uri in uris[1:]:
            assert two.simulate_get(uri).status_code == 404
