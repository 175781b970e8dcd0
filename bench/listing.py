"""How long a page of ``GET /images`` takes with 100,000 images stored.

Run: ``.venv/bin/python bench/listing.py [--images 100000]``

Three ways of answering "the 100 images after X", measured in one run on the
same data:

* ``journal, warm``: what every request of a running worker does, the
  journal's ``page()`` (one stat and a header read when nothing changed,
  then a slice of the in-memory index);
* ``journal, cold``: a new process's first request, which reads the whole
  journal once;
* ``sidecar scan``: the baseline, a store without an index that keeps one
  JSON file of metadata per image and reads them all to list a page.

Also timed: whole HTTP requests for a page through the app (falcon.testing,
fake Redis, a different page each time so that every request is a Miss).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import fakeredis  # noqa: E402
import falcon.testing  # noqa: E402

from asgilook import journal as journal_module  # noqa: E402
from asgilook.app import create_app  # noqa: E402
from asgilook.config import Config  # noqa: E402
from asgilook.journal import Entry  # noqa: E402
from asgilook.journal import Journal  # noqa: E402

PAGE = 100


def build(root: pathlib.Path, count: int) -> list[str]:
    """Write a journal of ``count`` images and the baseline's sidecar files."""
    ids = [str(uuid.UUID(int=number + 1)) for number in range(count)]
    start = time.time_ns() // 1000
    lines = [journal_module._header()]
    sidecars = root / 'sidecars'
    sidecars.mkdir()
    for number, image_id in enumerate(ids):
        entry = Entry(image_id, f'{image_id}.0.jpeg', (4000, 3000), start + number, '0')
        record = journal_module._put_record(entry)
        lines.append(journal_module._line(record))
        (sidecars / f'{image_id}.json').write_text(json.dumps(record))
    (root / Journal.FILE).write_bytes(b''.join(lines))
    return ids


def sidecar_page(root: pathlib.Path, after: str) -> list[dict[str, object]]:
    records = []
    with os.scandir(root / 'sidecars') as found:
        for item in found:
            with open(item.path) as sidecar:
                records.append(json.load(sidecar))
    records.sort(key=lambda record: record['modified'])
    ids = [record['id'] for record in records]
    start = ids.index(after) + 1
    return records[start : start + PAGE]


def timed(func, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def http_pages(root: pathlib.Path, ids: list[str], repeat: int) -> float:
    config = Config()
    config.storage_path = root
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(
        server=fakeredis.FakeServer()
    )
    client = falcon.testing.TestClient(create_app(config))

    async def run() -> float:
        samples = []
        async with client as conductor:
            await conductor.simulate_get('/images', params={'limit': 1})  # load
            for number in range(repeat):
                after = ids[(number * 997) % (len(ids) - PAGE)]
                started = time.perf_counter()
                resp = await conductor.simulate_get(
                    '/images', params={'limit': PAGE, 'after': after}
                )
                samples.append(time.perf_counter() - started)
                assert resp.status_code == 200 and len(resp.json) == PAGE
                assert resp.headers['X-ASGILook-Cache'] == 'Miss'
        return statistics.median(samples)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=100_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix='asgilook-bench-') as tmp:
        root = pathlib.Path(tmp)
        print(f'Building {args.images:,} images of metadata ...', flush=True)
        ids = build(root, args.images)
        middle = ids[len(ids) // 2]
        warm = Journal(root)
        assert len(warm.page(limit=PAGE, after=middle)) == PAGE

        results = {
            'journal, warm': timed(lambda: warm.page(limit=PAGE, after=middle), 200),
            'journal, cold': timed(
                lambda: Journal(root).page(limit=PAGE, after=middle), 5
            ),
            'sidecar scan (baseline)': timed(lambda: sidecar_page(root, middle), 3),
        }
        http = http_pages(root, ids, 200)

    baseline = results['sidecar scan (baseline)']
    print(f'\nA page of {PAGE} after the middle of {args.images:,} images')
    print(f'{"method":<26}{"median":>12}{"vs baseline":>14}')
    for name, seconds in results.items():
        print(f'{name:<26}{seconds * 1000:>10.3f}ms{baseline / seconds:>13.0f}x')
    name = 'whole GET /images (Miss)'
    print(f'{name:<26}{http * 1000:>10.3f}ms{baseline / http:>13.0f}x')


if __name__ == '__main__':
    main()
