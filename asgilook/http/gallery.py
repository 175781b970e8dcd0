"""The gallery page, ``GET /``, and its assets under ``/static/``.

The page is plain HTML, CSS and one script from ``asgilook/http/static/``, with no
build step. They are read once, when the app is made. The page names each
asset with a hash of its content (``/static/gallery.js?v=<hash>``), so an
asset is kept by browsers for good, and a new version of it has a new URL;
the page itself is revalidated on every visit, which its ``ETag`` makes a
``304`` until it changes.

Under a path prefix (the request's root path, see :mod:`asgilook.http.mount`)
the page names its assets and its form's target under it
(``/gallery/static/gallery.js?v=<hash>``), and its script finds the service's
root from its own URL: the listing, uploads, deletions, events and the
documents' pictures are all fetched below it. Without one, the page is the
file as it is.

The page keeps delete tokens in ``localStorage``, so it says what it may do:
a ``Content-Security-Policy`` (:data:`POLICY`) that lets it run its own
script and style and nothing else, talk to this service only, show this
service's pictures and the ``data:`` placeholders of its documents, and be
framed by no site; and ``Referrer-Policy: strict-origin-when-cross-origin``
(:data:`REFERRER_POLICY`).
"""

from __future__ import annotations

import hashlib
import mimetypes
import pathlib
import re

import falcon
import falcon.asgi

from asgilook.http.mount import quoted

STATIC = pathlib.Path(__file__).parent / 'static'
INDEX = 'index.html'

#: What the page may do. It has no inline script or style (its script sets
#: the placeholders through ``element.style``, which a policy does not
#: govern); its pictures are this service's, and its placeholders ``data:``
#: URIs; it fetches the listing, uploads and deletes, and listens to
#: ``/events`` here; its form posts here.
POLICY = '; '.join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
#: Other sites learn the origin the page was on, never its path; this
#: service gets the whole URL. NOTE: Not ``no-referrer``: under it, browsers
#: send ``Origin: null`` with the page's own uploads and deletions (Fetch
#: standard, "serializing a request origin"), which a proxy that checks
#: ``Origin`` refuses.
REFERRER_POLICY = 'strict-origin-when-cross-origin'

# The page's own URLs: the paths in its href, src and action attributes.
_PATHS = re.compile(r'( (?:href|src|action)=")/(?!/)')

_TYPES = {
    '.css': 'text/css; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.svg': 'image/svg+xml',
    '.html': 'text/html; charset=utf-8',
}


class _Asset:
    def __init__(self, name: str, data: bytes) -> None:
        self.data = data
        self.version = hashlib.blake2b(data, digest_size=8).hexdigest()
        self.etag = f'"{self.version}"'
        suffix = pathlib.PurePath(name).suffix
        self.content_type = _TYPES.get(suffix) or (
            mimetypes.guess_type(name)[0] or 'application/octet-stream'
        )


class Gallery:
    """``/`` (the page) and, with the ``asset`` suffix, ``/static/{name}``."""

    # NOTE: Assets are named by their content's hash: immutable. The page is
    #   not: always asked again, answered 304 while it is the same.
    IMMUTABLE = ('public', 'max-age=31536000', 'immutable')
    REVALIDATED = ('no-cache',)

    def __init__(self, directory: pathlib.Path = STATIC) -> None:
        # NOTE: The folder's HTML files are pages and templates, not assets.
        self._assets = {
            path.name: _Asset(path.name, path.read_bytes())
            for path in sorted(directory.iterdir())
            if path.is_file() and path.suffix != '.html'
        }
        self._templates = {
            path.name: self._versioned(path.read_text())
            for path in sorted(directory.glob('*.html'))
        }
        self._template = self._templates[INDEX]
        self._page = _Asset(INDEX, self._template.encode())
        # NOTE: By root path, the server's setting, not the client's: one or
        #   two in a process.
        self._pages = {'': self._page}
        self._rooted: dict[tuple[str, str], str] = {}

    def _versioned(self, page: str) -> str:
        """``page``, each asset it names by its path named by its content too."""
        for name, asset in self._assets.items():
            page = page.replace(
                f'"/static/{name}"', f'"/static/{name}?v={asset.version}"'
            )
        return page

    def page(self, root_path: str = '') -> _Asset:
        """The page, its URLs below ``root_path``."""
        page = self._pages.get(root_path)
        if page is None:
            text = self.template(INDEX, root_path)
            page = self._pages[root_path] = _Asset(INDEX, text.encode())
        return page

    def template(self, name: str, root_path: str = '') -> str:
        """The HTML file ``name`` of the folder, its own URLs below ``root_path``
        and its assets named by their content."""
        key = (name, root_path)
        text = self._rooted.get(key)
        if text is None:
            prefix = quoted(root_path)
            text = _PATHS.sub(lambda path: f'{path[1]}{prefix}/', self._templates[name])
            self._rooted[key] = text
        return text

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        self._send(resp, self.page(req.root_path), self.REVALIDATED)
        resp.set_header('Content-Security-Policy', POLICY)
        resp.set_header('Referrer-Policy', REFERRER_POLICY)

    on_head = on_get

    async def on_get_asset(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str
    ) -> None:
        asset = self._assets.get(name)
        if asset is None:
            raise falcon.HTTPNotFound(
                title='Not Found',
                description=f'There is no asset {name!r}; the page names its own.',
            )
        version = req.get_param('v')
        fixed = version == asset.version
        self._send(resp, asset, self.IMMUTABLE if fixed else self.REVALIDATED)

    on_head_asset = on_get_asset

    @staticmethod
    def _send(
        resp: falcon.asgi.Response, asset: _Asset, cache_control: tuple[str, ...]
    ) -> None:
        resp.data = asset.data
        resp.content_type = asset.content_type
        resp.set_header('ETag', asset.etag)
        resp.cache_control = list(cache_control)
