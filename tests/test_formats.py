"""JSON or MessagePack by Accept: documents, listings, errors; never XML."""

import msgpack
import pytest

from tests.helpers import draw_image

MSGPACK = 'application/msgpack'
BROWSER = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'


def unpack(resp):
    assert resp.headers['Content-Type'] == MSGPACK
    return msgpack.unpackb(resp.content, raw=False)


def test_an_upload_answers_in_the_format_asked_for(client, png_image):
    resp = client.simulate_post('/images', body=png_image, headers={'Accept': MSGPACK})
    assert resp.status_code == 201
    document = unpack(resp)
    assert document['delete_token']
    assert resp.headers['Vary'] == 'Accept'
    listing = client.simulate_get('/images')
    assert listing.json == [
        {key: value for key, value in document.items() if key != 'delete_token'}
    ]


@pytest.mark.parametrize(
    ('accept', 'media_type'),
    [
        (MSGPACK, MSGPACK),
        (f'{MSGPACK}, application/json;q=0.5', MSGPACK),
        ('application/json', 'application/json'),
        ('*/*', 'application/json'),
        (BROWSER, 'application/json'),
        ('image/*', 'application/json'),
    ],
)
def test_a_listing_is_json_unless_messagepack_is_preferred(client, accept, media_type):
    client.simulate_post('/images', body=draw_image())
    resp = client.simulate_get('/images', headers={'Accept': accept})
    assert resp.headers['Content-Type'] == media_type
    # NOTE: And on Accept-Encoding: it may be compressed (test_compression.py).
    assert resp.headers['Vary'] == 'Accept, Accept-Encoding'


def test_the_cache_never_serves_one_format_to_a_client_of_the_other(client, png_image):
    client.simulate_post('/images', body=png_image)
    answers = []
    for accept in ('application/json', MSGPACK, 'application/json', MSGPACK, '*/*'):
        resp = client.simulate_get('/images', headers={'Accept': accept})
        answers.append((resp.headers['Content-Type'], resp.headers['X-ASGILook-Cache']))
    assert answers == [
        ('application/json', 'Miss'),
        (MSGPACK, 'Miss'),
        ('application/json', 'Hit'),
        (MSGPACK, 'Hit'),
        ('application/json', 'Hit'),
    ]
    json_etag = client.simulate_get('/images').headers['ETag']
    msgpack_etag = client.simulate_get('/images', headers={'Accept': MSGPACK}).headers[
        'ETag'
    ]
    assert json_etag != msgpack_etag
    again = client.simulate_get(
        '/images', headers={'Accept': MSGPACK, 'If-None-Match': msgpack_etag}
    )
    assert again.status_code == 304


@pytest.mark.parametrize('accept', [MSGPACK, BROWSER, 'application/xml'])
def test_errors_are_never_xml(client, accept):
    resp = client.simulate_get(
        '/images', query_string='limit=0', headers={'Accept': accept}
    )
    assert resp.status_code == 400
    error = unpack(resp) if accept == MSGPACK else resp.json
    assert error['title'] == 'Invalid Parameter'
    assert 'limit' in error['description']
    assert resp.headers['Vary'] == 'Accept'
