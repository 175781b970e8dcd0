"""The one place that wires config, store, cache, resources and errors."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi

from asgilook import logs
from asgilook.caching.cache import RedisCache
from asgilook.caching.conditional import ConditionalRequests
from asgilook.caching.memory import Replay
from asgilook.caching.memory import ResponseMemory
from asgilook.caching.memory import listed
from asgilook.caching.rates import Rates
from asgilook.config import Config
from asgilook.errors import DamagedObject
from asgilook.errors import DeleteForbidden
from asgilook.errors import ImageNotFound
from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.errors import UnknownCursor
from asgilook.errors import UnsupportedImage
from asgilook.http import advice
from asgilook.http import formats
from asgilook.http import pages
from asgilook.http import uploads
from asgilook.http.access import ANSWER
from asgilook.http.access import AccessLog
from asgilook.http.compression import Compression
from asgilook.http.compression import Unknown
from asgilook.http.compression import varied
from asgilook.http.edge import ERROR_CACHE_CONTROL
from asgilook.http.edge import Edge
from asgilook.http.edge import Router
from asgilook.http.edge import adding
from asgilook.http.events import Events
from asgilook.http.gallery import Gallery
from asgilook.http.health import Health
from asgilook.http.images import Images
from asgilook.http.images import Thumbnails
from asgilook.http.limits import MAX_HEADERS
from asgilook.http.limits import MAX_QUERY
from asgilook.http.limits import MAX_TARGET
from asgilook.http.metrics import Metrics
from asgilook.http.mount import mount
from asgilook.http.mount import prefixing
from asgilook.http.openapi import OpenAPI
from asgilook.http.purge import Purger
from asgilook.http.sharing import Sharing
from asgilook.storage.store import Store

#: Seconds a client is told to wait before it tries a store that is away again.
RETRY_AFTER = 5

logger = logging.getLogger(__name__)

# NOTE: Falcon picks the handler of the most specific class in an error's MRO,
#   so UnsupportedImage is a 415 although it is also an InvalidImage.
_ERRORS: tuple[tuple[type[Exception], Callable[..., falcon.HTTPError], str], ...] = (
    (ImageNotFound, falcon.HTTPNotFound, 'Not Found'),
    (ImageTooLarge, falcon.HTTPContentTooLarge, 'Image Too Large'),
    (UnsupportedImage, falcon.HTTPUnsupportedMediaType, 'Unsupported Image Format'),
    (InvalidImage, falcon.HTTPBadRequest, 'Invalid Image'),
    (UnknownCursor, falcon.HTTPBadRequest, 'Invalid Parameter'),
    (DeleteForbidden, falcon.HTTPForbidden, 'Forbidden'),
    (StorageFull, falcon.HTTPInsufficientStorage, 'Storage Full'),
    # NOTE: A store that cannot be reached comes back by itself: say when to
    #   try again.
    (
        StorageUnavailable,
        functools.partial(falcon.HTTPServiceUnavailable, retry_after=RETRY_AFTER),
        'Storage Unavailable',
    ),
    # NOTE: Not the client's doing, and never answered with the bytes: the log
    #   names the object, and `asgilook check` finds every such one.
    (DamagedObject, falcon.HTTPInternalServerError, 'Stored Object Damaged'),
)


def _error_handler(http_error: Callable[..., falcon.HTTPError], title: str) -> Any:
    async def handle(
        req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: Any
    ) -> None:
        raise http_error(title=title, description=str(ex)) from ex

    return handle


async def _unexpected(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: Any
) -> None:
    """Any other exception: a ``500``, and one line in the log, not a traceback.

    NOTE: In place of Falcon's own handler, which logs the whole traceback;
    it is logged at DEBUG here (see :func:`asgilook.logs.failure`).
    """
    logs.failure(logger, 'Could not answer %s %s', req.method, req.path, ex=ex)
    raise falcon.HTTPInternalServerError() from ex


class App(falcon.asgi.App):  # type: ignore[type-arg]
    """Falcon's ASGI app, with a few things done in front of it.

    A request whose target is too long is answered ``414`` before anything
    else, so that it is never looked up, cached or stored; one whose headers
    are too large, ``431``. A GET or HEAD that
    :class:`~asgilook.caching.memory.ResponseMemory` can answer (an image version's
    original or thumbnail given before, still current) is answered before
    Falcon builds its request and response objects: the hot path of an image
    service. Any other request gets a :class:`~asgilook.http.uploads.Body` as its
    ``receive``, which keeps the client to a deadline if its body is read.
    Everything else is Falcon's. Every answer, the memory's too, gets the
    :class:`~asgilook.http.edge.Edge`'s headers after its own, and is then
    compressed if it should be (see :mod:`asgilook.http.compression`). Around
    all of it, the :class:`~asgilook.http.access.AccessLog` gives the request
    its id, sends it back, and logs the answer.

    The hot path goes first: a replay that goes out as it was kept (no path
    prefix, no coding to apply) is found before the access log wraps the
    request, and :meth:`~asgilook.http.access.AccessLog.replay` sends it with
    the request's id and logs it, with nothing made for a log that is off.
    """

    def __init__(
        self,
        memory: ResponseMemory,
        config: Config,
        edge: Edge,
        compression: Compression,
        access: AccessLog,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._access = access
        self._memory = memory
        self._edge = edge
        self._compression = compression
        self._upload_timeout = config.upload_timeout
        self._upload_min_rate = config.upload_min_rate

    async def __call__(  # type: ignore[override]
        self, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        if scope['type'] == 'http':
            # NOTE: Called again by the access log, which so sees every
            #   answer, the refusals and replays below included.
            if ANSWER not in scope:
                started = time.perf_counter()
                found = self._quick(scope)
                if found is not None:
                    await self._access.replay(scope, send, found, started)
                    self._memory.observed(found, started)
                    return
                await self._access(scope, receive, send, self)
                return
            if _too_long(scope):
                query = len(scope['query_string'])
                path = len(scope.get('raw_path') or scope['path'])
                origin = self._edge.origin(listed(scope))
                send = adding(send, self._edge, origin)
                await _refuse(send, _uri_too_long(path, query))
                return
            # NOTE: What _quick() could answer, it did.
            tried = not scope.get('root_path') and self._compression.plain(scope)
            # NOTE: Under a path prefix, every layer below sees the app's own
            #   paths, and the URLs sent get the prefix (see asgilook.http.mount).
            if scope.get('root_path') and mount(scope, self._router):
                send = prefixing(send, scope['root_path'])
            if not tried and await self._replay(scope, send):
                return
            send = self._compression.wrap(scope, send)
            headers = listed(scope)
            send = adding(send, self._edge, self._edge.origin(headers))
            size = sum(len(name) + len(value) for name, value in headers)
            if size > MAX_HEADERS:
                await _refuse(send, _headers_too_large(size))
                return
            receive = scope[uploads.BODY] = uploads.Body(
                receive, self._upload_timeout, self._upload_min_rate
            )
        await super().__call__(scope, receive, send)

    def _quick(self, scope: dict[str, Any]) -> Replay | None:
        """The memory's answer to ``scope``, if it goes out as it was kept:
        the hot path, taken before anything else is done for a request.

        NOTE: Not under a path prefix (its URLs are rewritten as they are
        sent), nor for a client that takes a coding this answer may come in;
        a target too long to be answered is never remembered, but is looked
        at first all the same, so that every such request gets its 414.
        """
        if (
            scope.get('root_path')
            or _too_long(scope)
            or not self._compression.plain(scope)
        ):
            return None
        return self._memory.find(scope)

    async def _replay(self, scope: dict[str, Any], send: Any) -> bool:
        """Answer from memory, compressed as Falcon's answers are, if it can.

        NOTE: A HEAD whose compressed length is not known here (its GET's
        answer was not compressed in that coding, or was forgotten) is
        Falcon's to answer, with the body it would send: so that a HEAD says
        all that its GET does.
        """
        try:
            return await self._memory.replay(
                scope, self._compression.wrap(scope, send, replaying=True)
            )
        except Unknown:
            return False


def _too_long(scope: dict[str, Any]) -> bool:
    """Whether the request's target is longer than this service answers."""
    query = len(scope['query_string'])
    return (
        query > MAX_QUERY
        or query + len(scope.get('raw_path') or scope['path']) > MAX_TARGET
    )


def _uri_too_long(path: int, query: int) -> falcon.HTTPError:
    return falcon.HTTPUriTooLong(
        title='URI Too Long',
        description=(
            f'The request target is {path:,} bytes of path and {query:,} of '
            f'query string; this service answers at most {MAX_TARGET:,} bytes '
            f'in all, and {MAX_QUERY:,} of query. Leave out the parameters '
            'that the OpenAPI document (/openapi.json) does not name.'
        ),
    )


def _headers_too_large(size: int) -> falcon.HTTPError:
    return falcon.HTTPRequestHeaderFieldsTooLarge(
        title='Headers Too Large',
        description=(
            f'The request headers are {size:,} bytes; this service answers at '
            f'most {MAX_HEADERS:,}. Send fewer or shorter headers (cookies of '
            'other sites, say).'
        ),
    )


async def _refuse(send: Any, error: falcon.HTTPError) -> None:
    """Answer ``error`` before Falcon sees the request, with its JSON body.

    NOTE: Such a request is not routed, looked up, cached or counted.
    """
    body = error.to_json()
    await send(
        {
            'type': 'http.response.start',
            'status': error.status_code,
            'headers': [
                (b'content-type', falcon.MEDIA_JSON.encode()),
                (b'content-length', str(len(body)).encode()),
                (b'vary', b'Accept'),
                (b'cache-control', ERROR_CACHE_CONTROL.encode()),
            ],
        }
    )
    await send({'type': 'http.response.body', 'body': body})


def _serialize_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: falcon.HTTPError
) -> None:
    """Every error as JSON (or MessagePack, if preferred), never as XML; kept
    by no cache.

    NOTE: Falcon answers XML to a client that prefers it, as browsers do
    (``Accept: text/html,application/xhtml+xml,application/xml;...``). An
    error may follow headers of the answer it replaced (a 416 those of its
    picture): its Cache-Control is its own.
    """
    resp.context.error_title = ex.title
    resp.cache_control = [ERROR_CACHE_CONTROL]
    formats.send(req, resp, ex.to_dict())


def create_app(config: Config | None = None) -> falcon.asgi.App[Any, Any]:
    """Build the ASGI app; with no config, a default ``Config()``."""
    config = config or Config()
    store = Store(config)
    metrics = Metrics(store)
    store.on_render = metrics.render
    edge = Edge(config.cors_origins)
    access = AccessLog()

    def sent(
        origin: str | None, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        # NOTE: Varied once, when remembered (see compression.varied).
        return varied(edge.add(origin, headers))

    memory = ResponseMemory(
        config.memory_cache, store.current, access.observing(metrics.observe), sent
    )
    cache = RedisCache(config, memory, store.scope)
    events = Events(config, cache.redis, cache.guard, cache.keys)
    purger = Purger(config.purge_url, config.purge_method)
    sharing = Sharing(config, store, Rates(cache.redis, cache.guard, cache.keys))
    images = Images(config, store, events, purger, sharing)
    thumbnails = Thumbnails(store, sharing)

    # NOTE: Falcon runs process_response (and process_shutdown) in reverse
    #   order: the cache first, then the conditional requests, which so see
    #   cached answers too, and the metrics after them, which so count the
    #   answer as sent; the events stop reading before the cache closes the Redis
    #   client. The edge refuses unknown methods after the cache has said Miss.
    #   The compression, last of all, keeps the body of a HEAD's final answer,
    #   for its compressed length. The access log notes the route that answered.
    compression = Compression()
    middleware: list[Any] = [
        access,
        compression,
        metrics,
        store,
        ConditionalRequests(),
        cache,
        edge,
        events,
        purger,
    ]
    app = App(
        memory,
        config,
        edge,
        compression,
        access,
        middleware=middleware,
        router=Router(),
    )
    app.resp_options.media_handlers.update(formats.handlers())
    app.set_error_serializer(_serialize_error)
    gallery = Gallery()
    app.add_route('/', gallery)
    app.add_route('/static/{name}', gallery, suffix='asset')
    app.add_route(pages.ROUTE, pages.Pictures(config, store, gallery, sharing))
    app.add_route('/events', events)
    app.add_route('/healthz', Health(store, cache.redis, cache.guard))
    app.add_route('/metrics', metrics)
    app.add_route('/images', images)
    app.add_route('/images/{image_id:uuid}.jpeg', images, suffix='image')
    app.add_route('/images/{image_id:uuid}.webp', images, suffix='animation')
    app.add_route('/images/{image_id:uuid}/original', images, suffix='original')
    app.add_route('/openapi.json', OpenAPI(config))
    app.add_route(
        '/thumbnails/{image_id:uuid}/{width:int}x{height:int}.jpeg', thumbnails
    )
    app.add_error_handler(Exception, _unexpected)
    for error_type, http_error, title in _ERRORS:
        app.add_error_handler(error_type, _error_handler(http_error, title))
    app.add_error_handler(falcon.HTTPRouteNotFound, advice.route_not_found)
    app.add_error_handler(falcon.HTTPMethodNotAllowed, advice.method_not_allowed)
    app.add_error_handler(falcon.HTTPInvalidParam, advice.invalid_parameter)
    app.add_error_handler(falcon.HTTPMissingParam, advice.invalid_parameter)
    return app
