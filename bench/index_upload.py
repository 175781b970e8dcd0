"""The index benchmark's uploads: small pictures over HTTP, against the old release.

Phase 5 of ``bench/index.py``: for 1 then 2 uvicorn workers, a server of the
previous release (the journal), one on SQLite and one on PostgreSQL run side
by side, each with fresh storage, Redis and database, and take turns at
``CLIENTS`` keep-alive clients uploading a small PNG; each is checked to
serve, and to have written, the release meant.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import io
import math
import operator
import os
import pathlib
import random
import statistics
import sys
import tempfile
import time
from typing import Any

import httpx
import PIL.Image
import psutil

from asgilook.commands.processes import RedisServer
from asgilook.storage.index.sqlite import SQLiteIndex
from bench.common import HTTP_TIMEOUT
from bench.common import ROOT
from bench.common import BenchError
from bench.common import Uvicorn
from bench.common import child_json
from bench.common import progress
from bench.index_setup import SEED
from bench.index_setup import Bench
from bench.index_setup import OldRelease
from bench.index_setup import asgilook_server
from bench.index_setup import environment

CLIENTS = 8
WARM_UPLOADS = 2 * CLIENTS
#: Tries at spreading a turn's connections evenly over the workers.
SPREAD_ATTEMPTS = 50

# NOTE: Where the package and the app would be imported from, in a server's
#   environment and directory: without importing the app itself.
WHICH_SCRIPT = """
import importlib.util, json, pathlib
package = pathlib.Path(importlib.util.find_spec('asgilook').origin).parent
print(json.dumps({'package': str(package),
                  'app': importlib.util.find_spec('asgilook.asgi').origin,
                  'journal': (package / 'journal.py').is_file()}))
"""


def _workers(count: int) -> str:
    return f'{count} worker' + ('s' if count > 1 else '')


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


def connections_per_worker(server: Uvicorn) -> list[int]:
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
    server: Uvicorn, picture: bytes, spreads: list[int]
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
    servers: dict[str, Uvicorn], picture: bytes, rounds: int, seconds: float
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


def which_package(env: dict[str, str], cwd: pathlib.Path) -> dict[str, Any]:
    """Where a server with ``env`` in ``cwd`` imports asgilook and its app from."""
    found: dict[str, Any] = child_json(
        [sys.executable, '-c', WHICH_SCRIPT], env=env, cwd=cwd
    )
    return found


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


# The phase


def upload_configs(run: Bench) -> list[tuple[str, dict[str, str], pathlib.Path]]:
    """Each server to upload to: its name, environment and directory."""
    configs = []
    if run.old is not None:
        root = run.old.package_root
        configs.append(('journal', environment(root), root))
    configs.append(('SQLite', environment(), ROOT))
    if run.postgres is not None:
        url = run.postgres.database()
        configs.append(('PostgreSQL', environment(ASGI_LOOK_DATABASE_URL=url), ROOT))
    return configs


def upload_servers(
    run: Bench, workers: int, picture: bytes, seconds: float
) -> dict[str, list[UploadRun]]:
    """Fresh servers of ``workers`` workers each, taking turns; their turns."""
    storages = {}
    with contextlib.ExitStack() as stack:
        servers = {}
        for name, env, cwd in upload_configs(run):
            storages[name] = pathlib.Path(
                tempfile.mkdtemp(prefix=f'uploads-{name}-', dir=run.tmp)
            )
            env = {**env, 'ASGI_LOOK_STORAGE_PATH': str(storages[name])}
            check_package(name, env, cwd, run.old)
            redis_server = stack.enter_context(RedisServer())
            env['ASGI_LOOK_REDIS_URL'] = redis_server.url
            log_path = run.tmp / f'uploads-{name}-{workers}.log'
            servers[name] = stack.enter_context(
                asgilook_server(name, env, log_path, workers, cwd)
            )
        progress(
            f'5. Uploads, {_workers(workers)}: {", ".join(servers)} take turns, '
            f'{run.args.rounds} x {seconds:.3g} s each ...'
        )
        turns, spreads = asyncio.run(
            upload_turns(servers, picture, run.args.rounds, seconds)
        )
    for name, files in storages.items():
        check_storage(name, files)
    if workers > 1:
        run.notes.append(
            f'Connections opened until even over the workers, {_workers(workers)}, '
            'tries per turn: '
            + '; '.join(f'{name} {spreads[name]}' for name in spreads)
        )
    return turns


def uploads(run: Bench) -> None:
    """5: uploads per second, each index against the journal."""
    picture = noise_png()
    seconds = run.args.duration / run.args.rounds
    runs: dict[tuple[str, int], UploadRun] = {}
    for workers in (1, 2):
        for name, turns in upload_servers(run, workers, picture, seconds).items():
            runs[name, workers] = functools.reduce(operator.add, turns)
            run.raw[f'uploads {name} {workers}'] = [
                {
                    'uploads': turn.uploads,
                    'seconds': turn.seconds,
                    'cpu': turn.cpu,
                    'errors': turn.errors,
                    'latency_median': statistics.median(turn.latencies),
                }
                for turn in turns
            ]
    for (name, workers), done in runs.items():
        if done.errors:
            run.notes.append(
                f'Uploads, {name}, {_workers(workers)}: errors {done.errors}'
            )
    for workers in (1, 2):
        per_turn = '; '.join(
            f'{name} '
            + ' '.join(
                f'{turn["uploads"] / turn["seconds"]:.0f}'
                for turn in run.raw[f'uploads {name} {workers}']
            )
            for name, count in runs
            if count == workers
        )
        run.notes.append(f'Uploads/s per turn, {_workers(workers)}: {per_turn}')
    for workers in (1, 2):
        journal = runs.get(('journal', workers))
        baseline = None if journal is None else journal.rate
        for backend in run.backends():
            figure = runs[backend, workers].rate
            run.add(
                f'uploads_{backend}_{workers}',
                f'uploads, {backend}, {_workers(workers)}',
                '/s', figure, baseline, f'journal, {_workers(workers)}',
                'ratio >= 1.0', None if baseline is None else figure >= baseline,
            )  # fmt: skip
            if journal is not None:
                run.notes.append(
                    f'Uploads, {backend} less journal, {_workers(workers)}: '
                    + _paired(
                        run.raw[f'uploads {backend} {workers}'],
                        run.raw[f'uploads journal {workers}'],
                    )
                )
    for workers in (1, 2):
        journal = runs.get(('journal', workers))
        for backend in run.backends():
            run.add(
                f'upload_cpu_{backend}_{workers}',
                f'server CPU per upload, {backend}, {_workers(workers)}',
                'ms', runs[backend, workers].cpu_per_upload * 1000,
                None if journal is None else journal.cpu_per_upload * 1000,
                f'journal, {_workers(workers)}', '', None,
            )  # fmt: skip
