"""The soak's engine: the service under load, its faults, and what was seen.

``Soak`` starts a ``redis-server`` and ``uvicorn --workers 2``, runs the
clients (uploads, deletions, reads, ``/events`` streams) with Redis restarted
and a worker killed meanwhile, samples every worker's memory and
descriptors, and at the end checks the final listing and the storage.
``bench/soak_verdict.py`` judges what it recorded; ``bench/soak_report.py``
sums it up.
"""

from __future__ import annotations

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
import time
from typing import Any

import httpx
import PIL.Image
import PIL.ImageDraw
import psutil

from asgilook.commands.processes import RedisServer
from asgilook.commands.processes import free_port
from bench.common import CACHE_HEADER
from bench.common import ROOT
from tests.servers import Uvicorn

AVIF_ACCEPT = 'image/avif,image/webp,*/*'
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
