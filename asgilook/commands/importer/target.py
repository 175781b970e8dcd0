"""Where ``asgilook import`` imports pictures to, and how that fails.

A :class:`Target` is a running service (:mod:`~asgilook.commands.importer.service`,
over HTTP) or a storage directory (:mod:`~asgilook.commands.importer.directory`,
in this process).
"""

from __future__ import annotations

import pathlib
from typing import Protocol


class Refused(Exception):
    """The service (or the store) refused a picture; ``str(ex)`` says why."""


class TargetUnavailable(Exception):
    """The service cannot be reached, or the storage used; nothing more can be."""


class Target(Protocol):
    """Where pictures are imported: a running service, or a storage directory."""

    #: What it is, for people.
    name: str
    #: The largest picture it takes, if that is known here.
    max_bytes: int | None
    #: Something that did not go right, though the pictures were imported.
    warning: str | None

    async def upload(self, path: pathlib.Path, data: bytes) -> tuple[str, str]:
        """Import a picture; return its id and delete token.

        Raises:
            Refused: it is not taken, for the reason given.
            TargetUnavailable: the target cannot be used any more.
        """

    async def close(self) -> None:
        """Let go of the connections, threads and files it holds."""
