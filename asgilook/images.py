"""HTTP resources: the image collection, single images and thumbnails."""

from __future__ import annotations

import urllib.parse
import uuid

import falcon
import falcon.asgi

from asgilook.config import Config
from asgilook.store import Commit
from asgilook.store import Store
from asgilook.uploads import upload

LISTING_TAG = 'listing'


def image_tag(image_id: str) -> str:
    """The cache tag of every response that shows this image's pixels."""
    return f'image:{image_id}'


def _bearer_token(req: falcon.asgi.Request) -> str | None:
    scheme, _, token = (req.auth or '').partition(' ')
    if scheme.lower() != 'bearer' or not token.strip():
        return None
    return token.strip()


def _before_commit(resp: falcon.asgi.Response) -> Commit | None:
    """What the cache middleware wants done just before a change is visible."""
    hook: Commit | None = getattr(resp.context, 'before_commit', None)
    return hook


class Images:
    """``/images`` (list, upload) and, with the ``image`` suffix, one image."""

    DEFAULT_LIMIT = 100
    MAX_LIMIT = 1000

    def __init__(self, config: Config, store: Store) -> None:
        self._config = config
        self._store = store

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        limit = req.get_param_as_int(
            'limit', min_value=1, max_value=self.MAX_LIMIT, default=self.DEFAULT_LIMIT
        )
        after = req.get_param('after')
        # One more than asked tells whether another page follows.
        images = await self._store.list_images(limit + 1, after)
        if len(images) > limit:
            images = images[:limit]
            query = urllib.parse.urlencode(
                {'limit': limit, 'after': images[-1].image_id}
            )
            resp.append_header('Link', f'</images?{query}>; rel="next"')
        resp.media = [image.serialize() for image in images]
        resp.context.cache_tags = (LISTING_TAG,)

    async def on_get_image(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image_id: uuid.UUID
    ) -> None:
        # NOTE: image_id arrives as a UUID from the route's converter; the store
        #   keys images by its canonical string form.
        image, data = await self._store.original(str(image_id))
        # NOTE: The body is sent whole rather than streamed so that the cache
        #   can keep it: a stream cannot be replayed into Redis.
        resp.data = data
        resp.content_type = falcon.MEDIA_JPEG
        resp.context.cache_tags = (image_tag(image.image_id),)

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        async with upload(req, self._config.max_upload_bytes) as data:
            image_id = str(self._config.uuid_generator())
            # NOTE: A repeated id replaces a picture: whatever was cached of
            #   the old one (original, thumbnails) and every listing are stale.
            resp.context.invalidate_tags = (LISTING_TAG, image_tag(image_id))
            image, delete_token = await self._store.save(
                image_id, data, _before_commit(resp)
            )
        resp.location = image.uri
        # NOTE: The delete token is shown here once and never again: the
        #   store keeps only its hash.
        resp.media = {**image.serialize(), 'delete_token': delete_token}
        resp.status = falcon.HTTP_201

    async def on_delete_image(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image_id: uuid.UUID
    ) -> None:
        token = _bearer_token(req)
        if token is None:
            # An unknown id is a 404 whoever asks; the listing is public anyway.
            await self._store.get(str(image_id))
            raise falcon.HTTPUnauthorized(
                title='Token Required',
                description='Send the delete_token of the image, or the admin '
                'token, as "Authorization: Bearer <token>".',
                challenges=['Bearer'],
            )
        resp.context.invalidate_tags = (LISTING_TAG, image_tag(str(image_id)))
        await self._store.delete(str(image_id), token, _before_commit(resp))
        resp.status = falcon.HTTP_204


class Thumbnails:
    """``/thumbnails/{id}/{width}x{height}.jpeg``: one size of the fixed series."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def on_get(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        image_id: uuid.UUID,
        width: int,
        height: int,
    ) -> None:
        image, data = await self._store.thumbnail(str(image_id), (width, height))
        resp.data = data
        resp.content_type = falcon.MEDIA_JPEG
        resp.context.cache_tags = (image_tag(image.image_id),)
