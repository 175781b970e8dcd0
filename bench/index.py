"""Index benchmark: the SQLite and PostgreSQL indexes against the old journal.

Run: ``make bench-index`` (``make bench-index BENCH_ARGS=--quick`` to try it
out), or ``.venv/bin/python bench/index.py [--quick] [--images N] [--starts N]
[--depths N] [--duration SECONDS] [--rounds N] [--json PATH]``

The baseline is the previous release, commit dbe6b76, which kept the index
of every image in each worker's memory, loaded from ``journal.jsonl``. Each
figure is set against a baseline measured in the same run, on the same
synthetic images (uuid4 ids, versioned file names, 64-hex token hashes; no
picture files, which listings never read):

1. Building the indexes: a SQLite index of ``--images`` images (1,000,000;
   ``--quick``: 200,000) and one of 1,000, by bulk inserts in one transaction
   into the schema that ``SQLiteIndex`` creates; the same in PostgreSQL (a
   throwaway server from ``tests/postgres.py``, a fresh database each, COPY);
   and, for the baseline, the old ``journal.jsonl`` of the large set, written
   with the old module's own functions.
2. A new worker's first page: a fresh ``python -m uvicorn asgilook.asgi:app``
   (one worker, its own ``redis-server``), timed from the moment its port
   accepts: the first ``GET /images?limit=100``, then the first
   ``GET /images?order=newest``; large against 1,000 images, ``--starts``
   fresh workers each (medians). The baseline: the old ``Journal(root)
   .page(limit=100)`` in a new process (its module from ``git show
   dbe6b76:asgilook/journal.py``), which reads the whole journal; only the
   index, so less than a whole request.
3. Index memory per worker: the RSS of those workers after the first page,
   and after 200 pages at random depths; what the large index adds over the
   small one is the index's memory. The baseline: how much the old journal's
   process grew by loading the large journal.
4. Any page at any depth, uncached: in this process, ``SQLiteIndex.page(101,
   after=<an id at a random depth>)`` (``--depths`` of them; also newest
   first) against page 1 of the same index, median and p99; the same for
   ``PostgresIndex``. Through HTTP, the 200 pages of step 3, each
   ``GET /images?after=<a random id>`` (every one a cache Miss), large
   against 1,000 images.
5. Upload throughput of small pictures: 8 keep-alive clients (httpx, one
   event loop) POST a 64x64 noise PNG (about 4 KB) to ``/images``: the SQLite
   index and PostgreSQL, with 1 and 2 uvicorn workers, each against the
   previous release with as many workers (served from ``git archive
   dbe6b76``, with the same uvicorn flags; checked to be what the server
   imports, and what it wrote). The servers of one number of workers run
   side by side, each with fresh storage, Redis and database, and take
   turns: ``--duration`` seconds each (20; ``--quick``: 6) in ``--rounds``
   turns (10; ``--quick``: 4), each after an ``os.sync()``, every other round
   in the opposite order, so that drift hits all alike. Each turn opens its 8
   connections anew, and warms them up: which of several workers accepts
   which connection is chance (a burst may all go to one), and a keep-alive
   connection stays with its worker for good, so one draw for a whole run
   made two-worker figures differ by up to 1.8 times between runs. Also
   reported: the CPU time the server's processes (uvicorn and its workers,
   not Redis nor PostgreSQL) used per upload, and, in the notes, the mean
   difference of each server's turns from the journal's of the same round,
   with its standard error.
   The upload path has changed since that release beside the index (it also
   makes a placeholder now, for one): a ratio below 1 need not be the
   index's doing, which is what the next step tells.
5b. The index's writes alone: new processes (1, then 2 at once) each put 8
   new images at a time into a fresh index for half ``--duration``, without
   HTTP, pictures or files; ``SQLiteIndex.put`` and ``PostgresIndex.put``
   against the old ``Journal.put``, run in threads as the old store did.

PostgreSQL's figures need ``asgilook/index/postgres.py``, ``tests/postgres.py``
and Debian's PostgreSQL binaries; without them those rows are skipped, and
the report says why. The baselines need git and commit dbe6b76.

The machine has two cores, shared by the servers and this process. Absolute
figures drift from run to run; the ratios, measured in one run, are what
count. Nothing here is a timed assertion: the table's last column says
whether a figure meets its target (``~`` means within 1.5 times, or for the
first pages, medians of a few single requests, within 5 ms), and the exit
status is 0 whatever it says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import http.client
import importlib.util
import io
import json
import math
import operator
import os
import pathlib
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import httpx
import PIL.Image
import psutil

from asgilook.commands.processes import RedisServer
from asgilook.commands.processes import die_with_parent
from asgilook.commands.processes import free_port
from asgilook.commands.processes import terminate
from asgilook.commands.processes import wait_until
from asgilook.storage.index import Index
from asgilook.storage.index.sqlite import SQLiteIndex

ROOT = pathlib.Path(__file__).resolve().parent.parent
# NOTE: For tests/postgres.py, the throwaway PostgreSQL server, and
#   tests/servers.py.
sys.path.insert(0, str(ROOT))

from tests.servers import port_open  # noqa: E402

OLD_RELEASE = 'dbe6b76'
PAGE = 100
SMALL = 1_000
HTTP_PAGES = 200
CLIENTS = 8
WARM_UPLOADS = 2 * CLIENTS
#: Tries at spreading a turn's connections evenly over the workers.
SPREAD_ATTEMPTS = 50
SEED = 2024
# NOTE: The same for every server; --workers and --port are added per run.
UVICORN_FLAGS = (
    '--loop', 'uvloop',
    '--http', 'httptools',
    '--no-access-log',
    '--log-level', 'warning',
    '--host', '127.0.0.1',
)  # fmt: skip
STARTUP_TIMEOUT = 60.0
HTTP_TIMEOUT = 120.0
CACHE_HEADER = 'X-ASGILook-Cache'
# "~" in a target: within this factor; for the medians of a few first
# requests, or within this many milliseconds.
SAME = 1.5
SLACK = 5.0

DEFAULTS = {
    'images': 1_000_000,
    'starts': 3,
    'depths': 300,
    'duration': 20,
    'rounds': 10,
}
QUICK = {'images': 200_000, 'starts': 1, 'depths': 100, 'duration': 6, 'rounds': 4}

# One row of the index: seq, id, file, width, height, modified, token_hash.
Row = tuple[int, str, str, int, int, int, str]
COLUMNS = ('seq', 'id', 'file', 'width', 'height', 'modified', 'token_hash')

# NOTE: Run in a new process: the old journal, from its own module, loaded
#   whole by its first page, as a new worker of the previous release did.
JOURNAL_SCRIPT = """
import json, pathlib, sys, time
import psutil
sys.path.insert(0, sys.argv[1])
import old_journal
process = psutil.Process()
before = process.memory_info().rss
started = time.perf_counter()
journal = old_journal.Journal(pathlib.Path(sys.argv[2]))
page = journal.page(limit=100)
seconds = time.perf_counter() - started
after = process.memory_info().rss
print(json.dumps({'seconds': seconds, 'before': before, 'after': after,
                  'entries': len(page), 'count': journal.count()}))
"""

# NOTE: One process of the writes-alone comparison: PUT_TASKS puts at a
#   time, as the store makes them (the journal's in the default executor, as
#   the previous release did), from a moment agreed with the other processes
#   until SECONDS later; prints how many.
PUT_SCRIPT = """
import asyncio, secrets, sys, time, uuid
kind, where, start, seconds, tasks = sys.argv[1:6]
start, seconds, tasks = float(start), float(seconds), int(tasks)

async def main():
    loop = asyncio.get_running_loop()
    if kind == 'journal':
        import pathlib
        sys.path.insert(0, sys.argv[6])
        import old_journal
        journal = old_journal.Journal(pathlib.Path(where))
        async def put(*args):
            await loop.run_in_executor(None, journal.put, *args)
        close = None
    else:
        if kind == 'SQLite':
            from asgilook.storage.index.sqlite import SQLiteIndex as Kind
        else:
            from asgilook.storage.index.postgres import PostgresIndex as Kind
        index = Kind(where)
        await index.count()
        put, close = index.put, index.close
    await asyncio.sleep(max(0.0, start - time.time()))
    deadline = time.perf_counter() + seconds
    done = 0
    async def writer():
        nonlocal done
        while time.perf_counter() < deadline:
            image_id = str(uuid.uuid4())
            file = f'{image_id}.{secrets.token_hex(6)}.jpeg'
            await put(image_id, file, (64, 64), secrets.token_hex(32))
            done += 1
    await asyncio.gather(*(writer() for _ in range(tasks)))
    if close is not None:
        await close()
    print(done)

asyncio.run(main())
"""
PUT_TASKS = CLIENTS
# Seconds for the processes to start and get ready before they all begin.
PUT_HEAD_START = 1.5

# NOTE: Where the package and the app would be imported from, in a server's
#   environment and directory: without importing the app itself.
WHICH_SCRIPT = """
import importlib.util, json, pathlib
package = pathlib.Path(importlib.util.find_spec('asgilook').origin).parent
print(json.dumps({'package': str(package),
                  'app': importlib.util.find_spec('asgilook.asgi').origin,
                  'journal': (package / 'journal.py').is_file()}))
"""


class BenchError(Exception):
    """Something the benchmark needs did not work; the figures would be wrong."""


def _progress(message: str) -> None:
    # Progress goes to stderr, so that stdout holds only the report.
    print(message, file=sys.stderr, flush=True)


def _images(count: int) -> str:
    return f'{count:,}'


def _short(count: int) -> str:
    """1M, 200k, 1k: a number of images, for the table."""
    for unit, size in (('M', 1_000_000), ('k', 1_000)):
        if count % size == 0:
            return f'{count // size}{unit}'
    return f'{count:,}'


# Figures


def _same(figure: float, baseline: float, slack: float = 0.0) -> bool:
    """Whether ``figure`` is about ``baseline``: see ``SAME`` and ``SLACK``."""
    return figure <= SAME * baseline or figure - baseline <= slack


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p99(samples: Sequence[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=100, method='inclusive')[98]


@dataclasses.dataclass
class Result:
    """One line of the table: a figure, against its baseline, and the target."""

    key: str
    what: str
    unit: str
    figure: float
    baseline: float | None = None
    baseline_name: str = ''
    target: str = ''
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.figure / self.baseline

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), 'ratio': self.ratio}


def _amount(value: float, unit: str) -> str:
    if unit == 'MB':
        # Adding 0.0 turns a rounded -0.0 into 0.0.
        return f'{round(value / 1e6, 1) + 0.0:.1f} MB'
    digits = {'s': 2, 'ms': 2, '/s': 1}.get(unit, 2)
    return f'{value:.{digits}f} {unit}'


def print_table(results: Sequence[Result]) -> None:
    header = ('what', 'figure', 'baseline', 'ratio', 'target', 'met')
    lines = [header]
    for result in results:
        baseline = ''
        if result.baseline is not None:
            amount = _amount(result.baseline, result.unit)
            baseline = f'{result.baseline_name}: {amount}'
        ratio = '' if result.ratio is None else f'{result.ratio:.3g}'
        met = {None: '', True: 'yes', False: 'NO'}[result.met]
        lines.append(
            (result.what, _amount(result.figure, result.unit), baseline, ratio,
             result.target, met)
        )  # fmt: skip
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for number, line in enumerate(lines):
        cells = [f'{cell:<{width}}' for cell, width in zip(line, widths, strict=True)]
        print(' | '.join(cells).rstrip())
        if number == 0:
            print('-+-'.join('-' * width for width in widths))


# Synthetic images


def synthetic(count: int, seed: int) -> list[Row]:
    """``count`` index rows in upload order, each a microsecond after the last.

    The newest is a little older than now, so that an upload comes after it.
    """
    rng = random.Random(seed)
    ids = rng.randbytes(16 * count).hex()
    versions = rng.randbytes(6 * count).hex()
    tokens = rng.randbytes(32 * count).hex()
    variant = '89ab' * 4
    start = time.time_ns() // 1000 - count - 1_000_000
    rows = []
    for number in range(count):
        hexa = ids[32 * number : 32 * number + 32]
        # A version 4 uuid: its version and variant bits set.
        image_id = (
            f'{hexa[:8]}-{hexa[8:12]}-4{hexa[13:16]}-'
            f'{variant[int(hexa[16], 16)]}{hexa[17:20]}-{hexa[20:]}'
        )
        file = f'{image_id}.{versions[12 * number : 12 * number + 12]}.jpeg'
        token = tokens[64 * number : 64 * number + 64]
        rows.append((number + 1, image_id, file, 4000, 3000, start + number, token))
    return rows


def _ids(rows: Sequence[Row]) -> list[str]:
    return [row[1] for row in rows]


async def _create_schema(index: Index) -> None:
    """Let the index create its schema, as a first request would."""
    try:
        await index.count()
    finally:
        await index.close()


def build_sqlite(root: pathlib.Path, rows: Sequence[Row]) -> float:
    """The seconds to create ``root``'s SQLite index and insert ``rows``."""
    started = time.perf_counter()
    asyncio.run(_create_schema(SQLiteIndex(root)))
    connection = sqlite3.connect(root / SQLiteIndex.FILE, isolation_level=None)
    try:
        # NOTE: A page cache that holds the whole id index, for the build only:
        #   the ids are random, so each insert lands anywhere in it.
        connection.execute('PRAGMA cache_size = -1048576')
        connection.execute('BEGIN IMMEDIATE')
        connection.executemany(
            f'INSERT INTO images ({", ".join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)',
            rows,
        )
        connection.execute(
            'UPDATE counters SET clock = ?, images = ?', (rows[-1][5], len(rows))
        )
        connection.execute('COMMIT')
        # NOTE: Everything into the database file, and the WAL emptied: a
        #   reader would otherwise look through the whole build's WAL.
        connection.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    finally:
        connection.close()
    return time.perf_counter() - started


async def _build_postgres(url: str, rows: Sequence[Row]) -> None:
    import asyncpg

    from asgilook.storage.index.postgres import PostgresIndex

    await _create_schema(PostgresIndex(url))
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            # NOTE: COPY writes the given seq, identity column or not; the
            #   identity then goes on after the last one.
            await connection.copy_records_to_table(
                'images', records=rows, columns=COLUMNS
            )
            await connection.execute(
                "SELECT setval(pg_get_serial_sequence('images', 'seq'), $1)",
                rows[-1][0],
            )
            await connection.execute(
                'UPDATE counters SET clock = $1, images = $2', rows[-1][5], len(rows)
            )
        # NOTE: Now rather than by autovacuum in the middle of a measurement.
        await connection.execute('VACUUM (ANALYZE) images')
    finally:
        await connection.close()


def build_postgres(url: str, rows: Sequence[Row]) -> float:
    """The seconds to create the database's index and copy ``rows`` into it."""
    started = time.perf_counter()
    asyncio.run(_build_postgres(url, rows))
    return time.perf_counter() - started


def build_journal(root: pathlib.Path, rows: Sequence[Row], old: ModuleType) -> float:
    """The seconds to write the previous release's ``journal.jsonl`` of ``rows``."""
    started = time.perf_counter()
    lines = (
        old._line(old._put_record(old.Entry(image_id, file, (width, height),
                                            modified, token)))
        for _, image_id, file, width, height, modified, token in rows
    )  # fmt: skip
    with open(root / old.Journal.FILE, 'wb') as journal:
        journal.write(old._header())
        journal.writelines(lines)
    return time.perf_counter() - started


# The previous release


@dataclasses.dataclass
class OldRelease:
    """The previous release, from git: its package, and its journal as a module."""

    package_root: pathlib.Path
    journal_dir: pathlib.Path
    journal: ModuleType


def old_release(tmp: pathlib.Path) -> OldRelease:
    """Extract commit ``OLD_RELEASE`` into ``tmp``.

    Raises:
        BenchError: git, or the commit, is not there.
    """
    package_root = tmp / 'old-release'
    journal_dir = tmp / 'old-journal'
    package_root.mkdir()
    journal_dir.mkdir()
    try:
        source = subprocess.run(
            ['git', 'show', f'{OLD_RELEASE}:asgilook/journal.py'],
            cwd=ROOT, check=True, capture_output=True,
        ).stdout  # fmt: skip
        archive = subprocess.run(
            ['git', 'archive', OLD_RELEASE, 'asgilook'],
            cwd=ROOT, check=True, capture_output=True,
        ).stdout  # fmt: skip
        subprocess.run(
            ['tar', '-x', '-C', str(package_root)], input=archive, check=True
        )
    except (OSError, subprocess.CalledProcessError) as ex:
        stderr = getattr(ex, 'stderr', b'') or b''
        raise BenchError(
            f'{ex} {stderr.decode(errors="replace").strip()}'.strip()
        ) from ex
    path = journal_dir / 'old_journal.py'
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location('old_journal', path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # NOTE: Its dataclass looks its module up while it is being made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return OldRelease(package_root, journal_dir, module)


@dataclasses.dataclass
class JournalLoad:
    seconds: float
    growth: int


def journal_first_page(old: OldRelease, root: pathlib.Path, count: int) -> JournalLoad:
    """The old journal's first page in a new process: seconds, RSS growth."""
    done = subprocess.run(
        [sys.executable, '-c', JOURNAL_SCRIPT, str(old.journal_dir), str(root)],
        env=environment(),
        cwd=old.journal_dir,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchError(f'The old journal did not load:\n{done.stderr.strip()}')
    found = json.loads(done.stdout)
    if found['entries'] != PAGE or found['count'] != count:
        raise BenchError(
            f'The old journal gave a page of {found["entries"]}, and '
            f'{found["count"]:,} images rather than {count:,}'
        )
    return JournalLoad(found['seconds'], found['after'] - found['before'])


# Processes


def environment(pythonpath: pathlib.Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without any asgilook, bench or coverage settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(('ASGI_LOOK_', 'BENCH_', 'COVERAGE_', 'PROMETHEUS_'))
        and name != 'PYTHONPATH'
    }
    if pythonpath is not None:
        env['PYTHONPATH'] = str(pythonpath)
    env.update(extra)
    return env


def which_package(env: dict[str, str], cwd: pathlib.Path) -> dict[str, Any]:
    """Where a server with ``env`` in ``cwd`` imports asgilook and its app from."""
    done = subprocess.run(
        [sys.executable, '-c', WHICH_SCRIPT],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def sources() -> dict[str, tuple[int, int]]:
    """The modification time and size of every source file the servers run."""
    files = [*(ROOT / 'asgilook').rglob('*.py'), ROOT / 'tests' / 'postgres.py']
    found = {}
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            found[str(path.relative_to(ROOT))] = (stat.st_mtime_ns, stat.st_size)
    return found


class Server:
    """``python -m uvicorn asgilook.asgi:app`` on a free port: ``UVICORN_FLAGS``."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_path: pathlib.Path,
        workers: int = 1,
        cwd: pathlib.Path = ROOT,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.args = [
            sys.executable, '-m', 'uvicorn', 'asgilook.asgi:app',
            *UVICORN_FLAGS, '--workers', str(workers), '--port', str(self.port),
        ]  # fmt: skip
        self._env = env
        self._cwd = cwd
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> Server:
        with open(self._log_path, 'ab') as log:
            # NOTE: A session of its own keeps a Ctrl-C in the terminal away
            #   from uvicorn, which is stopped in order on the way out; the
            #   parent-death signal stops it if this process is killed.
            self.process = subprocess.Popen(
                self.args,
                env=self._env,
                cwd=self._cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        if not wait_until(lambda: port_open(self.port), self.process, STARTUP_TIMEOUT):
            self.__exit__()
            log_text = self._log_path.read_text(errors='replace').strip()
            raise BenchError(
                f'{self.name}: uvicorn did not start on port {self.port}.\n'
                f'Command: {" ".join(self.args)}\nIts log:\n{log_text[-3000:]}'
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            terminate(self.process)
            self.process = None


def get(connection: http.client.HTTPConnection, path: str) -> tuple[float, Any, str]:
    """GET ``path``: the seconds to the end of the body, the JSON, the cache state."""
    started = time.perf_counter()
    connection.request('GET', path)
    resp = connection.getresponse()
    body = resp.read()
    seconds = time.perf_counter() - started
    if resp.status != 200:
        raise BenchError(f'GET {path}: {resp.status} {body[:300]!r}')
    return seconds, json.loads(body), resp.getheader(CACHE_HEADER, '(none)')


# 2, 3 and 4 over HTTP: new workers


@dataclasses.dataclass
class Start:
    """What one new worker did: its first pages, its RSS, its deep pages."""

    first: float
    newest: float
    states: list[str]
    rss_idle: int
    rss_first: int
    rss_pages: int
    pages: list[float]
    misses: int


def new_worker(
    name: str,
    env: dict[str, str],
    log_path: pathlib.Path,
    ids: Sequence[str],
    rng: random.Random,
) -> Start:
    """A fresh worker's first pages, then ``HTTP_PAGES`` at random depths."""
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(RedisServer())
        env = {**env, 'ASGI_LOOK_REDIS_URL': redis_server.url}
        server = stack.enter_context(Server(name, env, log_path))
        process = psutil.Process(server.pid)
        rss_idle = process.memory_info().rss
        connection = http.client.HTTPConnection(
            '127.0.0.1', server.port, timeout=HTTP_TIMEOUT
        )
        stack.callback(connection.close)
        first, page, first_state = get(connection, f'/images?limit={PAGE}')
        if [image['id'] for image in page] != list(ids[:PAGE]):
            raise BenchError(f'{name}: the first page is not the first {PAGE} ids')
        newest, page, newest_state = get(connection, '/images?order=newest')
        if [image['id'] for image in page] != list(ids[-PAGE:][::-1]):
            raise BenchError(f'{name}: the newest page is not the last {PAGE} ids')
        rss_first = process.memory_info().rss
        samples = []
        misses = 0
        for position in rng.sample(range(len(ids) - PAGE), HTTP_PAGES):
            seconds, page, state = get(connection, f'/images?after={ids[position]}')
            if page[0]['id'] != ids[position + 1] or len(page) != PAGE:
                raise BenchError(f'{name}: a wrong page after {ids[position]}')
            samples.append(seconds)
            misses += state == 'Miss'
        rss_pages = process.memory_info().rss
    return Start(
        first, newest, [first_state, newest_state], rss_idle, rss_first, rss_pages,
        samples, misses,
    )  # fmt: skip


# 4 in this process


async def _index_pages(
    index: Index, ids: Sequence[str], depths: int, rng: random.Random
) -> dict[str, list[float]]:
    async def timed(after: str | None, newest_first: bool) -> float:
        started = time.perf_counter()
        entries, _ = await index.page(PAGE + 1, after, newest_first)
        seconds = time.perf_counter() - started
        if len(entries) != PAGE + 1:
            raise BenchError(f'{type(index).__name__}: a page of {len(entries)}')
        return seconds

    try:
        # NOTE: The connections opened, the schema checked: pages only, next.
        for _ in range(5):
            await timed(None, False)
        series: dict[str, list[float]] = {
            'first': [],
            'deep': [],
            'newest_first': [],
            'deep_newest_first': [],
        }
        oldest = rng.sample(range(len(ids) - PAGE - 1), depths)
        newest = rng.sample(range(PAGE + 1, len(ids)), depths)
        # NOTE: Page 1 and the deep pages take turns, so that drift hits both.
        for old_position, new_position in zip(oldest, newest, strict=True):
            series['first'].append(await timed(None, False))
            series['deep'].append(await timed(ids[old_position], False))
            series['newest_first'].append(await timed(None, True))
            series['deep_newest_first'].append(await timed(ids[new_position], True))
        return series
    finally:
        await index.close()


def index_pages(
    index: Index, ids: Sequence[str], depths: int, rng: random.Random
) -> dict[str, list[float]]:
    """Seconds per page: of page 1, and after ids at random depths, both orders."""
    return asyncio.run(_index_pages(index, ids, depths, rng))


# 5: uploads


def noise_png() -> bytes:
    """A 64x64 PNG of random colours (4 levels per channel): about 4 KB."""
    rng = random.Random(SEED)
    image = PIL.Image.frombytes(
        'RGB', (64, 64), bytes(rng.randrange(4) * 85 for _ in range(64 * 64 * 3))
    )
    buffer = io.BytesIO()
    image.save(buffer, 'PNG', optimize=True)
    return buffer.getvalue()


@dataclasses.dataclass
class UploadRun:
    uploads: int
    seconds: float
    errors: dict[str, int]
    latencies: list[float]
    #: CPU seconds the server's processes (uvicorn and its workers) used.
    cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.uploads / self.seconds

    @property
    def cpu_per_upload(self) -> float:
        return self.cpu / self.uploads

    def __add__(self, other: UploadRun) -> UploadRun:
        errors = dict(self.errors)
        for key, count in other.errors.items():
            errors[key] = errors.get(key, 0) + count
        return UploadRun(
            self.uploads + other.uploads,
            self.seconds + other.seconds,
            errors,
            self.latencies + other.latencies,
            self.cpu + other.cpu,
        )


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its children."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def _warm_up(client: httpx.AsyncClient, picture: bytes) -> None:
    """A few uploads at once, so that every connection and thread is up."""
    warm = await asyncio.gather(
        *(client.post('/images', content=picture) for _ in range(WARM_UPLOADS))
    )
    for resp in warm:
        if resp.status_code != 201:
            raise BenchError(f'POST /images: {resp.status_code} {resp.text[:300]!r}')


async def _upload_load(
    client: httpx.AsyncClient, picture: bytes, duration: float
) -> UploadRun:
    """``CLIENTS`` uploads at a time, for ``duration`` seconds."""
    # NOTE: An fsync on ext4 also flushes what others left unsynced.
    os.sync()
    errors: dict[str, int] = {}
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + duration

    async def client_loop() -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                resp = await client.post('/images', content=picture)
            except httpx.HTTPError as ex:
                errors[type(ex).__name__] = errors.get(type(ex).__name__, 0) + 1
                continue
            if resp.status_code == 201:
                latencies.append(time.perf_counter() - sent)
            else:
                key = str(resp.status_code)
                errors[key] = errors.get(key, 0) + 1

    await asyncio.gather(*(client_loop() for _ in range(CLIENTS)))
    return UploadRun(len(latencies), time.perf_counter() - started, errors, latencies)


def connections_per_worker(server: Server) -> list[int]:
    """The connections each worker of ``server`` holds open (one worker: []).

    A worker is a child that listens on the server's port (uvicorn's
    supervisor has other children, such as multiprocessing's tracker).
    """
    held = []
    for child in psutil.Process(server.pid).children():
        mine = [
            connection
            for connection in child.net_connections(kind='tcp')
            if connection.laddr and connection.laddr.port == server.port
        ]
        if any(connection.status == psutil.CONN_LISTEN for connection in mine):
            held.append(
                sum(connection.status == psutil.CONN_ESTABLISHED for connection in mine)
            )
    return held


async def _spread_client(
    server: Server, picture: bytes, spreads: list[int]
) -> httpx.AsyncClient:
    """A client whose ``CLIENTS`` connections are open, as even over the
    workers as they can be; how many tries that took is added to ``spreads``.

    NOTE: Which of several workers accepts a connection is chance (a burst
    of them often all goes to one), and a keep-alive connection stays with
    its worker: one worker with 6 of 8 made a run up to 1.8 times slower
    than an even one. Both servers of a comparison get the same treatment.
    """
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    for attempt in range(1, SPREAD_ATTEMPTS + 1):
        client = httpx.AsyncClient(
            base_url=server.url,
            limits=limits,
            timeout=HTTP_TIMEOUT,
            headers={'Content-Type': 'image/png'},
        )
        await _warm_up(client, picture)
        held = connections_per_worker(server)
        if not held or max(held) - min(held) <= CLIENTS % len(held):
            spreads.append(attempt)
            return client
        await client.aclose()
    raise BenchError(
        f'{server.name}: {CLIENTS} connections never spread evenly over the '
        f'workers in {SPREAD_ATTEMPTS} tries (the last: {held})'
    )


async def upload_turns(
    servers: dict[str, Server], picture: bytes, rounds: int, seconds: float
) -> tuple[dict[str, list[UploadRun]], dict[str, list[int]]]:
    """Uploads to each server in turn, ``rounds`` times: each turn's figures,
    and the tries each turn took to spread its connections over the workers.

    Every other round goes the other way round the servers, so that drift
    hits each alike. Each turn opens its connections anew (see
    :func:`_spread_client`).
    """
    turns: dict[str, list[UploadRun]] = {name: [] for name in servers}
    spreads: dict[str, list[int]] = {name: [] for name in servers}
    for number in range(rounds):
        for name in list(servers)[:: -1 if number % 2 else 1]:
            client = await _spread_client(servers[name], picture, spreads[name])
            try:
                before = tree_cpu(servers[name].pid)
                turn = await _upload_load(client, picture, seconds)
                turn.cpu = tree_cpu(servers[name].pid) - before
                turns[name].append(turn)
            finally:
                await client.aclose()
    return turns, spreads


def _paired(turns: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> str:
    """The mean difference of paired turns' rates, and its standard error.

    Turns of the same round ran one after the other, so they share the
    machine's drift; the spread of their differences says how far the mean
    is from chance.
    """
    differences = [
        turn['uploads'] / turn['seconds'] - base['uploads'] / base['seconds']
        for turn, base in zip(turns, baseline, strict=True)
    ]
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return f'{mean:+.1f}/s (one turn: no spread)'
    error = statistics.stdev(differences) / math.sqrt(len(differences))
    return f'mean of paired turns {mean:+.1f}/s, standard error {error:.1f}/s'


def put_rate(
    kind: str, where: str, processes: int, seconds: float, old: OldRelease | None
) -> float:
    """Index writes per second, alone: ``processes`` processes writing at once."""
    start = time.time() + PUT_HEAD_START
    args = [kind, where, str(start), str(seconds), str(PUT_TASKS)]
    if old is not None:
        args.append(str(old.journal_dir))
    os.sync()
    running = [
        subprocess.Popen(
            [sys.executable, '-c', PUT_SCRIPT, *args],
            env=environment(),
            cwd=ROOT if kind != 'journal' else where,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    done = 0
    for process in running:
        out, err = process.communicate()
        if process.returncode != 0:
            raise BenchError(f'{kind} writes alone failed:\n{err.strip()[-2000:]}')
        done += int(out)
    return done / seconds


# The run


@dataclasses.dataclass
class Postgres:
    """The PostgreSQL server, and the index class, if they can be had."""

    server: Any
    index: Callable[[str], Index]

    def database(self) -> str:
        url: str = self.server.database()
        return url


def start_postgres(stack: contextlib.ExitStack) -> tuple[Postgres | None, str]:
    """A throwaway PostgreSQL server, or None and why not."""
    if not (ROOT / 'tests' / 'postgres.py').is_file():
        return None, 'tests/postgres.py is not there'
    try:
        from asgilook.storage.index.postgres import PostgresIndex
        from tests.postgres import PostgresServer
        from tests.postgres import PostgresUnavailable
    except ImportError as ex:
        return None, f'cannot import it: {ex}'
    try:
        server = stack.enter_context(PostgresServer())  # type: ignore[no-untyped-call]
    except (PostgresUnavailable, OSError, subprocess.CalledProcessError) as ex:
        return None, f'the server did not start: {ex}'
    return Postgres(server, PostgresIndex), ''


def _workers(count: int) -> str:
    return f'{count} worker' + ('s' if count > 1 else '')


class Bench:
    """One run: what it has set up, and what it found."""

    def __init__(
        self, args: argparse.Namespace, tmp: pathlib.Path, stack: contextlib.ExitStack
    ) -> None:
        self.args = args
        self.tmp = tmp
        self.stack = stack
        self.large = args.images
        self.big, self.small = _short(self.large), _short(SMALL)
        self.results: list[Result] = []
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}
        self.raw: dict[str, Any] = {}
        self.old: OldRelease | None = None
        self.postgres: Postgres | None = None
        self.ids: dict[int, list[str]] = {}
        self.databases: dict[int, str] = {}
        self.journal: JournalLoad | None = None
        self.starts: dict[tuple[str, int], list[Start]] = {}

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.results.append(Result(*args, **kwargs))

    def sqlite_root(self, count: int) -> pathlib.Path:
        return self.tmp / f'sqlite-{count}'

    @property
    def journal_root(self) -> pathlib.Path:
        return self.tmp / 'journal'

    def backends(self) -> list[str]:
        return ['SQLite'] + (['PostgreSQL'] if self.postgres is not None else [])

    def run(self) -> None:
        before = sources()
        self._phases()
        after = sources()
        changed = sorted(
            name
            for name in before.keys() | after.keys()
            if before.get(name) != after.get(name)
        )
        if changed:
            self.notes.append(
                f'{", ".join(changed)} changed during the run: the figures may '
                'mix two versions of the code.'
            )

    def _phases(self) -> None:
        for name, phase in (
            ('setup', self.setup),
            ('1. building', self.build),
            ('2. old journal', self.old_journal),
            ('2-4. new workers', self.new_workers),
            ('4. pages in process', self.pages),
            ('5. uploads', self.uploads),
            ('5b. index writes alone', self.writes),
        ):
            started = time.perf_counter()
            phase()
            self.timings[name] = time.perf_counter() - started

    def setup(self) -> None:
        try:
            self.old = old_release(self.tmp)
        except BenchError as ex:
            self.notes.append(
                f'The baselines of the previous release are skipped: git could '
                f'not give commit {OLD_RELEASE} ({ex}).'
            )
        self.postgres, why = start_postgres(self.stack)
        if self.postgres is None:
            self.notes.append(f'The PostgreSQL rows are skipped: {why}.')
            _progress(f'The PostgreSQL rows are skipped: {why}')

    def build(self) -> None:
        """1: the indexes, and the old journal, of the same synthetic images."""
        _progress(f'1. Building the indexes of {self.big} and {self.small} images ...')
        rows = {
            self.large: synthetic(self.large, SEED),
            SMALL: synthetic(SMALL, SEED + 1),
        }
        self.ids = {count: _ids(found) for count, found in rows.items()}
        seconds: dict[tuple[str, int], float] = {}
        for count, found in rows.items():
            self.sqlite_root(count).mkdir()
            seconds['SQLite', count] = build_sqlite(self.sqlite_root(count), found)
        if self.postgres is not None:
            try:
                for count, found in rows.items():
                    self.databases[count] = self.postgres.database()
                    seconds['PostgreSQL', count] = build_postgres(
                        self.databases[count], found
                    )
            except Exception as ex:  # Whatever failed: skipped, and said why.
                self.notes.append(
                    f'The PostgreSQL rows are skipped: building its index failed '
                    f'({type(ex).__name__}: {ex}).'
                )
                self.postgres = None
        journal = None
        self.journal_root.mkdir()
        if self.old is not None:
            journal = build_journal(
                self.journal_root, rows[self.large], self.old.journal
            )
        del rows
        os.sync()
        self.raw['build'] = {
            'journal': journal,
            **{
                f'{backend} {count}': value
                for (backend, count), value in seconds.items()
            },
        }
        for backend in self.backends():
            for count in (self.large, SMALL):
                self.add(
                    f'build_{backend}_{count}',
                    f'build, {backend}, {_short(count)} images',
                    's',
                    seconds[backend, count],
                    journal if count == self.large else None,
                    f'journal {self.big}',
                )

    def old_journal(self) -> None:
        """2 and 3: the old journal's first page, in a new process."""
        if self.old is not None:
            _progress(f'2. The old journal of {self.big} images: its first page ...')
            self.journal = journal_first_page(self.old, self.journal_root, self.large)
            self.raw['journal_first_page'] = dataclasses.asdict(self.journal)

    def settings(self, backend: str, count: int) -> dict[str, str]:
        """The environment of a server of ``backend`` with ``count`` images."""
        if backend == 'SQLite':
            return environment(ASGI_LOOK_STORAGE_PATH=str(self.sqlite_root(count)))
        return environment(
            ASGI_LOOK_STORAGE_PATH=str(self.tmp / f'postgres-files-{count}'),
            ASGI_LOOK_DATABASE_URL=self.databases[count],
        )

    def new_workers(self) -> None:
        """2, 3 and 4 over HTTP: new workers, with small and large indexes."""
        rng = random.Random(SEED)
        # NOTE: Small and large take turns, so that drift hits both alike.
        for number in range(self.args.starts):
            for backend in self.backends():
                for count in (SMALL, self.large):
                    _progress(
                        f'2-4. New worker {number + 1} of {self.args.starts}, '
                        f'{backend}, {_short(count)} images: first pages, RSS, '
                        f'{HTTP_PAGES} pages ...'
                    )
                    os.sync()
                    log_path = self.tmp / f'worker-{backend}-{count}.log'
                    try:
                        start = new_worker(
                            f'{backend} {count} #{number}',
                            self.settings(backend, count),
                            log_path,
                            self.ids[count],
                            rng,
                        )
                    except (BenchError, OSError, http.client.HTTPException) as ex:
                        log = log_path.read_text(errors='replace').strip()
                        raise BenchError(f'{ex}\nIts log:\n{log[-3000:]}') from ex
                    self.starts.setdefault((backend, count), []).append(start)
                    self.check_misses(backend, count, start)
        for (backend, count), starts in self.starts.items():
            self.raw[f'workers {backend} {count}'] = [
                dataclasses.asdict(start) for start in starts
            ]
        for backend in self.backends():
            self.first_pages(backend)
        for backend in self.backends():
            self.memory(backend)

    def check_misses(self, backend: str, count: int, start: Start) -> None:
        if start.states != ['Miss', 'Miss']:
            self.notes.append(
                f'{backend}, {_short(count)}: the first pages were '
                f'{", ".join(start.states)}, not Miss'
            )
        if start.misses != HTTP_PAGES:
            self.notes.append(
                f'{backend}, {_short(count)}: {start.misses} of {HTTP_PAGES} '
                'deep pages were a Miss'
            )

    def median_of(self, backend: str, count: int, field: str) -> float:
        return median([getattr(start, field) for start in self.starts[backend, count]])

    def first_pages(self, backend: str) -> None:
        for field, what in (('first', 'page'), ('newest', 'newest')):
            figure = self.median_of(backend, self.large, field) * 1000
            baseline = self.median_of(backend, SMALL, field) * 1000
            self.add(
                f'first_{field}_{backend}',
                f'new worker: first {what}, {backend}, {self.big}',
                'ms', figure, baseline, self.small, f'< 50 ms, ~ {self.small}',
                figure < 50 and baseline < 50 and _same(figure, baseline, SLACK),
            )  # fmt: skip
        if self.journal is not None:
            figure = self.median_of(backend, self.large, 'first') * 1000
            self.add(
                f'first_page_{backend}_vs_journal',
                f'new worker: first page, {backend} vs journal, {self.big}',
                'ms', figure, self.journal.seconds * 1000, f'journal {self.big}',
                '< 50 ms', figure < 50,
            )  # fmt: skip

    def memory(self, backend: str) -> None:
        """3: what a worker's RSS owes to the size of the index."""
        for field, moment in (
            ('rss_first', 'after the first pages'),
            ('rss_pages', f'after {HTTP_PAGES} more'),
        ):
            self.add(
                f'{field}_{backend}',
                f'worker RSS {moment}, {backend}, {self.big}',
                'MB',
                self.median_of(backend, self.large, field),
                self.median_of(backend, SMALL, field),
                self.small,
            )
        growth = self.median_of(backend, self.large, 'rss_pages') - (
            self.median_of(backend, SMALL, 'rss_pages')
        )
        # NOTE: What SQLite may cache, at most, in the connections of a worker.
        bound = SQLiteIndex.CACHE_KIB * 1024 * (SQLiteIndex.IDLE + 1)
        self.add(
            f'index_memory_{backend}',
            f'index memory per worker ({self.big} - {self.small}), {backend}',
            'MB',
            growth,
            None if self.journal is None else self.journal.growth,
            f'journal {self.big}',
            f'flat: < {bound / 1e6:.0f} MB',
            growth < bound,
        )

    def pages(self) -> None:
        """4: pages at random depths, in this process and over HTTP."""
        indexes: list[tuple[str, Callable[[], Index]]] = [
            ('SQLiteIndex', lambda: SQLiteIndex(self.sqlite_root(self.large))),
        ]
        postgres = self.postgres
        if postgres is not None:
            indexes.append(
                ('PostgresIndex', lambda: postgres.index(self.databases[self.large]))
            )
        for name, make in indexes:
            _progress(
                f'4. {name}.page at {self.args.depths} random depths of {self.big} ...'
            )
            try:
                series = index_pages(
                    make(), self.ids[self.large], self.args.depths, random.Random(SEED)
                )
            except Exception as ex:
                if name == 'SQLiteIndex':
                    raise
                # NOTE: PostgreSQL is optional: its rows are left out, and why.
                self.notes.append(
                    f'The {name} rows are skipped: {type(ex).__name__}: {ex}'
                )
                continue
            self.raw[f'pages {name}'] = series
            for deep, first, order in (
                ('deep', 'first', ''),
                ('deep_newest_first', 'newest_first', ' newest'),
            ):
                for statistic, compute in (('median', median), ('p99', p99)):
                    figure = compute(series[deep]) * 1000
                    self.add(
                        f'{name}_{deep}_{statistic}',
                        f'{name}.page(after=random){order}, {self.big}, {statistic}',
                        'ms', figure, compute(series[first]) * 1000, 'page 1',
                        '< 5 ms', figure < 5,
                    )  # fmt: skip
        for backend in self.backends():
            large, small = (
                [
                    seconds
                    for start in self.starts[backend, count]
                    for seconds in start.pages
                ]
                for count in (self.large, SMALL)
            )
            for statistic, compute in (('median', median), ('p99', p99)):
                figure, baseline = compute(large) * 1000, compute(small) * 1000
                # NOTE: No verdict on the p99 of a few hundred requests on two
                #   busy cores: it is whichever request a context switch hit.
                verdict = statistic == 'median'
                self.add(
                    f'http_deep_{backend}_{statistic}',
                    f'GET /images?after=random, {backend}, {self.big}, {statistic}',
                    'ms', figure, baseline, self.small,
                    f'~ {self.small}' if verdict else '',
                    _same(figure, baseline) if verdict else None,
                )  # fmt: skip

    def upload_configs(self) -> list[tuple[str, dict[str, str], pathlib.Path]]:
        """Each server to upload to: its name, environment and directory."""
        configs = []
        if self.old is not None:
            root = self.old.package_root
            configs.append(('journal', environment(root), root))
        configs.append(('SQLite', environment(), ROOT))
        if self.postgres is not None:
            url = self.postgres.database()
            configs.append(
                ('PostgreSQL', environment(ASGI_LOOK_DATABASE_URL=url), ROOT)
            )
        return configs

    def upload_servers(
        self, workers: int, picture: bytes, seconds: float
    ) -> dict[str, list[UploadRun]]:
        """Fresh servers of ``workers`` workers each, taking turns; their turns."""
        storages = {}
        with contextlib.ExitStack() as stack:
            servers = {}
            for name, env, cwd in self.upload_configs():
                storages[name] = pathlib.Path(
                    tempfile.mkdtemp(prefix=f'uploads-{name}-', dir=self.tmp)
                )
                env = {**env, 'ASGI_LOOK_STORAGE_PATH': str(storages[name])}
                check_package(name, env, cwd, self.old)
                redis_server = stack.enter_context(RedisServer())
                env['ASGI_LOOK_REDIS_URL'] = redis_server.url
                log_path = self.tmp / f'uploads-{name}-{workers}.log'
                servers[name] = stack.enter_context(
                    Server(name, env, log_path, workers, cwd)
                )
            _progress(
                f'5. Uploads, {_workers(workers)}: {", ".join(servers)} take turns, '
                f'{self.args.rounds} x {seconds:.3g} s each ...'
            )
            turns, spreads = asyncio.run(
                upload_turns(servers, picture, self.args.rounds, seconds)
            )
        for name, files in storages.items():
            check_storage(name, files)
        if workers > 1:
            self.notes.append(
                f'Connections opened until even over the workers, {_workers(workers)}, '
                'tries per turn: '
                + '; '.join(f'{name} {spreads[name]}' for name in spreads)
            )
        return turns

    def uploads(self) -> None:
        """5: uploads per second, each index against the journal."""
        picture = noise_png()
        seconds = self.args.duration / self.args.rounds
        runs: dict[tuple[str, int], UploadRun] = {}
        for workers in (1, 2):
            for name, turns in self.upload_servers(workers, picture, seconds).items():
                runs[name, workers] = functools.reduce(operator.add, turns)
                self.raw[f'uploads {name} {workers}'] = [
                    {
                        'uploads': turn.uploads,
                        'seconds': turn.seconds,
                        'cpu': turn.cpu,
                        'errors': turn.errors,
                        'latency_median': median(turn.latencies),
                    }
                    for turn in turns
                ]
        for (name, workers), done in runs.items():
            if done.errors:
                self.notes.append(
                    f'Uploads, {name}, {_workers(workers)}: errors {done.errors}'
                )
        for workers in (1, 2):
            per_turn = '; '.join(
                f'{name} '
                + ' '.join(
                    f'{turn["uploads"] / turn["seconds"]:.0f}'
                    for turn in self.raw[f'uploads {name} {workers}']
                )
                for name, count in runs
                if count == workers
            )
            self.notes.append(f'Uploads/s per turn, {_workers(workers)}: {per_turn}')
        for workers in (1, 2):
            journal = runs.get(('journal', workers))
            baseline = None if journal is None else journal.rate
            for backend in self.backends():
                figure = runs[backend, workers].rate
                self.add(
                    f'uploads_{backend}_{workers}',
                    f'uploads, {backend}, {_workers(workers)}',
                    '/s', figure, baseline, f'journal, {_workers(workers)}',
                    'ratio >= 1.0', None if baseline is None else figure >= baseline,
                )  # fmt: skip
                if journal is not None:
                    self.notes.append(
                        f'Uploads, {backend} less journal, {_workers(workers)}: '
                        + _paired(
                            self.raw[f'uploads {backend} {workers}'],
                            self.raw[f'uploads journal {workers}'],
                        )
                    )
        for workers in (1, 2):
            journal = runs.get(('journal', workers))
            for backend in self.backends():
                self.add(
                    f'upload_cpu_{backend}_{workers}',
                    f'server CPU per upload, {backend}, {_workers(workers)}',
                    'ms', runs[backend, workers].cpu_per_upload * 1000,
                    None if journal is None else journal.cpu_per_upload * 1000,
                    f'journal, {_workers(workers)}', '', None,
                )  # fmt: skip

    def writes(self) -> None:
        """5b: the index's writes alone, without HTTP, pictures or files."""
        seconds = self.args.duration / 2
        kinds = ['SQLite'] + (['PostgreSQL'] if self.postgres is not None else [])
        if self.old is not None:
            kinds.insert(0, 'journal')
        rates: dict[tuple[str, int], float] = {}
        for processes in (1, 2):
            _progress(
                f'5b. Index writes alone, {processes} process(es): '
                f'{", ".join(kinds)}, {seconds:.3g} s each ...'
            )
            # NOTE: The other way round the second time, so that drift hits
            #   each alike.
            for kind in kinds[:: 1 if processes == 1 else -1]:
                if kind == 'PostgreSQL':
                    assert self.postgres is not None
                    where = self.postgres.database()
                else:
                    where = tempfile.mkdtemp(prefix=f'writes-{kind}-', dir=self.tmp)
                rates[kind, processes] = put_rate(
                    kind, where, processes, seconds, self.old
                )
        self.raw['writes alone'] = {
            f'{kind} {processes}': rate for (kind, processes), rate in rates.items()
        }
        for processes in (1, 2):
            baseline = rates.get(('journal', processes))
            many = f'{processes} process' + ('es' if processes > 1 else '')
            for kind in kinds:
                if kind == 'journal':
                    continue
                self.add(
                    f'writes_{kind}_{processes}',
                    f'index writes alone, {kind}, {many}',
                    '/s', rates[kind, processes], baseline, f'journal, {many}',
                )  # fmt: skip


def check_package(
    name: str, env: dict[str, str], cwd: pathlib.Path, old: OldRelease | None
) -> None:
    """That a server with ``env`` in ``cwd`` would serve the release meant."""
    found = which_package(env, cwd)
    if name == 'journal':
        assert old is not None
        expected = old.package_root / 'asgilook'
    else:
        expected = ROOT / 'asgilook'
    ok = (
        found['journal'] == (name == 'journal')
        and pathlib.Path(found['package']) == expected
        and pathlib.Path(found['app']).parent == expected
    )
    if not ok:
        raise BenchError(f'{name}: the server would import {found}, not {expected}')


def check_storage(name: str, files: pathlib.Path) -> None:
    """That the server that ran was the release meant, from what it left."""
    journal = (files / 'journal.jsonl').is_file()
    sqlite = (files / SQLiteIndex.FILE).is_file()
    expected = {
        'journal': (True, False),
        'SQLite': (False, True),
        'PostgreSQL': (False, False),
    }[name]
    if (journal, sqlite) != expected:
        raise BenchError(
            f'{name}: the storage holds journal.jsonl: {journal}, '
            f'{SQLiteIndex.FILE}: {sqlite}; not the release meant'
        )


def report(args: argparse.Namespace, settings: dict[str, Any], run: Bench) -> None:
    print(
        f'Index benchmark, {time.strftime("%Y-%m-%d %H:%M")}: Python '
        f'{settings["python"]}, SQLite {settings["sqlite"]}, '
        f'{settings["cpus"]} CPUs, load average before {settings["load"]}'
    )
    print(
        f'{_images(args.images)} and {_images(SMALL)} synthetic images; '
        f'{args.starts} new worker(s) each; {args.depths} random depths in '
        f'process, {HTTP_PAGES} over HTTP per worker; uploads for '
        f'{args.duration} s per server, in {args.rounds} turns.'
    )
    print(f'uvicorn flags, every server: {settings["uvicorn_flags"]}')
    big, small = _short(args.images), _short(SMALL)
    legend = (
        'build: bulk inserts into the real schema, in one transaction (SQLite: '
        'executemany; PostgreSQL: COPY, then VACUUM ANALYZE); journal: writing '
        'the old journal.jsonl of the same images (making up the images is not '
        'counted).',
        f'new worker: a fresh uvicorn (1 worker, a Redis of its own), its first '
        f'GET /images?limit={PAGE} (page), then GET /images?order=newest (newest), '
        f'once its port accepts; medians of {args.starts} start(s). journal: the '
        f'old Journal(root).page(limit={PAGE}) in a new process.',
        f'worker RSS: of those workers; index memory: at {big} less at {small}, '
        f'after {HTTP_PAGES} pages. journal: what loading the journal of {big} '
        'added to its process.',
        f'.page(after=random): in this process, page({PAGE + 1}, after=<id at a '
        f'random depth>), {args.depths} depths; page 1: page({PAGE + 1}).',
        f'GET /images?after=random: the {HTTP_PAGES} pages per new worker, each '
        f'a different URL (a cache Miss), the whole request.',
        f'uploads: a {settings["upload_bytes"]:,}-byte 64x64 PNG, {CLIENTS} '
        f'keep-alive clients, {args.duration} s per server in {args.rounds} '
        f'turns taken with the others; journal: the previous release, '
        f'{OLD_RELEASE}, with as many workers. Its upload path also changed '
        'beside the index (see writes alone).',
        f'index writes alone: put() of new images, {PUT_TASKS} at a time per '
        f'process, no HTTP, pictures or files, {args.duration / 2:.3g} s; '
        'journal: the old Journal.put, in threads as the old store called it.',
    )
    print('\n'.join(f'  {line}' for line in legend))
    print('ratio = figure / baseline\n')
    print_table(run.results)
    if run.notes:
        print('\nNotes')
        for note in run.notes:
            print(f'  {note}')
    print('\nTimings: ' + ', '.join(f'{k} {v:.0f} s' for k, v in run.timings.items()))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--quick', action='store_true', help=f'a smaller, shorter run ({QUICK})'
    )
    parser.add_argument(
        '--images', type=int, help=f'the large index (default {DEFAULTS["images"]:,})'
    )
    parser.add_argument(
        '--starts',
        type=int,
        help=f'new workers per backend and size (default {DEFAULTS["starts"]})',
    )
    parser.add_argument(
        '--depths',
        type=int,
        help=f'random depths per order, in process (default {DEFAULTS["depths"]})',
    )
    parser.add_argument(
        '--duration',
        type=int,
        help=f'seconds of uploads per server (default {DEFAULTS["duration"]})',
    )
    parser.add_argument(
        '--rounds',
        type=int,
        help=f'turns the uploads take, per server (default {DEFAULTS["rounds"]})',
    )
    parser.add_argument('--json', metavar='PATH', help='also write the results here')
    args = parser.parse_args(argv)
    for name, default in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1')
    if args.images < 2 * PAGE + 2:
        parser.error(f'--images must be at least {2 * PAGE + 2}')
    return args


def _terminated(signum: int, frame: object) -> None:
    # Unwinds like Ctrl-C does, so that every process started is stopped.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    settings = {
        'images': args.images,
        'starts': args.starts,
        'depths': args.depths,
        'duration': args.duration,
        'rounds': args.rounds,
        'uvicorn_flags': ' '.join(UVICORN_FLAGS) + ' --workers N --port <free port>',
        'python': sys.version.split()[0],
        'sqlite': sqlite3.sqlite_version,
        'cpus': os.cpu_count(),
        'load': ' '.join(f'{load:.2f}' for load in os.getloadavg()),
        'upload_bytes': len(noise_png()),
    }
    started = time.perf_counter()
    try:
        with (
            tempfile.TemporaryDirectory(prefix='asgilook-bench-index-') as tmp,
            contextlib.ExitStack() as stack,
        ):
            run = Bench(args, pathlib.Path(tmp), stack)
            run.run()
    except BenchError as ex:
        print(f'bench/index.py: {ex}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('Interrupted; every process started was stopped.', file=sys.stderr)
        return 130
    run.timings['whole run'] = time.perf_counter() - started
    report(args, settings, run)
    if args.json:
        document = {
            'settings': settings,
            'results': [result.as_json() for result in run.results],
            'notes': run.notes,
            'timings': run.timings,
            'raw': run.raw,
        }
        pathlib.Path(args.json).write_text(json.dumps(document, indent=2) + '\n')
        print(f'\nResults written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
