"""Upload keys on real processes: keys made by ``asgilook keys add``, a rate
held across ``uvicorn --workers 2`` through a real redis-server, and a
private picture's signed links through the server's own absolute URLs."""

import os
import subprocess
import sys

import httpx
import pytest

from tests.helpers import draw_image
from tests.servers import Uvicorn

pytestmark = pytest.mark.e2e


def keys_add(storage, *args):
    """``asgilook keys add ...`` as a process: the key it printed last."""
    done = subprocess.run(
        [sys.executable, '-m', 'asgilook', 'keys', 'add', *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, 'ASGI_LOOK_STORAGE_PATH': str(storage)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key not in (storage / 'index.sqlite3').read_bytes().decode('latin-1')
    return key


def test_a_rate_of_five_a_minute_holds_across_two_workers(tmp_path, redis_server):
    storage = tmp_path / 'storage'
    storage.mkdir()
    # NOTE: Made before the service starts, as an operator would.
    key = keys_add(storage, 'camera', '--rate', '5')
    server = Uvicorn(
        storage,
        f'{redis_server.url}/5',
        '--workers',
        '2',
        env={'ASGI_LOOK_UPLOADS': 'keys'},
    )
    try:
        picture = draw_image((120, 90))
        statuses = []
        for _ in range(10):
            # NOTE: A connection each, so that both workers take some.
            with httpx.Client(base_url=server.url, timeout=30) as client:
                answer = client.post(
                    '/images',
                    content=picture,
                    headers={'Authorization': f'Bearer {key}'},
                )
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    assert int(answer.headers['Retry-After']) >= 1
        with httpx.Client(base_url=server.url, timeout=30) as client:
            anonymous = client.post('/images', content=picture)
            listed = client.get('/images').json()
    finally:
        server.stop()
    assert sorted(statuses) == [201] * 5 + [429] * 5
    assert anonymous.status_code == 401
    assert anonymous.headers['WWW-Authenticate'] == 'Bearer'
    assert len(listed) == 5


def test_a_private_picture_through_a_real_server(tmp_path, redis_server):
    storage = tmp_path / 'storage'
    storage.mkdir()
    key = keys_add(storage, 'phone')
    server = Uvicorn(storage, f'{redis_server.url}/6')
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            auth = {'Authorization': f'Bearer {key}'}
            made = client.post(
                '/images',
                content=draw_image((640, 480)),
                params={'visibility': 'private', 'name': 'Dinner.png'},
                headers=auth,
            ).json()
            signed = client.get(made['image'])
            unsigned = client.get(made['image'].partition('?')[0])
            page = client.get(made['page'], headers={'Accept': 'text/html'})
            # Twice: a private answer is never kept, nor replayed unsigned.
            again = client.get(made['thumbnails'][0].partition('?')[0])
            own = client.get('/images', headers=auth).json()
            public = client.get('/images').json()
    finally:
        server.stop()
    assert signed.status_code == 200
    assert signed.headers['Cache-Control'].startswith('private, max-age=')
    assert signed.headers['X-ASGILook-Cache'] != 'Hit'
    assert unsigned.status_code == 404
    assert again.status_code == 404
    assert page.status_code == 200
    assert 'Dinner.png' in page.text
    assert 'signature=' in page.text
    assert [document['id'] for document in own] == [made['id']]
    assert public == []
