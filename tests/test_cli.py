"""The ``asgilook`` command: ``serve`` and ``import``, as a user runs them."""

import http.server
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import types

import httpx
import psutil
import pytest
import redis

from asgilook.commands import cli
from asgilook.commands.importer import folders
from asgilook.commands.importer.manifest import Manifest
from asgilook.commands.importer.service import Service
from asgilook.commands.processes import free_port
from asgilook.errors import StorageFull
from asgilook.storage.store import Store
from tests.helpers import draw_image
from tests.servers import Uvicorn
from tests.servers import port_open
from tests.servers import stop
from tests.servers import wait_for_port

PICTURES = ('a.png', 'B.JPG', 'sub/c.gif', 'sub/deeper/d.webp')


def environment(tmp_path, **more):
    """The environment of a user with nothing set, homes in ``tmp_path``."""
    env = dict(os.environ)
    for name in ('ASGI_LOOK_REDIS_URL', 'ASGI_LOOK_STORAGE_PATH'):
        env.pop(name, None)
    env['XDG_DATA_HOME'] = str(tmp_path / 'data')
    env['XDG_STATE_HOME'] = str(tmp_path / 'state')
    env.update(more)
    return env


def asgilook(tmp_path, *args, env=None):
    """Run ``python -m asgilook`` to its end."""
    return subprocess.run(
        [sys.executable, '-m', 'asgilook', *args],
        env=env or environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def folder(tmp_path):
    """A folder of pictures in subfolders, a text file named fake.jpg and a README."""
    root = tmp_path / 'pictures'
    for name, format in zip(PICTURES, ('PNG', 'JPEG', 'GIF', 'WEBP'), strict=True):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(draw_image((160, 120), format=format))
    (root / 'fake.jpg').write_text('This is not a picture.\n')
    (root / 'README.txt').write_text('My holidays.\n')
    return root


def listed(url):
    images = httpx.get(f'{url}/images', timeout=30).json()
    return {image['id'] for image in images}


def manifest_ids(path):
    return {json.loads(line)['id'] for line in path.read_text().splitlines() if line}


# asgilook serve


@pytest.fixture
def serve(tmp_path):
    """Start ``asgilook serve`` on a free port; yields a function that does."""
    started = []

    def start(*args, env=None):
        port = free_port()
        stderr = open(tmp_path / f'serve-{port}.log', 'w+')
        process = subprocess.Popen(
            [sys.executable, '-m', 'asgilook', 'serve', '--port', str(port), *args],
            env=env or environment(tmp_path),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
        started.append((process, stderr))
        wait_for_port(port, process, timeout=60)
        return process, f'http://127.0.0.1:{port}', stderr

    yield start
    for process, stderr in started:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        stderr.close()


def upload(url):
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post('/images', content=draw_image((256, 256)))
    assert response.status_code == 201
    return response.json()


@pytest.mark.e2e
def test_serve_starts_a_private_redis_and_stops_everything(serve, tmp_path):
    storage = tmp_path / 'storage'
    process, url, _ = serve('--storage', str(storage))

    said = process.stdout.readline()
    found = re.search(r'started a private Redis at redis://127.0.0.1:(\d+)', said)
    assert found, said
    assert f'for the images in {storage}' in said
    redis_port = int(found.group(1))
    assert port_open(redis_port)
    document = upload(url)
    assert listed(url) == {document['id']}
    assert list((storage / 'images').iterdir()) != []
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) == 2  # uvicorn and redis-server

    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert psutil.wait_procs(children, timeout=15)[1] == []
    assert not port_open(redis_port)
    # The claim on the directory says nothing of a Redis that is gone.
    assert (storage / 'devserver.lock').read_text() == ''


@pytest.mark.e2e
def test_serve_uses_the_redis_it_is_given(serve, tmp_path, redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    process, url, stderr = serve(
        '--redis-url',
        redis_server.url,
        '--workers',
        '2',
        '--',
        '--log-level',
        'warning',
    )

    # The default storage: the user's data directory.
    storage = tmp_path / 'data' / 'asgilook'
    said = process.stdout.readline()
    assert said == (
        f'asgilook: serving the images in {storage}, indexed in the SQLite '
        f'file {storage / "index.sqlite3"}, cached in the Redis at '
        f'{redis_server.url}\n'
    )
    document = upload(url)
    thumbnail = document['thumbnails'][0]
    assert httpx.get(f'{url}{thumbnail}').status_code == 200
    assert redis.Redis.from_url(redis_server.url).exists(f'asgilook:{thumbnail}')
    assert (storage / 'index.sqlite3').exists()
    descendants = psutil.Process(process.pid).children(recursive=True)
    assert all('redis-server' not in child.name() for child in descendants)
    (uvicorn,) = psutil.Process(process.pid).children()
    assert len(uvicorn.children()) >= 2  # the workers

    assert stop(process) == 0
    assert psutil.wait_procs(descendants, timeout=15)[1] == []
    stderr.seek(0)
    # `--log-level warning` reached uvicorn: none of its start-up news.
    assert 'Uvicorn running on' not in stderr.read()


@pytest.mark.e2e
def test_serve_says_why_a_storage_directory_cannot_be_used(tmp_path):
    (tmp_path / 'a-file').write_text('')
    storage = tmp_path / 'a-file' / 'storage'

    done = asgilook(tmp_path, 'serve', '--storage', str(storage))

    assert done.returncode == 1
    assert done.stderr == (
        f'asgilook: cannot keep the images in {storage}: Not a directory\n'
    )


@pytest.mark.e2e
def test_serve_says_why_the_private_redis_did_not_start(tmp_path):
    env = environment(tmp_path, ASGI_LOOK_REDIS_MAXMEMORY='lots')

    done = asgilook(tmp_path, 'serve', '--port', str(free_port()), env=env)

    assert done.returncode == 1
    assert 'redis-server did not start' in done.stderr
    assert 'argument must be a memory value' in done.stderr
    assert 'Traceback' not in done.stderr


# asgilook import, to a running service


@pytest.mark.e2e
def test_import_uploads_every_picture_and_says_what_was_refused(
    tmp_path, folder, redis_server
):
    redis.Redis.from_url(redis_server.url).flushall()
    service = Uvicorn(tmp_path / 'storage', redis_server.url)
    try:
        first = asgilook(tmp_path, 'import', str(folder), '--url', service.url)
        pictures = listed(service.url)
        again = asgilook(tmp_path, 'import', str(folder), '--url', service.url)
        still = listed(service.url)
        (folder / 'fake.jpg').unlink()
        fixed = asgilook(tmp_path, 'import', str(folder), '--url', service.url)
    finally:
        service.stop()

    assert first.returncode == 1, first.stderr
    assert re.search(r'4 imported \(', first.stdout)
    assert re.search(r'1 not pictures \(skipped\)', first.stdout)
    assert re.search(r'1 refused', first.stdout)
    refusal = next(line for line in first.stdout.splitlines() if 'fake.jpg' in line)
    assert 'not an image in a format this service reads' in refusal
    assert 'Traceback' not in first.stderr
    manifest = tmp_path / 'state/asgilook/imports' / f'127.0.0.1_{service.port}.jsonl'
    assert manifest_ids(manifest) == pictures
    assert len(pictures) == 4
    # Only its owner may read it: it holds the delete tokens.
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600

    assert again.returncode == 1
    assert re.search(r'0 imported', again.stdout)
    assert re.search(r'4 already imported \(skipped\)', again.stdout)
    assert 'fake.jpg' in again.stdout
    assert still == pictures

    assert fixed.returncode == 0, fixed.stdout
    assert re.search(r'4 already imported', fixed.stdout)
    assert re.search(r'0 refused', fixed.stdout)


@pytest.mark.e2e
def test_import_to_a_service_that_cannot_be_reached(tmp_path, folder):
    url = f'http://127.0.0.1:{free_port()}'

    done = asgilook(tmp_path, 'import', str(folder), '--url', url)

    assert done.returncode == 3
    assert (
        f'asgilook import: cannot reach the service at {url} (Connection refused). '
        'Is it running?'
    ) in done.stderr
    assert 'Traceback' not in done.stderr


@pytest.mark.e2e
def test_import_to_something_that_is_not_the_service(tmp_path, folder, redis_server):
    service = Uvicorn(tmp_path / 'storage', redis_server.url)
    try:
        done = asgilook(tmp_path, 'import', str(folder), '--url', f'{service.url}/no')
    finally:
        service.stop()

    assert done.returncode == 3
    assert 'does not answer as an asgilook service' in done.stderr
    assert '"404 Not Found"' in done.stderr


@pytest.mark.e2e
def test_ctrl_c_interrupts_an_import(tmp_path, folder):
    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen()
        silent.settimeout(60)
        url = f'http://127.0.0.1:{silent.getsockname()[1]}'
        process = subprocess.Popen(
            [sys.executable, '-m', 'asgilook', 'import', str(folder), '--url', url],
            env=environment(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        connection, _ = silent.accept()
        with connection:
            # The request has come: the import waits for its answer.
            connection.recv(1024)
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130
    assert 'interrupted; run the same command again to go on' in stderr
    assert re.search(r'5 not tried', stdout)
    assert 'Traceback' not in stderr


# asgilook import, into a storage directory


@pytest.mark.e2e
def test_import_into_a_storage_directory(tmp_path, folder, redis_server):
    storage = tmp_path / 'storage'
    # NOTE: Another directory in the environment: --storage wins.
    env = environment(tmp_path, ASGI_LOOK_STORAGE_PATH=str(tmp_path / 'other'))

    done = asgilook(tmp_path, 'import', str(folder), '--storage', str(storage), env=env)

    assert done.returncode == 1
    refusal = next(line for line in done.stdout.splitlines() if 'fake.jpg' in line)
    assert 'not an image in a format this service reads' in refusal
    assert not (tmp_path / 'other').exists()
    redis.Redis.from_url(redis_server.url).flushall()
    service = Uvicorn(storage, redis_server.url)
    try:
        assert listed(service.url) == manifest_ids(storage / 'imported.jsonl')
        assert len(listed(service.url)) == 4
    finally:
        service.stop()


@pytest.mark.e2e
def test_import_into_the_storage_of_a_running_server_tells_its_cache(
    serve, tmp_path, folder
):
    storage = tmp_path / 'storage'
    process, url, _ = serve('--storage', str(storage))
    redis_port = int(
        re.search(r'redis://127.0.0.1:(\d+)', process.stdout.readline())[1]
    )
    before = upload(url)
    for cache in ('Miss', 'Hit'):
        assert httpx.get(f'{url}/images').headers['x-asgilook-cache'] == cache

    done = asgilook(tmp_path, 'import', str(folder), '--storage', str(storage))
    listing = httpx.get(f'{url}/images')
    again = asgilook(tmp_path, 'import', str(folder), '--storage', str(storage))

    assert done.returncode == 1
    assert f'cached in the Redis at redis://127.0.0.1:{redis_port}' in done.stderr
    # Not the listing cached before the import: it is stale.
    assert listing.headers['x-asgilook-cache'] == 'Miss'
    imported = manifest_ids(storage / 'imported.jsonl')
    assert {image['id'] for image in listing.json()} == imported | {before['id']}
    # Open galleries are sent the pictures, as for an upload.
    # The service's and the importer's: one deployment, one stream.
    (stream,) = redis.Redis(port=redis_port).keys('asgilook-events:*')
    events = redis.Redis(port=redis_port).xrange(stream)
    created = [json.loads(fields[b'data'])['id'] for _, fields in events]
    assert set(created) == imported | {before['id']}
    assert again.returncode == 1
    assert re.search(r'4 already imported', again.stdout)
    assert 'does not answer' not in again.stderr
    assert stop(process) == 0


def run(capsys, *args):
    """Run the command in this process; its status, stdout and stderr."""
    status = cli.main(['import', *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def quiet(monkeypatch, tmp_path):
    """A user's environment with nothing set, and homes in ``tmp_path``."""
    monkeypatch.delenv('ASGI_LOOK_REDIS_URL', raising=False)
    monkeypatch.delenv('ASGI_LOOK_STORAGE_PATH', raising=False)
    monkeypatch.setenv('XDG_STATE_HOME', str(tmp_path / 'state'))


def test_files_that_cannot_be_read_are_reported(capsys, tmp_path, quiet):
    folder = tmp_path / 'pictures'
    folder.mkdir()
    (folder / 'broken.jpg').symlink_to(tmp_path / 'nowhere')
    os.mkfifo(folder / 'pipe.png')
    single = tmp_path / 'single.png'
    single.write_bytes(draw_image((100, 100)))
    # The same picture twice is imported once.
    (folder / 'copy.PNG').write_bytes(single.read_bytes())

    status, out, err = run(capsys, folder, single, '--storage', tmp_path / 'storage')

    assert status == 1
    assert re.search(r'1 imported', out)
    assert re.search(r'1 already imported', out)
    assert re.search(r'2 could not be read', out)
    assert re.search(r'broken.jpg +│ It cannot be read: No such file or directory', out)
    assert re.search(r'pipe.png +│ It cannot be read: it is not a regular file', out)


def test_heic_and_avif_files_are_imported(capsys, tmp_path, quiet):
    # As phones name them: .HEIC (iPhone), .heif, .avif.
    folder = tmp_path / 'phone'
    folder.mkdir()
    names = {'IMG_0001.HEIC': 'HEIF', 'IMG_0002.heif': 'HEIF', 'c.avif': 'AVIF'}
    for index, (name, format) in enumerate(names.items()):
        size = (160 + 16 * index, 120)
        (folder / name).write_bytes(draw_image(size, format=format))

    status, out, err = run(capsys, folder, '--storage', tmp_path / 'storage')

    assert status == 0, out
    assert re.search(r'3 imported', out)
    assert {'.heic', '.heif', '.avif'} <= folders.PICTURES


def test_a_folder_that_cannot_be_read_is_reported(
    capsys, tmp_path, quiet, folder, monkeypatch
):
    scandir = os.scandir

    def refuse(path='.'):
        if os.fspath(path).endswith('deeper'):
            raise PermissionError(13, 'Permission denied', os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, 'scandir', refuse)
    status, out, err = run(capsys, folder, '--storage', tmp_path / 'storage')

    assert status == 1
    assert re.search(r'3 imported', out)
    assert re.search(r'deeper +│ The folder cannot be read: Permission denied', out)


def test_pictures_over_the_upload_limit_are_refused(
    capsys, tmp_path, quiet, folder, monkeypatch
):
    monkeypatch.setenv('ASGI_LOOK_MAX_UPLOAD_BYTES', '100')

    status, out, err = run(capsys, folder, '--storage', tmp_path / 'storage')

    assert status == 1
    assert re.search(r'5 refused', out)
    assert re.search(
        r'a.png +│ It is larger than the service accepts: at most 100', out
    )


def test_a_storage_directory_that_cannot_be_used(capsys, tmp_path, quiet, folder):
    (tmp_path / 'a-file').write_text('')
    storage = tmp_path / 'a-file' / 'storage'

    status, out, err = run(capsys, folder, '--storage', storage)
    assert status == 3
    assert err == (
        f'asgilook import: cannot use the manifest {storage}/imported.jsonl: '
        'Not a directory\n'
    )

    manifest = tmp_path / 'manifest.jsonl'
    status, out, err = run(capsys, folder, '--storage', storage, '--manifest', manifest)
    assert status == 3
    assert f'cannot store pictures in {storage}: Not a directory.' in err
    assert re.search(r'5 not tried', out)


def test_settings_that_cannot_be_used(capsys, tmp_path, quiet, folder, monkeypatch):
    monkeypatch.setenv('ASGI_LOOK_STORAGE_PATH', str(tmp_path / 'other'))
    monkeypatch.setenv('ASGI_LOOK_MAX_PIXELS', 'many')

    status, out, err = run(capsys, folder, '--storage', tmp_path / 'storage')

    assert status == 3
    assert "ASGI_LOOK_MAX_PIXELS must be a positive number, not 'many'" in err
    assert os.environ['ASGI_LOOK_STORAGE_PATH'] == str(tmp_path / 'other')


def test_the_environment_given_is_read_and_never_written(
    capsys, tmp_path, quiet, folder, monkeypatch
):
    """The settings of a storage directory come from the environment that
    ``cli.main`` is given, read-only here; ``os.environ`` is not touched."""
    monkeypatch.setenv('ASGI_LOOK_STORAGE_PATH', str(tmp_path / 'other'))
    monkeypatch.setenv('ASGI_LOOK_REDIS_URL', f'redis://127.0.0.1:{free_port()}')
    before = dict(os.environ)
    given = types.MappingProxyType(
        {
            'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'elsewhere'),
            'ASGI_LOOK_MAX_UPLOAD_BYTES': '100',
        }
    )

    def written(*args):
        raise AssertionError(f'os.environ was written: {args}')

    with monkeypatch.context() as patch:
        patch.setattr(type(os.environ), '__setitem__', written)
        patch.setattr(type(os.environ), '__delitem__', written)
        storage = tmp_path / 'storage'
        status = cli.main(['import', str(folder), '--storage', str(storage)], given)
    out, err = capsys.readouterr()

    assert status == 1
    # The limit of the environment given, and not os.environ's Redis.
    assert re.search(r'5 refused', out)
    assert f'into the storage directory {storage}\n' in err
    assert dict(os.environ) == before
    assert not (tmp_path / 'other').exists()
    assert not (tmp_path / 'elsewhere').exists()


def test_a_full_storage_stops_the_import(capsys, tmp_path, quiet, folder, monkeypatch):
    async def full(self, image_id, data, before_commit=None):
        raise StorageFull('The image store is out of space; try again later.')

    monkeypatch.setattr(Store, 'save', full)
    status, out, err = run(
        capsys, folder, '--storage', tmp_path / 'storage', '--jobs', 1
    )

    assert status == 3
    assert err.endswith(
        f'asgilook import: cannot store pictures in {tmp_path / "storage"}: '
        'The image store is out of space; try again later.\n'
    )
    assert re.search(r'5 not tried', out)


def test_a_redis_that_does_not_answer_is_said(capsys, tmp_path, quiet, monkeypatch):
    monkeypatch.setenv('ASGI_LOOK_REDIS_URL', f'redis://127.0.0.1:{free_port()}')
    picture = tmp_path / 'picture.png'
    picture.write_bytes(draw_image((100, 100)))

    status, out, err = run(capsys, picture, '--storage', tmp_path / 'storage')

    assert status == 0
    assert re.search(r'1 imported', out)
    assert 'does not answer: a service on this storage directory may list' in err


def test_a_manifest_cut_off_by_a_crash_is_read(capsys, tmp_path, quiet, folder):
    manifest = tmp_path / 'state/asgilook/imports/127.0.0.1_9.jsonl'
    first = json.dumps({'sha256': 'f' * 64, 'id': 'x'})
    manifest.parent.mkdir(parents=True)
    manifest.write_text(f'{first}\n[]\nnot json\n{{"sha256": "ab')

    status, out, err = run(capsys, folder, '--url', 'http://127.0.0.1:9/')

    assert status == 3
    # The next line will start on a line of its own.
    assert manifest.read_text().endswith('{"sha256": "ab\n')
    with Manifest.open(manifest) as reopened:
        assert reopened.digests == {'f' * 64}
    assert manifest.read_text().endswith('{"sha256": "ab\n')


class _Handler(http.server.BaseHTTPRequestHandler):
    """A stand-in for the service: lists nothing, and fails every upload."""

    def do_GET(self):
        self._answer(200, 'application/json', b'[]')

    def do_POST(self):
        self.rfile.read(int(self.headers['Content-Length']))
        if self.server.hang_up:
            return  # no answer: the connection is closed
        self._answer(502, 'text/html', b'<h1>Bad Gateway</h1>')

    def _answer(self, status, content_type, body):
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    def start(hang_up):
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
        server.hang_up = hang_up
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f'http://127.0.0.1:{server.server_address[1]}'

    servers = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_an_error_page_is_said_as_it_came(capsys, tmp_path, quiet, folder, stand_in):
    status, out, err = run(capsys, folder, '--url', stand_in(hang_up=False))

    assert status == 1
    assert re.search(r'5 refused', out)
    assert re.search(r'a.png +│ The service answered "502 Bad Gateway"', out)


def test_a_service_that_goes_away_stops_the_import(
    capsys, tmp_path, quiet, folder, stand_in
):
    url = stand_in(hang_up=True)

    status, out, err = run(capsys, folder, '--url', url, '--jobs', 1)

    assert status == 3
    assert f'asgilook import: lost the service at {url} (' in err
    assert re.search(r'5 not tried', out)


def test_a_service_that_does_not_answer(capsys, tmp_path, quiet, folder, monkeypatch):
    monkeypatch.setattr(Service, 'TIMEOUT', 0.2)
    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen()
        url = f'http://127.0.0.1:{silent.getsockname()[1]}'
        status, out, err = run(capsys, folder, '--url', url)

    assert status == 3
    assert f'cannot reach the service at {url} (it did not answer in time)' in err


# Arguments and help


@pytest.mark.parametrize(
    'args, message',
    [
        (['import'], 'the following arguments are required: DIR'),
        (['import', 'nowhere'], 'there is no nowhere'),
        (['import', '.', '--jobs', '0'], "'0' is not a whole number above 0"),
        (['import', '.', '--url', 'localhost:8000'], 'is not the URL of a service'),
        (['import', '.', '--url', 'http://h:99999'], 'is not the URL of a service'),
        (['import', '.', '--url', 'http://h', '--storage', 's'], 'not allowed with'),
        (['serve', '--workers', 'many'], "'many' is not a whole number"),
        ([], 'the following arguments are required: COMMAND'),
    ],
)
def test_usage_errors_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit:
        cli.main(args)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    'args, example',
    [
        (['--help'], 'asgilook import ~/Pictures'),
        (['serve', '--help'], 'asgilook serve --host 0.0.0.0 --port 8080 --workers 4'),
        (['import', '--help'], 'asgilook import ~/Pictures --storage'),
    ],
)
def test_help_has_examples(capsys, args, example):
    with pytest.raises(SystemExit) as exit:
        cli.main(args)
    assert exit.value.code == 0
    help = capsys.readouterr().out
    assert 'examples:' in help
    assert example in help


@pytest.mark.e2e
def test_python_dash_m_asgilook(tmp_path):
    done = asgilook(tmp_path, 'import', '--help')

    assert done.returncode == 0
    assert 'exit status:' in done.stdout
    assert '3    the service cannot be reached' in done.stdout
