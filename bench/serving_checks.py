"""The serving benchmark's HTTP correctness checks on a fresh asgilook.

Validators, conditional GETs, HEAD, thumbnail sizes, and a listing's
``Link`` on a cache Hit: each a ``Check`` that passes or fails.
"""

from __future__ import annotations

import dataclasses
import io
import re

import httpx
import PIL.Image

from bench.common import CACHE_HEADER
from bench.serving_measure import short
from bench.serving_measure import upload
from bench.serving_setup import CHECK_PHOTOS
from bench.serving_setup import Target

VALIDATORS = ('ETag', 'Last-Modified', 'Cache-Control')
# Headers that may differ between a GET and the HEAD after it (each request
# has an id of its own).
HEAD_IGNORED = frozenset({'date', CACHE_HEADER.lower(), 'cache-status', 'x-request-id'})
THUMBNAIL_SIZE = re.compile(r'/(\d+)x(\d+)\.jpeg$')


@dataclasses.dataclass
class Check:
    """One HTTP correctness check on asgilook."""

    name: str
    ok: bool
    detail: str = ''


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
