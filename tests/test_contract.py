"""The tutorial's import paths (``../shared/CONTRACT.md``) name the real things."""

import falcon.asgi
import falcon.testing

import asgilook.app
import asgilook.cache
import asgilook.images
import asgilook.store
from asgilook.caching.cache import RedisCache
from asgilook.http.app import create_app
from asgilook.http.images import Images
from asgilook.http.images import Thumbnails
from asgilook.storage.store import Image
from asgilook.storage.store import Store
from tests.helpers import draw_image


def test_the_tutorials_modules_name_the_same_classes():
    assert asgilook.app.create_app is create_app
    assert asgilook.store.Store is Store
    assert asgilook.store.Image is Image
    assert asgilook.images.Images is Images
    assert asgilook.images.Thumbnails is Thumbnails
    assert asgilook.cache.RedisCache is RedisCache


def test_an_app_wired_by_hand_as_the_tutorial_does_serves(config):
    # The tutorial's own app.py, before it grew: its resources, store and cache.
    store = asgilook.store.Store(config)
    cache = asgilook.cache.RedisCache(config)
    app = falcon.asgi.App(middleware=[cache, store])
    images = asgilook.images.Images(config, store)
    app.add_route('/images', images)
    app.add_route('/images/{image_id:uuid}.jpeg', images, suffix='image')
    app.add_route(
        '/thumbnails/{image_id:uuid}/{width:int}x{height:int}.jpeg',
        asgilook.images.Thumbnails(store),
    )
    client = falcon.testing.TestClient(app)

    created = client.simulate_post('/images', body=draw_image((640, 360)))
    assert created.status_code == 201
    document = created.json
    assert [image['id'] for image in client.simulate_get('/images').json] == [
        document['id']
    ]
    picture = client.simulate_get(document['image'])
    assert (picture.status_code, picture.headers['Content-Type']) == (
        200,
        'image/jpeg',
    )
    thumbnail = client.simulate_get(document['thumbnails'][0])
    assert thumbnail.status_code == 200
