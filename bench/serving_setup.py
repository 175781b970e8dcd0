"""The serving benchmark's processes and what it needs before it starts.

Every app runs as a real process on loopback, stopped when the run ends: a
``Lab`` starts asgilook and Falcon's tutorial app, each with a fresh storage
directory and a ``redis-server`` of its own, asgilook again on the storage and
Redis of the first (a restart), the ceiling of ``bench/bare.py``, and Debian's
nginx, unprivileged, serving files with ``sendfile``. Before that: the
photos, ``wrk``, and the tutorial's source, downloaded once from PyPI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence

import httpx
import redis

from asgilook.commands.processes import RedisServer
from asgilook.commands.processes import free_port
from bench.common import BENCH
from bench.common import HTTP_TIMEOUT
from bench.common import UVICORN_FLAGS as COMMON_FLAGS
from bench.common import BenchError
from bench.common import Server
from bench.common import Uvicorn
from bench.common import progress

UPLOAD_PHOTO = 'kleiber.jpg'
ORIGINAL_PHOTO = 'seeding.jpg'
CHECK_PHOTOS = ('sunset.jpg', 'dragonfly.jpg')

# NOTE: One worker for every app: the tutorial keeps its index in the
#   worker's memory, so a second worker would not know the first one's images.
UVICORN_FLAGS = ('--workers', '1', *COMMON_FLAGS)
STARTUP_TIMEOUT = 30.0
#: Debian's nginx, the ceiling for a file sent as it is stored.
NGINX = pathlib.Path('/usr/sbin/nginx')


@dataclasses.dataclass
class Target:
    """An app under test: its server, an HTTP client, and its Redis if any."""

    name: str
    server: Server
    client: httpx.Client
    redis: redis.Redis | None = None
    #: asgilook's: where its storage is, and its Redis; what a restart reuses.
    storage: str = ''
    redis_url: str = ''

    def flush(self) -> None:
        assert self.redis is not None, f'{self.name} has no Redis'
        self.redis.flushall()

    def used_memory(self) -> int:
        assert self.redis is not None, f'{self.name} has no Redis'
        return int(self.redis.info('memory')['used_memory'])


def _environment(
    pythonpath: Sequence[pathlib.Path] = (), **extra: str
) -> dict[str, str]:
    """This process's environment without any asgilook or bench settings.

    NOTE: Not bench/index_setup.py's ``environment``, which replaces
    ``PYTHONPATH`` and drops coverage and Prometheus settings too: here
    ``pythonpath`` goes before the inherited one.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(('ASGI_LOOK_', 'BENCH_'))
    }
    if pythonpath:
        inherited = [env['PYTHONPATH']] if env.get('PYTHONPATH') else []
        env['PYTHONPATH'] = os.pathsep.join([*map(str, pythonpath), *inherited])
    env.update(extra)
    return env


class Lab:
    """Every process of one run, each stopped when ``stack`` closes.

    Each app gets a fresh storage directory under ``tmp`` and, but for the
    ceilings, a ``redis-server`` of its own, so that no two share any state;
    only a restart (:meth:`restart`) shares another's.
    """

    def __init__(self, stack: contextlib.ExitStack, tmp: pathlib.Path) -> None:
        self._stack = stack
        self._tmp = tmp
        self.servers: list[Server] = []

    def asgilook(self, name: str) -> Target:
        """asgilook, ``asgilook.asgi:app``."""
        redis_server = self._stack.enter_context(RedisServer())
        return self._asgilook(name, self._storage(name), redis_server.url)

    def restart(self, target: Target, name: str) -> Target:
        """Another asgilook on ``target``'s storage and Redis, started now.

        What a restart is, with ``target`` still up: a process that has
        uploaded nothing and has read nothing yet.
        """
        return self._asgilook(name, target.storage, target.redis_url)

    def _asgilook(self, name: str, storage: str, redis_url: str) -> Target:
        env = _environment(
            ASGI_LOOK_STORAGE_PATH=storage, ASGI_LOOK_REDIS_URL=redis_url
        )
        target = self._launch(name, 'asgilook.asgi:app', env, redis_url=redis_url)
        target.storage, target.redis_url = storage, redis_url
        return target

    def tutorial(self, source: pathlib.Path) -> Target:
        """Falcon's tutorial app, importable from ``source``, via bench/tutorial.py."""
        redis_server = self._stack.enter_context(RedisServer())
        env = _environment(
            [BENCH, source],
            ASGI_LOOK_STORAGE_PATH=self._storage('tutorial'),
            BENCH_REDIS_URL=redis_server.url,
        )
        return self._launch(
            'tutorial', 'tutorial:make', env, ['--factory'], redis_server.url
        )

    def bare(self, answers: dict[str, tuple[list[tuple[str, str]], bytes]]) -> Target:
        """The bare ASGI app of bench/bare.py, giving each path's headers and body."""
        folder = pathlib.Path(tempfile.mkdtemp(prefix='bare-', dir=self._tmp))
        manifest = {}
        for number, (path, (headers, body)) in enumerate(answers.items()):
            body_path = folder / f'{number}.body'
            body_path.write_bytes(body)
            manifest[path] = {'body': str(body_path), 'headers': headers}
        (folder / 'manifest.json').write_text(json.dumps(manifest))
        env = _environment([BENCH], BENCH_BARE_MANIFEST=str(folder / 'manifest.json'))
        return self._launch('bare', 'bare:app', env)

    def nginx(self, files: dict[str, bytes]) -> Target:
        """Debian's nginx, serving each of ``files`` (bytes by path) as a file."""
        # NOTE: Not under the run's folder, which only its owner may enter:
        #   nginx started by root serves as nobody, who must read the files.
        prefix = pathlib.Path(tempfile.mkdtemp(prefix='asgilook-bench-nginx-'))
        self._stack.callback(shutil.rmtree, prefix, ignore_errors=True)
        prefix.chmod(0o755)
        root = prefix / 'root'
        for path, data in files.items():
            file = root / path.lstrip('/')
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)
        server = Nginx('nginx', prefix, root)
        return self._serve(server)

    def logs(self) -> str:
        """The end of every app's log, for an error message."""
        return ''.join(
            f'\n--- end of the {server.name} log ---\n{tail}'
            for server in self.servers
            if (tail := server.log_tail())
        )

    def _storage(self, name: str) -> str:
        return tempfile.mkdtemp(prefix=f'{name}-storage-', dir=self._tmp)

    def _launch(
        self,
        name: str,
        app: str,
        env: dict[str, str],
        extra: Sequence[str] = (),
        redis_url: str | None = None,
    ) -> Target:
        server = Uvicorn(
            name,
            app,
            UVICORN_FLAGS,
            env,
            self._tmp / f'{name}.log',
            extra,
            startup_timeout=STARTUP_TIMEOUT,
        )
        target = self._serve(server)
        if redis_url is not None:
            target.redis = redis.Redis.from_url(redis_url)
            self._stack.callback(target.redis.close)
        return target

    def _serve(self, server: Server) -> Target:
        self.servers.append(server)
        self._stack.enter_context(server)
        client = httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT)
        target = Target(server.name, server, self._stack.enter_context(client))
        progress(f'  {server.name}: {server.url} (pid {server.pid})')
        return target


class Nginx(Server):
    """Debian's nginx, unprivileged, serving the files under ``root``.

    One worker, as every app here has one uvicorn worker; ``sendfile`` on,
    no access log, keep-alive for as many requests as a client sends (as
    uvicorn's), and ``open_file_cache``: nginx as it is set up to serve
    static files, the ceiling for a file sent as it is stored. Everything
    it writes (the pid, logs, temporary files) goes under ``prefix``.
    """

    def __init__(self, name: str, prefix: pathlib.Path, root: pathlib.Path) -> None:
        port = free_port()
        config = prefix / 'nginx.conf'
        config.write_text(_nginx_config(prefix, root, port))
        args = [
            str(NGINX), '-p', str(prefix), '-c', str(config),
            '-e', str(prefix / 'error.log'),
        ]  # fmt: skip
        super().__init__(
            name,
            args,
            port,
            _environment(),
            # Its own log, where its output goes too.
            prefix / 'error.log',
            startup_timeout=STARTUP_TIMEOUT,
        )


def _nginx_config(prefix: pathlib.Path, root: pathlib.Path, port: int) -> str:
    temporary = '\n'.join(
        f'    {kind}_temp_path {prefix / kind};'
        for kind in ('client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi')
    )
    return f"""daemon off;
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{
    worker_connections 1024;
}}
http {{
{temporary}
    types {{
        image/jpeg jpeg jpg;
    }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    open_file_cache max=64 inactive=60s;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


# Setup: photos, wrk, the tutorial's source


def find_photos(folder: pathlib.Path) -> dict[str, bytes] | None:
    """The photos' bytes by file name; None (and a message) if any is missing."""
    names = (UPLOAD_PHOTO, ORIGINAL_PHOTO, *CHECK_PHOTOS)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        if folder.is_dir():
            print(f'Nothing measured: {", ".join(missing)} not found in {folder}.')
        else:
            print(f'Nothing measured: there is no photos folder at {folder}.')
        print(
            f'The photos ({", ".join(names)}) were looked for in {folder}; '
            'name another folder with --photos DIR.'
        )
        return None
    return {name: (folder / name).read_bytes() for name in names}


def ensure_wrk() -> str:
    """The path of ``wrk``, installed with apt-get if it is not on PATH."""
    found = shutil.which('wrk')
    if found:
        return found
    print('wrk is not on PATH: installing it with apt-get install -y wrk', flush=True)
    try:
        subprocess.run(['apt-get', 'install', '-y', 'wrk'], check=True)
    except (OSError, subprocess.CalledProcessError) as ex:
        raise BenchError(f'Could not install wrk with apt-get ({ex}).') from ex
    found = shutil.which('wrk')
    if not found:
        raise BenchError('apt-get install -y wrk succeeded, but wrk is not on PATH.')
    return found


def cache_dir() -> pathlib.Path:
    base = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
    return pathlib.Path(base) / 'asgilook-bench'


def tutorial_source(cache: pathlib.Path, version: str) -> pathlib.Path:
    """A folder holding the tutorial's package as ``asgilook_tutorial``.

    The package comes unchanged from ``examples/asgilook/asgilook`` of
    Falcon's source distribution of ``version``, downloaded with pip into
    ``cache`` unless it is there already.
    """
    source = cache / f'falcon-{version}-tutorial'
    if (source / 'asgilook_tutorial' / 'app.py').is_file():
        return source
    sdist = cache / f'falcon-{version}.tar.gz'
    if not sdist.is_file():
        progress(f'Downloading the source distribution of falcon {version} ...')
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                sys.executable, '-m', 'pip', 'download', '--quiet',
                '--no-binary', ':all:', '--no-deps', f'falcon=={version}',
                '--dest', str(cache),
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode != 0 or not sdist.is_file():
            raise BenchError(
                f'Could not download falcon=={version} from PyPI for the tutorial '
                f'app:\n{done.stderr.strip()}'
            )
    prefix = f'falcon-{version}/examples/asgilook/asgilook/'
    # NOTE: Unpacked next to its final place and renamed into it, so that an
    #   interrupted run never leaves half a package to be reused.
    unpacked = pathlib.Path(tempfile.mkdtemp(prefix='tutorial-', dir=cache))
    package = unpacked / 'asgilook_tutorial'
    package.mkdir()
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            relative = member.name.removeprefix(prefix)
            # Only the package's own modules, never a path out of the folder.
            if relative == member.name or not member.isfile() or '/' in relative:
                continue
            extracted = archive.extractfile(member)
            assert extracted is not None
            (package / relative).write_bytes(extracted.read())
    if not (package / 'app.py').is_file():
        shutil.rmtree(unpacked)
        raise BenchError(f'{sdist} has no {prefix}app.py')
    shutil.rmtree(source, ignore_errors=True)
    unpacked.rename(source)
    return source
