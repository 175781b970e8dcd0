"""HTTP caching for browsers and CDNs: validators, 304s, HEAD, Cache-Control."""

import datetime
import os
import uuid

import falcon
import falcon.testing
import PIL.Image
import pytest

from asgilook.http.app import create_app
from asgilook.pictures import pixels
from asgilook.storage.store import Store
from tests.helpers import FIRST_IDS
from tests.helpers import decode
from tests.helpers import draw_image

IMAGE = f'/images/{FIRST_IDS[0]}.jpeg'
THUMBNAIL = f'/thumbnails/{FIRST_IDS[0]}/320x180.jpeg'
SMALLEST = f'/thumbnails/{FIRST_IDS[0]}/160x90.jpeg'
URIS = [IMAGE, THUMBNAIL, SMALLEST, '/images']


@pytest.fixture
def uploaded(client, png_image):
    return client.simulate_post('/images', body=png_image).json


def http_date(moment):
    return falcon.dt_to_http(moment)


def visible(headers):
    """The headers a client compares: all but the cache's own and the request's id."""
    return {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() not in ('x-asgilook-cache', 'x-request-id')
    }


@pytest.mark.parametrize('uri', URIS)
def test_every_response_has_validators_and_cache_control(client, uploaded, uri):
    resp = client.simulate_get(uri)
    assert resp.status_code == 200
    etag = resp.headers['ETag']
    assert etag.startswith('"') and etag.endswith('"')
    assert resp.headers['Cache-Control']
    if uri != '/images':
        assert resp.headers['Last-Modified'] == uploaded['modified']


@pytest.mark.parametrize('uri', URIS)
@pytest.mark.parametrize('repeat', [1, 2], ids=['miss', 'hit'])
def test_if_none_match_with_the_etag_is_a_304_without_a_body(
    client, uploaded, uri, repeat
):
    first = client.simulate_get(uri)
    for _ in range(repeat):
        resp = client.simulate_get(
            uri, headers={'If-None-Match': first.headers['ETag']}
        )
    assert resp.status_code == 304
    assert resp.content == b''
    assert resp.headers['ETag'] == first.headers['ETag']
    assert resp.headers['Cache-Control'] == first.headers['Cache-Control']
    assert 'Content-Type' not in resp.headers


@pytest.mark.parametrize('uri', URIS)
@pytest.mark.parametrize(
    'header',
    ['"something else"', 'W/"something else"', '"a", "b"'],
)
def test_another_etag_gets_the_whole_response(client, uploaded, uri, header):
    resp = client.simulate_get(uri, headers={'If-None-Match': header})
    assert resp.status_code == 200
    assert resp.content == client.simulate_get(uri).content


@pytest.mark.parametrize('uri', URIS)
def test_a_weak_match_a_list_or_a_star_is_a_304(client, uploaded, uri):
    etag = client.simulate_get(uri).headers['ETag']
    for header in (f'W/{etag}', f'"other", {etag}', '*'):
        resp = client.simulate_get(uri, headers={'If-None-Match': header})
        assert resp.status_code == 304, header


@pytest.mark.parametrize('uri', [IMAGE, THUMBNAIL])
def test_if_modified_since_is_a_304_from_the_upload_on(client, uploaded, uri):
    modified = falcon.http_date_to_dt(uploaded['modified'])
    for since in (modified, modified + datetime.timedelta(days=1)):
        resp = client.simulate_get(uri, headers={'If-Modified-Since': http_date(since)})
        assert (resp.status_code, resp.content) == (304, b'')

    earlier = http_date(modified - datetime.timedelta(seconds=1))
    resp = client.simulate_get(uri, headers={'If-Modified-Since': earlier})
    assert resp.status_code == 200
    for garbage in ('yesterday', ''):
        resp = client.simulate_get(uri, headers={'If-Modified-Since': garbage})
        assert resp.status_code == 200


def test_if_none_match_wins_over_if_modified_since(client, uploaded):
    resp = client.simulate_get(
        IMAGE,
        headers={
            'If-None-Match': '"not it"',
            'If-Modified-Since': http_date(datetime.datetime.now(datetime.UTC)),
        },
    )
    assert resp.status_code == 200


def test_a_304_neither_reads_the_file_nor_calls_pillow(
    config, uploaded, monkeypatch, tmp_path
):
    client = falcon.testing.TestClient(create_app(config))
    etags = {uri: client.simulate_get(uri).headers['ETag'] for uri in URIS[:3]}

    # A new worker (nothing in its memory), whose files are gone and whose
    # Pillow is broken: the 304 needs neither.
    for root, _, names in os.walk(str(config.storage_path)):
        for name in names:
            if name.endswith('.jpeg'):
                os.unlink(os.path.join(root, name))

    def broken(*args, **kwargs):
        raise AssertionError('Pillow was called')

    monkeypatch.setattr(PIL.Image, 'open', broken)
    other = falcon.testing.TestClient(create_app(config))
    for uri, etag in etags.items():
        resp = other.simulate_get(uri, headers={'If-None-Match': etag})
        assert resp.status_code == 304, uri


@pytest.mark.parametrize('uri', URIS)
@pytest.mark.parametrize('repeat', [1, 2], ids=['miss', 'hit'])
def test_head_is_get_without_the_body(client, uploaded, uri, repeat):
    for _ in range(repeat):
        head = client.simulate_head(uri)
    get = client.simulate_get(uri)
    assert head.status_code == 200
    assert head.content == b''
    assert visible(head.headers) == visible(get.headers)
    assert int(head.headers['Content-Length']) == len(get.content)


def test_head_is_never_cached_as_a_get(client, uploaded):
    states = [
        client.simulate_head('/images').headers['X-ASGILook-Cache'],
        client.simulate_get('/images').headers['X-ASGILook-Cache'],
        client.simulate_head('/images').headers['X-ASGILook-Cache'],
        client.simulate_get('/images').headers['X-ASGILook-Cache'],
    ]
    assert states == ['Miss', 'Miss', 'Hit', 'Hit']
    assert client.simulate_get('/images').json == [
        {key: value for key, value in uploaded.items() if key != 'delete_token'}
    ]


@pytest.mark.parametrize(
    'uri', [f'/images/{uuid.uuid4()}.jpeg', f'/thumbnails/{uuid.uuid4()}/80x80.jpeg']
)
def test_head_of_an_unknown_image_is_404(client, uri):
    resp = client.simulate_head(uri)
    assert (resp.status_code, resp.content) == (404, b'')


def test_cache_control_fits_each_resource(client, uploaded):
    version = uploaded['version']
    assert client.simulate_get('/images').headers['Cache-Control'] == 'no-cache'
    for uri in (IMAGE, THUMBNAIL):
        plain = client.simulate_get(uri)
        assert plain.headers['Cache-Control'] == 'public, max-age=60'
        versioned = client.simulate_get(uri, query_string=f'v={version}')
        assert versioned.headers['Cache-Control'] == (
            'public, max-age=31536000, immutable'
        )
        assert versioned.content == plain.content
        assert versioned.headers['ETag'] == plain.headers['ETag']


def test_a_url_naming_another_version_is_404(config):
    ids = iter([FIRST_IDS[0], FIRST_IDS[0]])
    config.uuid_generator = lambda: uuid.UUID(next(ids))
    client = falcon.testing.TestClient(create_app(config))
    old = client.simulate_post('/images', body=draw_image()).json['version']
    new = client.simulate_post('/images', body=draw_image()).json['version']

    resp = client.simulate_get(IMAGE, query_string=f'v={old}')
    assert resp.status_code == 404
    assert f'{IMAGE}?v={new}' in resp.json['description']
    assert client.simulate_get(IMAGE, query_string=f'v={new}').status_code == 200


def test_the_etag_changes_with_the_picture_behind_the_url(config):
    ids = iter([FIRST_IDS[0], FIRST_IDS[0]])
    config.uuid_generator = lambda: uuid.UUID(next(ids))
    client = falcon.testing.TestClient(create_app(config))
    client.simulate_post('/images', body=draw_image((640, 360)))
    before = {uri: client.simulate_get(uri).headers['ETag'] for uri in URIS}

    client.simulate_post('/images', body=draw_image((640, 360)))
    for uri, etag in before.items():
        resp = client.simulate_get(uri, headers={'If-None-Match': etag})
        assert resp.status_code == 200, uri
        assert resp.headers['ETag'] != etag


def test_the_listing_etag_follows_its_content(client, png_image):
    empty = client.simulate_get('/images').headers['ETag']
    client.simulate_post('/images', body=png_image)
    one = client.simulate_get('/images', headers={'If-None-Match': empty})
    assert one.status_code == 200
    assert one.headers['ETag'] != empty
    again = client.simulate_get(
        '/images', headers={'If-None-Match': one.headers['ETag']}
    )
    assert again.status_code == 304


@pytest.mark.parametrize('size', [(640, 360), (333, 211), (1001, 333), (4096, 256)])
def test_a_thumbnail_is_exactly_the_size_its_url_names(client, size):
    document = client.simulate_post('/images', body=draw_image(size)).json
    sizes = pixels.thumbnail_sizes(size, 64)
    assert len(document['thumbnails']) == len(sizes)
    for uri, (width, height) in zip(document['thumbnails'], sizes, strict=True):
        assert uri.endswith(f'/{width}x{height}.jpeg')
        for _ in range(2):
            assert decode(client.simulate_get(uri).content).size == (width, height)


def test_a_replacement_between_look_up_and_read_is_described_as_sent(
    config, monkeypatch
):
    client = falcon.testing.TestClient(create_app(config))
    client.simulate_post('/images', body=draw_image((640, 360)))
    elsewhere = Store(config)
    real_read = Store.read
    replaced = []

    async def read_after_a_replacement(self, image, size, whole_up_to, window):
        if not replaced:
            new, _ = await elsewhere.save(image.image_id, draw_image((320, 200)))
            replaced.append(new)
        return await real_read(self, image, size, whole_up_to, window)

    monkeypatch.setattr(Store, 'read', read_after_a_replacement)
    resp = client.simulate_get(IMAGE)
    assert decode(resp.content).size == (320, 200)
    assert resp.headers['ETag'] == f'"{replaced[0].version}"'
    assert resp.headers['Last-Modified'] == falcon.dt_to_http(replaced[0].modified)


@pytest.mark.parametrize('method', ['GET', 'HEAD'])
def test_a_listing_spelt_another_way_is_a_304_too(client, uploaded, method):
    # Not the canonical spelling: Falcon answers, from Redis or the store.
    etag = client.simulate_get('/images').headers['ETag']
    for expected in ('Hit', 'Hit'):
        resp = client.simulate_request(
            method, '/images', query_string='junk=1', headers={'If-None-Match': etag}
        )
        assert (resp.status_code, resp.content) == (304, b'')
        assert resp.headers['X-ASGILook-Cache'] == expected
        assert resp.headers['ETag'] == etag
