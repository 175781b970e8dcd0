"""``GET /metrics``: Prometheus metrics of the service, correct across workers.

Counted: requests by route template, method and status, and how long they
took (those answered from memory before Falcon included); what the cache
answered (``Hit``, ``Miss``, ``Bypass``); thumbnails rendered and the time
each series took; upload sizes, uploads stored, and uploads refused by
reason (the error's title). At each scrape, the number of images stored.

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

import multiprocessing
import os
import time
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.asgi
import prometheus_client
import prometheus_client.multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
        # NOTE: Label children are looked up once: this runs on every request.
        self._children: dict[tuple[str, str, int, str], Any] = {}

    def observe(
        self, route: str, method: str, status: int, seconds: float, cache: str
    ) -> None:
        """Count one answered request."""
        key = (route, method, status, cache)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
                self.cache.labels(cache),
            )
        children[0].inc()
        children[1].observe(seconds)
        children[2].inc()

    def render(self, thumbnails: int, seconds: float) -> None:
        """Count a thumbnail series rendered."""
        self.rendered.inc(thumbnails)
        self.render_seconds.observe(seconds)

    # The middleware

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
            elif 400 <= status < 500:
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
        images = prometheus_client.CollectorRegistry()
        images.register(_Images(await self._store.count()))
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
