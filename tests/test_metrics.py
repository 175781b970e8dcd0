"""GET /metrics: Prometheus text that counts every answer, across workers too."""

import asyncio
import json
import multiprocessing
import shutil
import signal
import time
import types

import falcon.testing
import httpx
import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from asgilook.http import metrics
from asgilook.http.app import create_app
from asgilook.http.metrics import FLUSH_SECONDS
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
            # NOTE: Each worker hands its counts over within FLUSH_SECONDS
            #   (the one scraped, at once): every count arrives, none twice.
            deadline = time.monotonic() + FLUSH_SECONDS + 5
            while True:
                found = samples(http.get('/metrics').text)
                answered = value(
                    found,
                    'asgilook_requests_total',
                    route=IMAGE_ROUTE,
                    method='GET',
                    status='200',
                )
                if answered == 40 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    finally:
        assert service.stop() in (0, -signal.SIGTERM)
    assert answered == 40
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


def test_a_full_disk_is_counted_among_refused_uploads(client, png_image, monkeypatch):
    import errno
    import os

    from asgilook.storage.blobs import local

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(local, '_write', full)
    resp = client.simulate_post('/images', body=png_image)
    assert resp.status_code == 507
    assert resp.json['title'] == 'Storage Full'
    found = samples(client.simulate_get('/metrics').text)
    assert value(found, 'asgilook_uploads_refused_total', reason='Storage Full') == 1
    assert value(found, 'asgilook_images_stored_total') == 0


def test_a_full_bucket_is_counted_among_refused_uploads(config, png_image, monkeypatch):
    from asgilook.storage.blobs.s3 import S3Blobs
    from asgilook.storage.blobs.s3 import s3_error

    async def full(self, *args):
        raise s3_error(RuntimeError('<Code>XMinioStorageFull</Code>'))

    async def nothing(self, *args):
        pass

    monkeypatch.setattr(S3Blobs, 'put', full)
    monkeypatch.setattr(S3Blobs, 'put_many', full)
    # NOTE: What the failed upload wrote is removed: nothing, from no server.
    monkeypatch.setattr(S3Blobs, 'delete', nothing)
    monkeypatch.setattr(S3Blobs, 'delete_prefix', nothing)
    config.storage_url = 's3://pictures/here'
    client = falcon.testing.TestClient(create_app(config))
    assert client.simulate_post('/images', body=png_image).status_code == 507
    text = client.simulate_get('/metrics').text
    found = samples(text)
    assert value(found, 'asgilook_uploads_refused_total', reason='Storage Full') == 1
    # A bucket has no free space to ask for: no figure rather than a made-up one.
    assert 'asgilook_storage_free_bytes' not in text
    assert 'asgilook_storage_total_bytes' not in text


def test_the_free_bytes_of_the_storage_volume_are_read_at_each_scrape(
    client, monkeypatch
):
    import os

    from asgilook.storage import space

    free = [3 * 2**30]

    def fake(path):
        return os.statvfs_result(
            (4096, 4096, 2**20, free[0] // 4096, free[0] // 4096, 0, 0, 0, 0, 255)
        )

    monkeypatch.setattr(space, '_statvfs', fake)
    found = samples(client.simulate_get('/metrics').text)
    assert value(found, 'asgilook_storage_free_bytes') == 3 * 2**30
    assert value(found, 'asgilook_storage_total_bytes') == 4 * 2**30
    free[0] = 2**20
    found = samples(client.simulate_get('/metrics').text)
    assert value(found, 'asgilook_storage_free_bytes') == 2**20


def test_a_store_that_is_away_is_no_refusal(client, png_image, monkeypatch):
    import errno
    import os

    from asgilook.storage.blobs import local

    def away(*_):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(local, '_write', away)
    resp = client.simulate_post('/images', body=png_image)
    # NOTE: A 503 says "try again in a moment": the upload is not refused.
    assert (resp.status_code, resp.json['title']) == (503, 'Storage Unavailable')
    found = samples(client.simulate_get('/metrics').text)
    assert not [key for key in found if key[0] == 'asgilook_uploads_refused_total']
    assert (
        value(
            found,
            'asgilook_requests_total',
            route='/images',
            method='POST',
            status='503',
        )
        == 1
    )


def test_counts_handed_over_in_batches_equal_one_by_one(tmp_path):
    """The tally's batches give what the client's own observe() would."""
    # NOTE: Bounds themselves included: a request of exactly a bucket's
    #   bound falls in that bucket, as observe() puts it.
    durations = [0.0, 0.0001, 0.0005, 0.0007, 0.001, 0.02, 0.5, 4.9, 5, 7.5, 60]
    counted = metrics.Metrics(store=None)

    async def answer():
        for index, seconds in enumerate(durations):
            cache = 'Hit' if index % 3 else 'Miss'
            counted.observe('/images', 'GET', 200 + index % 2, seconds, cache)
        counted.flush()

    asyncio.run(answer())
    reference = metrics.Metrics(store=None)
    for index, seconds in enumerate(durations):
        cache = 'Hit' if index % 3 else 'Miss'
        reference.requests.labels('/images', 'GET', str(200 + index % 2)).inc()
        reference.latency.labels('/images').observe(seconds)
        reference.cache.labels(cache).inc()

    def exposed(registry):
        # NOTE: Sums rounded: added in another order, floats differ in the
        #   last bits.
        return {
            key: round(found, 9)
            for key, found in samples(generate_latest(registry).decode()).items()
            if not key[0].endswith('_created')
        }

    assert exposed(counted.registry) == exposed(reference.registry)
    assert (
        value(exposed(counted.registry), 'asgilook_cache_answers_total', result='Hit')
        == 7
    )


def test_counts_are_handed_over_by_themselves_within_a_second():
    counted = metrics.Metrics(store=None)

    async def answer_and_wait():
        counted.observe('/images', 'GET', 200, 0.001, 'Hit')
        counted.observe('/images', 'GET', 200, 0.001, 'Hit')
        before = generate_latest(counted.registry).decode()
        await asyncio.sleep(FLUSH_SECONDS + 0.2)
        return before, generate_latest(counted.registry).decode()

    before, after = asyncio.run(answer_and_wait())
    route = {'route': '/images', 'method': 'GET', 'status': '200'}
    assert value(samples(before), 'asgilook_requests_total', **route) == 0
    assert value(samples(after), 'asgilook_requests_total', **route) == 2
    # A new loop (falcon.testing's next lifespan) schedules its own flush.
    before, after = asyncio.run(answer_and_wait())
    assert value(samples(after), 'asgilook_requests_total', **route) == 4
