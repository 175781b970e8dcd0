"""The names a picture's files are saved under: ``Content-Disposition``.

A picture is saved under the name it was uploaded with (see
:mod:`asgilook.http.sharing`), its extension the file's own: ``cat.tiff``,
kept as a PNG, downloads as ``cat.png``, and its JPEG as ``cat.jpeg``. A
picture without a name is ``asgilook-<id>``.

The header carries the name twice (RFC 6266): ``filename*``, the name itself
in UTF-8, percent-encoded (RFC 8187), which every current browser reads; and
``filename``, an ASCII stand-in for older clients (and ``curl -J``): accents
dropped, anything else that is not plain ASCII, and the quotes, backslashes,
percent signs and semicolons that clients read differently, each an
underscore. Names are kept without control characters at upload; any that
is there all the same is dropped here, so that no name can end the header.
"""

from __future__ import annotations

import unicodedata
import urllib.parse

from asgilook.storage.store import Image

#: What ``filename*`` leaves as it is (RFC 8187's ``attr-char``).
_ATTR_CHARS = '!#$&+-.^_`|~'
#: What the ASCII ``filename`` never holds.
_UNSAFE = '"\\%;/'

INLINE = 'inline'
ATTACHMENT = 'attachment'


def file_name(image: Image, extension: str) -> str:
    """The name ``image``'s file in format ``extension`` is saved under."""
    name = ''.join(char for char in image.name if char.isprintable())
    stem = name.rpartition('.')[0] or name
    return f'{stem or f"asgilook-{image.image_id}"}.{extension}'


def content_disposition(disposition: str, image: Image, extension: str) -> str:
    """``Content-Disposition``: ``disposition`` (:data:`INLINE` or
    :data:`ATTACHMENT`) of the file named by :func:`file_name`."""
    name = file_name(image, extension)
    encoded = urllib.parse.quote(name, safe=_ATTR_CHARS)
    return f'{disposition}; filename="{_ascii(name)}"; filename*=UTF-8\'\'{encoded}'


def _ascii(name: str) -> str:
    """``name`` in printable ASCII, safe between quotes (see the module)."""
    kept = []
    for char in unicodedata.normalize('NFKD', name):
        if unicodedata.combining(char):
            continue
        safe = char.isascii() and char.isprintable() and char not in _UNSAFE
        kept.append(char if safe else '_')
    return ''.join(kept)
