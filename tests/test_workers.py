"""Several uvicorn workers and processes on one storage directory and one Redis.

Real processes all the way: a redis-server, `uvicorn --workers 2` beside a
separate single uvicorn (as a second machine on a shared volume would be),
concurrent clients, restarts, and `kill -9` in the middle of uploads.
"""

import concurrent.futures
import io
import socket
import threading
import time

import httpx
import PIL.Image
import pytest
import redis

from tests.helpers import decode
from tests.helpers import draw_image
from tests.servers import Uvicorn

pytestmark = pytest.mark.e2e


@pytest.fixture
def storage(tmp_path, redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    return tmp_path / 'shared-storage'


@pytest.fixture
def servers():
    started = []

    def start(storage, redis_url, *args):
        server = Uvicorn(storage, redis_url, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def listing(url):
    resp = httpx.get(f'{url}/images', params={'limit': 1000}, timeout=30)
    assert resp.status_code == 200
    return resp.json()


def test_workers_and_processes_behave_as_one_service(storage, servers, redis_server):
    pool_of_two = servers(storage, redis_server.url, '--workers', '2')
    single = servers(storage, redis_server.url)
    urls = [pool_of_two.url, single.url]

    def client(number):
        uploaded = []
        with httpx.Client(timeout=60) as http:
            for round_ in range(5):
                url = urls[(number + round_) % 2]
                resp = http.post(f'{url}/images', content=draw_image((128, 128)))
                assert resp.status_code == 201
                uploaded.append(resp.json())
        return uploaded

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        per_client = list(pool.map(client, range(8)))

    everyone = [listing(url) for url in urls for _ in range(3)]
    assert all(seen == everyone[0] for seen in everyone)
    order = [item['id'] for item in everyone[0]]
    assert len(order) == len(set(order)) == 40
    for uploaded in per_client:  # each client's uploads appear in its order
        positions = [order.index(document['id']) for document in uploaded]
        assert positions == sorted(positions)

    victim = per_client[0][0]
    for url in urls:  # cache it everywhere first
        assert httpx.get(f'{url}{victim["thumbnails"][0]}').status_code == 200
    deleted = httpx.delete(
        f'{single.url}{victim["image"]}',
        headers={'Authorization': f'Bearer {victim["delete_token"]}'},
    )
    assert deleted.status_code == 204
    for _ in range(4):  # whichever worker answers
        for uri in (victim['image'], victim['thumbnails'][0]):
            assert httpx.get(f'{pool_of_two.url}{uri}').status_code == 404
        assert victim['id'] not in [item['id'] for item in listing(pool_of_two.url)]


def test_restart_and_kill_9_keep_every_image(storage, servers, redis_server):
    first = servers(storage, redis_server.url)
    for size in ((640, 360), (300, 500), (128, 128)):
        resp = httpx.post(f'{first.url}/images', content=draw_image(size))
        assert resp.status_code == 201
    before = listing(first.url)
    first.stop()
    redis.Redis.from_url(redis_server.url).flushall()

    second = servers(storage, redis_server.url)
    assert listing(second.url) == before
    second.process.kill()  # kill -9
    second.process.wait()

    third = servers(storage, redis_server.url)
    assert listing(third.url) == before
    for document in before:
        image = httpx.get(f'{third.url}{document["image"]}')
        assert decode(image.content).size == tuple(document['size'])
        for uri in document['thumbnails']:
            assert httpx.get(f'{third.url}{uri}').status_code == 200


def test_every_process_answers_the_cached_listing_from_memory(
    storage, servers, redis_server
):
    """A restarted process, and each of two workers, before an upload or after:
    once each has rendered the listing, repeats ask Redis nothing."""
    cache = redis.Redis.from_url(redis_server.url)

    def redis_lookups(url, requests):
        """The MGETs Redis got while ``requests`` listings, each on a new
        connection (so that either worker may answer it), were answered."""
        before = cache.info('commandstats').get('cmdstat_mget', {}).get('calls', 0)
        seen = [httpx.get(f'{url}/images').json() for _ in range(requests)]
        assert all(listed == seen[0] for listed in seen)
        after = cache.info('commandstats')['cmdstat_mget']['calls']
        return after - before, seen[0]

    first = servers(storage, redis_server.url)
    uploaded = httpx.post(f'{first.url}/images', content=draw_image()).json()
    assert redis_lookups(first.url, 10)[0] <= 1
    first.stop()
    restarted = servers(storage, redis_server.url)
    assert redis_lookups(restarted.url, 10)[0] <= 1  # its first listing
    assert redis_lookups(restarted.url, 20)[0] == 0
    restarted.stop()

    pool_of_two = servers(storage, redis_server.url, '--workers', '2')
    # At most one render per worker, whichever answers: never one per request.
    lookups, listed = redis_lookups(pool_of_two.url, 30)
    assert lookups <= 2
    assert [item['id'] for item in listed] == [uploaded['id']]
    httpx.post(f'{pool_of_two.url}/images', content=draw_image())
    lookups, listed = redis_lookups(pool_of_two.url, 30)
    assert lookups <= 2
    assert len(listed) == 2


def big_upload():
    """A noisy picture that takes a while to decode and encode."""
    image = PIL.Image.effect_noise((2400, 2400), 64).convert('RGB')
    output = io.BytesIO()
    image.save(output, 'PNG')
    return output.getvalue()


def post_raw(port, body, send_all):
    """POST by hand, so that the body can stop halfway; the server may die."""
    with socket.create_connection(('127.0.0.1', port), timeout=30) as sock:
        try:
            sock.sendall(
                b'POST /images HTTP/1.1\r\nHost: test\r\n'
                + f'Content-Length: {len(body)}\r\n\r\n'.encode()
            )
            sock.sendall(body if send_all else body[: len(body) // 2])
            sock.recv(1)
        except OSError:
            pass  # killed under us: that is the point


@pytest.mark.parametrize('delay', [None, 0.05, 0.2, 0.4])
def test_kill_9_mid_upload_leaves_all_or_nothing(storage, servers, redis_server, delay):
    server = servers(storage, redis_server.url)
    kept = httpx.post(f'{server.url}/images', content=draw_image((200, 200))).json()
    before = listing(server.url)

    body = big_upload()
    sender = threading.Thread(
        target=post_raw, args=(server.port, body, delay is not None), daemon=True
    )
    sender.start()
    time.sleep(0.3 if delay is None else delay)
    server.process.kill()
    server.process.wait()
    sender.join(30)

    restarted = servers(storage, redis_server.url)
    after = listing(restarted.url)
    assert after[: len(before)] == before
    assert len(after) in (len(before), len(before) + 1)
    for document in after:
        image = httpx.get(f'{restarted.url}{document["image"]}')
        assert decode(image.content).size == tuple(document['size'])
    assert kept['id'] in [item['id'] for item in after]
    # Whatever the crash left in the directory, nothing half-written is listed
    # and the next upload works.
    resp = httpx.post(f'{restarted.url}/images', content=draw_image((100, 100)))
    assert resp.status_code == 201
    assert len(listing(restarted.url)) == len(after) + 1
