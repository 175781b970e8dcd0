"""The storage benchmark's report: the table, the targets, where the time goes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from asgilook.storage.crypto import GCM_VERSION
from asgilook.storage.crypto import OCB_VERSION
from asgilook.storage.crypto import sealing_version
from bench.common import table
from bench.serving_measure import Stats
from bench.storage_measure import Cpu
from bench.storage_setup import LOCAL
from bench.storage_setup import NAMES
from bench.storage_setup import S3
from bench.storage_setup import SEALED
from bench.storage_setup import TITLES

#: The targets: an S3 upload's latency at most this many times local's...
UPLOAD_RATIO = 1.3
#: ...a cached answer's throughput within this of local's...
CACHED_TOLERANCE = 0.1
#: ...and an encrypted original at least this share of an unencrypted one's.
SEALED_ORIGINAL_RATIO = 0.7
DIGITS = {'ms': 1, 'req/s': 0, 'uploads/s': 2}
#: The cipher of the segments of each format version of a sealed object.
CIPHERS = {
    GCM_VERSION: 'AES-256-GCM (format version 1)',
    OCB_VERSION: 'AES-256-OCB3 (format version 2)',
}


@dataclasses.dataclass
class Line:
    """One path of the table: its figures in each deployment."""

    key: str
    label: str
    unit: str
    stats: dict[str, Stats]
    #: CPU ms per request, by deployment and process.
    cpu: Cpu = dataclasses.field(default_factory=dict)

    def ratio(self, name: str, base: str = LOCAL) -> float:
        return self.stats[name].median / self.stats[base].median

    def as_json(self) -> dict[str, Any]:
        return {
            'label': self.label,
            'unit': self.unit,
            **{name: self.stats[name].as_json() for name in NAMES},
            'ratio_s3_local': self.ratio(S3),
            'ratio_s3_encrypted_local': self.ratio(SEALED),
            'ratio_s3_encrypted_s3': self.ratio(SEALED, S3),
            'cpu_ms_per_request': self.cpu,
        }


@dataclasses.dataclass
class Verdict:
    """A target of the issue, checked (never asserted)."""

    key: str
    text: str
    value: float
    ok: bool


@dataclasses.dataclass
class Results:
    """Everything one run found, for the report and the JSON."""

    lines: dict[str, Line] = dataclasses.field(default_factory=dict)
    #: The store called directly: ms by backend and operation.
    store: dict[str, dict[str, Stats]] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    #: The size of the thumbnail served, cached and read from the store alone.
    thumbnail_bytes: int = 0

    def add(self, line: Line) -> None:
        self.lines[line.key] = line

    def verdicts(self) -> list[Verdict]:
        lines = self.lines
        found = []
        for name in (S3, SEALED):
            ratio = lines['upload'].ratio(name)
            found.append(
                Verdict(
                    f'upload_{name}',
                    f'{TITLES[name]} upload latency at most {UPLOAD_RATIO}x local',
                    ratio,
                    ratio <= UPLOAD_RATIO,
                )
            )
        for name in (S3, SEALED):
            ratio = lines['cached_thumbnail'].ratio(name)
            found.append(
                Verdict(
                    f'cached_{name}',
                    f'{TITLES[name]} cached thumbnail equal to local '
                    f'(req/s ratio 1 +/- {CACHED_TOLERANCE})',
                    ratio,
                    abs(ratio - 1) <= CACHED_TOLERANCE,
                )
            )
        ratio = lines['original'].ratio(SEALED, S3)
        found.append(
            Verdict(
                'original_encrypted',
                f'encrypted original at least {SEALED_ORIGINAL_RATIO}x the req/s '
                'of an unencrypted one (S3 encrypted / S3)',
                ratio,
                ratio >= SEALED_ORIGINAL_RATIO,
            )
        )
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            'results': {key: line.as_json() for key, line in self.lines.items()},
            'store_ms': {
                backend: {op: stats.as_json() for op, stats in ops.items()}
                for backend, ops in self.store.items()
            },
            'targets': [dataclasses.asdict(verdict) for verdict in self.verdicts()],
            'thumbnail_bytes': self.thumbnail_bytes,
            'notes': self.notes,
        }


def _cell(stats: Stats, unit: str) -> str:
    digits = DIGITS[unit]
    low, high = min(stats.samples), max(stats.samples)
    return f'{stats.median:,.{digits}f} [{low:,.{digits}f}-{high:,.{digits}f}]'


def print_table(lines: Mapping[str, Line]) -> None:
    header = (
        'path', 'unit', *(TITLES[name] for name in NAMES),
        'S3/local', 'enc/local', 'enc/S3',
    )  # fmt: skip
    rows = [header] + [
        (line.label, line.unit, *(_cell(line.stats[name], line.unit) for name in NAMES),
         f'{line.ratio(S3):.2f}', f'{line.ratio(SEALED):.2f}',
         f'{line.ratio(SEALED, S3):.2f}')
        for line in lines.values()
    ]  # fmt: skip
    print(table(rows))


def print_cpu(lines: Mapping[str, Line]) -> None:
    """CPU ms per request of uvicorn, and of SeaweedFS, by path."""
    print(
        '\nCPU per request, ms (user + system, every thread; from /proc): '
        'uvicorn / weed'
    )
    rows: list[tuple[str, ...]] = [('path', *(TITLES[name] for name in NAMES))]
    for line in lines.values():
        if not line.cpu:
            continue
        cells = []
        for name in NAMES:
            used = line.cpu[name]
            weed = f' / {used["weed"]:.2f}' if 'weed' in used else ''
            cells.append(f'{used["uvicorn"]:.2f}{weed}')
        rows.append((line.label, *cells))
    print(table(rows))


def print_store(
    store: Mapping[str, Mapping[str, Stats]], size: int, small: int
) -> None:
    print(
        "\nThe store alone: the service's own backends, called from this process "
        '(ms, median [min-max])'
    )
    labels = {
        'put': f'PUT {size / 1e6:.1f} MB (local: written and synced)',
        'get': f'GET {size / 1e6:.1f} MB, streamed in 1 MiB chunks',
        'range': 'GET of its 1 MB range',
        'small': f'GET {small / 1e3:.0f} kB (the thumbnail), whole',
    }
    rows: list[tuple[str, ...]] = [('operation', *(TITLES[name] for name in NAMES))]
    for op, label in labels.items():
        rows.append((label, *(_cell(store[name][op], 'ms') for name in NAMES)))
    print(table(rows))
    cpu = store['cpu']
    cipher = CIPHERS[sealing_version()]
    print(
        f'{cipher} of {size / 1e6:.1f} MB in memory, one thread: seal '
        f'{_cell(cpu["seal"], "ms")}, unseal {_cell(cpu["unseal"], "ms")}; '
        f'{CIPHERS[GCM_VERSION]}: seal {_cell(cpu["seal_v1"], "ms")}, '
        f'unseal {_cell(cpu["unseal_v1"], "ms")}'
    )


def _uploads(results: Results, name: str) -> str:
    upload = results.lines['upload']
    store = results.store
    extra = upload.stats[name].median - upload.stats[LOCAL].median
    put = store[name]['put'].median - store[LOCAL]['put'].median
    used = upload.cpu[name]
    local = upload.cpu[LOCAL]['uvicorn']
    return (
        f'{TITLES[name]} upload: {extra:+.0f} ms against local. The store alone: a '
        f'PUT of the original takes {put:+.0f} ms against a synced local write; '
        f'per upload uvicorn used {used["uvicorn"]:.0f} ms of CPU (local '
        f'{local:.0f}) and weed {used.get("weed", 0):.0f} ms, on the same two '
        'cores.'
    )


def _cpu_total(cpu: Mapping[str, float]) -> float:
    return cpu['uvicorn'] + cpu.get('weed', 0.0)


def _original(results: Results) -> str:
    line = results.lines['original']
    cpu = line.cpu
    store = results.store
    parts = []
    for name in (S3, SEALED):
        total = _cpu_total(cpu[name])
        parts.append(
            f'{TITLES[name]}: uvicorn {cpu[name]["uvicorn"]:.1f} + weed '
            f'{cpu[name].get("weed", 0):.1f} = {total:.1f} ms of CPU per request'
        )
    bound = _cpu_total(cpu[S3]) / _cpu_total(cpu[SEALED])
    unseal = store['cpu']['unseal'].median
    return (
        'Encrypted original: '
        + '; '.join(parts)
        + f'. With both cores busy, the CPU alone predicts {bound:.2f} of the '
        f'unencrypted rate (measured {line.ratio(SEALED, S3):.2f}). Unsealing '
        f'the object in memory takes {unseal:.1f} ms of one core; a streamed GET '
        f'from the store alone {store[S3]["get"].median:.1f} ms plain, '
        f'{store[SEALED]["get"].median:.1f} ms sealed.'
    )


def _cached(results: Results, name: str) -> str:
    line = results.lines['cached_thumbnail']
    cpu = line.cpu
    ours, local = line.stats[name].samples, line.stats[LOCAL].samples
    overlap = max(ours) >= min(local) and min(ours) <= max(local)
    ranges = 'overlap' if overlap else 'do not overlap'
    return (
        f'{TITLES[name]} cached thumbnail: uvicorn {cpu[name]["uvicorn"]:.3f} ms '
        f'of CPU per request against local {cpu[LOCAL]["uvicorn"]:.3f}, weed '
        f"{cpu[name].get('weed', 0):.3f}: the store is not asked; the runs' "
        f'ranges {ranges}.'
    )


def where_the_time_goes(results: Results, missed: list[Verdict]) -> list[str]:
    """Lines saying, for each target missed, what the service and the store took."""
    found = []
    keys = {verdict.key for verdict in missed}
    for name in (S3, SEALED):
        if f'upload_{name}' in keys:
            found.append(_uploads(results, name))
        if f'cached_{name}' in keys:
            found.append(_cached(results, name))
    if 'original_encrypted' in keys:
        found.append(_original(results))
    return found


def report(settings: dict[str, Any], results: Results) -> None:
    """Print the table, the targets, the CPU, the store alone and the notes."""
    print(
        f'Storage benchmark, {settings["date"]}: Python {settings["python"]}, '
        f'{settings["cpus"]} CPUs, load average {settings["load_before"]} before, '
        f'{settings["load_after"]} after'
    )
    print(f'Photo: {settings["photo"]}')
    print(
        'Each deployment: uvicorn ' + settings['uvicorn_flags'] + ', its own '
        'redis-server and empty storage directory (SQLite index); S3: one '
        f'SeaweedFS {settings["weed"]} on loopback, a prefix per deployment.'
    )
    print(
        f'Latency: {settings["repeat"]} requests each, one at a time; '
        f'{settings["upload_clients"]} clients x {settings["uploads_per_client"]} '
        f'uploads, {settings["runs"]} runs; throughput: {settings["runs"]} runs '
        f'each of {settings["wrk"]}. The deployments take turns. Ratios are of '
        'the medians (ms: above 1 is slower; req/s: below 1 is slower).\n'
    )
    print_table(results.lines)
    verdicts = results.verdicts()
    print('\nTargets (checked, not asserted)')
    for verdict in verdicts:
        mark = 'MET   ' if verdict.ok else 'MISSED'
        print(f'{mark}  {verdict.text}: {verdict.value:.2f}')
    print_cpu(results.lines)
    print_store(results.store, settings['photo_bytes'], results.thumbnail_bytes)
    missed = [verdict for verdict in verdicts if not verdict.ok]
    if missed:
        print('\nWhere the time goes, for the targets missed')
        for text in where_the_time_goes(results, missed):
            print(f'  {text}')
    print('\nNotes')
    for note in results.notes:
        print(f'  {note}')
