import uuid

import falcon.testing
import pytest

from asgilook.http.app import create_app
from tests.helpers import FIRST_IDS
from tests.helpers import decode
from tests.helpers import draw_image


def test_unknown_image_has_no_thumbnails(client):
    resp = client.simulate_get(f'/thumbnails/{uuid.uuid4()}/80x80.jpeg')
    assert resp.status_code == 404
    assert resp.json['title'] == 'Not Found'


def test_every_listed_thumbnail_is_served_at_its_size(client, png_image):
    document = client.simulate_post('/images', body=png_image).json
    image_id = FIRST_IDS[0]
    assert document['thumbnails'] == [
        f'/thumbnails/{image_id}/320x180.jpeg',
        f'/thumbnails/{image_id}/160x90.jpeg',
    ]

    for uri, size in zip(document['thumbnails'], [(320, 180), (160, 90)], strict=True):
        resp = client.simulate_get(uri)
        assert resp.status_code == 200
        assert resp.headers['Content-Type'] == 'image/jpeg'
        assert resp.headers['X-ASGILook-Cache'] == 'Miss'
        assert decode(resp.content).size == size


@pytest.mark.parametrize(
    ('size', 'expected'),
    [
        ((1001, 333), [(500, 166), (250, 83)]),
        ((127, 4000), []),
        ((128, 128), [(64, 64)]),
        ((4096, 256), [(2048, 128), (1024, 64)]),
    ],
)
def test_series_halves_while_both_sides_reach_the_minimum(client, size, expected):
    document = client.simulate_post('/images', body=draw_image(size)).json
    sizes = [
        tuple(int(n) for n in uri.rsplit('/', 1)[1][: -len('.jpeg')].split('x'))
        for uri in document['thumbnails']
    ]
    assert sizes == expected
    for uri, size in zip(document['thumbnails'], expected, strict=True):
        assert decode(client.simulate_get(uri).content).size == size


def test_min_thumb_size_is_configurable(config):
    config.min_thumb_size = 100
    client = falcon.testing.TestClient(create_app(config))
    document = client.simulate_post('/images', body=draw_image((640, 360))).json
    assert document['thumbnails'] == [f'/thumbnails/{FIRST_IDS[0]}/320x180.jpeg']


@pytest.mark.parametrize('size', ['480x270', '320x181', '640x360', '1x1', '0x0'])
def test_a_size_outside_the_series_is_404_never_a_resize(client, png_image, size):
    client.simulate_post('/images', body=png_image)
    resp = client.simulate_get(f'/thumbnails/{FIRST_IDS[0]}/{size}.jpeg')
    assert resp.status_code == 404
    assert 'thumbnail' in resp.json['description']


def test_thumbnail_is_cached_after_first_request(client, png_image):
    client.simulate_post('/images', body=png_image)
    uri = f'/thumbnails/{FIRST_IDS[0]}/160x90.jpeg'

    responses = [client.simulate_get(uri) for _ in range(4)]
    assert [resp.headers['X-ASGILook-Cache'] for resp in responses] == [
        'Miss', 'Hit', 'Hit', 'Hit'
    ]  # fmt: skip
    assert all(resp.content == responses[0].content for resp in responses)


def test_thumbnail_keeps_the_colours(client):
    document = client.simulate_post(
        '/images', body=draw_image((512, 512), background='blue')
    ).json
    thumb = decode(client.simulate_get(document['thumbnails'][-1]).content)
    red, green, blue = thumb.getpixel((0, 0))
    assert blue > 200 and red < 60 and green < 60
