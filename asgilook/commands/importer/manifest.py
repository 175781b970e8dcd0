"""The manifest of ``asgilook import``: what was imported, so as not to again.

Where it is unless ``--manifest`` says is
:func:`asgilook.commands.defaults.default_manifest`.
"""

from __future__ import annotations

import json
import os
import pathlib
from types import TracebackType
from typing import Any


class Manifest:
    """What was imported: one JSON line per file, found again by its SHA-256.

    Lines are appended as pictures are imported, so that an import that is
    interrupted (or crashes) keeps what it did.
    """

    def __init__(self, fd: int, digests: set[str]) -> None:
        self._fd = fd
        #: The SHA-256 of every file imported before.
        self.digests = digests

    @classmethod
    def open(cls, path: pathlib.Path) -> Manifest:
        """Read the manifest at ``path`` and open it to append; OSError if not."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = b''
        # NOTE: Only its owner may read it: it holds the delete tokens.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if data and not data.endswith(b'\n'):
            # A line cut off by a crash: the next one starts on a line of its own.
            os.write(fd, b'\n')
        digests = set()
        for line in data.splitlines():
            try:
                digests.add(str(json.loads(line)['sha256']))
            except (ValueError, KeyError, TypeError):
                # NOTE: A line cut off by a crash, or not one of ours.
                continue
        return cls(fd, digests)

    def record(self, entry: dict[str, Any]) -> None:
        """Append an entry; in one write, so that lines never interleave."""
        os.write(self._fd, json.dumps(entry).encode() + b'\n')

    def __enter__(self) -> Manifest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        os.close(self._fd)
