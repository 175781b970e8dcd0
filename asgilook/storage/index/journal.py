"""The journal of earlier releases, read once to move it into the index.

Releases before the index kept it in ``journal.jsonl`` in the storage
directory: a header line naming the journal with a random id, then one JSON
line per change, ``put`` (an image stored or replaced, which makes it the
newest) or ``del`` (an image deleted), in upload order. A line without its
newline was torn by a crash and never counted.
"""

from __future__ import annotations

import json
import logging
import pathlib

from asgilook.storage.index import Entry

logger = logging.getLogger(__name__)

FILE = 'journal.jsonl'
#: What the journal is renamed to once the index has adopted it.
ADOPTED = 'journal.jsonl.adopted'


def read(path: pathlib.Path) -> tuple[str, list[Entry]] | None:
    """The journal's id and its live images in upload order; None if absent."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    lines = data[: data.rfind(b'\n') + 1].splitlines()
    source = f'journal {path.stat().st_ino}'
    live: dict[str, Entry] = {}
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
            if number == 0 and record['op'] == 'journal':
                source = f'journal {record["id"]}'
                continue
            image_id = record['id']
            live.pop(image_id, None)
            if record['op'] == 'put':
                live[image_id] = Entry(
                    image_id=image_id,
                    file=record['file'],
                    size=(record['size'][0], record['size'][1]),
                    modified=record['modified'],
                    token_hash=record['token'],
                )
            elif record['op'] != 'del':
                raise ValueError(record['op'])
        except (ValueError, KeyError, TypeError, IndexError):
            # NOTE: As the journal itself did: a damaged line must not take
            #   the other images down.
            logger.warning('Skipping an unreadable journal line: %r', line[:200])
    return source, list(live.values())
