"""HTTP resources: the image collection, single images and thumbnails."""

from __future__ import annotations

import uuid

import falcon
import falcon.asgi

from asgilook.config import Config
from asgilook.store import Store
from asgilook.uploads import read_upload

LISTING_TAG = 'listing'


def image_tag(image_id: str) -> str:
    """The cache tag of every response that shows this image's pixels."""
    return f'image:{image_id}'


class Images:
    """``/images`` (list, upload) and, with the ``image`` suffix, one image."""

    def __init__(self, config: Config, store: Store) -> None:
        self._config = config
        self._store = store

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        images = await self._store.list_images()
        resp.media = [image.serialize() for image in images]
        resp.context.cache_tags = (LISTING_TAG,)

    async def on_get_image(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image_id: uuid.UUID
    ) -> None:
        # NOTE: image_id arrives as a UUID from the route's converter; the store
        #   keys images by its canonical string form.
        image = await self._store.get(str(image_id))
        # NOTE: The body is read whole rather than streamed so that the cache
        #   can keep it: a stream cannot be replayed into Redis.
        resp.data = await self._store.read(image)
        resp.content_type = falcon.MEDIA_JPEG
        resp.context.cache_tags = (image_tag(image.image_id),)

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        data = await read_upload(req, self._config.max_upload_bytes)
        image_id = str(self._config.uuid_generator())
        image = await self._store.save(image_id, data)
        resp.location = image.uri
        resp.media = image.serialize()
        resp.status = falcon.HTTP_201
        # NOTE: A repeated id replaces a picture: whatever was cached of the
        #   old one (original, thumbnails) and every listing are now stale.
        resp.context.invalidate_tags = (LISTING_TAG, image_tag(image_id))


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
        image = await self._store.get(str(image_id))
        resp.data = await self._store.make_thumbnail(image, (width, height))
        resp.content_type = falcon.MEDIA_JPEG
        resp.context.cache_tags = (image_tag(image.image_id),)
