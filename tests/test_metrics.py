"""GET /metrics: Prometheus text that counts every answer, across workers too."""

import json
import multiprocessing
import shutil
import signal
import types

import falcon.testing
import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from asgilook.http import metrics
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


def refused(resp):
    """Whether ``resp`` is the 503 of a worker that counts alone, saying how."""
    assert resp.status_code == 503
    assert resp.headers['Content-Type'].startswith('application/json')
    error = json.loads(resp.text)
    assert error['title'] == 'Counted Per Worker'
    assert 'PROMETHEUS_MULTIPROC_DIR' in error['description']
    assert 'asgilook serve --workers N' in error['description']
    return True


@pytest.fixture
def a_child(monkeypatch):
    """Make this process look started by multiprocessing, with ``kwargs``."""

    def started_with(**kwargs):
        parent = types.SimpleNamespace(pid=1)
        child = types.SimpleNamespace(_kwargs=kwargs)
        monkeypatch.setattr(metrics.multiprocessing, 'parent_process', lambda: parent)
        monkeypatch.setattr(metrics.multiprocessing, 'current_process', lambda: child)

    monkeypatch.delenv(metrics.MULTIPROCESS, raising=False)
    return started_with


def test_a_single_process_is_not_one_of_several_workers():
    assert multiprocessing.parent_process() is None
    assert not metrics.one_of_several_workers()


@pytest.mark.parametrize(
    'kwargs',
    [
        {'config': types.SimpleNamespace(should_reload=False, workers=2)},
        {},  # started by something other than uvicorn: refused, to be safe
    ],
    ids=['uvicorn workers', 'unknown parent'],
)
def test_one_of_several_workers_refuses_to_count_alone(client, a_child, kwargs):
    a_child(**kwargs)
    assert metrics.one_of_several_workers()
    assert refused(client.simulate_get('/metrics'))


def test_uvicorn_reload_runs_one_process_that_counts_everything(client, a_child):
    a_child(config=types.SimpleNamespace(should_reload=True, workers=1))
    client.simulate_post('/images', body=b'')
    assert not metrics.one_of_several_workers()
    resp = client.simulate_get('/metrics')
    assert resp.status_code == 200
    assert (
        value(
            samples(resp.text), 'asgilook_uploads_refused_total', reason='Invalid Image'
        )
        == 1
    )


def test_workers_sharing_a_directory_answer(client, a_child, tmp_path, monkeypatch):
    a_child(config=types.SimpleNamespace(should_reload=False, workers=2))
    monkeypatch.setenv(metrics.MULTIPROCESS, str(tmp_path))
    resp = client.simulate_get('/metrics')
    assert resp.status_code == 200
    assert value(samples(resp.text), 'asgilook_images') == 0


@pytest.mark.e2e
def test_workers_without_a_shared_directory_refuse_metrics(
    tmp_path, redis_server, monkeypatch
):
    monkeypatch.delenv(metrics.MULTIPROCESS, raising=False)
    service = Uvicorn(tmp_path / 'storage', redis_server.url, '--workers', '2')
    try:
        # NOTE: A new connection for every request, so both workers answer.
        with httpx.Client(
            base_url=service.url,
            timeout=30,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as http:
            for _ in range(10):
                assert http.get('/healthz').status_code == 200
                assert refused(http.get('/metrics'))
    finally:
        assert service.stop() in (0, -signal.SIGTERM)


@pytest.mark.e2e
@pytest.mark.parametrize('reload', [False, True], ids=['one process', 'reload'])
def test_one_uvicorn_process_counts_without_a_directory(
    tmp_path, redis_server, monkeypatch, reload
):
    monkeypatch.delenv(metrics.MULTIPROCESS, raising=False)
    watched = tmp_path / 'watched'
    watched.mkdir()
    args = ('--reload', '--reload-dir', str(watched)) if reload else ()
    service = Uvicorn(tmp_path / 'storage', redis_server.url, *args)
    try:
        with httpx.Client(
            base_url=service.url,
            timeout=30,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as http:
            for _ in range(5):
                assert http.get('/healthz').status_code == 200
            resp = http.get('/metrics')
    finally:
        assert service.stop() in (0, -signal.SIGTERM)
    assert resp.status_code == 200
    found = samples(resp.text)
    assert (
        value(
            found,
            'asgilook_requests_total',
            route='/healthz',
            method='GET',
            status='200',
        )
        == 5
    )
