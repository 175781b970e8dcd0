"""``asgilook rekey``: every object of a storage put under the current key.

After a key rotation (a new ``ASGI_LOOK_ENCRYPTION_KEY``, the old one moved
to ``ASGI_LOOK_ENCRYPTION_OLD_KEYS``), or once encryption is turned on, each
object of the storage that the settings name (the backends of the originals
and of the renditions, each walked once) goes through
:meth:`~asgilook.storage.blobs.sealed.SealedBlobs.reseal`: an object sealed
under an old key is given a new header under the current one (rewrapped:
its segments, and so its format version, are kept), or with ``reencrypt``
is encrypted again under a new data key, in the format version new objects
get (reencrypted: how objects of version 1, AES-256-GCM, are brought to
version 2, AES-256-OCB3, which is faster to read); an object stored plain is
sealed; one already under the current key is left as it is (current); one
deleted meanwhile is missing. An object that does not open (damaged, or
sealed with a key not configured) is counted as failed.

It may run while the service serves with the same keys, and again: a second
run finds every object current. Then the old keys may be removed from
``ASGI_LOOK_ENCRYPTION_OLD_KEYS``.
"""

from __future__ import annotations

import base64
import functools
import os
import pathlib
from collections.abc import Mapping

from rich.progress import Progress

from asgilook.commands.defaults import DEFAULT_JOBS
from asgilook.commands.defaults import default_storage
from asgilook.commands.objects_output import Output
from asgilook.commands.objects_output import conclusion
from asgilook.commands.objects_walk import CannotStart
from asgilook.commands.objects_walk import Tally
from asgilook.commands.objects_walk import Walk
from asgilook.commands.objects_walk import backends
from asgilook.commands.objects_walk import failing
from asgilook.commands.objects_walk import open_objects
from asgilook.commands.objects_walk import readable
from asgilook.commands.objects_walk import settings
from asgilook.commands.objects_walk import sources
from asgilook.commands.objects_walk import writable
from asgilook.storage.blobs import Listed
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.crypto import CURRENT_KEY_VARIABLE
from asgilook.storage.crypto import OLD_KEYS_VARIABLE
from asgilook.storage.crypto import key_id
from asgilook.storage.objects import Objects

OUTCOMES = ('rewrapped', 'reencrypted', 'sealed', 'current', 'missing')


async def reseal(
    reencrypt: bool, blobs: SealedBlobs, listed: Listed
) -> tuple[str, int]:
    """Put one object under the current key; its outcome and stored size.

    Raises:
        Failed: it does not open, or cannot be read or written.
    """
    with failing():
        outcome = await blobs.reseal(listed.key, reencrypt=reencrypt)
    return outcome, listed.size


async def rekey(
    objects: Objects, reencrypt: bool, jobs: int, tally: Tally, progress: Progress
) -> None:
    """Reseal every object of ``objects``, ``jobs`` at a time."""
    try:
        for blobs in backends(objects):
            await readable(blobs)
            await writable(blobs)
        handle = functools.partial(reseal, reencrypt)
        await Walk(sources(objects), handle, jobs, tally, progress, 'Resealing').run()
    finally:
        await objects.close()


def run(
    *,
    reencrypt: bool = False,
    storage: pathlib.Path | None = None,
    jobs: int = DEFAULT_JOBS,
    as_json: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Reseal the objects of the storage that ``environ`` names; the exit status."""
    output = Output('rekey')
    try:
        config = settings(storage or default_storage(environ), environ)
        if config.encryption_key is None:
            raise CannotStart(
                f'{CURRENT_KEY_VARIABLE} is not set: there is no key to seal the '
                f'objects under. Set it to the new key, and {OLD_KEYS_VARIABLE} to '
                'the keys that sealed them.'
            )
        objects = open_objects(config)
    except CannotStart as ex:
        return output.cannot_start(ex)
    key = key_id(base64.b64decode(config.encryption_key)).hex()
    tally = Tally(OUTCOMES)
    cannot = output.run(rekey(objects, reencrypt, jobs, tally, output.progress), tally)
    if cannot is not None:
        return cannot
    where = ' and '.join(blobs.url for blobs in backends(objects))
    last = conclusion(
        tally,
        'Every object is under the current key: the old keys may now be removed '
        f'from {OLD_KEYS_VARIABLE}.',
        f'keep the keys of {OLD_KEYS_VARIABLE} until they are resealed.',
    )
    facts = {
        'storage': [blobs.url for blobs in backends(objects)],
        'key_id': key,
        'reencrypt': reencrypt,
    }
    heading = [f'The objects of {where}, under the current key (id {key}):']
    return output.report(tally, heading, last, facts, as_json)
