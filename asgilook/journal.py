"""The index of stored images: an append-only journal that every process shares.

The storage directory is the one source of truth. Beside the JPEG files in
``images/`` it holds ``journal.jsonl``: one JSON line per change, ``put`` (an
image stored or replaced) or ``del`` (an image deleted), in the order the
changes happened. Every process, on this machine or another one mounting the
same directory, keeps the index in memory and catches up with the journal
before it answers (one ``stat`` when nothing changed, reading only the new
lines when something did), so all of them see the same images in the same
order, and nobody reads every image's metadata to list a page.

Writers take an exclusive ``flock`` on ``journal.lock``, so lines from many
workers never interleave and their order is the upload order. A line is
written with one ``write`` and synced before the lock is released; a line
torn by a crash has no newline, is never read, and is cut off by the next
writer. When most lines are dead (replaced or deleted images), a writer
rewrites the journal with the live ones only and renames it into place;
readers notice the new inode and reload.

Everything here blocks: the store calls it from a thread.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import pathlib
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import BinaryIO
from typing import TypeVar

from asgilook.errors import DeleteForbidden
from asgilook.errors import ImageNotFound
from asgilook.errors import UnknownCursor

logger = logging.getLogger(__name__)

Size = tuple[int, int]
#: What tells one state of the journal file from another: inode, size, mtime.
State = tuple[int, int, int]
T = TypeVar('T')


@dataclasses.dataclass(frozen=True)
class Entry:
    """What the index knows of one image."""

    image_id: str
    file: str
    size: Size
    modified: int  # microseconds since the epoch, UTC
    token_hash: str


def _put_record(entry: Entry) -> dict[str, Any]:
    return {
        'op': 'put',
        'id': entry.image_id,
        'file': entry.file,
        'size': list(entry.size),
        'modified': entry.modified,
        'token': entry.token_hash,
    }


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(',', ':')).encode() + b'\n'


def _header() -> bytes:
    return _line({'op': 'journal', 'id': uuid.uuid4().hex})


class Behind(Exception):
    """The in-memory index may be behind the journal."""


def _identity(stat: os.stat_result) -> State:
    """What tells one state of the journal file from another."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def fsync_directory(path: pathlib.Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """The in-memory index of one process, kept in step with the shared journal.

    Thread-safe: every method may be called from any thread of the process.
    """

    FILE = 'journal.jsonl'
    LOCK = 'journal.lock'
    IMAGES = 'images'
    THUMBNAILS = 'thumbnails'
    # Compact when dead lines outnumber live ones and are at least this many.
    COMPACT_MIN_DEAD = 1000
    # An unreferenced file younger than this may belong to an upload that is
    # waiting for the lock; compaction leaves it alone.
    ORPHAN_GRACE_SECONDS = 3600.0

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.images = root / self.IMAGES
        self.images.mkdir(parents=True, exist_ok=True)
        self.thumbnails = root / self.THUMBNAILS
        self.thumbnails.mkdir(exist_ok=True)
        self._path = root / self.FILE
        self._lock_path = root / self.LOCK
        self._mutex = threading.RLock()
        self._reset(header=None)

    def _reset(self, header: bytes | None) -> None:
        # What the journal's stat said when the index last caught up with it.
        self._seen: State | None = None
        self._header = header
        self._offset = len(header or b'')
        self._entries: dict[str, Entry] = {}
        self._seqs: dict[str, int] = {}
        self._ids_by_seq: dict[int, str] = {}
        # Sequence numbers of live images, ascending: the listing order.
        self._order: list[int] = []
        # Where deleted images were in the order, since the last reload.
        self._tombstones: dict[str, int] = {}
        self._next_seq = 0
        self._dead = 0
        self._clock = 0

    # Reading

    def _catch_up(self) -> None:
        try:
            with open(self._path, 'rb') as journal:
                # NOTE: The first line names this generation of the journal
                #   with a random id. A compacted journal has a new one; inode
                #   numbers could be reused, and NFS may not keep them.
                header = journal.readline()
                if not header.endswith(b'\n'):
                    header = b''
                if header != self._header:
                    self._reset(header or None)
                stat = os.fstat(journal.fileno())
                if stat.st_size == self._offset:
                    self._seen = _identity(stat)
                    return
                journal.seek(self._offset)
                data = journal.read(stat.st_size - self._offset)
        except FileNotFoundError:
            self._reset(None)
            return
        # NOTE: Only whole lines count: a line without its newline is being
        #   written right now, or was torn by a crash and will be cut off.
        end = data.rfind(b'\n') + 1
        for line in data[:end].splitlines():
            self._apply(line)
        self._offset += end
        self._seen = _identity(stat)

    def _apply(self, line: bytes) -> None:
        try:
            record = json.loads(line)
            image_id = record['id']
            if record['op'] == 'put':
                entry: Entry | None = Entry(
                    image_id=image_id,
                    file=record['file'],
                    size=(record['size'][0], record['size'][1]),
                    modified=record['modified'],
                    token_hash=record['token'],
                )
            elif record['op'] == 'del':
                entry = None
            else:
                raise ValueError(record['op'])
        except (ValueError, KeyError, TypeError, IndexError):
            # NOTE: A damaged line must not take the whole listing down.
            logger.warning('Skipping an unreadable journal line: %r', line[:200])
            self._dead += 1
            return
        if image_id in self._entries:
            seq = self._forget(image_id)
            if entry is None:
                # NOTE: Where it was stays a place to page on from: a client
                #   whose page ended with it has not lost its place.
                self._tombstones[image_id] = seq
        if entry is None:
            self._dead += 1
            return
        self._tombstones.pop(image_id, None)
        seq = self._next_seq
        self._next_seq += 1
        self._entries[image_id] = entry
        self._seqs[image_id] = seq
        self._ids_by_seq[seq] = image_id
        self._order.append(seq)
        self._clock = max(self._clock, entry.modified)

    def _forget(self, image_id: str) -> int:
        """Take the image out of the order; return where it was."""
        del self._entries[image_id]
        seq = self._seqs.pop(image_id)
        del self._ids_by_seq[seq]
        del self._order[bisect.bisect_left(self._order, seq)]
        self._dead += 1
        return seq

    def peek(self, image_id: str) -> Entry | None:
        """The image's entry as of now, if one ``stat`` shows the index is current.

        This is for the event loop's fast path: it never reads the journal,
        which may be long. The journal's inode, size and modification time
        are what they were when the index last caught up, or the index may be
        behind.

        Raises:
            Behind: the index may be behind; call :meth:`get` (in a thread).
        """
        return self._fresh(lambda: self._entries.get(image_id))

    def _fresh(self, answer: Callable[[], T]) -> T:
        """``answer()``, if the index is current; else raise Behind."""
        # NOTE: Never waits for the lock: a thread that holds it may be
        #   reading the whole journal.
        if not self._mutex.acquire(blocking=False):
            raise Behind
        try:
            stat = os.stat(self._path)
            if _identity(stat) != self._seen:
                raise Behind
            return answer()
        except OSError as ex:
            raise Behind from ex
        finally:
            self._mutex.release()

    def get(self, image_id: str) -> Entry | None:
        """The image's entry as of now, or None."""
        with self._mutex:
            self._catch_up()
            return self._entries.get(image_id)

    def page(
        self,
        limit: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
    ) -> list[Entry]:
        """Up to ``limit`` entries in upload order, following image ``after``.

        With ``newest_first``, in the opposite order: the newest first, and
        ``after`` an image that the page is older than.
        """
        return self.snapshot(limit, after, newest_first)[0]

    def snapshot(
        self,
        limit: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[Entry], State | None]:
        """A :meth:`page`, and the state of the journal it was read from.

        The same state, told by :meth:`state` later, means the same page.
        """
        with self._mutex:
            self._catch_up()
            position = None
            if after is not None:
                position = self._seqs.get(after, self._tombstones.get(after))
                if position is None:
                    raise UnknownCursor(
                        f'There is no image {after} to list after; start again '
                        'without "after".'
                    )
            if newest_first:
                stop = len(self._order)
                if position is not None:
                    stop = bisect.bisect_left(self._order, position)
                start = 0 if limit is None else max(0, stop - limit)
                seqs = self._order[start:stop][::-1]
            else:
                start = 0
                if position is not None:
                    start = bisect.bisect_right(self._order, position)
                seqs = self._order[start : None if limit is None else start + limit]
            entries = [self._entries[self._ids_by_seq[seq]] for seq in seqs]
            return entries, self._seen

    def count(self) -> int:
        """How many images there are, as of now."""
        with self._mutex:
            self._catch_up()
            return len(self._entries)

    def state(self) -> State | None:
        """The journal's state, if one ``stat`` shows the index is current.

        Raises:
            Behind: as :meth:`peek`.
        """
        return self._fresh(lambda: self._seen)

    # Writing

    @contextlib.contextmanager
    def _writing(self) -> Iterator[BinaryIO]:
        """Hold the journal's lock, caught up and repaired, for one change."""
        with self._mutex, open(self._lock_path, 'a+b') as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                with open(self._path, 'a+b') as journal:
                    if self._repair(journal) == 0:
                        journal.write(_header())
                    self._catch_up()
                    yield journal
                self._catch_up()
                self._compact_if_worth_it()
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _repair(journal: BinaryIO) -> int:
        """Cut off a line that a crash left without its newline; return the size."""
        size = journal.seek(0, os.SEEK_END)
        tail_start = max(0, size - 65536)
        journal.seek(tail_start)
        tail = journal.read()
        if tail.endswith(b'\n') or not tail:
            return size
        # NOTE: Records are far shorter than 64 KiB, so the last newline is
        #   in the tail unless the whole file is one torn line.
        keep = tail_start + tail.rfind(b'\n') + 1
        logger.warning('Cutting %d bytes of a torn journal line', size - keep)
        journal.truncate(keep)
        os.fsync(journal.fileno())
        return keep

    @staticmethod
    def _write(journal: BinaryIO, record: dict[str, Any]) -> None:
        journal.write(_line(record))
        journal.flush()
        os.fsync(journal.fileno())

    def put(self, image_id: str, file: str, size: Size, token_hash: str) -> Entry:
        """Record that ``file`` (already durable in ``images/``) is the image now.

        Returns the new entry; an image it replaced is no longer listed, and
        its file is removed.
        """
        with self._writing() as journal:
            replaced = self._entries.get(image_id)
            # NOTE: Taken under the lock and never behind the newest image, so
            #   `modified` follows the listing order even if clocks step back.
            modified = max(time.time_ns() // 1000, self._clock + 1)
            entry = Entry(image_id, file, size, modified, token_hash)
            self._write(journal, _put_record(entry))
        if replaced is not None:
            self.discard_version(replaced.file)
        return entry

    def check(self, image_id: str, allowed: Callable[[Entry], bool]) -> Entry:
        """The image's entry, if it exists and ``allowed(entry)``.

        Raises:
            ImageNotFound: there is no such image (any more).
            DeleteForbidden: ``allowed`` said no.
        """
        entry = self.get(image_id)
        if entry is None:
            raise ImageNotFound(f'There is no image with the id {image_id}.')
        if not allowed(entry):
            raise DeleteForbidden(
                'That token may not delete this image: send the delete_token '
                'its upload returned, or the admin token.'
            )
        return entry

    def delete(self, image_id: str, allowed: Callable[[Entry], bool]) -> Entry:
        """Delete the image if ``allowed(entry)``; return what was deleted.

        Raises:
            ImageNotFound: there is no such image (any more).
            DeleteForbidden: ``allowed`` said no; nothing was changed.
        """
        with self._writing() as journal:
            # NOTE: Checked again under the lock: the image may have been
            #   replaced, with a new token, since any earlier check.
            entry = self.check(image_id, allowed)
            self._write(journal, {'op': 'del', 'id': image_id})
        self.discard_version(entry.file)
        return entry

    def discard(self, name: str) -> None:
        """Remove a file of ``images/`` if it is there."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.images / name)

    def thumbnails_of(self, file: str) -> pathlib.Path:
        """The directory of the thumbnails of the version whose original is ``file``."""
        return self.thumbnails / file.removesuffix('.jpeg')

    def discard_version(self, file: str) -> None:
        """Remove a version's original ``file`` and its thumbnails."""
        self.discard(file)
        shutil.rmtree(self.thumbnails_of(file), ignore_errors=True)

    def _compact_if_worth_it(self) -> None:
        if self._dead < max(self.COMPACT_MIN_DEAD, len(self._entries)):
            return
        live = [self._entries[self._ids_by_seq[seq]] for seq in self._order]
        fresh = self.root / f'.{self.FILE}.compacting'
        with open(fresh, 'wb') as journal:
            journal.write(_header())
            journal.write(b''.join(_line(_put_record(entry)) for entry in live))
            journal.flush()
            os.fsync(journal.fileno())
        os.replace(fresh, self._path)
        fsync_directory(self.root)
        self._catch_up()
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Remove files no entry refers to: left by crashes or failed unlinks."""
        referenced = {entry.file for entry in self._entries.values()}
        cutoff = time.time() - self.ORPHAN_GRACE_SECONDS
        with os.scandir(self.images) as found:
            for item in found:
                if item.name not in referenced and item.stat().st_mtime < cutoff:
                    logger.info('Removing orphaned file %s', item.name)
                    self.discard(item.name)
        with os.scandir(self.thumbnails) as found:
            for item in found:
                if (
                    f'{item.name}.jpeg' not in referenced
                    and item.stat().st_mtime < cutoff
                ):
                    logger.info('Removing orphaned thumbnails %s', item.name)
                    shutil.rmtree(item.path, ignore_errors=True)
