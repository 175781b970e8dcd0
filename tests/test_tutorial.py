"""The tutorial's own testing conventions, replayed against the durable store.

Falcon's tutorial tests share one storage directory for the whole session and
build a new app, with a brand-new fake Redis, for every test; they rely on
the store starting empty for the first test and on a repeated uuid replacing
an image. These tests run in file order on one directory to keep that true.
"""

import uuid

import fakeredis
import falcon.testing
import pytest

from asgilook.app import create_app
from asgilook.config import Config
from tests.helpers import FIRST_IDS

FIRST = FIRST_IDS[0]


@pytest.fixture(scope='module')
def shared_storage(tmpdir_factory):
    return str(tmpdir_factory.mktemp('tutorial'))


@pytest.fixture
def tutorial_client(shared_storage, predictable_uuid):
    def new_fake_redis(*args, **kwargs):
        # Like the tutorial's factory: a new server on every call.
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())

    config = Config()
    config.redis_from_url = new_fake_redis
    config.storage_path = shared_storage
    config.uuid_generator = predictable_uuid
    return falcon.testing.TestClient(create_app(config))


def test_first_listing_is_empty_and_then_cached(tutorial_client):
    first = tutorial_client.simulate_get('/images')
    second = tutorial_client.simulate_get('/images')
    assert (first.status_code, first.json) == (200, [])
    assert first.headers['X-ASGILook-Cache'] == 'Miss'
    assert second.headers['X-ASGILook-Cache'] == 'Hit'
    assert second.json == []


def test_unknown_image(tutorial_client):
    resp = tutorial_client.simulate_get(f'/images/{uuid.UUID(int=1)}.jpeg')
    assert resp.status_code == 404


def test_one_upload(tutorial_client, png_image, image_size):
    posted = tutorial_client.simulate_post('/images', body=png_image)
    assert posted.status_code == 201
    assert posted.headers['Location'] == f'/images/{FIRST}.jpeg'
    fetched = tutorial_client.simulate_get(f'/images/{FIRST}.jpeg')
    assert fetched.headers['Content-Type'] == 'image/jpeg'
    assert image_size(fetched.content) == (640, 360)


def test_three_uploads_list_exactly_those(tutorial_client, png_image):
    for _ in range(3):
        tutorial_client.simulate_post('/images', body=png_image)
    listing = tutorial_client.simulate_get('/images').json
    assert [(item['image'], item['size']) for item in listing] == [
        (f'/images/{image_id}.jpeg', [640, 360]) for image_id in FIRST_IDS
    ]


def test_thumbnails_of_a_new_upload(tutorial_client, png_image, image_size):
    unknown = f'/thumbnails/{uuid.UUID(int=1)}/80x80.jpeg'
    assert tutorial_client.simulate_get(unknown).status_code == 404
    document = tutorial_client.simulate_post('/images', body=png_image).json
    assert set(document['thumbnails']) == {
        f'/thumbnails/{FIRST}/320x180.jpeg',
        f'/thumbnails/{FIRST}/160x90.jpeg',
    }
    for uri in document['thumbnails']:
        resp = tutorial_client.simulate_get(uri)
        assert resp.headers['X-ASGILook-Cache'] == 'Miss'
        assert image_size(resp.content) in ((320, 180), (160, 90))


def test_a_size_outside_the_series(tutorial_client, png_image):
    tutorial_client.simulate_post('/images', body=png_image)
    resp = tutorial_client.simulate_get(f'/thumbnails/{FIRST}/480x270.jpeg')
    assert resp.status_code == 404


def test_thumbnail_cached_after_the_first_request(tutorial_client, png_image):
    tutorial_client.simulate_post('/images', body=png_image)
    states = [
        tutorial_client.simulate_get(f'/thumbnails/{FIRST}/160x90.jpeg').headers[
            'X-ASGILook-Cache'
        ]
        for _ in range(4)
    ]
    assert states == ['Miss', 'Hit', 'Hit', 'Hit']
