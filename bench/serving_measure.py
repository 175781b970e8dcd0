"""The serving benchmark's measurements: latency, throughput (wrk), cache flood.

Each takes the apps (``Target``) in turn, so that drift hits them alike, and
gives its figures as ``Stats`` by app name.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import random
import re
import statistics
import string
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from bench.common import CACHE_HEADER
from bench.common import BenchError
from bench.common import progress
from bench.serving_setup import Target

# One wrk thread: the other core is uvicorn's.
WRK_THREADS = 1
WRK_CONNECTIONS = 16
WARM_GETS = 3
FLOOD_REQUESTS = 100
JUNK_LENGTH = 1000


# Figures


@dataclasses.dataclass
class Stats:
    """Repeated measurements of one thing."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def text(self, digits: int) -> str:
        """``median [min–max]``, with ``digits`` decimals."""
        low, high = min(self.samples), max(self.samples)
        return f'{self.median:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]'

    def as_json(self) -> dict[str, Any]:
        return {
            'median': self.median,
            'min': min(self.samples),
            'max': max(self.samples),
            'samples': self.samples,
        }


@dataclasses.dataclass
class Row:
    """One line of the table: asgilook against a baseline."""

    key: str
    label: str
    unit: str
    ours: Stats
    baseline: Stats
    baseline_name: str = 'tutorial'

    @property
    def ratio(self) -> float:
        return self.ours.median / self.baseline.median

    def as_json(self) -> dict[str, Any]:
        return {
            'label': self.label,
            'unit': self.unit,
            'asgilook': self.ours.as_json(),
            self.baseline_name: self.baseline.as_json(),
            f'ratio_asgilook_{self.baseline_name}': self.ratio,
        }


# HTTP helpers


def expect(resp: httpx.Response, status: int, what: str) -> httpx.Response:
    if resp.status_code != status:
        raise BenchError(
            f'{what}: expected {status}, got {resp.status_code}: {resp.text[:300]!r}'
        )
    return resp


def expect_jpeg(resp: httpx.Response, what: str) -> httpx.Response:
    expect(resp, 200, what)
    content_type = resp.headers.get('content-type', '')
    if content_type != 'image/jpeg':
        raise BenchError(f'{what}: expected image/jpeg, got {content_type!r}')
    return resp


def upload(target: Target, data: bytes) -> tuple[float, dict[str, Any]]:
    """POST ``data`` as the body; the seconds it took and the image document."""
    started = time.perf_counter()
    resp = target.client.post(
        '/images', content=data, headers={'Content-Type': 'image/jpeg'}
    )
    seconds = time.perf_counter() - started
    expect(resp, 201, f'{target.name}: POST /images')
    document: dict[str, Any] = resp.json()
    return seconds, document


def quarter(document: dict[str, Any]) -> str:
    """The URI of an image's quarter-size thumbnail, the second of its list."""
    thumbnails = document.get('thumbnails') or []
    if len(thumbnails) < 2:
        raise BenchError(f'No quarter-size thumbnail in {document!r}')
    uri: str = thumbnails[1]
    return uri


def short(uri: str) -> str:
    """``uri`` with any uuid replaced by ``<id>``, for the report."""
    return re.sub(
        r'[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}', '<id>', uri
    )


# Measurements


def measure_uploads(
    targets: Sequence[Target], data: bytes, repeat: int
) -> tuple[dict[str, Stats], dict[str, list[dict[str, Any]]]]:
    """Step 1: upload latency in ms, and the documents of the images made."""
    samples: dict[str, list[float]] = {target.name: [] for target in targets}
    documents: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    # NOTE: One untimed upload each first: a new process's first request
    #   also starts thread pools and imports what its code imports lazily.
    for target in targets:
        upload(target, data)
    for _ in range(repeat):
        for target in targets:
            # NOTE: Untimed: written but unsynced data of earlier requests
            #   (the tutorial syncs nothing) would otherwise be flushed by the
            #   next fsync on this filesystem (ext4 commits it in order),
            #   whichever app's upload that is.
            os.sync()
            seconds, document = upload(target, data)
            samples[target.name].append(seconds * 1000)
            documents[target.name].append(document)
    return {name: Stats(values) for name, values in samples.items()}, documents


def measure_cold_thumbnails(
    targets: Sequence[Target], documents: dict[str, list[dict[str, Any]]]
) -> tuple[dict[str, Stats], dict[str, list[str]]]:
    """Step 2: first GETs of never-requested quarter thumbnails, in ms.

    Also returns what each said in ``CACHE_HEADER``: a Redis flush empties
    only the cache in Redis, not whatever else an app may keep.
    """
    samples: dict[str, list[float]] = {target.name: [] for target in targets}
    states: dict[str, list[str]] = {target.name: [] for target in targets}
    for number in range(len(documents[targets[0].name])):
        for target in targets:
            uri = quarter(documents[target.name][number])
            target.flush()
            started = time.perf_counter()
            resp = target.client.get(uri)
            seconds = time.perf_counter() - started
            expect_jpeg(resp, f'{target.name}: cold GET {uri}')
            samples[target.name].append(seconds * 1000)
            states[target.name].append(resp.headers.get(CACHE_HEADER, '(none)'))
    return {name: Stats(values) for name, values in samples.items()}, states


def warm(target: Target, uri: str) -> tuple[list[str], list[bytes]]:
    """GET ``uri`` a few times after a flush: the cache headers and bodies seen."""
    target.flush()
    states, bodies = [], []
    for _ in range(WARM_GETS):
        resp = expect_jpeg(target.client.get(uri), f'{target.name}: GET {uri}')
        states.append(resp.headers.get(CACHE_HEADER, '(none)'))
        bodies.append(resp.content)
    return states, bodies


@dataclasses.dataclass
class WrkRun:
    requests_per_second: float
    transfer_per_second: str
    errors: int


def wrk(url: str, duration: int, paths: Sequence[str] = ()) -> WrkRun:
    """One ``wrk`` run against ``url``; or, given ``paths``, each in turn."""
    args = [
        'wrk', f'-t{WRK_THREADS}', f'-c{WRK_CONNECTIONS}', f'-d{duration}s',
        '--timeout', '10s', url,
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        if paths:
            script = stack.enter_context(
                tempfile.NamedTemporaryFile('w', suffix='.lua')
            )
            script.write(_rotation_script(paths))
            script.flush()
            args[-1:-1] = ['-s', script.name]
        done = subprocess.run(args, capture_output=True, text=True)
    found = re.search(r'Requests/sec:\s+([\d.]+)', done.stdout)
    if done.returncode != 0 or not found:
        raise BenchError(f'{" ".join(args)} failed:\n{done.stdout}{done.stderr}')
    transfer = re.search(r'Transfer/sec:\s+(\S+)', done.stdout)
    # Errors make a run fast and wrong: count them, so that the report says so.
    non_2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', done.stdout)
    socket_errors = re.search(r'Socket errors: (.*)', done.stdout)
    errors = int(non_2xx[1]) if non_2xx else 0
    if socket_errors:
        errors += sum(int(count) for count in re.findall(r'\d+', socket_errors[1]))
    return WrkRun(float(found[1]), transfer[1] if transfer else '?', errors)


def _rotation_script(paths: Sequence[str]) -> str:
    """A wrk script that asks for ``paths`` in turn, one per request."""
    listed = ',\n'.join(json.dumps(path) for path in paths)
    return (
        f'local paths = {{\n{listed}\n}}\n'
        'local next_path = 0\n'
        'request = function()\n'
        '  next_path = next_path % #paths + 1\n'
        '  return wrk.format(nil, paths[next_path])\n'
        'end\n'
    )


def spellings(uri: str, count: int) -> list[str]:
    """Up to ``count`` spellings of the uuid in ``uri`` (letter case, hyphens).

    Falcon's uuid converter takes them all as the same id; a cache keyed on
    the raw path takes each as a new URL.
    """
    found = re.search(r'[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}', uri)
    assert found, uri
    plain = found[0]
    letters = [index for index, char in enumerate(plain) if char.isalpha()]
    variants = []
    for mask in range(2 ** len(letters)):
        chars = list(plain)
        for bit, index in enumerate(letters):
            if mask >> bit & 1:
                chars[index] = chars[index].upper()
        spelt = ''.join(chars)
        variants += [spelt, spelt.replace('-', '')]
        if len(variants) >= count:
            break
    return [uri.replace(plain, variant) for variant in variants[:count]]


def measure_throughput(
    urls: dict[str, str],
    duration: int,
    runs: int,
    rotate: dict[str, Sequence[str]] | None = None,
    before_run: dict[str, Any] | None = None,
) -> tuple[dict[str, Stats], list[str]]:
    """req/s of each URL, taking turns; and notes on runs with errors.

    ``rotate`` gives, by name, paths to ask for in turn instead of the URL's
    own; ``before_run``, by name, something to call before each run.
    """
    samples: dict[str, list[float]] = {name: [] for name in urls}
    notes = []
    for run in range(runs):
        for name, url in urls.items():
            if before_run and name in before_run:
                before_run[name]()
            result = wrk(url, duration, (rotate or {}).get(name, ()))
            samples[name].append(result.requests_per_second)
            progress(
                f'  run {run + 1}/{runs} {name}: {result.requests_per_second:,.0f} '
                f'req/s, {result.transfer_per_second}/s'
            )
            if result.errors:
                notes.append(
                    f'{name}: {result.errors} errors or non-2xx responses in run '
                    f'{run + 1} of {short(url)}'
                )
    return {name: Stats(values) for name, values in samples.items()}, notes


def junk_paths(uri: str, rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits
    return [
        f'{uri}?junk={number}-{"".join(rng.choices(alphabet, k=JUNK_LENGTH))}'
        for number in range(FLOOD_REQUESTS)
    ]


def flood_spellings(image_id: str, rng: random.Random) -> list[str]:
    """Up to ``FLOOD_REQUESTS`` other spellings of one uuid (case, hyphens)."""
    canonical = str(uuid.UUID(image_id))
    found: list[str] = []
    for attempt in range(100 * FLOOD_REQUESTS):
        text = canonical if attempt % 2 else canonical.replace('-', '')
        spelling = ''.join(rng.choice((char, char.upper())) for char in text)
        if attempt == 0:
            spelling = canonical.upper()
        if spelling != canonical and spelling not in found:
            found.append(spelling)
            if len(found) == FLOOD_REQUESTS:
                break
    return found


def flood(target: Target, paths: Sequence[str]) -> dict[str, Any]:
    """How much Redis grew from one GET of each path, and the statuses seen."""
    target.flush()
    before = target.used_memory()
    statuses: collections.Counter[int] = collections.Counter()
    for path in paths:
        statuses[target.client.get(path).status_code] += 1
    growth = target.used_memory() - before
    return {
        'growth_mb': growth / 1e6,
        'growth_bytes': growth,
        'requests': len(paths),
        'statuses': dict(statuses),
    }
