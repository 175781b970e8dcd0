"""A storage volume that fills up: a real full disk, and the figures that tell it.

The end-to-end test gives a real uvicorn process a small tmpfs of its own as
its storage directory, in a private mount namespace (``unshare --mount``; as a
user that is not root, in a user namespace of its own too), so that nothing
is mounted where the rest of the machine sees it, and the mount goes away
with the process. The test reads the tmpfs through ``/proc/PID/root``, which
shows the process's own mounts. It uploads until ``507``, watching
``/healthz`` go from ``ok`` to ``degraded`` to ``503`` and ``/metrics`` count
the refusal, and then checks that no file was left half-written.

The unit tests of :mod:`asgilook.storage.space` fake ``statvfs``; ``/healthz``'s
branches are in ``tests/test_health.py`` and the metrics' in
``tests/test_metrics.py``.
"""

import io
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys

import httpx
import PIL.Image
import pytest
import redis

from asgilook.commands.processes import free_port
from asgilook.storage import space
from tests.servers import stop
from tests.servers import wait_for_port
from tests.test_metrics import samples
from tests.test_metrics import value

#: The tmpfs: room for about a dozen of the pictures below.
DISK_BYTES = 6 * 2**20
#: The largest upload allowed: the pictures below are under it, and what it
#: needs (2.5 MiB) is well above the floor (1 MiB), so that the volume is
#: degraded for a while before it is full.
MAX_UPLOAD = 2**20
#: Noise, which JPEG cannot shrink: about 430 kB each, 520 kB with thumbnails.
PICTURE = (800, 600)


def _namespace():
    """The command that runs a program in a private mount namespace, or None."""
    if shutil.which('unshare') is None:
        return None
    if os.geteuid() == 0:
        command = ['unshare', '--mount', '--propagation', 'private']
    else:
        command = ['unshare', '--user', '--map-root-user', '--mount']
    tried = subprocess.run([*command, 'true'], capture_output=True)
    return command if tried.returncode == 0 else None


class SmallDisk:
    """uvicorn serving the app, its storage directory a tmpfs of ``size`` bytes."""

    def __init__(self, directory, size, redis_url, env):
        command = _namespace()
        if command is None:
            pytest.skip('no private mount namespace here (unshare --mount)')
        directory.mkdir()
        self.directory = directory
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        environment = dict(os.environ)
        environment.update(env)
        environment['ASGI_LOOK_STORAGE_PATH'] = str(directory)
        environment['ASGI_LOOK_REDIS_URL'] = redis_url
        # NOTE: sh mounts, then becomes uvicorn: the process's id is uvicorn's.
        self.process = subprocess.Popen(
            [
                *command, 'sh', '-c',
                'mount -t tmpfs -o size="$1" asgilook-test "$2" && shift 2 '
                '&& exec "$@"',
                'sh', str(size), str(directory),
                sys.executable, '-m', 'uvicorn', 'asgilook.asgi:app',
                '--host', '127.0.0.1', '--port', str(self.port),
            ],
            env=environment,
        )  # fmt: skip
        wait_for_port(self.port, self.process)

    @property
    def root(self):
        """The storage directory as the process sees it: the tmpfs."""
        return pathlib.Path(f'/proc/{self.process.pid}/root') / str(
            self.directory
        ).lstrip('/')

    def files(self):
        """Every file in the tmpfs, by its path there."""
        return sorted(
            str(path.relative_to(self.root))
            for path in self.root.rglob('*')
            if path.is_file()
        )

    def stop(self):
        return stop(self.process)


def noise(seed):
    """A JPEG of random pixels, about 430 kB."""
    pixels = random.Random(seed).randbytes(PICTURE[0] * PICTURE[1] * 3)
    out = io.BytesIO()
    PIL.Image.frombytes('RGB', PICTURE, pixels).save(out, 'JPEG', quality=90)
    return out.getvalue()


def fill(http):
    """Upload until 507; the documents stored, each upload's health, the 507."""
    documents, healths = [], []
    for seed in range(100):
        resp = http.post('/images', content=noise(seed))
        health = http.get('/healthz')
        healths.append((health.status_code, health.json()))
        if resp.status_code == 507:
            return documents, healths, resp
        assert resp.status_code == 201, resp.text
        documents.append(resp.json())
    raise AssertionError(f'never full: {healths[-1]}')


def check_nothing_half_written(disk, documents):
    """Every file is an object of a listed picture, or the index's."""
    files = disk.files()
    assert not [name for name in files if name.rsplit('/', 1)[-1].startswith('.')]
    ids = {document['id'] for document in documents}
    originals = [name for name in files if name.startswith('images/')]
    assert sorted(name.split('/')[1].split('.')[0] for name in originals) == sorted(ids)
    versions = {name.split('/')[1].removesuffix('.jpeg') for name in originals}
    thumbnails = [name for name in files if name.startswith('thumbnails/')]
    assert {name.split('/')[1] for name in thumbnails} == versions
    assert len(thumbnails) == sum(len(document['thumbnails']) for document in documents)
    others = set(files) - set(originals) - set(thumbnails)
    index = {'index.sqlite3', 'index.sqlite3-wal', 'index.sqlite3-shm'}
    assert others <= {*index, 'index.sqlite3.lock'}


@pytest.mark.e2e
def test_a_full_disk_is_told_refused_and_counted_and_leaves_nothing_behind(
    tmp_path, redis_server
):
    redis.Redis.from_url(redis_server.url).flushall()
    disk = SmallDisk(
        tmp_path / 'storage',
        DISK_BYTES,
        redis_server.url,
        {'ASGI_LOOK_MAX_UPLOAD_BYTES': str(MAX_UPLOAD)},
    )
    try:
        with httpx.Client(base_url=disk.url, timeout=60) as http:
            fresh = http.get('/healthz')
            assert (fresh.status_code, fresh.json()['status']) == (200, 'ok')
            assert fresh.json()['space']['total_bytes'] == DISK_BYTES
            assert fresh.json()['space']['needed_bytes'] == MAX_UPLOAD * space.FACTOR

            documents, healths, refused = fill(http)

            assert refused.headers['Content-Type'].startswith('application/json')
            assert refused.json() == {
                'title': 'Storage Full',
                'description': 'The image store is out of space; try again later.',
            }
            # ok while there was room, degraded when the largest upload would
            # not fit, 503 below the floor (where this noise still fitted once
            # or twice, and then did not).
            seen = [
                (status, report['status'], report['space']['ok'])
                for status, report in healths
            ]
            assert seen[0] == (200, 'ok', True)
            assert (200, 'degraded', False) in seen
            assert seen[-1] == (503, 'degraded', False)
            first_degraded = seen.index((200, 'degraded', False))
            assert set(seen[:first_degraded]) == {(200, 'ok', True)}
            full = healths[-1][1]
            assert not full['storage']['ok']
            assert 'too little for a photo' in full['storage']['detail']
            assert full['space']['free_bytes'] < space.FLOOR
            # What is stored is still served.
            assert http.get(documents[-1]['image']).status_code == 200

            found = samples(http.get('/metrics').text)
            assert (
                value(found, 'asgilook_uploads_refused_total', reason='Storage Full')
                == 1
            )
            assert value(found, 'asgilook_images_stored_total') == len(documents)
            assert value(found, 'asgilook_storage_total_bytes') == DISK_BYTES
            free = os.statvfs(disk.root)
            assert value(found, 'asgilook_storage_free_bytes') == pytest.approx(
                free.f_bavail * free.f_frsize, abs=64 * 1024
            )

            check_nothing_half_written(disk, documents)

            # Room again: the pictures deleted, their files are gone.
            for document in documents:
                token = document['delete_token']
                resp = http.delete(
                    document['image'], headers={'Authorization': f'Bearer {token}'}
                )
                assert resp.status_code == 204
            again = http.get('/healthz')
            assert (again.status_code, again.json()['status']) == (200, 'ok')
            check_nothing_half_written(disk, [])
    finally:
        assert disk.stop() in (0, -signal.SIGTERM)
    # The tmpfs went with the process: nothing was mounted out here.
    assert list(disk.directory.iterdir()) == []


@pytest.mark.parametrize(
    ('count', 'text'),
    [
        (512, '512 bytes'),
        (392 * 1000, '392 kB'),
        (12_600_000, '12.6 MB'),
        (5 * 10**12, '5e+03 GB'),
    ],
)
def test_sizes_are_said_for_people(count, text):
    assert space._size(count) == text


def test_what_an_upload_needs_is_the_factor_of_its_size():
    assert space.needed(2**20) == 2**20 * space.FACTOR
    assert space.FLOOR == 2**20
