"""Who may upload, see and delete what: upload keys, visibility, signed links.

Uploads are open by default, as in the tutorial. With ``ASGI_LOOK_UPLOADS=keys``
an upload needs an upload key (``asgilook keys add``), sent as
``Authorization: Bearer KEY``; in either mode a key that is sent is used, so
its pictures are its own whatever the mode. A key may hold a **quota** (bytes
its pictures may take, counted as uploaded) and a **rate** (uploads a minute,
held across every worker and machine through Redis). Its pictures are its
own: it lists them, whatever their visibility, and deletes them, from any
device; an admin key lists and deletes every picture.

Each picture is ``public`` (listed to everyone), ``unlisted`` (served to
whoever has its URL, listed to its key only) or ``private``: then every URL of
it (the original, thumbnails, animation, page) needs a signature and an
expiry in its query (see :mod:`asgilook.http.signing`), and without a valid
one it is a ``404``, as if it did not exist. The documents its uploader gets,
and its key's listings, carry signed URLs. Private pictures' answers are kept
by no shared cache: only the browser that holds the link keeps them, until
the link expires.
"""

from __future__ import annotations

import math
import time
from typing import Any

import falcon
import falcon.asgi

from asgilook.caching.rates import Rates
from asgilook.config import Config
from asgilook.errors import ImageNotFound
from asgilook.http import access
from asgilook.http.signing import Signer
from asgilook.settings import format_bytes
from asgilook.storage.index import PRIVATE
from asgilook.storage.index import PUBLIC
from asgilook.storage.index import VISIBILITIES
from asgilook.storage.index import QuotaExceeded
from asgilook.storage.index import UploadKey
from asgilook.storage.index import key_hash
from asgilook.storage.store import Image
from asgilook.storage.store import Store

#: The query parameter (or form field) that says who may see an upload.
VISIBILITY = 'visibility'
#: The query parameters of a signed link.
EXPIRES = 'expires'
SIGNATURE = 'signature'
#: What the URLs of a document are, by field; ``srcset`` is handled apart.
_URL_FIELDS = ('image', 'page', 'animation', 'original')


def bearer(req: falcon.asgi.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one."""
    scheme, _, token = (req.auth or '').partition(' ')
    if scheme.lower() != 'bearer' or not token.strip():
        return None
    return token.strip()


def _unauthorized(title: str, description: str) -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(
        title=title, description=description, challenges=['Bearer']
    )


def quota_exceeded(key: UploadKey, used: int, size: int) -> falcon.HTTPContentTooLarge:
    """The 413 of an upload that its key's quota cannot take: what is left."""
    quota = key.quota or 0
    left = max(0, quota - used)
    return falcon.HTTPContentTooLarge(
        title='Quota Exceeded',
        description=(
            f'The upload key "{key.name}" may keep {format_bytes(quota)} of '
            f'pictures; it keeps {format_bytes(used)}, so {format_bytes(left)} '
            f'is left, and this upload is {format_bytes(size)}. Delete some of '
            "the key's pictures, or ask for a larger quota."
        ),
    )


class Sharing:
    """The service's rules of access, asked by the resources."""

    def __init__(self, config: Config, store: Store, rates: Rates | None) -> None:
        self._config = config
        self._store = store
        self._rates = rates
        self._signer: Signer | None = None

    # Keys

    async def key(self, req: falcon.asgi.Request) -> UploadKey | None:
        """The upload key the request is sent with, if any.

        Raises:
            falcon.HTTPUnauthorized: a bearer token that is no key in use.
        """
        token = bearer(req)
        if token is None:
            return None
        key = await self._store.key(key_hash(token))
        if key is None or key.revoked is not None:
            raise _unauthorized(
                'Invalid Upload Key',
                'That bearer token is no upload key in use: it is mistyped, or '
                'the key was revoked.',
            )
        access.note_key(key.name)
        return key

    async def uploader(
        self, req: falcon.asgi.Request, size: int | None
    ) -> UploadKey | None:
        """The key an upload is made with, once it may go on; None if open.

        ``size`` is the upload's length, if known yet: an upload that its
        key's quota cannot take is refused before its body is read.

        Raises:
            falcon.HTTPUnauthorized: keys are required and none (or a bad
                one) was sent.
            falcon.HTTPTooManyRequests: the key's rate is used up for now.
            falcon.HTTPContentTooLarge: its quota is.
        """
        key = await self.key(req)
        if key is None:
            if self._config.uploads == 'keys':
                raise _unauthorized(
                    'Upload Key Required',
                    'Uploads here need an upload key: send it as '
                    '"Authorization: Bearer KEY". Keys are made with '
                    '`asgilook keys add NAME`.',
                )
            return None
        if size is not None:
            self.check_quota(key, size)
        if key.rate is not None and self._rates is not None:
            wait = await self._rates.take(key.name, key.rate)
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                raise falcon.HTTPTooManyRequests(
                    title='Too Many Uploads',
                    description=(
                        f'The upload key "{key.name}" may upload {key.rate} '
                        f'pictures a minute; try again in {seconds} s.'
                    ),
                    retry_after=seconds,
                )
        return key

    @staticmethod
    def check_quota(key: UploadKey, size: int) -> None:
        """Refuse an upload of ``size`` bytes that the key's quota cannot take."""
        if key.quota is not None and key.used + size > key.quota:
            raise quota_exceeded(key, key.used, size)

    @staticmethod
    def refused(ex: QuotaExceeded) -> falcon.HTTPContentTooLarge:
        """The 413 of a quota found exceeded as the upload was committed."""
        return quota_exceeded(ex.key, ex.used, ex.size)

    # Visibility

    @staticmethod
    def visibility(req: falcon.asgi.Request, given: str | None = None) -> str:
        """Who may see an upload: its ``visibility`` parameter or form field.

        Raises:
            falcon.HTTPInvalidParam: neither public, unlisted nor private.
        """
        value = given if given is not None else req.get_param(VISIBILITY)
        if value is None or value == '':
            return PUBLIC
        if value not in VISIBILITIES:
            raise falcon.HTTPInvalidParam(
                'The visibility is "public" (the default: listed to everyone), '
                '"unlisted" (served to whoever has its URL, never listed) or '
                '"private" (only through signed links that expire).',
                VISIBILITY,
            )
        return value

    async def signer(self) -> Signer:
        """What signs and checks links: the configured secrets, else the index's."""
        if self._signer is None:
            secrets = [secret.encode() for secret in self._config.url_secrets]
            if not secrets:
                secrets = [await self._store.url_secret()]
            self._signer = Signer(secrets, self._config.signed_url_ttl)
        return self._signer

    async def check(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image: Image
    ) -> None:
        """Let a request see ``image``: a private one only through a good link.

        Raises:
            ImageNotFound: the image is private and the link is not signed,
                or its signature is wrong or expired: a ``404``, never a
                ``403`` that says the picture exists.
        """
        if image.visibility != PRIVATE:
            return
        signer = await self.signer()
        if not signer.valid(req.path, req.get_param(EXPIRES), req.get_param(SIGNATURE)):
            raise ImageNotFound(f'There is no image with the id {image.image_id}.')
        # NOTE: Kept by the browser that holds the link, by no shared cache,
        #   and no longer than the link is good.
        expires = int(req.get_param(EXPIRES) or 0)
        resp.context.private_max_age = max(0, expires - int(time.time()))

    async def document(self, image: Image) -> dict[str, Any]:
        """The image's document, its URLs signed if it is private."""
        document = image.serialize()
        if image.visibility != PRIVATE:
            return document
        signer = await self.signer()
        for field in _URL_FIELDS:
            if document[field] is not None:
                document[field] = signed(signer, document[field])
        document['thumbnails'] = [signed(signer, uri) for uri in document['thumbnails']]
        document['srcset'] = ', '.join(
            f'{signed(signer, uri)} {width}w' for uri, (width, _) in image.sources()
        )
        return document


def signed(signer: Signer, uri: str) -> str:
    """``uri`` with a signature of its path and an expiry after its own query."""
    path, _, query = uri.partition('?')
    signature = signer.sign(path).partition('?')[2]
    return f'{path}?{query}&{signature}' if query else f'{path}?{signature}'
