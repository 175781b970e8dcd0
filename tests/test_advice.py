"""Errors that say what to do: near-miss URLs, methods allowed, one title each."""

import uuid

import pytest

from tests.helpers import FIRST_IDS
from tests.helpers import draw_image

ID = FIRST_IDS[0]


@pytest.fixture
def uploaded(client):
    return client.simulate_post('/images', body=draw_image((640, 360))).json


@pytest.mark.parametrize(
    ('uri', 'hint'),
    [
        (f'/images/{ID}', f'/images/{ID}.jpeg'),
        (f'/images/{ID}.jpg', f'/images/{ID}.jpeg'),
        (f'/images/{ID.upper().replace("-", "")}.png', f'/images/{ID}.jpeg'),
        (f'/images/{ID}.jpeg/', f'/images/{ID}.jpeg'),
        (f'/thumbnails/{ID}/320x180.jpg', f'/thumbnails/{ID}/320x180.jpeg'),
        (f'/thumbnails/{ID}', '/thumbnails/<id>/<width>x<height>.jpeg'),
        ('/images/', 'Without the trailing slash: /images.'),
        ('/gallery', '/openapi.json'),
    ],
)
def test_a_near_miss_url_points_to_the_right_one(client, uploaded, uri, hint):
    resp = client.simulate_get(uri)
    assert resp.status_code == 404
    assert resp.json['title'] == 'Not Found'
    assert hint in resp.json['description']


def test_a_size_not_in_the_series_lists_the_series(client, uploaded):
    resp = client.simulate_get(f'/thumbnails/{ID}/480x270.jpeg')
    assert resp.status_code == 404
    assert 'its sizes are 320x180, 160x90' in resp.json['description']


def test_a_picture_without_thumbnails_says_so(client):
    client.simulate_post('/images', body=draw_image((100, 100)))
    resp = client.simulate_get(f'/thumbnails/{ID}/50x50.jpeg')
    assert 'too small for any' in resp.json['description']
    assert f'/images/{ID}.jpeg' in resp.json['description']


@pytest.mark.parametrize(
    ('method', 'uri', 'allowed'),
    [
        ('PUT', '/images', 'GET, HEAD, OPTIONS, POST'),
        ('POST', f'/images/{ID}.jpeg', 'DELETE, GET, HEAD, OPTIONS'),
        ('DELETE', f'/thumbnails/{ID}/320x180.jpeg', 'GET, HEAD, OPTIONS'),
    ],
)
def test_a_method_not_allowed_names_those_that_are(client, method, uri, allowed):
    resp = client.simulate_request(method, uri)
    assert resp.status_code == 405
    assert resp.headers['Allow'] == allowed
    assert resp.json['title'] == 'Method Not Allowed'
    assert resp.json['description'] == f'{uri} answers {allowed}, not {method}.'


@pytest.mark.parametrize(
    'query',
    ['limit=0', 'limit=x', 'after=not-an-id', f'after={uuid.uuid4()}', 'order=up'],
)
def test_every_bad_parameter_has_one_title(client, query):
    resp = client.simulate_get('/images', query_string=query)
    assert resp.status_code == 400
    assert resp.json['title'] == 'Invalid Parameter'
    assert resp.json['description']
