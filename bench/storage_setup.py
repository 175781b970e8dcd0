"""The storage benchmark's processes and photo: three deployments, one SeaweedFS.

A ``Deployments`` starts, on loopback, stopped when the run ends:

* one SeaweedFS (``weed server -s3``, tests/seaweed.py) for both S3
  deployments, each under a prefix of its own in the bucket;
* per deployment, a ``redis-server`` of its own and a uvicorn (one worker)
  serving ``asgilook.asgi:app`` with an empty storage directory of its own
  (the SQLite index; the pictures too, for the local one).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import os
import pathlib
import secrets
import tempfile
from collections.abc import Sequence

import httpx
import psutil
import redis

from asgilook.commands.processes import RedisServer
from bench.common import HTTP_TIMEOUT
from bench.common import Uvicorn
from bench.common import progress
from bench.serving_setup import STARTUP_TIMEOUT
from bench.serving_setup import UVICORN_FLAGS
from bench.serving_setup import Target
from tests.seaweed import SeaweedServer

LOCAL = 'local'
S3 = 's3'
SEALED = 's3_encrypted'
#: The deployments, in the order they take turns and the table's columns.
NAMES = (LOCAL, S3, SEALED)
TITLES = {LOCAL: 'local', S3: 'S3', SEALED: 'S3 encrypted'}

#: A photo of fewer megapixels than this is upscaled to the size below.
MIN_MEGAPIXELS = 18.0
UPSCALED = (5472, 3648)
#: SeaweedFS volumes the benchmark may fill, 64 MB each (tests/seaweed.py
#: allows 8: too few for a few hundred 4 MB objects).
WEED_VOLUMES = 64


@dataclasses.dataclass
class Photo:
    """The photo uploaded: its name, bytes and size, and how it was made."""

    name: str
    data: bytes
    width: int
    height: int
    note: str

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def find_photo(folder: pathlib.Path) -> Photo | None:
    """The largest photo in ``folder`` (by pixels), upscaled if under ~20 MP.

    None, and a message, when there is no folder or no JPEG in it.
    """
    from PIL import Image

    found = sorted(folder.glob('*.jpg')) if folder.is_dir() else []
    if not found:
        where = 'no JPEG in' if folder.is_dir() else 'no photos folder at'
        print(f'Nothing measured: {where} {folder}; name another with --photos DIR.')
        return None
    sizes = {}
    for path in found:
        with Image.open(path) as image:
            sizes[path] = image.size
    path = max(found, key=lambda item: sizes[item][0] * sizes[item][1])
    width, height = sizes[path]
    data = path.read_bytes()
    if width * height / 1e6 >= MIN_MEGAPIXELS:
        note = f'{path.name}, the largest photo in {folder}'
        return Photo(path.name, data, width, height, note)
    with Image.open(io.BytesIO(data)) as image:
        bigger = image.convert('RGB').resize(UPSCALED, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    bigger.save(out, 'JPEG', quality=90)
    note = (
        f'{path.name} ({width}x{height}), the largest photo in {folder}, upscaled '
        f'with Pillow to {UPSCALED[0]}x{UPSCALED[1]}, as none is about 20 MP'
    )
    return Photo(f'{path.stem}-upscaled.jpg', out.getvalue(), *UPSCALED, note)


#: ASGI_LOOK_MEMORY_CACHE of every deployment: it keeps bodies of up to 2 MiB.
MEMORY_CACHE = 16 * 1024 * 1024


class BenchSeaweed(SeaweedServer):
    """tests/seaweed.py's server, allowed more volumes."""

    def _arguments(self) -> list[str]:
        return [
            f'-volume.max={WEED_VOLUMES}' if arg.startswith('-volume.max=') else arg
            for arg in super()._arguments()
        ]


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without asgilook, bench, coverage or AWS settings."""
    dropped = ('ASGI_LOOK_', 'BENCH_', 'COVERAGE_', 'PROMETHEUS_', 'AWS_')
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(dropped)
    }
    env.update(extra)
    return env


@dataclasses.dataclass
class Deployment:
    """One deployment under test, and the processes whose CPU time is counted."""

    target: Target
    processes: dict[str, psutil.Process]

    @property
    def name(self) -> str:
        return self.target.name

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far (user and system, every thread), by process."""
        used = {}
        for role, process in self.processes.items():
            times = process.cpu_times()
            used[role] = times.user + times.system
        return used


class Deployments:
    """Every process of one run, each stopped when ``stack`` closes."""

    def __init__(self, stack: contextlib.ExitStack, tmp: pathlib.Path) -> None:
        self._stack = stack
        self._tmp = tmp
        self.servers: list[Uvicorn] = []
        self.key = base64.b64encode(secrets.token_bytes(32)).decode()
        progress('Starting SeaweedFS (weed server -s3) ...')
        weed_dir = tmp / 'seaweed'
        self.weed = stack.enter_context(BenchSeaweed(directory=weed_dir))
        assert self.weed.process is not None
        self.weed_process = psutil.Process(self.weed.process.pid)
        progress(f'  weed: {self.weed.endpoint} (pid {self.weed.process.pid})')

    def start(self, names: Sequence[str] = NAMES) -> dict[str, Deployment]:
        """A deployment of each name, started in turn."""
        return {name: self._deploy(name) for name in names}

    def _deploy(self, name: str) -> Deployment:
        storage = tempfile.mkdtemp(prefix=f'{name}-storage-', dir=self._tmp)
        redis_server = self._stack.enter_context(RedisServer())
        settings = {
            'ASGI_LOOK_STORAGE_PATH': storage,
            'ASGI_LOOK_REDIS_URL': redis_server.url,
            # NOTE: The process's memory keeps a body of up to an eighth of
            #   it (8 MB by default, the photo too): here 2 MB, so that the
            #   original is read from the store for every request, as one
            #   bigger than the memory keeps is.
            'ASGI_LOOK_MEMORY_CACHE': str(MEMORY_CACHE),
        }
        if name != LOCAL:
            settings['ASGI_LOOK_STORAGE_URL'] = f'{self.weed.url}/{name}'
            settings.update(self.weed.environ)
        if name == SEALED:
            settings['ASGI_LOOK_ENCRYPTION_KEY'] = self.key
        server = Uvicorn(
            name,
            'asgilook.asgi:app',
            UVICORN_FLAGS,
            environment(**settings),
            self._tmp / f'{name}.log',
            startup_timeout=STARTUP_TIMEOUT,
        )
        self.servers.append(server)
        self._stack.enter_context(server)
        client = httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT)
        target = Target(name, server, self._stack.enter_context(client))
        target.redis = redis.Redis.from_url(redis_server.url)
        self._stack.callback(target.redis.close)
        progress(f'  {name}: {server.url} (pid {server.pid})')
        processes = {'uvicorn': psutil.Process(server.pid)}
        if name != LOCAL:
            processes['weed'] = self.weed_process
        return Deployment(target, processes)

    def logs(self) -> str:
        """The end of every server's log, for an error message."""
        parts = [
            f'\n--- end of the {server.name} log ---\n{tail}'
            for server in self.servers
            if (tail := server.log_tail())
        ]
        with contextlib.suppress(OSError):
            weed = self.weed.log_path.read_text(errors='replace').strip()
            parts.append(f'\n--- end of the weed log ---\n{weed[-2000:]}')
        return ''.join(parts)
