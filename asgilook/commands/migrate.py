"""``asgilook migrate``: every object of a storage, copied to another place.

The objects of the storage that the settings name (as ``asgilook serve``
reads them: the storage directory, ``ASGI_LOOK_STORAGE_URL``,
``ASGI_LOOK_RENDITIONS_URL``, the keys) are copied to a directory or a bucket
(``s3://BUCKET[/PREFIX]``, with the ``AWS_*`` variables): the originals to
``--to``, the renditions (thumbnails and animations) there too or to
``--renditions-to``. Keys do not change, so the index, which names objects by
key, is not touched: a service started with ``ASGI_LOOK_STORAGE_URL`` set to
the new place serves every picture as before, byte for byte.

Each object is copied as its plaintext: read through the source's
:class:`~asgilook.storage.blobs.sealed.SealedBlobs` (decrypted if it was
sealed) and written through the destination's, sealed under the current key
if encryption is on (under the same key, so its name still opens it). It is
then read back, and compared by SHA-256. An object already at the destination
with the same plaintext (same size, then same SHA-256) is skipped, so a run
goes on where the last one stopped, and a second one copies nothing; one that
is there but differs, or does not open (damaged), is copied again.

It may run while the service serves: objects never change once written, and
one deleted from the source meanwhile is counted as gone. Uploads made during
the copy are caught by a second run, once the service uses the new place.

``asgilook migrate --to-database`` moves the index instead, and leaves the
objects where they are: that is :mod:`asgilook.commands.index_move`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib
from collections.abc import Mapping

from rich.progress import Progress

from asgilook.commands.defaults import DEFAULT_JOBS
from asgilook.commands.defaults import default_storage
from asgilook.commands.objects_output import Output
from asgilook.commands.objects_output import conclusion
from asgilook.commands.objects_walk import PREFIXES
from asgilook.commands.objects_walk import CannotStart
from asgilook.commands.objects_walk import Failed
from asgilook.commands.objects_walk import Tally
from asgilook.commands.objects_walk import Walk
from asgilook.commands.objects_walk import backends
from asgilook.commands.objects_walk import failing
from asgilook.commands.objects_walk import is_rendition
from asgilook.commands.objects_walk import location
from asgilook.commands.objects_walk import open_objects
from asgilook.commands.objects_walk import readable
from asgilook.commands.objects_walk import settings
from asgilook.commands.objects_walk import sources
from asgilook.commands.objects_walk import writable
from asgilook.config import Config
from asgilook.errors import DamagedObject
from asgilook.storage.blobs import Found
from asgilook.storage.blobs import Listed
from asgilook.storage.blobs import open_blobs
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.objects import Objects
from asgilook.storage.objects import keyring

OUTCOMES = ('copied', 'already there', 'gone')
#: An object is read whole from the source: it is written whole.
WHOLE = 1 << 62
#: A copy is read back in chunks of about this many bytes, as it is hashed.
CHUNK = 1024 * 1024


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def _digest(found: Found, size: int) -> bytes | None:
    """The SHA-256 of what was found, if it is ``size`` bytes long; else None."""
    body = found.body
    if isinstance(body, bytes):
        return _sha256(body) if found.size == size else None
    hasher = hashlib.sha256()
    try:
        if found.size == size:
            async for chunk in body:
                hasher.update(chunk)
            return hasher.digest()
    finally:
        await body.close()
    return None


async def holds(blobs: SealedBlobs, key: str, size: int, digest: bytes) -> bool:
    """Whether ``blobs`` has this plaintext under ``key``: its size, then its hash.

    An object that does not open (damaged, or sealed with a key not
    configured) does not hold it.
    """
    try:
        found = await blobs.open(key, CHUNK)
        return found is not None and await _digest(found, size) == digest
    except DamagedObject:
        return False


class Migration:
    """Copies objects to ``target``: originals to its originals, renditions to
    its renditions."""

    def __init__(self, target: Objects) -> None:
        self.target = target

    async def copy(self, blobs: SealedBlobs, listed: Listed) -> tuple[str, int]:
        """Copy one object of ``blobs``, unless it is there; verify the copy.

        Raises:
            Failed: it cannot be read, written, or does not read back as written.
        """
        key = listed.key
        with failing(f'cannot read it from {blobs.url}'):
            found = await blobs.open(key, WHOLE)
        if found is None:
            return 'gone', 0
        data = found.body
        assert isinstance(data, bytes)
        target = self.target.renditions if is_rendition(key) else self.target.originals
        digest = await asyncio.to_thread(_sha256, data)
        with failing(f'cannot copy it to {target.url}'):
            if await holds(target, key, len(data), digest):
                return 'already there', len(data)
            await target.put(key, data)
            same = await holds(target, key, len(data), digest)
        if not same:
            raise Failed(f'its copy in {target.url} does not read back as written')
        return 'copied', len(data)


def destination(to: str, renditions_to: str | None, config: Config) -> Objects:
    """The backends to copy to, sealed as the settings say.

    Raises:
        CannotStart: a URL is not a directory or an s3:// URL.
    """
    try:
        keys = keyring(config)
        originals = SealedBlobs(open_blobs(to, config.aws), keys)
        if renditions_to is None:
            return Objects(originals, originals)
        renditions = SealedBlobs(open_blobs(renditions_to, config.aws), keys)
    except ValueError as ex:
        raise CannotStart(str(ex)) from ex
    if location(renditions) == location(originals):
        return Objects(originals, originals)
    return Objects(originals, renditions)


def refuse_overlaps(source: Objects, target: Objects) -> None:
    """CannotStart if there is nothing to copy, or a copy would be listed again."""
    pairs = (
        (source.originals, target.originals),
        (source.renditions, target.renditions),
    )
    if all(location(there) == location(here) for here, there in pairs):
        raise CannotStart(f'the objects are in {target.originals.url} already')
    for here in backends(source):
        inside = tuple(location(here) + prefix for prefix in PREFIXES)
        for there in backends(target):
            if location(there).startswith(inside):
                raise CannotStart(
                    f'{there.url} is inside {here.url}: what is copied there would '
                    'be copied again'
                )


async def migrate(
    source: Objects, target: Objects, jobs: int, tally: Tally, progress: Progress
) -> None:
    """Copy every object of ``source`` to ``target``, ``jobs`` at a time."""
    try:
        for blobs in backends(source):
            await readable(blobs)
        for blobs in backends(target):
            await writable(blobs)
        copy = Migration(target).copy
        walk = Walk(
            sources(source, by_kind=True), copy, jobs, tally, progress, 'Copying'
        )
        await walk.run()
    finally:
        await source.close()
        await target.close()


def _heading(source: Objects, target: Objects) -> list[str]:
    if not (source.apart or target.apart):
        return [f'From {source.originals.url} to {target.originals.url}:']
    return [
        f'Originals from {source.originals.url} to {target.originals.url},',
        f'renditions from {source.renditions.url} to {target.renditions.url}:',
    ]


def _serve(target: Objects) -> str:
    """The settings of a service that serves the objects from ``target``."""
    setting = f'ASGI_LOOK_STORAGE_URL={target.originals.url}'
    if target.apart:
        return f'{setting} and ASGI_LOOK_RENDITIONS_URL={target.renditions.url}'
    return f'{setting} (ASGI_LOOK_RENDITIONS_URL unset)'


def run(
    to: str,
    *,
    renditions_to: str | None = None,
    storage: pathlib.Path | None = None,
    jobs: int = DEFAULT_JOBS,
    as_json: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Copy the objects of the storage that ``environ`` names; the exit status."""
    output = Output('migrate')
    try:
        config = settings(storage or default_storage(environ), environ)
        source = open_objects(config)
        target = destination(to, renditions_to, config)
        refuse_overlaps(source, target)
    except CannotStart as ex:
        return output.cannot_start(ex)
    tally = Tally(OUTCOMES)
    cannot = output.run(migrate(source, target, jobs, tally, output.progress), tally)
    if cannot is not None:
        return cannot
    last = conclusion(
        tally,
        f'Every object is there: serve them with {_serve(target)}, and run this '
        'again once the service does, to copy what was uploaded meanwhile.',
        'run the same command again to copy them.',
    )
    facts = {
        'from': {
            'originals': source.originals.url,
            'renditions': source.renditions.url,
        },
        'to': {'originals': target.originals.url, 'renditions': target.renditions.url},
    }
    return output.report(tally, _heading(source, target), last, facts, as_json)
