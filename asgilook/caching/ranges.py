"""Byte ranges (RFC 9110, section 14): a part of a picture, for resumed downloads.

A GET of an original, a thumbnail or an animation may ask for one range of
its bytes: ``Range: bytes=a-b`` (bytes a to b, both included), ``bytes=a-``
(from a to the end) or ``bytes=-n`` (the last n). It gets a ``206 Partial
Content`` with ``Content-Range: bytes a-b/size``; a range that starts past
the end is a ``416`` with ``Content-Range: bytes */size``. What this service
does not serve as a range is answered whole, with a ``200``, as the RFC
allows: several ranges at once, another unit, a malformed header, and a
request whose ``If-Range`` names another version than the current one.

Functions here take header values as strings, so the ASGI fast path
(:mod:`asgilook.caching.memory`) and the Falcon resources answer alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils

#: What every response that could be a range says.
ACCEPT_RANGES = 'bytes'


@dataclasses.dataclass(frozen=True, slots=True)
class ByteRange:
    """One range as asked: ``first``-``last`` (included), or the ``suffix`` bytes."""

    first: int | None = None
    last: int | None = None
    #: ``bytes=-n``: the last n bytes.
    suffix: int | None = None

    def resolve(self, size: int) -> tuple[int, int] | None:
        """The bytes ``[start, end)`` of an object of ``size`` bytes; None if
        the range is unsatisfiable (a 416)."""
        if self.suffix is not None:
            if self.suffix == 0 or size == 0:
                return None
            return max(0, size - self.suffix), size
        assert self.first is not None
        if self.first >= size:
            return None
        end = size if self.last is None else min(self.last + 1, size)
        return self.first, end


def parse(header: str | None) -> ByteRange | None:
    """The one byte range a ``Range`` header asks for; None to answer whole."""
    if header is None:
        return None
    unit, _, spec = header.partition('=')
    if unit.strip().lower() != 'bytes' or ',' in spec:
        return None
    first, dash, last = spec.strip().partition('-')
    if not dash or not _digits(first or '0') or not _digits(last or '0'):
        return None
    if not first:
        return ByteRange(suffix=int(last)) if last else None
    start = int(first)
    if last and int(last) < start:
        return None
    return ByteRange(first=start, last=int(last) if last else None)


def _digits(text: str) -> bool:
    # NOTE: str.isdigit() is true of other scripts' digits too; only ASCII ones
    #   are valid here, and a bounded count of them.
    return 0 < len(text) <= 19 and text.isascii() and text.isdigit()


def if_range_holds(
    if_range: str | None, etag: str, last_modified: datetime.datetime | None
) -> bool:
    """Whether a range may be served: no ``If-Range``, or one naming this version.

    An entity tag must match strongly; a date must be the
    ``Last-Modified`` itself (to the second, as HTTP dates are).
    """
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith(('"', 'W/')):
        return if_range == etag and not etag.startswith('W/')
    if last_modified is None:
        return False
    try:
        moment = email.utils.parsedate_to_datetime(if_range)
    except (TypeError, ValueError):
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment == last_modified.replace(microsecond=0)


def content_range(start: int, end: int, size: int) -> str:
    """The ``Content-Range`` of the bytes ``[start, end)`` of ``size``."""
    return f'bytes {start}-{end - 1}/{size}'


def unsatisfiable(size: int) -> str:
    """The ``Content-Range`` of a 416."""
    return f'bytes */{size}'
