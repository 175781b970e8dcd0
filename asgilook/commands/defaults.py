"""The defaults of the commands' options: where, to what, how many at a time.

:mod:`asgilook.commands.cli` says them in ``--help``; the commands fall back
on them when they are called without an option. It imports no command (only
the process helpers, for the XDG directories), so that any module, and the
tests and benchmarks, can import it without an import cycle.
"""

from __future__ import annotations

import os
import pathlib
import re
import urllib.parse
from collections.abc import Mapping

from asgilook.commands.processes import xdg_home

#: Where ``asgilook serve`` listens.
DEFAULT_HOST = '127.0.0.1'
DEFAULT_PORT = 8000
#: The service that ``asgilook import`` uploads to.
DEFAULT_URL = f'http://{DEFAULT_HOST}:{DEFAULT_PORT}'
#: The pictures that ``asgilook import`` sends (or stores) at a time.
DEFAULT_JOBS = 4
#: The manifest of ``asgilook import --storage``, in the storage directory.
STORAGE_MANIFEST = 'imported.jsonl'
#: How old an unlisted file must be before ``asgilook check`` takes it for an
#: orphan (or a stale ``.partial`` file), in seconds.
DEFAULT_GRACE = 3600


def default_storage(environ: Mapping[str, str] = os.environ) -> pathlib.Path:
    """Where a server keeps the images unless told otherwise.

    ``ASGI_LOOK_STORAGE_PATH`` if it is set, else ``asgilook`` in the user's
    data directory: ``$XDG_DATA_HOME/asgilook``, ``~/.local/share/asgilook``.

    NOTE: Not ``Config``'s own default, ``/tmp/asgilook``, which the tutorial's
    contract keeps: that one is shared by every user and every checkout on the
    machine, and lost at a reboot.
    """
    configured = environ.get('ASGI_LOOK_STORAGE_PATH')
    if configured:
        return pathlib.Path(configured)
    return xdg_home('XDG_DATA_HOME', '.local/share', environ) / 'asgilook'


def default_manifest(
    storage: pathlib.Path | None, url: str, environ: Mapping[str, str] = os.environ
) -> pathlib.Path:
    """The manifest of ``asgilook import``: a storage directory's, or a service's.

    In the storage directory if there is one; else in the user's state
    directory, named by the service's host and port.
    """
    if storage is not None:
        return storage / STORAGE_MANIFEST
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == 'https' else 80)
    host = re.sub(r'[^\w.-]', '_', parts.hostname or '')
    state = xdg_home('XDG_STATE_HOME', '.local/state', environ)
    return state / 'asgilook' / 'imports' / f'{host}_{port}.jsonl'
