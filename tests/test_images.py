import datetime
import io
import uuid

import falcon
import falcon.testing
import PIL.Image
import pytest

from asgilook.http.app import create_app
from tests.helpers import FIRST_IDS
from tests.helpers import decode
from tests.helpers import draw_image


def test_list_is_empty_then_cached(client):
    first = client.simulate_get('/images')
    assert first.status_code == 200
    assert first.headers['X-ASGILook-Cache'] == 'Miss'
    assert first.json == []

    second = client.simulate_get('/images')
    assert second.headers['X-ASGILook-Cache'] == 'Hit'
    assert second.json == []


def test_unknown_image_is_404_with_json_error(client):
    resp = client.simulate_get(f'/images/{uuid.uuid4()}.jpeg')
    assert resp.status_code == 404
    assert resp.json['title'] == 'Not Found'
    assert 'no image with the id' in resp.json['description']


def test_not_a_uuid_is_404(client):
    assert client.simulate_get('/images/not-a-uuid.jpeg').status_code == 404


def test_post_returns_the_image_document(client, png_image):
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    resp = client.simulate_post('/images', body=png_image)
    after = datetime.datetime.now(datetime.UTC)

    image_id = FIRST_IDS[0]
    assert resp.status_code == 201
    assert resp.headers['Location'] == f'/images/{image_id}.jpeg'
    document = resp.json
    assert document['id'] == image_id
    assert document['image'] == f'/images/{image_id}.jpeg'
    assert document['size'] == [640, 360]
    assert document['thumbnails'] == [
        f'/thumbnails/{image_id}/320x180.jpeg',
        f'/thumbnails/{image_id}/160x90.jpeg',
    ]
    modified = falcon.http_date_to_dt(document['modified']).replace(tzinfo=datetime.UTC)
    assert before <= modified <= after


def test_posted_image_is_served_as_jpeg(client, image_size):
    red = draw_image((300, 200), background='red')
    location = client.simulate_post('/images', body=red).headers['Location']

    resp = client.simulate_get(location)
    assert resp.status_code == 200
    assert resp.headers['Content-Type'] == 'image/jpeg'
    assert resp.headers['X-ASGILook-Cache'] == 'Miss'
    assert image_size(resp.content) == (300, 200)
    image = decode(resp.content)
    # The corner is background: red stays red through the JPEG conversion.
    red_channel, green, blue = image.getpixel((0, 0))
    assert red_channel > 200 and green < 60 and blue < 60


def test_original_is_cached_byte_for_byte(client, png_image):
    location = client.simulate_post('/images', body=png_image).headers['Location']

    miss = client.simulate_get(location)
    hit = client.simulate_get(location)
    assert miss.headers['X-ASGILook-Cache'] == 'Miss'
    assert hit.headers['X-ASGILook-Cache'] == 'Hit'
    assert hit.content == miss.content
    assert hit.headers['Content-Type'] == miss.headers['Content-Type']


def test_listing_is_in_upload_order(client, png_image):
    for _ in range(3):
        assert client.simulate_post('/images', body=png_image).status_code == 201

    resp = client.simulate_get('/images')
    assert [(item['id'], item['size']) for item in resp.json] == [
        (image_id, [640, 360]) for image_id in FIRST_IDS
    ]


def test_repeated_id_replaces_the_image_and_its_cache(config, image_size):
    same, other = FIRST_IDS[0], FIRST_IDS[1]
    ids = iter(uuid.UUID(value) for value in (same, other, same))
    config.uuid_generator = lambda: next(ids)
    client = falcon.testing.TestClient(create_app(config))

    client.simulate_post('/images', body=draw_image((640, 360)))
    old = client.simulate_get(f'/images/{same}.jpeg')
    assert image_size(old.content) == (640, 360)
    assert client.simulate_get(f'/thumbnails/{same}/160x90.jpeg').status_code == 200
    assert client.simulate_get('/images').headers['X-ASGILook-Cache'] == 'Miss'

    client.simulate_post('/images', body=draw_image((200, 400)))
    replaced = client.simulate_post('/images', body=draw_image((400, 800)))
    assert replaced.status_code == 201

    listing = client.simulate_get('/images')
    assert listing.headers['X-ASGILook-Cache'] == 'Miss'
    assert [item['id'] for item in listing.json] == [other, same]
    assert listing.json[1]['size'] == [400, 800]

    new = client.simulate_get(f'/images/{same}.jpeg')
    assert new.headers['X-ASGILook-Cache'] == 'Miss'
    assert image_size(new.content) == (400, 800)
    # The old picture's cached thumbnail is gone, and its size is not in the
    # new picture's series.
    assert client.simulate_get(f'/thumbnails/{same}/160x90.jpeg').status_code == 404


@pytest.mark.parametrize('format', ['PNG', 'JPEG', 'GIF', 'WEBP', 'BMP', 'TIFF'])
def test_common_formats_are_converted_to_jpeg(client, image_size, format):
    upload = draw_image((320, 240), format=format)
    resp = client.simulate_post('/images', body=upload)
    assert resp.status_code == 201
    stored = client.simulate_get(resp.headers['Location'])
    assert decode(stored.content).size == (320, 240)


def test_transparency_is_flattened_onto_white(client):
    clear = PIL.Image.new('RGBA', (100, 100), (0, 0, 0, 0))
    output = io.BytesIO()
    clear.save(output, 'PNG')
    location = client.simulate_post('/images', body=output.getvalue()).headers[
        'Location'
    ]
    image = decode(client.simulate_get(location).content)
    assert min(image.getpixel((50, 50))) > 245
