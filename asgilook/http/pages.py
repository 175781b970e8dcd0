"""A page per picture, ``GET /pictures/{image_id}``: to link to, and to unfurl.

The page shows the picture in an ``<img srcset sizes>`` (so a phone loads a
thumbnail the size of its screen, never the original), its size and time of
upload, its link to copy, the original to download and a way back to the
gallery; and it has the tags that chat apps and social sites read to preview
a link (OpenGraph's ``og:*``, ``twitter:card``), a description and a canonical
URL. Those want absolute URLs: they are made of ``ASGI_LOOK_PUBLIC_URL`` if it
is set, else of the request's scheme and ``Host`` (what uvicorn says they are:
behind a proxy, with ``--proxy-headers``), then the root path (see
:mod:`asgilook.http.mount`). Everything put in the page is HTML-escaped.

The markup is ``static/picture.html``, a :class:`string.Template`; its own
paths (assets, the gallery) get the root path as the gallery's page does.

Caching: the page is cached whole in Redis like the listing (it has a
:meth:`Pictures.cache_key`), keyed by its path and, without a public URL, by
the origin it names: a request with another ``Host`` gets a page of its own,
never one that names someone else's host. With a public URL, this process's
memory also keeps it for as long as the picture's version is current. Any
upload or deletion makes Redis's entries stale, so a deleted picture's page is
a ``404``, not a ``Hit``. A browser (one that prefers ``text/html``) gets that
``404`` as a small page; any other client, Falcon's JSON error body.
"""

from __future__ import annotations

import html
import string
import uuid
from collections.abc import Callable

import falcon
import falcon.asgi

from asgilook.caching import conditional
from asgilook.caching.cache import Versioned
from asgilook.config import Config
from asgilook.errors import ImageNotFound
from asgilook.http.downloads import file_name
from asgilook.http.edge import ERROR_CACHE_CONTROL
from asgilook.http.gallery import POLICY
from asgilook.http.gallery import REFERRER_POLICY
from asgilook.http.gallery import Gallery
from asgilook.http.images import REVALIDATED
from asgilook.http.mount import quoted
from asgilook.http.purge import image_keys
from asgilook.http.purge import set_keys
from asgilook.http.sharing import Sharing
from asgilook.http.sharing import signed
from asgilook.pictures import Size
from asgilook.pictures import renditions
from asgilook.storage.index import PRIVATE
from asgilook.storage.index import PUBLIC
from asgilook.storage.store import Image
from asgilook.storage.store import Store

#: The page's route.
ROUTE = '/pictures/{image_id:uuid}'
TEMPLATE = 'picture.html'
HTML = 'text/html; charset=utf-8'
#: The width link previews are best at (Facebook and LinkedIn ask for 1200
#: pixels across): ``og:image`` is the rendition closest to it.
PREVIEW_WIDTH = 1200
#: The part of the window's height the picture may take (gallery.css's
#: ``.picture img``), and the page's side padding in CSS pixels, for ``sizes``.
HEIGHT_SHARE = 0.8
PAD = 24
#: What ``sizes`` asks for over the width shown. NOTE: Chromium takes a
#: candidate below the screen's density when the geometric mean of it and
#: the next one up is above it: with a series that halves, up to 1.41 times
#: upscaled. Asking 1.13 times the width keeps it within 1.25. (The page's
#: CSS bounds the width shown, whatever ``sizes`` says.)
SHARPER = 1.13

_NOT_FOUND = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex">
  <title>No such picture - asgilook</title>
</head>
<body>
  <h1>No such picture</h1>
  <p>{description} It may have been deleted.</p>
  <p><a href="{gallery}">See all pictures</a></p>
</body>
</html>
"""


def describe(image: Image) -> tuple[str, str]:
    """The page's title, and its description: the picture's name if it has one."""
    width, height = image.size
    day = f'{image.modified:%d %b %Y}'.lstrip('0')
    title = f'{alt(image)} - asgilook'
    named = f'"{image.name}", a picture' if image.name else 'A picture'
    description = (
        f'{named} of {width} × {height} pixels, shared on asgilook on {day}: '
        'see it, copy its link or download the original.'
    )
    return title, description


def alt(image: Image) -> str:
    """What the picture is, for people who cannot see it: its name, if given."""
    width, height = image.size
    return image.name or f'Picture of {width} × {height} pixels'


def download(image: Image) -> tuple[str, str]:
    """The ``?v=`` URI of the original to download, and its file name.

    The original kept as uploaded (a transparent PNG, an animated GIF ...)
    if there is one, else the JPEG (see :mod:`asgilook.pictures.kept`).
    """
    if image.original:
        uri, extension = image.original_uri, image.original
    else:
        uri, extension = image.uri, renditions.JPEG
    return f'{uri}?v={image.version}', file_name(image, extension)


def _as_is(uri: str) -> str:
    return uri


def preview(image: Image) -> tuple[str, Size]:
    """The ``?v=`` URI and size of the rendition closest to 1200 pixels wide
    (the larger of two as close)."""
    return min(
        image.sources(),
        key=lambda source: (abs(source[1][0] - PREVIEW_WIDTH), -source[1][0]),
    )


def sizes(size: Size) -> str:
    """The ``sizes`` of the picture as the page shows it: as wide as the
    window (less its padding) or as its share of the window's height allows,
    and never wider than itself (times :data:`SHARPER`)."""
    width, height = size
    tall = SHARPER * HEIGHT_SHARE * 100 * width / height
    wide = f'calc((100vw - {2 * PAD}px) * {SHARPER})'
    return f'min({wide}, {tall:.2f}vh, {width}px)'


class Pictures:
    """``/pictures/{image_id}``: the page of one picture."""

    def __init__(
        self,
        config: Config,
        store: Store,
        gallery: Gallery,
        sharing: Sharing | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._gallery = gallery
        self._sharing = sharing or Sharing(config, store, None)

    def _origin(self, req: falcon.asgi.Request) -> str:
        """The scheme and host of the page's absolute URLs."""
        return self._config.public_url or f'{req.scheme}://{req.netloc}'

    def cache_key(self, req: falcon.asgi.Request, params: dict[str, object]) -> str:
        """The page's path; with the origin it names, unless that is fixed.

        NOTE: The query string makes no difference, so no new entries either.
        Keyed by origin, the key is never the request's own target, so the
        cache answers a Hit from Redis rather than render it again for this
        process's memory, which keeps no page whose origin varies.
        """
        if self._config.public_url:
            return req.path
        return f'{req.path}#{self._origin(req)}'

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image_id: uuid.UUID
    ) -> None:
        try:
            image = await self._store.get(str(image_id))
            await self._sharing.check(req, resp, image)
        except ImageNotFound as ex:
            if req.client_prefers((falcon.MEDIA_JSON, 'text/html')) != 'text/html':
                raise
            self._not_found(req, resp, str(ex))
            return
        link = _as_is
        if image.visibility == PRIVATE:
            signer = await self._sharing.signer()

            def link(uri: str) -> str:
                return signed(signer, uri)

        body = self.render(image, self._origin(req), req.root_path, link).encode()
        resp.data = body
        resp.content_type = HTML
        resp.set_header('ETag', conditional.etag_of(body))
        resp.set_header('Content-Security-Policy', POLICY)
        resp.set_header('Referrer-Policy', REFERRER_POLICY)
        set_keys(resp, image_keys(image.image_id))
        if image.visibility != PUBLIC:
            # NOTE: Shared by link, not to be found: no search engine lists
            #   it. A private page is kept by no shared cache either.
            resp.set_header('X-Robots-Tag', 'noindex')
        if image.visibility == PRIVATE:
            resp.cache_control = ['private', 'no-cache']
            resp.context.cache_key = None
            return
        resp.cache_control = list(REVALIDATED)
        if self._config.public_url:
            resp.context.versioned = Versioned(req.path, image.image_id, image.file)

    on_head = on_get

    def render(
        self,
        image: Image,
        origin: str,
        root_path: str = '',
        link: Callable[[str], str] | None = None,
    ) -> str:
        """The page of ``image``, its absolute URLs at ``origin``.

        ``link`` makes the URL of each of the picture's own URIs (signed
        ones, for a private picture).
        """
        link = link or _as_is
        prefix = quoted(root_path)
        title, description = describe(image)
        width, height = image.size
        preview_uri, (preview_width, preview_height) = preview(image)
        original, name = download(image)
        values = {
            'title': title,
            'description': description,
            'page': f'{origin}{prefix}{link(image.page_uri)}',
            'og_image': f'{origin}{prefix}{link(preview_uri)}',
            'og_width': preview_width,
            'og_height': preview_height,
            'alt': alt(image),
            'src': f'{prefix}{link(preview_uri)}',
            'srcset': ', '.join(
                f'{prefix}{link(uri)} {side}w' for uri, (side, _) in image.sources()
            ),
            'sizes': sizes(image.size),
            'width': width,
            'height': height,
            'iso': image.modified.isoformat(timespec='seconds'),
            'date': f'{image.modified:%d %b %Y, %H:%M} UTC'.lstrip('0'),
            'original': f'{prefix}{link(original)}',
            'download': name,
        }
        template = string.Template(self._gallery.template(TEMPLATE, root_path))
        return template.substitute(
            {name: html.escape(str(value)) for name, value in values.items()}
        )

    @staticmethod
    def _not_found(
        req: falcon.asgi.Request, resp: falcon.asgi.Response, description: str
    ) -> None:
        """The ``404`` as a page, for a browser."""
        gallery = f'{quoted(req.root_path)}/'
        resp.status = falcon.HTTP_404
        resp.content_type = HTML
        resp.text = _NOT_FOUND.format(
            description=html.escape(description), gallery=html.escape(gallery)
        )
        resp.cache_control = [ERROR_CACHE_CONTROL]
        resp.vary = ['Accept']
        resp.set_header('Content-Security-Policy', POLICY)
        resp.context.error_title = 'Not Found'
