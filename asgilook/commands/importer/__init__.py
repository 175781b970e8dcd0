"""``asgilook import``: folders of pictures into a service, or a storage directory.

Pictures are sent to a running service with ``POST /images``, or stored with
:class:`asgilook.storage.store.Store` in a storage directory, a few at a time, with a
progress bar and a summary of what was refused and why. A manifest records
what was imported (the SHA-256 of each file, the id and delete token it got),
so that running the same import again goes on where the last one ended.
:mod:`asgilook.commands.cli` parses the command line and calls :func:`run`.

This module is the command, :func:`run`. Its parts, in the order an import
goes:

* :mod:`~asgilook.commands.importer.folders`: the pictures under the folders,
  their bytes, and the tally of what became of each file;
* :mod:`~asgilook.commands.importer.manifest`: what was imported before;
* :mod:`~asgilook.commands.importer.target`: where pictures go, and how that
  fails: :mod:`~asgilook.commands.importer.service` over HTTP, or
  :mod:`~asgilook.commands.importer.directory` in this process;
* :mod:`~asgilook.commands.importer.importing`: the work, ``jobs`` at a time,
  with a progress bar;
* :mod:`~asgilook.commands.importer.summary`: the summary, and the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pathlib
import sys
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

from rich.console import Console

from asgilook.commands.defaults import DEFAULT_JOBS
from asgilook.commands.defaults import DEFAULT_URL
from asgilook.commands.defaults import default_manifest
from asgilook.commands.importer.directory import Directory
from asgilook.commands.importer.folders import Tally
from asgilook.commands.importer.folders import find
from asgilook.commands.importer.folders import reason
from asgilook.commands.importer.importing import Importer
from asgilook.commands.importer.importing import progress_bar
from asgilook.commands.importer.manifest import Manifest
from asgilook.commands.importer.service import Service
from asgilook.commands.importer.summary import UNAVAILABLE
from asgilook.commands.importer.summary import conclude
from asgilook.commands.importer.target import Target


def run(
    folders: Sequence[pathlib.Path],
    *,
    url: str = DEFAULT_URL,
    storage: pathlib.Path | None = None,
    jobs: int = DEFAULT_JOBS,
    manifest: pathlib.Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Import every picture under ``folders``; return the exit status.

    To the service at ``url``, or straight into ``storage``; ``jobs`` at a
    time; the manifest at ``manifest``, or the default one. ``environ`` is
    the environment to read the default manifest's directory, and the
    settings of a storage directory, from.
    """
    # NOTE: Lines are never cut: messages and paths stay whole for grep. On
    #   a terminal, the table of refused files fits its width.
    errors = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    output = Console(
        highlight=False, markup=False, width=None if sys.stdout.isatty() else 1000
    )
    tally = Tally()
    pictures = find(folders, tally)
    opener: Callable[[], Awaitable[Target]]
    if storage is not None:
        opener = functools.partial(Directory.open, storage, jobs, environ)
    else:
        opener = functools.partial(Service.open, url, jobs)
    path = manifest or default_manifest(storage, url, environ)
    try:
        kept = Manifest.open(path)
    except OSError as ex:
        errors.print(f'asgilook import: cannot use the manifest {path}: {reason(ex)}')
        return UNAVAILABLE

    importer = Importer(opener, kept, jobs, tally)
    progress = progress_bar(errors)
    # NOTE: Ctrl-C ends the run, not the command: the summary says what was
    #   done, and the manifest keeps it.
    with kept, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(importer.run(pictures, progress))
    return conclude(importer, len(pictures), path, output, errors)
