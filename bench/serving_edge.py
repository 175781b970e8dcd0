"""The serving benchmark's edge step: asgilook against the ceilings of its paths.

Four paths, each measured with ``wrk``, every server taking turns within each
run so that drift hits them alike:

* the original of ``seeding.jpg`` (1.5 MB) and of ``kleiber.jpg`` (4.4 MB),
  against nginx sending the same bytes as a file with ``sendfile`` (target:
  at least 0.9 of its rate), and against the bare ASGI app;
* the cached quarter-size thumbnail, against the bare app (at least 0.8);
* the cached listing, ``GET /images``, against the bare app (at least 0.6).

Each for two asgilook processes: the one that made the uploads, and one
started after them on the same storage and Redis (a restart), which has only
read. The bare app (``bench/bare.py``) answers each path with the bytes and
the headers that asgilook answered it with, from memory, under the same
uvicorn: what an app costs at the least. nginx serves the same bytes as files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import httpx

from bench.common import CACHE_HEADER
from bench.common import progress
from bench.serving_checks import Check
from bench.serving_measure import WARM_GETS
from bench.serving_measure import Stats
from bench.serving_measure import expect
from bench.serving_measure import measure_throughput
from bench.serving_measure import short
from bench.serving_setup import NGINX
from bench.serving_setup import Lab
from bench.serving_setup import Target

#: The names of the ceilings, in the report's order.
NGINX_NAME = 'nginx'
BARE_NAME = 'bare'
#: The process started after the uploads, on the same storage and Redis.
FRESH_NAME = 'asgilook-fresh'
# Headers uvicorn adds to every answer, the bare app's too.
_SERVERS_OWN = frozenset({'date', 'server'})
# What httpx sends that wrk does not: wrk sends only Host. (Without
# Accept-Encoding, the listing is answered as wrk gets it, uncompressed.)
_NOT_SENT_BY_WRK = ('accept', 'accept-encoding', 'user-agent')

Answer = tuple[list[tuple[str, str]], bytes]


@dataclasses.dataclass(frozen=True)
class EdgePath:
    """A path measured against its ceiling."""

    key: str
    label: str
    uri: str
    #: The ceiling the target is set against: nginx or the bare app.
    ceiling: str
    #: The least ratio of asgilook's rate to the ceiling's that will do.
    target: float


@dataclasses.dataclass
class EdgeRow:
    """One path, one asgilook process, against the ceilings."""

    key: str
    label: str
    process: str
    ours: Stats
    #: The ceilings' rates by name; nginx's only for an original.
    baselines: dict[str, Stats]
    ceiling: str
    target: float

    def ratio(self, name: str) -> float | None:
        baseline = self.baselines.get(name)
        if baseline is None or not baseline.median:
            return None
        return self.ours.median / baseline.median

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None without its ceiling (no nginx)."""
        ratio = self.ratio(self.ceiling)
        return None if ratio is None else ratio >= self.target

    def as_json(self) -> dict[str, Any]:
        return {
            'key': self.key,
            'label': self.label,
            'process': self.process,
            'asgilook': self.ours.as_json(),
            **{name: stats.as_json() for name, stats in self.baselines.items()},
            **{f'ratio_{name}': self.ratio(name) for name in self.baselines},
            'ceiling': self.ceiling,
            'target': self.target,
            'met': self.met,
        }


def edge_paths(
    original: tuple[str, str], large: tuple[str, str], thumbnail: str
) -> list[EdgePath]:
    """The four paths: ``original`` and ``large`` are (photo name, URI) pairs."""
    return [
        EdgePath('edge_original', f'GET original ({original[0]})', original[1],
                 NGINX_NAME, 0.9),
        EdgePath('edge_original_large', f'GET original ({large[0]})', large[1],
                 NGINX_NAME, 0.9),
        EdgePath('edge_thumbnail', 'GET thumbnail, cached', thumbnail, BARE_NAME, 0.8),
        EdgePath('edge_listing', 'GET /images, cached', '/images', BARE_NAME, 0.6),
    ]  # fmt: skip


def get_as_wrk(target: Target, uri: str) -> httpx.Response:
    """GET ``uri`` with the headers wrk sends, and no others; a 200."""
    request = target.client.build_request('GET', uri)
    for name in _NOT_SENT_BY_WRK:
        del request.headers[name]
    return expect(target.client.send(request), 200, f'{target.name}: GET {uri}')


def _same_bytes(target: Target, answers: dict[str, bytes]) -> list[Check]:
    """Whether ``target`` gives each path's bytes in ``answers``, as wrk asks."""
    checks = []
    for uri, data in answers.items():
        served = get_as_wrk(target, uri)
        checks.append(
            Check(
                f'{target.name}: GET {short(uri)} gives the bytes asgilook gave',
                served.content == data,
                f'{len(served.content):,} bytes',
            )
        )
    return checks


def _answers(
    path: EdgePath, targets: Sequence[Target]
) -> tuple[Answer, list[str], list[Check]]:
    """GET ``path`` a few times from each process: the uploader's last answer
    (its headers but uvicorn's own, and body), notes and checks."""
    notes, checks = [], []
    bodies = []
    answer: Answer | None = None
    for target in targets:
        seen = [get_as_wrk(target, path.uri) for _ in range(WARM_GETS)]
        states = [resp.headers.get(CACHE_HEADER, '(none)') for resp in seen]
        bodies.extend(resp.content for resp in seen)
        notes.append(
            f'{target.name}: {path.label} x{WARM_GETS}: {CACHE_HEADER} '
            f'{", ".join(states)}; {len(seen[0].content):,} bytes'
        )
        checks.append(
            Check(
                f'{target.name}: {path.label}: 2nd and later GETs are a Hit',
                all(state == 'Hit' for state in states[1:]),
                ', '.join(states),
            )
        )
        if answer is None:
            headers = [
                (name, value)
                for name, value in seen[-1].headers.multi_items()
                if name.lower() not in _SERVERS_OWN
            ]
            answer = headers, seen[-1].content
    assert answer is not None
    checks.append(
        Check(
            f'{path.label}: both processes give the same bytes, every time',
            all(body == answer[1] for body in bodies),
            f'{len(set(bodies))} distinct bodies',
        )
    )
    return answer, notes, checks


def _nginx(
    lab: Lab,
    paths: Sequence[EdgePath],
    answers: dict[str, Answer],
    notes: list[str],
    checks: list[Check],
) -> Target | None:
    """nginx serving the originals' bytes, checked; None (and a note) without it."""
    files = {
        path.uri: answers[path.uri][1] for path in paths if path.ceiling == NGINX_NAME
    }
    if not NGINX.is_file():
        message = (
            f'nginx is not installed (no {NGINX}): the originals are measured '
            'against the bare app only (apt-get install nginx-light for the rest).'
        )
        progress(f'  {message}')
        notes.append(message)
        return None
    nginx = lab.nginx(files)
    checks.extend(_same_bytes(nginx, files))
    return nginx


def measure_edge(
    lab: Lab,
    ours: Target,
    paths: Sequence[EdgePath],
    duration: int,
    runs: int,
    notes: list[str],
    checks: list[Check],
) -> list[EdgeRow]:
    """Each path: asgilook's two processes against the ceilings, in turns.

    What was seen on the way goes to ``notes``, and into ``checks``: every
    repeat a Hit, the same bytes everywhere.
    """
    progress('Starting asgilook again on the same storage and Redis (a restart) ...')
    fresh = lab.restart(ours, FRESH_NAME)
    processes = (ours, fresh)
    answers = {}
    for path in paths:
        answers[path.uri], seen, checked = _answers(path, processes)
        notes.extend(seen)
        checks.extend(checked)
    bare = lab.bare(answers)
    checks.extend(_same_bytes(bare, {uri: body for uri, (_, body) in answers.items()}))
    nginx = _nginx(lab, paths, answers, notes, checks)
    rows = []
    for path in paths:
        progress(f'  {path.label}: {short(path.uri)}')
        urls = {target.name: target.server.url + path.uri for target in processes}
        if path.ceiling == NGINX_NAME and nginx is not None:
            urls[NGINX_NAME] = nginx.server.url + path.uri
        urls[BARE_NAME] = bare.server.url + path.uri
        rates, errors = measure_throughput(urls, duration, runs)
        notes.extend(errors)
        baselines = {
            name: rates[name] for name in (NGINX_NAME, BARE_NAME) if name in rates
        }
        label = f'{path.label}, {_size(len(answers[path.uri][1]))}'
        for target in processes:
            rows.append(
                EdgeRow(path.key, label, target.name, rates[target.name],
                        baselines, path.ceiling, path.target)
            )  # fmt: skip
    return rows


def _size(length: int) -> str:
    return f'{length / 1e6:.1f} MB' if length >= 1e6 else f'{length / 1e3:.1f} kB'
