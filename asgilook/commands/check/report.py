"""What ``asgilook check`` finds: the kinds of problem, each problem, the report.

Plain data, filled by :mod:`~asgilook.commands.check.walk`,
:mod:`~asgilook.commands.check.listing` and
:mod:`~asgilook.commands.check.repair`, said by
:mod:`~asgilook.commands.check.output`; and the command's exit statuses.
"""

from __future__ import annotations

import dataclasses
import enum
import pathlib
from typing import Any

from asgilook.pictures import Size
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.index import Entry

#: Exit statuses of ``asgilook check``.
CONSISTENT = 0
PROBLEMS = 1
CANNOT_CHECK = 3

#: What a damaged object is to its version (:attr:`Problem.role`).
ORIGINAL = 'original'
KEPT_ORIGINAL = 'kept original'
ANIMATION = 'animation'
THUMBNAIL = 'thumbnail'


class Kind(enum.StrEnum):
    """What is wrong."""

    #: An image of the index whose original is missing or empty.
    NO_PICTURE = 'no-picture'
    #: An image of the index missing some of its JPEG thumbnails.
    THUMBNAILS = 'thumbnails'
    #: An animated image of the index missing its animated rendition.
    ANIMATION = 'animation'
    #: An image of the index missing the original kept as uploaded that the
    #: index says it has.
    KEPT_ORIGINAL = 'kept-original'
    #: An object of an image of the index (its original, kept original,
    #: animation or a thumbnail) that fails authentication: damaged, swapped,
    #: or sealed with a key that is not configured.
    DAMAGED = 'damaged'
    #: An object in ``images/``, or a folder in ``thumbnails/``, of a version
    #: that the index does not list.
    ORPHAN = 'orphan'
    #: A write that never finished (a local directory's ``.partial`` file).
    PARTIAL = 'partial'


@dataclasses.dataclass
class Problem:
    """One thing found wrong, and what became of it."""

    kind: Kind
    #: The object's key (a thumbnail folder: its prefix, ending with ``/``);
    #: on a local directory, the file's path relative to it.
    path: str
    #: The image it belongs to; '' for a ``.partial`` file.
    image_id: str = ''
    #: The bytes it holds, as stored (a folder: its objects').
    bytes: int = 0
    #: How long ago it was last changed, in seconds (orphans and partials).
    age: float | None = None
    #: What is wrong with it, in a few words.
    detail: str = ''
    #: What ``repair`` did, or why it could not.
    outcome: str = ''
    repaired: bool = False
    #: The original file of the version it belongs to.
    file: str = dataclasses.field(default='', repr=False)
    #: The entry of the image, and its missing thumbnails (THUMBNAILS).
    entry: Entry | None = dataclasses.field(default=None, repr=False)
    missing: tuple[Size, ...] = dataclasses.field(default=(), repr=False)
    #: What a damaged object is to its version: ORIGINAL, KEPT_ORIGINAL,
    #: ANIMATION, THUMBNAIL.
    role: str = dataclasses.field(default='', repr=False)
    #: Where an orphan is kept.
    blobs: SealedBlobs | None = dataclasses.field(default=None, repr=False)
    #: The file of a ``.partial``.
    local: pathlib.Path | None = dataclasses.field(default=None, repr=False)

    def document(self) -> dict[str, Any]:
        """The problem, for ``--json``."""
        return {
            'path': self.path,
            'image_id': self.image_id or None,
            'bytes': self.bytes,
            'age': None if self.age is None else round(self.age),
            'detail': self.detail,
            'repaired': self.repaired,
            'outcome': self.outcome or None,
        }


@dataclasses.dataclass
class Report:
    """What a check found, and repaired."""

    #: Where the originals are: a directory, or an ``s3://`` URL.
    storage: str
    #: The index it was checked against, in words.
    index: str
    repair: bool
    grace: float
    #: Whether every object of the images was read whole (``--verify``), not
    #: only its header and size.
    verify: bool = False
    #: Where the renditions are, if not with the originals.
    renditions: str | None = None
    #: Whether every object is a file in a local directory.
    local: bool = True
    #: Images of the index checked.
    images: int = 0
    #: How many of them have their picture (an original that can be read).
    pictures: int = 0
    #: Objects (and ``.partial`` files) seen where they are kept, and their
    #: bytes as stored.
    files: int = 0
    bytes: int = 0
    problems: dict[Kind, list[Problem]] = dataclasses.field(
        default_factory=lambda: {kind: [] for kind in Kind}
    )
    #: Unlisted objects and partials younger than the grace period: left alone.
    young: list[Problem] = dataclasses.field(default_factory=list)
    #: Why nothing was repaired, if repairs were refused.
    refused: str = ''
    #: What became of the service's cache in Redis, if repairs changed the
    #: listings.
    cache: str = ''

    def add(self, problem: Problem) -> None:
        """Put ``problem`` with the others of its kind."""
        self.problems[problem.kind].append(problem)

    def seen(self, size: int) -> None:
        """Count an object (or a ``.partial`` file) of ``size`` stored bytes."""
        self.files += 1
        self.bytes += size

    @property
    def found(self) -> int:
        return sum(len(problems) for problems in self.problems.values())

    @property
    def remaining(self) -> int:
        """The problems that were not repaired."""
        return sum(
            not problem.repaired
            for problems in self.problems.values()
            for problem in problems
        )

    @property
    def status(self) -> int:
        """The exit status: 0 if nothing is wrong (any more), else 1."""
        return PROBLEMS if self.remaining else CONSISTENT


class CannotCheck(Exception):
    """The check cannot be made; ``str(ex)`` says why."""
