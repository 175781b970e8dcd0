"""GET /metrics: Prometheus text that counts every answer, across workers too."""

import shutil
import signal

import falcon.testing
import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from asgilook.http.app import create_app
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image
from tests.servers import Uvicorn

IMAGE_ROUTE = '/images/{image_id:uuid}.jpeg'
THUMBNAIL_ROUTE = '/thumbnails/{image_id:uuid}/{width:int}x{height:int}.jpeg'


def samples(text):
    """{(name, frozenset of labels): value} of a Prometheus exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())), 0.0)


def test_every_answer_is_counted_by_route_and_status(client, png_image):
    document = client.simulate_post('/images', body=png_image).json
    for _ in range(3):
        # The first from Falcon, the others from memory before Falcon.
        client.simulate_get(document['image'])
    client.simulate_get(document['thumbnails'][0])
    client.simulate_get('/images/not-an-id.jpeg')
    client.simulate_get('/nowhere/at/all')

    resp = client.simulate_get('/metrics')
    assert resp.status_code == 200
    assert resp.headers['Content-Type'].startswith('text/plain; version=')
    found = samples(resp.text)
    assert (
        value(
            found,
            'asgilook_requests_total',
            route=IMAGE_ROUTE,
            method='GET',
            status='200',
        )
        == 3
    )
    assert (
        value(
            found,
            'asgilook_requests_total',
            route='/images',
            method='POST',
            status='201',
        )
        == 1
    )
    assert (
        value(
            found,
            'asgilook_requests_total',
            route='(no route)',
            method='GET',
            status='404',
        )
        == 2
    )
    assert (
        value(found, 'asgilook_request_duration_seconds_count', route=IMAGE_ROUTE) == 3
    )
    assert value(found, 'asgilook_cache_answers_total', result='Miss') >= 3
    assert value(found, 'asgilook_cache_answers_total', result='Hit') == 2
    assert value(found, 'asgilook_images') == 1
    assert value(found, 'asgilook_images_stored_total') == 1
    assert value(found, 'asgilook_upload_bytes_count') == 1
    assert value(found, 'asgilook_upload_bytes_sum') == len(png_image)
    assert value(found, 'asgilook_thumbnails_rendered_total') == 2
    assert value(found, 'asgilook_thumbnail_series_render_seconds_count') == 1
    assert (
        value(
            found,
            'asgilook_requests_total',
            route=THUMBNAIL_ROUTE,
            method='GET',
            status='200',
        )
        == 1
    )


def test_refused_uploads_are_counted_by_reason(client):
    client.simulate_post('/images', body=b'<html>not a picture</html>')
    client.simulate_post('/images', body=b'')
    found = samples(client.simulate_get('/metrics').text)
    assert (
        value(
            found, 'asgilook_uploads_refused_total', reason='Unsupported Image Format'
        )
        == 1
    )
    assert value(found, 'asgilook_uploads_refused_total', reason='Invalid Image') == 1
    assert value(found, 'asgilook_images_stored_total') == 0


def test_thumbnails_rendered_at_first_request_are_counted(config, png_image):
    client = falcon.testing.TestClient(create_app(config))
    client.simulate_post('/images', body=png_image)
    shutil.rmtree(config.storage_path / 'thumbnails')
    (config.storage_path / 'thumbnails').mkdir()
    client.simulate_get(f'/thumbnails/{FIRST_IDS[0]}/160x90.jpeg')
    found = samples(client.simulate_get('/metrics').text)
    assert value(found, 'asgilook_thumbnails_rendered_total') == 4
    assert value(found, 'asgilook_thumbnail_series_render_seconds_count') == 2


def test_apps_in_one_process_count_apart(config, png_image):
    one = falcon.testing.TestClient(create_app(config))
    other = falcon.testing.TestClient(create_app(config))
    one.simulate_post('/images', body=png_image)
    found = samples(other.simulate_get('/metrics').text)
    assert value(found, 'asgilook_images_stored_total') == 0
    # The number of images is the index's, which both share.
    assert value(found, 'asgilook_images') == 1


@pytest.mark.e2e
def test_several_workers_lose_no_count(tmp_path, redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    counts = tmp_path / 'metrics'
    counts.mkdir()
    service = Uvicorn(
        tmp_path / 'storage',
        redis_server.url,
        '--workers',
        '2',
        env={'PROMETHEUS_MULTIPROC_DIR': str(counts)},
    )
    try:
        # NOTE: A new connection for every request, so both workers answer.
        with httpx.Client(
            base_url=service.url,
            timeout=30,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as http:
            document = http.post('/images', content=draw_image()).json()
            for _ in range(40):
                assert http.get(document['image']).status_code == 200
            found = samples(http.get('/metrics').text)
    finally:
        assert service.stop() in (0, -signal.SIGTERM)
    assert (
        value(
            found,
            'asgilook_requests_total',
            route=IMAGE_ROUTE,
            method='GET',
            status='200',
        )
        == 40
    )
    assert value(found, 'asgilook_images_stored_total') == 1
    # Both workers answered, and wrote counts of their own.
    writers = [path for path in counts.iterdir() if path.name.startswith('counter_')]
    assert len(writers) == 2
