"""HTTP resources: the image collection, single images and thumbnails."""

from __future__ import annotations

import datetime
import urllib.parse
import uuid
from typing import Any
from typing import NamedTuple

import falcon
import falcon.asgi

from asgilook.caching import conditional
from asgilook.caching import memory
from asgilook.caching import ranges
from asgilook.caching.cache import Versioned
from asgilook.config import Config
from asgilook.errors import ImageNotFound
from asgilook.http import downloads
from asgilook.http import formats
from asgilook.http.events import CREATED
from asgilook.http.events import DELETED
from asgilook.http.events import Events
from asgilook.http.mount import rooted
from asgilook.http.purge import Purger
from asgilook.http.purge import image_keys
from asgilook.http.purge import listing_keys
from asgilook.http.purge import purged_keys
from asgilook.http.purge import set_keys
from asgilook.http.sharing import Sharing
from asgilook.http.sharing import bearer
from asgilook.http.uploads import upload
from asgilook.pictures import Size
from asgilook.pictures import renditions
from asgilook.storage.index import PRIVATE
from asgilook.storage.index import PUBLIC
from asgilook.storage.index import QuotaExceeded
from asgilook.storage.store import Body
from asgilook.storage.store import Commit
from asgilook.storage.store import Content
from asgilook.storage.store import Image
from asgilook.storage.store import Reader
from asgilook.storage.store import Store
from asgilook.storage.store import Window

#: How long a browser or CDN may keep an image or thumbnail without asking
#: again, when its URL does not name a version: a deleted or replaced picture
#: is gone from their caches within this time.
SHORT_LIVED = ('public', 'max-age=60')
#: The same, when its URL names the version (``?v=``): it never changes.
IMMUTABLE = ('public', 'max-age=31536000', 'immutable')
#: A listing changes with every upload: always ask again (the ETag saves the
#: body when nothing changed).
REVALIDATED = ('no-cache',)
#: What :meth:`_ImageFiles.answer` serves for the original kept as uploaded
#: (its ETag's suffix: ``"<version>-original"``).
KEPT = 'original'


class Page(NamedTuple):
    """What a listing asks for."""

    limit: int
    #: The id of the image the page follows.
    after: str | None
    newest_first: bool


def _before_commit(resp: falcon.asgi.Response) -> Commit | None:
    """What the cache middleware wants done just before a change is visible."""
    hook: Commit | None = getattr(resp.context, 'before_commit', None)
    return hook


class _ImageFiles:
    """Answers a GET or HEAD with one file of an image version.

    Shared by the original, the one kept as uploaded, the animation and the
    thumbnails: validators from the index, a 304 without touching the file,
    files that the response memory keeps whole, bigger ones in chunks.
    """

    def __init__(self, config: Config, store: Store) -> None:
        self._config = config
        self._store = store

    async def answer(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        image: Image,
        size: Size | None,
        uri: str,
        animation: bool = False,
    ) -> None:
        """Answer with the original, the thumbnail of ``size``, or the animation."""
        version = _version(req, image, uri)
        wanted = renditions.JPEG if size is None else _format(req)
        if animation:
            wanted = renditions.ANIMATION
        served = wanted
        if size is not None and not await self._store.rendered(image, size, wanted):
            served = renditions.JPEG
        started = self._start(req, resp, image, size, uri, version, served, wanted)
        if started is None:
            return
        whole_up_to, window = started
        content: Content | None = None
        if animation:
            content = await self._store.read_animation(image, whole_up_to, window)
            if content is None:
                raise falcon.HTTPNotFound(
                    title='Not Found',
                    description=(
                        f'Image {image.image_id} has no animation (its '
                        '"animation" is null); its picture is at '
                        f'{image.uri}.'
                    ),
                )
        elif size is not None and served != renditions.JPEG:
            content = await self._store.read_rendition(
                image, size, served, whole_up_to, window
            )
        if content is None:
            current, content = await self._store.read(image, size, whole_up_to, window)
            if current is not image or served != renditions.JPEG:
                # NOTE: Replaced meanwhile: describe what is sent. (The client's
                #   validators were for the version it asked about, not this
                #   one, so it gets the whole of it.)
                self._describe(resp, current, size, uri, None, renditions.JPEG, wanted)
                if current is not image and content.partial:
                    await _close(content.body)
                    current, content = await self._store.read(
                        current, size, whole_up_to
                    )
        await _send(req, resp, content)

    def _start(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        image: Image,
        size: Size | None,
        uri: str,
        version: str | None,
        served: str,
        wanted: str,
    ) -> tuple[int, Window | None] | None:
        """Describe the answer (see :meth:`_describe`); None if it is a 304,
        else how many bytes to read whole and the window of a range."""
        self._describe(resp, image, size, uri, version, served, wanted)
        etag = image.etag(size, served)
        if conditional.answer_not_modified(req, resp, etag, image.modified):
            return None
        whole_up_to = self._whole_up_to(req, f'{uri}?v={version}' if version else uri)
        return whole_up_to, _window(req, etag, image.modified)

    def _whole_up_to(self, req: falcon.asgi.Request, key: str) -> int:
        """The most bytes of a file read whole rather than sent in chunks.

        NOTE: A GET of a file's own URL (``key``, as the cache keys it) reads
        as much as this process's memory keeps of one answer, so that the
        memory can keep it and answer its repeats before Falcon (see
        :mod:`asgilook.caching.memory`); any other spelling, as much as the
        Redis cache keeps. The memory a request holds is so bounded either way.
        """
        whole_up_to = self._config.cache_max_entry
        target = f'{req.path}?{req.query_string}' if req.query_string else req.path
        if req.method == 'GET' and target == key:
            return max(whole_up_to, memory.largest(self._config.memory_cache))
        return whole_up_to

    async def answer_kept(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image: Image
    ) -> None:
        """Answer with the original kept as uploaded, to be saved as a file.

        Raises:
            ImageNotFound: the image has none (or no longer has it).
        """
        uri = image.original_uri
        version = _version(req, image, uri)
        _check_kept(image)
        started = self._start(req, resp, image, None, uri, version, KEPT, KEPT)
        if started is None:
            return
        whole_up_to, window = started
        content = await self._store.read_kept(image, whole_up_to, window)
        if content is None:
            # NOTE: Replaced or deleted meanwhile: its objects are gone. The
            #   client's validators were for that version: all of this one.
            image = await self._store.get(image.image_id)
            _check_kept(image)
            self._describe(resp, image, None, uri, None, KEPT, KEPT)
            content = await self._store.read_kept(image, whole_up_to)
        if content is None:
            raise ImageNotFound(
                f'The original kept of image {image.image_id} is missing.'
            )
        await _send(req, resp, content)

    @staticmethod
    def _describe(
        resp: falcon.asgi.Response,
        image: Image,
        size: Size | None,
        uri: str,
        version: str | None,
        served: str,
        wanted: str,
    ) -> None:
        """Set the headers of ``image``'s file, and say what version it shows.

        ``served`` is the format of the file sent, ``wanted`` the one the
        request asked for: a JPEG sent while the wanted format is still being
        rendered is to be asked for again, and is kept by no cache.
        """
        resp.set_header('ETag', image.etag(size, served))
        resp.set_header('Accept-Ranges', ranges.ACCEPT_RANGES)
        resp.last_modified = image.modified
        if served == KEPT:
            resp.content_type = image.original_type
            resp.set_header(
                'Content-Disposition',
                downloads.content_disposition(
                    downloads.ATTACHMENT, image, image.original
                ),
            )
        else:
            resp.content_type = renditions.MEDIA_TYPES[served]
        if size is None and served == renditions.JPEG:
            resp.set_header(
                'Content-Disposition',
                downloads.content_disposition(downloads.INLINE, image, served),
            )
        set_keys(resp, image_keys(image.image_id))
        if size is not None:
            resp.vary = ['Accept']
        resp.context.versioned = None
        if image.visibility == PRIVATE:
            # NOTE: Only the browser holding the signed link keeps it, no
            #   longer than the link is good (see asgilook.http.sharing).
            resp.cache_control = ['private', f'max-age={_private_max_age(resp)}']
            return
        if served != wanted:
            resp.cache_control = list(REVALIDATED)
            return
        resp.cache_control = list(IMMUTABLE if version else SHORT_LIVED)
        key = f'{uri}?v={version}' if version else uri
        # NOTE: The kept original's URL is its own: it needs no variant.
        variant = '' if served == KEPT else renditions.variant(served)
        resp.context.versioned = Versioned(key, image.image_id, image.file, variant)


#: The query parameter that names an upload (a form's "name" field too).
NAME = 'name'
#: The most characters of a name kept.
NAME_LENGTH = 255


def _name(given: str | None) -> str:
    """An upload's name as kept: its last path part, without control characters.

    NOTE: Browsers send a file's name alone, but some old ones and other
    clients send a whole path (``C:\\fakepath\\cat.jpg``): only its last
    part names the picture. Shown escaped wherever it is shown.
    """
    if not given:
        return ''
    last = given.replace('\\', '/').rsplit('/', 1)[-1]
    kept = ''.join(char for char in last if char.isprintable()).strip()
    return kept[:NAME_LENGTH]


def _version(req: falcon.asgi.Request, image: Image, uri: str) -> str | None:
    """The version a request's ``?v=`` names, if any; it must be the current one.

    Raises:
        falcon.HTTPNotFound: it names another.
    """
    version = req.get_param('v')
    if version is not None and version != image.version:
        raise falcon.HTTPNotFound(
            title='Not Found',
            description=(
                f'Version {version!r} of image {image.image_id} is not its '
                f'current one; the current one is at {uri}?v={image.version}.'
            ),
        )
    return version


def _check_kept(image: Image) -> None:
    """Raise ImageNotFound unless the image has an original kept as uploaded."""
    if not image.original:
        raise ImageNotFound(
            f'Image {image.image_id} has no original kept beside its JPEG (its '
            f'"original" is null): its picture is at {image.uri}.'
        )


def _private_max_age(resp: falcon.asgi.Response) -> int:
    """How long a private picture's answer may be kept: until its link expires."""
    return int(getattr(resp.context, 'private_max_age', 0))


def _window(
    req: falcon.asgi.Request, etag: str, modified: datetime.datetime
) -> Window | None:
    """The part of the file a GET asks for (see :mod:`asgilook.caching.ranges`);
    None for all of it."""
    if req.method != 'GET':
        return None
    byte_range = ranges.parse(req.get_header('Range'))
    if byte_range is None or not ranges.if_range_holds(
        req.get_header('If-Range'), etag, modified
    ):
        return None
    return byte_range.resolve


async def _send(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, content: Content
) -> None:
    """Answer with what was read: the whole file, a 206 of a part, or a 416."""
    if not content.satisfiable:
        raise falcon.HTTPRangeNotSatisfiable(
            content.size,
            title='Range Not Satisfiable',
            description=(
                f'The range asked for starts past the end of these '
                f'{content.size} bytes; ask for bytes=0-{max(content.size - 1, 0)} '
                'or less, or without Range for all of them.'
            ),
        )
    if content.partial:
        resp.status = falcon.HTTP_206
        resp.set_header(
            'Content-Range',
            ranges.content_range(content.start, content.end, content.size),
        )
    body = content.body
    if isinstance(body, Reader):
        resp.content_length = body.length
        if req.method == 'HEAD':
            await body.close()
        else:
            resp.stream = body
    else:
        resp.data = body


async def _close(body: Body) -> None:
    if isinstance(body, Reader):
        await body.close()


def _format(req: falcon.asgi.Request) -> str:
    """The thumbnail format a request asks for: ``?format=``, else by ``Accept``."""
    name = req.get_param('format')
    if name is None:
        return renditions.negotiate(req.get_header('Accept'))
    if name not in renditions.FORMATS:
        raise falcon.HTTPInvalidParam(
            f'The format is one of {", ".join(renditions.FORMATS)}; without it, '
            'the Accept header chooses.',
            'format',
        )
    return name


class Images:
    """``/images`` (list, upload) and, with the ``image`` suffix, one image."""

    DEFAULT_LIMIT = 100
    MAX_LIMIT = 1000
    OLDEST = 'oldest'
    NEWEST = 'newest'

    def __init__(
        self,
        config: Config,
        store: Store,
        events: Events | None = None,
        purger: Purger | None = None,
        sharing: Sharing | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._events = events
        self._purger = purger or Purger(None, config.purge_method)
        self._sharing = sharing or Sharing(config, store, None)
        self._files = _ImageFiles(config, store)

    def _page(self, req: falcon.asgi.Request) -> Page:
        """The page a listing asks for: its size, the id it follows, its order."""
        limit = req.get_param_as_int(
            'limit', min_value=1, max_value=self.MAX_LIMIT, default=self.DEFAULT_LIMIT
        )
        after = req.get_param_as_uuid('after')
        order = req.get_param('order', default=self.OLDEST)
        if order not in (self.OLDEST, self.NEWEST):
            raise falcon.HTTPInvalidParam(
                f'The order is "{self.OLDEST}" (the default: oldest upload first) '
                f'or "{self.NEWEST}".',
                'order',
            )
        return Page(limit, None if after is None else str(after), order == self.NEWEST)

    def cache_key(self, req: falcon.asgi.Request, params: dict[str, Any]) -> str | None:
        """The canonical form of a listing's URL: only what it reads, in order.

        Unknown parameters, and the spelling of ``after``, make no difference,
        so they make no new cache entries either. Other routes of this
        resource are not cached whole.
        """
        if req.uri_template != '/images' or req.auth:
            # NOTE: A listing with a key lists that key's own pictures.
            return None
        return self._url(self._page(req)) + formats.variant(req)

    def _url(self, page: Page, after: str | None = None, full: bool = False) -> str:
        """The canonical URL of ``page``, or of the one following ``after``.

        ``full`` spells out the default limit too, as ``Link`` always has.
        """
        query: list[tuple[str, str | int]] = []
        if full or page.limit != self.DEFAULT_LIMIT:
            query.append(('limit', page.limit))
        if after or page.after:
            query.append(('after', after or page.after or ''))
        if page.newest_first:
            query.append(('order', self.NEWEST))
        if not query:
            return '/images'
        return f'/images?{urllib.parse.urlencode(query)}'

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        page = self._page(req)
        key = await self._sharing.key(req)
        # One more than asked tells whether another page follows.
        images, state = await self._store.page(
            page.limit + 1,
            page.after,
            page.newest_first,
            owner=None if key is None or key.admin else key.name,
            everyone=key is not None and key.admin,
        )
        if len(images) > page.limit:
            images = images[: page.limit]
            next_page = self._url(page, images[-1].image_id, full=True)
            resp.set_header('Link', f'<{next_page}>; rel="next"')
        root = req.root_path
        documents = [
            rooted(
                image.serialize()
                if image.visibility != PRIVATE
                else await self._sharing.document(image),
                root,
            )
            for image in images
        ]
        body = formats.send(req, resp, documents)
        resp.set_header('ETag', conditional.etag_of(body))
        if key is not None:
            # NOTE: One key's own listing: for its holder alone, kept by no
            #   shared cache and not by this process's memory.
            resp.cache_control = ['private', 'no-cache']
            return
        resp.cache_control = list(REVALIDATED)
        set_keys(resp, listing_keys(image.image_id for image in images))
        # NOTE: A page changes only when the index does: it stays right for
        #   as long as the index is in the state it was read in.
        target = self._url(page) + formats.variant(req)
        resp.context.versioned = Versioned(target, None, state)

    on_head = on_get

    async def on_get_image(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image_id: uuid.UUID
    ) -> None:
        # NOTE: image_id arrives as a UUID from the route's converter; the store
        #   keys images by its canonical string form.
        image = await self._store.get(str(image_id))
        await self._sharing.check(req, resp, image)
        await self._files.answer(req, resp, image, None, image.uri)

    on_head_image = on_get_image

    async def on_get_animation(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image_id: uuid.UUID
    ) -> None:
        image = await self._store.get(str(image_id))
        await self._sharing.check(req, resp, image)
        await self._files.answer(
            req, resp, image, None, image.animation_uri, animation=True
        )

    on_head_animation = on_get_animation

    async def on_get_original(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image_id: uuid.UUID
    ) -> None:
        image = await self._store.get(str(image_id))
        await self._sharing.check(req, resp, image)
        await self._files.answer_kept(req, resp, image)

    on_head_original = on_get_original

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        # NOTE: Who uploads, and whether they may, is settled before the body
        #   is read: a refusal costs the client no upload.
        sharing = self._sharing
        sharing.visibility(req)
        name = _name(req.get_param(NAME))
        key = await sharing.uploader(req, req.content_length)
        async with upload(req, self._config.max_upload_bytes) as data:
            req.context.upload_bytes = len(data)
            fields = getattr(req.context, 'form_fields', None) or {}
            visibility = sharing.visibility(req, fields.get('visibility'))
            name = _name(fields.get('name')) or name or _name(fields.get('filename'))
            if key is not None:
                sharing.check_quota(key, len(data))
            image_id = str(self._config.uuid_generator())
            try:
                image, delete_token = await self._store.save(
                    image_id,
                    data,
                    _before_commit(resp),
                    name=name,
                    visibility=visibility,
                    owner='' if key is None else key.name,
                )
            except QuotaExceeded as ex:
                raise sharing.refused(ex) from None
        document = await sharing.document(image)
        resp.location = document['image']
        # NOTE: The delete token is shown here once and never again: the
        #   store keeps only its hash. The events get the document below the
        #   root, for each page to get it under its own.
        answer = rooted(document, req.root_path)
        formats.send(req, resp, {**answer, 'delete_token': delete_token})
        resp.status = falcon.HTTP_201
        if image.replaced:
            self._purger.forget(purged_keys(image_id))
        if self._events is not None and image.visibility == PUBLIC:
            # NOTE: Only public pictures are announced: the others are listed
            #   to their key alone.
            await self._events.publish(CREATED, document)

    async def on_delete_image(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, image_id: uuid.UUID
    ) -> None:
        token = bearer(req)
        if token is None:
            # An unknown id is a 404 whoever asks; the listing is public anyway.
            await self._store.get(str(image_id))
            raise falcon.HTTPUnauthorized(
                title='Token Required',
                description='Send the delete_token of the image, or the admin '
                'token, as "Authorization: Bearer <token>".',
                challenges=['Bearer'],
            )
        image = await self._store.delete(str(image_id), token, _before_commit(resp))
        resp.status = falcon.HTTP_204
        self._purger.forget(purged_keys(image.image_id))
        if self._events is not None and image.visibility == PUBLIC:
            await self._events.publish(DELETED, image.serialize())


class Thumbnails:
    """``/thumbnails/{id}/{width}x{height}.jpeg``: one size of the fixed series."""

    def __init__(self, store: Store, sharing: Sharing | None = None) -> None:
        self._store = store
        self._sharing = sharing or Sharing(store.config, store, None)
        self._files = _ImageFiles(store.config, store)

    async def on_get(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        image_id: uuid.UUID,
        width: int,
        height: int,
    ) -> None:
        size = (width, height)
        image = await self._store.get(str(image_id))
        await self._sharing.check(req, resp, image)
        self._store.check_thumbnail(image, size)
        await self._files.answer(req, resp, image, size, image.thumbnail_uri(size))

    on_head = on_get
