"""HTTP caching for browsers and CDNs: validators and conditional requests.

Every response that shows something has a strong ``ETag`` (and, for an
image, ``Last-Modified``); a GET or HEAD whose ``If-None-Match`` or
``If-Modified-Since`` says the client has it already is answered ``304 Not
Modified`` (RFC 9110, sections 13.1 and 13.2). Functions here take header
values as strings, so the ASGI fast path (:mod:`asgilook.caching.memory`) and the
Falcon resources decide alike.

A compressed answer is another representation, so it has an ETag of its own
(:func:`coded`): the identity's, with ``-br`` or ``-gzip`` inside the quotes.
Caches keep the two apart by it. ``If-None-Match`` compares weakly, and the
representations differ only in their content coding, so a tag of either is
current while the identity's is (:func:`not_modified`).
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import falcon
import falcon.asgi

#: The content codings whose ETags :func:`coded` makes, and
#: :func:`not_modified` takes for the identity's.
CODINGS = ('br', 'gzip')
_CODED_SUFFIXES = tuple(f'-{coding}"' for coding in CODINGS)


def etag_of(body: bytes) -> str:
    """A strong entity tag for a body that has no version of its own."""
    return f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'


def coded(etag: str, coding: str) -> str:
    """The ETag of the representation of ``etag`` in ``coding``.

    ``"<tag>"`` becomes ``"<tag>-<coding>"`` (``W/`` stays): another strong
    validator, as RFC 9110 asks of another representation.
    """
    return f'{etag[:-1]}-{coding}"'


def uncoded(tag: str) -> str:
    """The ETag of the identity representation that ``tag`` names, without
    ``W/``: ``tag`` itself unless :func:`coded` made it."""
    tag = tag.strip().removeprefix('W/')
    if tag.endswith(_CODED_SUFFIXES):
        return tag[: tag.rindex('-')] + '"'
    return tag


def not_modified(
    if_none_match: str | None,
    if_modified_since: str | None,
    etag: str | None,
    last_modified: datetime.datetime | None,
) -> bool:
    """Whether a GET or HEAD with these preconditions gets a 304.

    ``If-None-Match`` is compared weakly, as RFC 9110 says, and a tag of a
    compressed representation (see :func:`coded`) as the identity's; when it
    is present ``If-Modified-Since`` is ignored. A date that cannot be parsed
    is ignored too.
    """
    if if_none_match is not None:
        tags = {uncoded(tag) for tag in if_none_match.split(',')}
        return etag is not None and ('*' in tags or uncoded(etag) in tags)
    if if_modified_since is None or last_modified is None:
        return False
    try:
        since = falcon.http_date_to_dt(if_modified_since)
    except ValueError:
        return False
    # NOTE: HTTP dates have whole seconds; Last-Modified was sent rounded down.
    return last_modified.replace(microsecond=0) <= since


class ConditionalRequests:
    """Middleware: turn a 200 into a 304 when the client's copy is current.

    It sees every response last, after the cache, so it applies to responses
    served from the cache and to new ones alike. Resources that can decide
    before doing any work (an image, whose validators come from the index)
    answer 304 themselves, without reading a file.
    """

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        if resp.status_code != 200 or req.method not in ('GET', 'HEAD'):
            return
        if_none_match = req.get_header('If-None-Match')
        if_modified_since = req.get_header('If-Modified-Since')
        # NOTE: Most requests are not conditional: no date is parsed for them.
        if if_none_match is None and if_modified_since is None:
            return
        last_modified = resp.get_header('Last-Modified')
        if not_modified(
            if_none_match,
            if_modified_since,
            resp.get_header('ETag'),
            falcon.http_date_to_dt(last_modified) if last_modified else None,
        ):
            not_modified_response(resp)


def answer_not_modified(
    req: falcon.asgi.Request,
    resp: falcon.asgi.Response,
    etag: str,
    modified: datetime.datetime,
) -> bool:
    """Make ``resp`` a 304 if the request's validators match ``etag`` or
    ``modified``, before any work; say whether it did."""
    if not_modified(
        req.get_header('If-None-Match'),
        req.get_header('If-Modified-Since'),
        etag,
        modified,
    ):
        not_modified_response(resp)
        return True
    return False


def not_modified_response(resp: falcon.asgi.Response) -> None:
    """Make ``resp`` a 304: no body, validators and cache headers kept."""
    resp.status = falcon.HTTP_304
    resp.data = None
    resp.text = None
    resp.media = None
    for name in ('Content-Type', 'Content-Length', 'Link'):
        resp.delete_header(name)
