"""``GET /metrics``: Prometheus metrics of the service, correct across workers.

Counted: requests by route template, method and status, and how long they
took (those answered from memory before Falcon included); what the cache
answered (``Hit``, ``Miss``, ``Bypass``); thumbnails rendered and the time
each series took; upload sizes, uploads stored, and uploads refused by
reason (the error's title; a ``507``, storage full, among them). At each
scrape, the number of images stored, and the free and total bytes of the
storage volume.

NOTE: The free bytes are a gauge asked for at each scrape, by the worker that
answers it, never written to the multiprocess directory: the volume is every
worker's, so any worker's figure is the figure, as of now. A gauge in the
multiprocess files would keep each worker's last reading (``liveall``: one
series per worker, all alike; ``min``/``max``: a figure as old as the
stalest worker's), and a worker that died would leave its reading behind.

Requests are counted in plain Python first (:class:`Tally`) and handed to the
client library in batches, at most a second apart and before every scrape of
this process and at the end of its lifespan: counting each answer through the
library took a quarter of the time of answering a cached thumbnail. So another
worker's ``/metrics`` may lack this one's last second of requests, never more.

With several uvicorn workers, each is a process of its own: set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before they start (``asgilook
serve`` and ``make run`` do), and every worker writes its counts there, and
any worker's ``/metrics`` adds up all of them (the official client's
multiprocess mode). Without it, ``/metrics`` counts what its own process did:
right for a single process, but one worker's share when there are several,
so that one of several workers refuses it (``503``, saying how to count
right) rather than answer it wrong (see :func:`one_of_several_workers`).
"""

from __future__ import annotations

import asyncio
import bisect
import multiprocessing
import os
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.asgi
import prometheus_client
import prometheus_client.multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from asgilook.storage import space
from asgilook.storage.store import Store

MULTIPROCESS = 'PROMETHEUS_MULTIPROC_DIR'
#: What /metrics answers: the client library's text format.
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
# Requests that match no route share one label: a client cannot make new
# time series by asking for new URLs.
UNMATCHED = '(no route)'

#: Why one of several workers refuses /metrics, and how to count right.
PER_WORKER = (
    'This process is one of several workers, and each counts only what it '
    'answered itself. Set PROMETHEUS_MULTIPROC_DIR to an empty directory that '
    'every worker shares before they start (each writes its counts there, and '
    'any worker adds them all up), or run `asgilook serve --workers N`, which '
    'does it.'
)

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BYTES = tuple(2**power for power in range(14, 26))
#: Seconds between batches of requests counted (see :class:`Tally`).
FLUSH_SECONDS = 1.0


class Metrics:
    """The service's metrics, and a Falcon middleware and resource for them.

    One per app, with a registry of its own: creating many apps in one
    process (as the tests do) registers nothing twice.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.registry = prometheus_client.CollectorRegistry()
        registry = self.registry
        self.requests = prometheus_client.Counter(
            'asgilook_requests',
            'HTTP requests answered, by route template, method and status.',
            ['route', 'method', 'status'],
            registry=registry,
        )
        self.latency = prometheus_client.Histogram(
            'asgilook_request_duration_seconds',
            'Time from a request to its answer, by route template.',
            ['route'],
            buckets=_SECONDS,
            registry=registry,
        )
        self.cache = prometheus_client.Counter(
            'asgilook_cache_answers',
            'Answers by what the cache did: Hit, Miss or Bypass.',
            ['result'],
            registry=registry,
        )
        self.rendered = prometheus_client.Counter(
            'asgilook_thumbnails_rendered',
            'Thumbnails rendered, at upload or first request.',
            registry=registry,
        )
        self.render_seconds = prometheus_client.Histogram(
            'asgilook_thumbnail_series_render_seconds',
            "Time to render a picture's whole thumbnail series.",
            buckets=_SECONDS,
            registry=registry,
        )
        self.upload_bytes = prometheus_client.Histogram(
            'asgilook_upload_bytes',
            'Sizes of the uploads stored.',
            buckets=_BYTES,
            registry=registry,
        )
        self.stored = prometheus_client.Counter(
            'asgilook_images_stored',
            'Uploads stored (new pictures and replacements).',
            registry=registry,
        )
        self.refused = prometheus_client.Counter(
            'asgilook_uploads_refused',
            'Uploads refused, by reason (the title of the error).',
            ['reason'],
            registry=registry,
        )
        self._tally = Tally(self._count)

    def observe(
        self, route: str, method: str, status: int, seconds: float, cache: str
    ) -> None:
        """Count one answered request (in the next batch)."""
        self._tally.add((route, method, status, cache), seconds)

    def flush(self) -> None:
        """Hand every request counted so far to the client library."""
        self._tally.flush()

    def _count(
        self,
        key: tuple[str, str, int, str],
        count: int,
        total: float,
        spread: list[int],
    ) -> None:
        route, method, status, cache = key
        self.requests.labels(route, method, str(status)).inc(count)
        self.cache.labels(cache).inc(count)
        latency = self.latency.labels(route)
        # NOTE: What Histogram.observe() does for each of ``count`` requests
        #   (one bucket each, and the sum), done once per bucket: the client
        #   has no public way to add many observations at once.
        #   tests/test_metrics.py checks it against observe().
        latency._sum.inc(total)
        for bucket, requests in zip(latency._buckets, spread, strict=True):
            if requests:
                bucket.inc(requests)

    def render(self, thumbnails: int, seconds: float) -> None:
        """Count a thumbnail series rendered."""
        self.rendered.inc(thumbnails)
        self.render_seconds.observe(seconds)

    # The middleware

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        self.flush()

    async def process_request(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        req.context.started = time.perf_counter()

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        route = req.uri_template or UNMATCHED
        status = resp.status_code
        seconds = time.perf_counter() - req.context.started
        # NOTE: Every answer says what the cache did; one that does not was
        #   made by the app.
        cache = resp.get_header('X-ASGILook-Cache', default='Miss')
        self.observe(route, req.method, status, seconds, cache)
        if req.method == 'POST' and route == '/images':
            if status == 201:
                self.stored.inc()
                self.upload_bytes.observe(req.context.upload_bytes)
            elif 400 <= status < 500 or status == 507:
                # NOTE: A 507 (the disk or the bucket is full) is refused too:
                #   not the client's doing, but an upload that was not stored.
                reason = getattr(resp.context, 'error_title', None) or str(status)
                self.refused.labels(reason).inc()

    # The resource

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        multiprocess = bool(os.environ.get(MULTIPROCESS))
        if not multiprocess and one_of_several_workers():
            raise falcon.HTTPServiceUnavailable(
                title='Counted Per Worker', description=PER_WORKER
            )
        self.flush()
        images = prometheus_client.CollectorRegistry()
        images.register(_Images(await self._store.count()))
        images.register(
            _Space(
                await space.measure(
                    self._store.objects, self._store.config.max_upload_bytes
                )
            )
        )
        counted = self.registry
        if multiprocess:
            counted = prometheus_client.CollectorRegistry()
            prometheus_client.multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                counted
            )
        resp.data = prometheus_client.generate_latest(
            counted
        ) + prometheus_client.generate_latest(images)
        resp.content_type = CONTENT_TYPE
        resp.cache_control = ['no-store']


class Tally:
    """Requests counted in plain Python, handed over in batches.

    Each key (route, method, status, cache result) keeps its number of
    requests, their total seconds, and how many fell in each latency bucket;
    :meth:`flush` hands them to ``count`` and starts again. The first request
    after a flush asks the running loop to flush :data:`FLUSH_SECONDS` later.
    """

    def __init__(
        self,
        count: Callable[[tuple[str, str, int, str], int, float, list[int]], None],
    ) -> None:
        self._count = count
        self._pending: dict[tuple[str, str, int, str], list[Any]] = {}
        self._due = False

    def add(self, key: tuple[str, str, int, str], seconds: float) -> None:
        """Count one request of ``key`` that took ``seconds``."""
        counted = self._pending.get(key)
        if counted is None:
            counted = self._pending[key] = [0, 0.0, [0] * (len(_SECONDS) + 1)]
        counted[0] += 1
        counted[1] += seconds
        # NOTE: The first bucket whose bound is not below it, as observe()
        #   picks it; past the last, +Inf.
        counted[2][bisect.bisect_left(_SECONDS, seconds)] += 1
        if not self._due:
            self._due = True
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Hand over everything counted since the last flush.

        NOTE: Also called at the end of the lifespan: a flush scheduled on a
        loop that then closed never runs, and the next loop must be able to
        schedule its own.
        """
        pending, self._pending = self._pending, {}
        self._due = False
        for key, (count, total, spread) in pending.items():
            self._count(key, count, total, spread)


def one_of_several_workers() -> bool:
    """Whether this process is one of several workers of one server.

    uvicorn's ``--workers`` (and ``WEB_CONCURRENCY``) start each worker as a
    child process with :mod:`multiprocessing`; a single uvicorn process has
    no such parent. uvicorn's ``--reload`` runs the app in one such child too,
    but only one: the uvicorn configuration the child was started with says
    so. Where that configuration cannot be read, a child counts as one of
    several: refused, never silently wrong. (A server that forks its workers
    without :mod:`multiprocessing`, as gunicorn does, is not told apart.)
    """
    if multiprocessing.parent_process() is None:
        return False
    # NOTE: The arguments of the child's target, uvicorn's Config among them,
    #   are kept on the child's own Process object while the target runs.
    started_with = getattr(multiprocessing.current_process(), '_kwargs', {})
    config = started_with.get('config')
    return not getattr(config, 'should_reload', False)


class _Images(Collector):
    """The number of images stored, as of the scrape."""

    def __init__(self, count: int) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            'asgilook_images', 'Images stored, as of this scrape.', value=self._count
        )


class _Space(Collector):
    """The free and total bytes of the storage volume, as of the scrape.

    Nothing for a bucket, which has no free space to ask for.
    """

    def __init__(self, measured: space.Space) -> None:
        self._space = measured

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self._space.free is None or self._space.total is None:
            return
        yield GaugeMetricFamily(
            'asgilook_storage_free_bytes',
            'Bytes free for the service on the tightest storage volume.',
            value=self._space.free,
        )
        yield GaugeMetricFamily(
            'asgilook_storage_total_bytes',
            'Size in bytes of the tightest storage volume.',
            value=self._space.total,
        )
