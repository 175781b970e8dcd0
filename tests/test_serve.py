"""`make run` and the private Redis it starts: real processes, real signals."""

import http.client
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
import redis

from asgilook.commands import processes
from asgilook.commands import serve
from asgilook.commands.defaults import default_storage
from asgilook.commands.processes import RedisServer
from asgilook.commands.processes import free_port
from asgilook.commands.processes import redacted
from asgilook.commands.processes import wait_until
from asgilook.commands.serve import serving_redis
from tests.helpers import draw_image
from tests.servers import port_open
from tests.servers import stop
from tests.servers import wait_for_port

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_gone(processes, timeout=15.0):
    gone, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


@pytest.fixture
def start_devserver(tmp_path):
    """Start ``python -m asgilook.commands.serve`` (or ``make run``) on a free port."""
    started = []

    def start(env_overrides=None, command=None):
        process, url = _start(tmp_path, env_overrides, command)
        started.append(process)
        return process, url

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def _start(tmp_path, env_overrides, command):
    port = free_port()
    env = dict(os.environ)
    env.pop('ASGI_LOOK_REDIS_URL', None)
    env['ASGI_LOOK_STORAGE_PATH'] = str(tmp_path / 'storage')
    env.update(env_overrides or {})
    command = command or [sys.executable, '-m', 'asgilook.commands.serve']
    process = subprocess.Popen(
        [*command, '--port', str(port)] if command[0] == sys.executable else
        [*command, f'PORT={port}'],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        # A process group of its own, as a shell gives a command: Ctrl-C is
        # a SIGINT to the whole group.
        start_new_session=True,
    )  # fmt: skip
    wait_for_port(port, process, timeout=60)
    return process, f'http://127.0.0.1:{port}'


def private_redis_port(process):
    for line in process.stdout:
        found = re.search(r'started a private Redis at redis://127.0.0.1:(\d+)', line)
        if found:
            return int(found.group(1))
    raise AssertionError('the devserver did not say which Redis it started')


def exercise(url):
    with httpx.Client(base_url=url, timeout=30) as client:
        document = client.post('/images', content=draw_image((256, 256))).json()
        thumbnail = document['thumbnails'][0]
        states = [client.get(thumbnail).headers['x-asgilook-cache'] for _ in range(2)]
    assert states == ['Miss', 'Hit']
    return thumbnail


def test_sigterm_stops_uvicorn_and_its_private_redis(start_devserver):
    process, url = start_devserver()
    redis_port = private_redis_port(process)
    assert port_open(redis_port)
    exercise(url)
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) == 2

    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert wait_gone(children) == []
    assert not port_open(redis_port)


def test_children_die_with_a_killed_devserver(start_devserver):
    process, url = start_devserver()
    redis_port = private_redis_port(process)
    children = psutil.Process(process.pid).children(recursive=True)

    process.kill()
    process.wait()
    assert wait_gone(children) == []
    assert not port_open(redis_port)


def test_an_existing_redis_is_used_instead(start_devserver, redis_server):
    process, url = start_devserver({'ASGI_LOOK_REDIS_URL': redis_server.url})
    thumbnail = exercise(url)
    assert [child.name() for child in psutil.Process(process.pid).children()] != []
    assert all(
        'redis-server' not in child.name()
        for child in psutil.Process(process.pid).children(recursive=True)
    )
    assert redis.Redis.from_url(redis_server.url).exists(f'asgilook:{thumbnail}')
    assert stop(process) == 0
    assert 'private Redis' not in process.stdout.read()


@pytest.mark.parametrize(
    'stop',
    [
        lambda process: process.send_signal(signal.SIGTERM),
        lambda process: os.killpg(process.pid, signal.SIGINT),
    ],
    ids=['sigterm-to-make', 'ctrl-c'],
)
def test_make_run_stops_everything(start_devserver, stop):
    process, url = start_devserver(command=['make', '--no-print-directory', 'run'])
    redis_port = private_redis_port(process)
    exercise(url)
    descendants = psutil.Process(process.pid).children(recursive=True)
    assert len(descendants) == 3  # devserver, uvicorn and redis-server

    stop(process)
    process.wait(30)
    assert wait_gone(descendants) == []
    assert not port_open(redis_port)


def answers_after_idling(url, seconds):
    """Whether one connection still answers after ``seconds`` of idling."""
    host, port = url.removeprefix('http://').split(':')
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request('GET', '/healthz')
        connection.getresponse().read()
        time.sleep(seconds)
        try:
            connection.request('GET', '/healthz')
            return connection.getresponse().status == 200
        except (http.client.RemoteDisconnected, ConnectionError):
            return False
    finally:
        connection.close()


def test_uvicorn_outlasts_the_proxys_idle_connections(start_devserver, redis_server):
    """uvicorn's own 5 s would race the 60 s of nginx's upstream keepalive."""
    _, url = start_devserver({'ASGI_LOOK_REDIS_URL': redis_server.url})
    assert answers_after_idling(url, 6)
    # An option given to serve overrides it: this one closes idle connections.
    _, url = start_devserver(
        {'ASGI_LOOK_REDIS_URL': redis_server.url},
        [sys.executable, '-m', 'asgilook.commands.serve', '--timeout-keep-alive', '1'],
    )
    assert not answers_after_idling(url, 3)


def test_serve_passes_its_keep_alive_before_the_callers_options(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(serve, '_serve', lambda args, env: ran.append(args) or 0)
    monkeypatch.setattr(serve, 'die_with_parent', lambda: None)
    status = serve.serve(
        storage=tmp_path,
        redis_url='redis://127.0.0.1:7',
        uvicorn_args=['--timeout-keep-alive', '9'],
    )
    assert status == 0
    (args,) = ran
    keep_alive = [i for i, arg in enumerate(args) if arg == '--timeout-keep-alive']
    assert [args[i + 1] for i in keep_alive] == [str(serve.KEEP_ALIVE), '9']
    assert serve.KEEP_ALIVE > 60


def test_redis_that_cannot_start_says_why():
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        server = RedisServer(port=busy.getsockname()[1])
        with pytest.raises(
            RuntimeError, match='(?s)did not start.*Address already in use'
        ):
            server.start()
    assert server.process is None
    server.stop()  # stopping twice is harmless


def test_wait_until_polls_until_ready():
    answers = iter([False, False, True])
    with subprocess.Popen(
        [sys.executable, '-c', 'import time; time.sleep(30)']
    ) as alive:
        assert wait_until(lambda: next(answers), alive, timeout=10)
        assert not wait_until(lambda: False, alive, timeout=0.2)
        alive.kill()


def test_stubborn_child_is_killed():
    ignores_sigterm = subprocess.Popen(
        [sys.executable, '-c',
         'import signal, sys, time\n'
         'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
         'print("ready", flush=True)\n'
         'time.sleep(60)'],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    with ignores_sigterm.stdout:
        assert ignores_sigterm.stdout.readline() == b'ready\n'
    started = time.monotonic()
    processes.terminate(ignores_sigterm, timeout=0.5)
    assert ignores_sigterm.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_the_private_redis_evicts_past_its_memory_limit(start_devserver):
    process, url = start_devserver({'ASGI_LOOK_REDIS_MAXMEMORY': '64mb'})
    client = redis.Redis(port=private_redis_port(process))
    try:
        assert client.config_get('maxmemory') == {'maxmemory': str(64 * 2**20)}
        assert client.config_get('maxmemory-policy') == {
            'maxmemory-policy': 'allkeys-lru'
        }
    finally:
        client.close()


def test_a_second_private_redis_for_one_storage_is_refused(start_devserver, tmp_path):
    first, url = start_devserver()
    first_redis = private_redis_port(first)
    env = dict(os.environ)
    env.pop('ASGI_LOOK_REDIS_URL', None)
    env['ASGI_LOOK_STORAGE_PATH'] = str(tmp_path / 'storage')

    second = subprocess.run(
        [sys.executable, '-m', 'asgilook.commands.serve', '--port', str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert f'redis://127.0.0.1:{first_redis}' in second.stderr
    assert 'ASGI_LOOK_REDIS_URL=' in second.stderr
    # The first one goes on serving; once it is gone, the directory is free.
    exercise(url)
    assert stop(first) == 0
    again, again_url = start_devserver()
    exercise(again_url)


def test_the_default_storage_is_the_users_data_directory():
    home = {'HOME': '/home/ada'}
    assert default_storage(
        {**home, 'ASGI_LOOK_STORAGE_PATH': '/srv/asgilook'}
    ) == pathlib.Path('/srv/asgilook')
    assert default_storage({**home, 'XDG_DATA_HOME': '/data'}) == pathlib.Path(
        '/data/asgilook'
    )
    # A relative XDG_DATA_HOME is invalid, and ignored.
    assert default_storage({**home, 'XDG_DATA_HOME': 'data'}) == pathlib.Path(
        '/home/ada/.local/share/asgilook'
    )
    assert default_storage({}) == pathlib.Path(
        os.path.expanduser('~'), '.local', 'share', 'asgilook'
    )


def test_a_redis_url_is_said_without_its_password():
    assert redacted('redis://:secret@cache:6379/0') == 'redis://:***@cache:6379/0'
    assert redacted('rediss://ada:secret@cache/1') == 'rediss://ada:***@cache/1'
    assert (
        redacted('unix:///run/redis.sock?db=1&password=secret')
        == 'unix:///run/redis.sock?db=1&password=***'
    )
    assert redacted('redis://127.0.0.1:6379') == 'redis://127.0.0.1:6379'


def test_the_redis_of_a_running_server_is_found_from_its_claim(tmp_path):
    claim = tmp_path / serve.CLAIM
    assert serving_redis(tmp_path) is None
    claim.write_text('')  # what a server leaves when it stops
    assert serving_redis(tmp_path) is None
    claim.write_text(
        f'asgilook serve (pid {os.getpid()}) with its Redis at redis://127.0.0.1:7'
    )
    assert serving_redis(tmp_path) == 'redis://127.0.0.1:7'
    # What a server that was killed leaves.
    gone = subprocess.Popen([sys.executable, '-c', 'pass'])
    gone.wait()
    claim.write_text(
        f'asgilook serve (pid {gone.pid}) with its Redis at redis://127.0.0.1:7'
    )
    assert serving_redis(tmp_path) is None


def test_the_workers_get_a_fresh_directory_for_their_metrics(tmp_path):
    env = {}
    with serve._metrics_directory(env):
        made = pathlib.Path(env['PROMETHEUS_MULTIPROC_DIR'])
        assert made.is_dir() and list(made.iterdir()) == []
    assert not made.exists()

    given = {'PROMETHEUS_MULTIPROC_DIR': str(tmp_path)}
    with serve._metrics_directory(given):
        assert given == {'PROMETHEUS_MULTIPROC_DIR': str(tmp_path)}
    assert tmp_path.is_dir()
