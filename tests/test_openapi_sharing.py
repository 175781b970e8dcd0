"""The OpenAPI document on upload keys, visibility and signed links: the
security it names, and a live server's answers to keys, quotas, rates and
private pictures, checked against it."""

import json
import os
import signal
import subprocess
import sys

import falcon
import httpx
import pytest
import redis
import schemathesis

from asgilook.http.app import create_app
from tests.helpers import draw_image
from tests.openapi_cases import bearer
from tests.openapi_cases import expecting
from tests.openapi_cases import header
from tests.openapi_cases import signed_link
from tests.servers import Uvicorn

# NOTE: The Redis database of this module's server (its keys' rates), apart
#   from the other end-to-end tests' that share the session's redis-server.
REDIS_DB = 15


def test_uploads_are_documented_as_the_service_takes_them(client, config):
    open_upload = client.simulate_get('/openapi.json').json['paths']['/images']
    assert open_upload['post']['security'] == [{}, {'uploadKey': []}]
    assert open_upload['get']['security'] == [{}, {'uploadKey': []}]

    config.uploads = 'keys'
    app = create_app(config)
    document = falcon.testing.TestClient(app).simulate_get('/openapi.json').json
    upload = document['paths']['/images']['post']
    assert upload['security'] == [{'uploadKey': []}]
    assert 'An upload key is needed (`ASGI_LOOK_UPLOADS=keys`)' in upload['description']


# End to end: a live server, with upload keys.


def add_key(storage, name, *options):
    """A new upload key, as ``asgilook keys add`` makes and shows it."""
    done = subprocess.run(
        [sys.executable, '-m', 'asgilook', 'keys', 'add', name, *options, '--json'],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, 'ASGI_LOOK_STORAGE_PATH': str(storage)},
    )
    return json.loads(done.stdout)['secret']


@pytest.fixture(scope='module')
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp('openapi-sharing-storage')


@pytest.fixture(scope='module')
def keys(storage):
    """Upload keys, by name, made before the service starts: one that uploads
    once a minute, one that may keep a kilobyte, one without limits."""
    return {
        'camera': add_key(storage, 'camera', '--rate', '1'),
        'tiny': add_key(storage, 'tiny', '--quota', '1kB'),
        'phone': add_key(storage, 'phone'),
    }


@pytest.fixture(scope='module')
def service(storage, keys, redis_server):
    redis_url = f'{redis_server.url}/{REDIS_DB}'
    redis.Redis.from_url(redis_url).flushdb()
    server = Uvicorn(storage, redis_url)
    yield server
    assert server.stop() in (0, -signal.SIGTERM)


def upload(service, params=None, headers=None):
    """The document of a picture uploaded as ``params`` and ``headers`` say."""
    with httpx.Client(base_url=service.url, timeout=30) as http:
        answer = http.post(
            '/images', content=draw_image((320, 240)), params=params, headers=headers
        )
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.fixture(scope='module')
def public(service):
    """A public picture, uploaded without a key."""
    return upload(service)


@pytest.fixture(scope='module')
def private(service, keys):
    """A private picture, uploaded with the key ``phone``."""
    return upload(service, {'visibility': 'private'}, bearer(keys['phone']))


def load(service):
    """The served document, as schemathesis reads it."""
    return schemathesis.openapi.from_url(f'{service.url}/openapi.json')


@pytest.mark.e2e
def test_upload_keys_answer_as_documented(service, keys):
    """A private upload with a key; a key's rate (429) and quota (413); a
    bearer that is no key (401); a form's name and visibility."""
    listing = load(service)['/images']
    failures = []
    expect = expecting(service.url, failures)
    picture = draw_image((200, 100))
    # NOTE: The quota is a kilobyte: this picture is over it.
    assert len(picture) > 1000
    png = {'body': picture, 'media_type': 'image/png'}
    camera = bearer(keys['camera'])
    query = {'visibility': 'private', 'name': 'C:\\photos\\Dinner.png'}
    made = expect(201, listing['POST'].Case(query=query, headers=camera, **png))
    document = made.json()
    assert (document['name'], document['visibility']) == ('Dinner.png', 'private')
    assert header(made, 'Location') == document['image']
    assert set(signed_link(document['image'])[1]) == {'expires', 'signature'}
    # The camera's one upload a minute is made.
    throttled = expect(429, listing['POST'].Case(headers=camera, **png))
    assert int(header(throttled, 'Retry-After')) >= 1
    over = expect(413, listing['POST'].Case(headers=bearer(keys['tiny']), **png))
    assert over.json()['title'] == 'Quota Exceeded'
    stranger = bearer('not-a-key')
    for case in (
        listing['POST'].Case(headers=stranger, **png),
        listing['GET'].Case(headers=stranger),
    ):
        assert expect(401, case).json()['title'] == 'Invalid Upload Key'
    form = {
        'image': draw_image((160, 120), format='JPEG'),
        'name': 'Cat',
        'visibility': 'unlisted',
    }
    document = expect(
        201, listing['POST'].Case(body=form, media_type=falcon.MEDIA_MULTIPART)
    ).json()
    assert (document['name'], document['visibility']) == ('Cat', 'unlisted')
    expect(400, listing['POST'].Case(query={'visibility': 'secret'}, **png))
    assert not failures, '\n\n'.join(failures)


@pytest.mark.e2e
def test_private_pictures_answer_as_documented(service, keys, public, private):
    """A private picture: a 404 unless signed, its signed answers, its
    key's own listing, and its deletion with that key."""
    schema = load(service)
    image = schema['/images/{image_id}.jpeg']
    page = schema['/pictures/{image_id}']['GET']
    failures = []
    expect = expecting(service.url, failures)
    phone = bearer(keys['phone'])
    own = expect(200, schema['/images']['GET'].Case(headers=phone))
    assert [document['id'] for document in own.json()] == [private['id']]
    assert header(own, 'Cache-Control') == 'private, no-cache'
    ids = {'image_id': private['id']}
    _, signed = signed_link(private['image'])
    forged = {**signed, 'signature': 'A' * len(signed['signature'])}
    for query in ({}, forged):
        expect(404, image['GET'].Case(path_parameters=ids, query=query))
    found = expect(200, image['GET'].Case(path_parameters=ids, query=signed))
    assert header(found, 'Cache-Control').startswith('private, max-age=')
    path, query = signed_link(private['thumbnails'][0])
    width, height = path.rsplit('/', 1)[1].removesuffix('.jpeg').split('x')
    thumbnail = {**ids, 'width': int(width), 'height': int(height)}
    expect(
        200,
        schema['/thumbnails/{image_id}/{width}x{height}.jpeg']['GET'].Case(
            path_parameters=thumbnail, query=query
        ),
    )
    query = signed_link(private['page'])[1]
    shown = expect(200, page.Case(path_parameters=ids, query=query))
    assert header(shown, 'X-Robots-Tag') == 'noindex'
    expect(404, page.Case(path_parameters=ids))
    others = {'image_id': public['id']}
    expect(403, image['DELETE'].Case(path_parameters=others, headers=phone))
    expect(204, image['DELETE'].Case(path_parameters=ids, headers=phone))
    assert not failures, '\n\n'.join(failures)
