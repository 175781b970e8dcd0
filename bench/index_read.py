"""The index benchmark's reads: new workers' first pages, memory, deep pages.

Phases 2 to 4 of ``bench/index.py``: fresh workers over HTTP, small and large
indexes in turn (their first pages, their RSS, ``HTTP_PAGES`` pages at random
depths), and pages at random depths in this process, from the index itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import json
import os
import pathlib
import random
import statistics
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import psutil

from asgilook.commands.processes import RedisServer
from asgilook.storage.index import Index
from asgilook.storage.index.sqlite import SQLiteIndex
from bench.common import CACHE_HEADER
from bench.common import HTTP_TIMEOUT
from bench.common import LOG_CHARS
from bench.common import BenchError
from bench.common import progress
from bench.index_setup import PAGE
from bench.index_setup import SEED
from bench.index_setup import SMALL
from bench.index_setup import Bench
from bench.index_setup import Start
from bench.index_setup import asgilook_server
from bench.index_setup import short

HTTP_PAGES = 200
# "~" in a target: within this factor; for the medians of a few first
# requests, or within this many milliseconds.
SAME = 1.5
SLACK = 5.0


def _same(figure: float, baseline: float, slack: float = 0.0) -> bool:
    """Whether ``figure`` is about ``baseline``: see ``SAME`` and ``SLACK``."""
    return figure <= SAME * baseline or figure - baseline <= slack


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p99(samples: Sequence[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=100, method='inclusive')[98]


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
        server = stack.enter_context(asgilook_server(name, env, log_path))
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


# The phases


def new_workers(run: Bench) -> None:
    """2, 3 and 4 over HTTP: new workers, with small and large indexes."""
    rng = random.Random(SEED)
    # NOTE: Small and large take turns, so that drift hits both alike.
    for number in range(run.args.starts):
        for backend in run.backends():
            for count in (SMALL, run.large):
                progress(
                    f'2-4. New worker {number + 1} of {run.args.starts}, '
                    f'{backend}, {short(count)} images: first pages, RSS, '
                    f'{HTTP_PAGES} pages ...'
                )
                os.sync()
                log_path = run.tmp / f'worker-{backend}-{count}.log'
                try:
                    start = new_worker(
                        f'{backend} {count} #{number}',
                        run.settings(backend, count),
                        log_path,
                        run.ids[count],
                        rng,
                    )
                except (BenchError, OSError, http.client.HTTPException) as ex:
                    log = log_path.read_text(errors='replace').strip()
                    raise BenchError(f'{ex}\nIts log:\n{log[-LOG_CHARS:]}') from ex
                run.starts.setdefault((backend, count), []).append(start)
                check_misses(run, backend, count, start)
    for (backend, count), starts in run.starts.items():
        run.raw[f'workers {backend} {count}'] = [
            dataclasses.asdict(start) for start in starts
        ]
    for backend in run.backends():
        first_pages(run, backend)
    for backend in run.backends():
        memory(run, backend)


def check_misses(run: Bench, backend: str, count: int, start: Start) -> None:
    if start.states != ['Miss', 'Miss']:
        run.notes.append(
            f'{backend}, {short(count)}: the first pages were '
            f'{", ".join(start.states)}, not Miss'
        )
    if start.misses != HTTP_PAGES:
        run.notes.append(
            f'{backend}, {short(count)}: {start.misses} of {HTTP_PAGES} '
            'deep pages were a Miss'
        )


def median_of(run: Bench, backend: str, count: int, field: str) -> float:
    return median([getattr(start, field) for start in run.starts[backend, count]])


def first_pages(run: Bench, backend: str) -> None:
    for field, what in (('first', 'page'), ('newest', 'newest')):
        figure = median_of(run, backend, run.large, field) * 1000
        baseline = median_of(run, backend, SMALL, field) * 1000
        run.add(
            f'first_{field}_{backend}',
            f'new worker: first {what}, {backend}, {run.big}',
            'ms', figure, baseline, run.small, f'< 50 ms, ~ {run.small}',
            figure < 50 and baseline < 50 and _same(figure, baseline, SLACK),
        )  # fmt: skip
    if run.journal is not None:
        figure = median_of(run, backend, run.large, 'first') * 1000
        run.add(
            f'first_page_{backend}_vs_journal',
            f'new worker: first page, {backend} vs journal, {run.big}',
            'ms', figure, run.journal.seconds * 1000, f'journal {run.big}',
            '< 50 ms', figure < 50,
        )  # fmt: skip


def memory(run: Bench, backend: str) -> None:
    """3: what a worker's RSS owes to the size of the index."""
    for field, moment in (
        ('rss_first', 'after the first pages'),
        ('rss_pages', f'after {HTTP_PAGES} more'),
    ):
        run.add(
            f'{field}_{backend}',
            f'worker RSS {moment}, {backend}, {run.big}',
            'MB',
            median_of(run, backend, run.large, field),
            median_of(run, backend, SMALL, field),
            run.small,
        )
    growth = median_of(run, backend, run.large, 'rss_pages') - (
        median_of(run, backend, SMALL, 'rss_pages')
    )
    # NOTE: What SQLite may cache, at most, in the connections of a worker.
    bound = SQLiteIndex.CACHE_KIB * 1024 * (SQLiteIndex.IDLE + 1)
    run.add(
        f'index_memory_{backend}',
        f'index memory per worker ({run.big} - {run.small}), {backend}',
        'MB',
        growth,
        None if run.journal is None else run.journal.growth,
        f'journal {run.big}',
        f'flat: < {bound / 1e6:.0f} MB',
        growth < bound,
    )


def pages(run: Bench) -> None:
    """4: pages at random depths, in this process and over HTTP."""
    indexes: list[tuple[str, Callable[[], Index]]] = [
        ('SQLiteIndex', lambda: SQLiteIndex(run.sqlite_root(run.large))),
    ]
    postgres = run.postgres
    if postgres is not None:
        indexes.append(
            ('PostgresIndex', lambda: postgres.index(run.databases[run.large]))
        )
    for name, make in indexes:
        progress(f'4. {name}.page at {run.args.depths} random depths of {run.big} ...')
        try:
            series = index_pages(
                make(), run.ids[run.large], run.args.depths, random.Random(SEED)
            )
        except Exception as ex:
            if name == 'SQLiteIndex':
                raise
            # NOTE: PostgreSQL is optional: its rows are left out, and why.
            run.notes.append(f'The {name} rows are skipped: {type(ex).__name__}: {ex}')
            continue
        run.raw[f'pages {name}'] = series
        for deep, first, order in (
            ('deep', 'first', ''),
            ('deep_newest_first', 'newest_first', ' newest'),
        ):
            for statistic, compute in (('median', median), ('p99', p99)):
                figure = compute(series[deep]) * 1000
                run.add(
                    f'{name}_{deep}_{statistic}',
                    f'{name}.page(after=random){order}, {run.big}, {statistic}',
                    'ms', figure, compute(series[first]) * 1000, 'page 1',
                    '< 5 ms', figure < 5,
                )  # fmt: skip
    for backend in run.backends():
        large, small = (
            [seconds for start in run.starts[backend, count] for seconds in start.pages]
            for count in (run.large, SMALL)
        )
        for statistic, compute in (('median', median), ('p99', p99)):
            figure, baseline = compute(large) * 1000, compute(small) * 1000
            # NOTE: No verdict on the p99 of a few hundred requests on two
            #   busy cores: it is whichever request a context switch hit.
            verdict = statistic == 'median'
            run.add(
                f'http_deep_{backend}_{statistic}',
                f'GET /images?after=random, {backend}, {run.big}, {statistic}',
                'ms', figure, baseline, run.small,
                f'~ {run.small}' if verdict else '',
                _same(figure, baseline) if verdict else None,
            )  # fmt: skip
