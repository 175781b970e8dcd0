"""The storage benchmark's measurements, each taking the deployments in turn.

Latencies in ms and throughputs in req/s come as ``Stats`` by deployment
name; every measurement also counts the CPU time that uvicorn (and, for S3,
SeaweedFS) spent on it, per request, so that the report can tell the
service's time from the store's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import httpx

from asgilook.storage.blobs import Blobs
from asgilook.storage.blobs import open_blobs
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.crypto import GCM_VERSION
from asgilook.storage.crypto import Keyring
from asgilook.storage.crypto import seal
from asgilook.storage.crypto import unseal
from bench.common import CACHE_HEADER
from bench.common import HTTP_TIMEOUT
from bench.common import BenchError
from bench.common import progress
from bench.serving_measure import WRK_CONNECTIONS
from bench.serving_measure import WRK_THREADS
from bench.serving_measure import Stats
from bench.serving_measure import expect
from bench.serving_measure import expect_jpeg
from bench.serving_measure import quarter
from bench.serving_measure import upload
from bench.storage_setup import Deployment
from bench.storage_setup import Deployments
from bench.storage_setup import Photo

#: The byte range asked for: the second megabyte (10^6 bytes) of the original.
RANGE = (1_000_000, 1_999_999)
RANGE_HEADER = f'bytes={RANGE[0]}-{RANGE[1]}'
#: Concurrent uploads: this many clients, each uploading in turn.
UPLOAD_CLIENTS = 4
UPLOADS_PER_CLIENT = 2
#: CPU ms per request, by deployment and then process (uvicorn, weed).
Cpu = dict[str, dict[str, float]]
Documents = dict[str, list[dict[str, Any]]]


class CpuMeter:
    """CPU time of each deployment's processes over the requests measured."""

    def __init__(self, deployments: Mapping[str, Deployment]) -> None:
        self._deployments = deployments
        self._used: dict[str, dict[str, float]] = {name: {} for name in deployments}
        self._count = dict.fromkeys(deployments, 0)
        self._before: dict[str, float] = {}

    def start(self, name: str) -> None:
        self._before = self._deployments[name].cpu_seconds()

    def stop(self, name: str, count: int) -> None:
        """Count the CPU time since ``start(name)`` for ``count`` requests."""
        after = self._deployments[name].cpu_seconds()
        used = self._used[name]
        for role, seconds in after.items():
            used[role] = used.get(role, 0.0) + seconds - self._before[role]
        self._count[name] += count

    def per_request(self) -> Cpu:
        """CPU ms per request, by deployment and process."""
        return {
            name: {
                role: seconds * 1000 / max(self._count[name], 1)
                for role, seconds in used.items()
            }
            for name, used in self._used.items()
        }


def turns(
    deployments: Mapping[str, Deployment], number: int
) -> list[tuple[str, Deployment]]:
    """The deployments in the order of turn ``number``: each goes first in turn."""
    items = list(deployments.items())
    shift = number % len(items)
    return items[shift:] + items[:shift]


# Uploads and cold thumbnails


def sequential_uploads(
    deployments: Mapping[str, Deployment], photo: Photo, repeat: int
) -> tuple[dict[str, Stats], Documents, Cpu]:
    """Upload latency in ms, one at a time; the documents; CPU ms per upload."""
    samples: dict[str, list[float]] = {name: [] for name in deployments}
    documents: Documents = {name: [] for name in deployments}
    cpu = CpuMeter(deployments)
    # NOTE: One untimed upload each first: a new process's first request
    #   also starts thread pools and imports what its code imports lazily.
    for deployment in deployments.values():
        upload(deployment.target, photo.data)
    for number in range(repeat):
        for name, deployment in turns(deployments, number):
            # NOTE: Untimed: ext4 writes out every file's unsynced data at
            #   anyone's fsync, SeaweedFS syncs nothing, and the disk is shared.
            os.sync()
            cpu.start(name)
            seconds, document = upload(deployment.target, photo.data)
            cpu.stop(name, 1)
            samples[name].append(seconds * 1000)
            documents[name].append(document)
    stats = {name: Stats(values) for name, values in samples.items()}
    return stats, documents, cpu.per_request()


def _upload_many(
    url: str, data: bytes, count: int, start: threading.Barrier
) -> list[float]:
    """``count`` uploads on one keep-alive connection; their latencies in s."""
    latencies = []
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as client:
        start.wait()
        for _ in range(count):
            started = time.perf_counter()
            resp = client.post(
                '/images', content=data, headers={'Content-Type': 'image/jpeg'}
            )
            latencies.append(time.perf_counter() - started)
            expect(resp, 201, f'{url}: POST /images')
    return latencies


def _upload_burst(deployment: Deployment, data: bytes) -> tuple[float, list[float]]:
    """UPLOAD_CLIENTS clients at once; uploads per second, and the latencies."""
    start = threading.Barrier(UPLOAD_CLIENTS + 1)
    results: list[list[float]] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            url = deployment.target.server.url
            results.append(_upload_many(url, data, UPLOADS_PER_CLIENT, start))
        except BaseException as ex:
            errors.append(ex)
            start.abort()

    threads = [threading.Thread(target=client) for _ in range(UPLOAD_CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise BenchError(f'{deployment.name}: concurrent uploads: {errors[0]}')
    latencies = [value for values in results for value in values]
    return len(latencies) / seconds, latencies


def concurrent_uploads(
    deployments: Mapping[str, Deployment], photo: Photo, runs: int
) -> tuple[dict[str, Stats], dict[str, Stats], Cpu]:
    """Uploads per second of UPLOAD_CLIENTS clients; their latencies; CPU ms."""
    rates: dict[str, list[float]] = {name: [] for name in deployments}
    latencies: dict[str, list[float]] = {name: [] for name in deployments}
    cpu = CpuMeter(deployments)
    count = UPLOAD_CLIENTS * UPLOADS_PER_CLIENT
    for run in range(runs):
        for name, deployment in turns(deployments, run):
            os.sync()
            cpu.start(name)
            rate, seen = _upload_burst(deployment, photo.data)
            cpu.stop(name, count)
            rates[name].append(rate)
            latencies[name].extend(seconds * 1000 for seconds in seen)
            progress(f'  run {run + 1}/{runs} {name}: {rate:.2f} uploads/s')
    return (
        {name: Stats(values) for name, values in rates.items()},
        {name: Stats(values) for name, values in latencies.items()},
        cpu.per_request(),
    )


def cold_thumbnails(
    deployments: Mapping[str, Deployment], documents: Documents
) -> tuple[dict[str, Stats], dict[str, list[str]]]:
    """The first GET of a new upload's quarter thumbnail, in ms, and its cache state.

    Each picture was uploaded by the run and its thumbnails never asked for:
    neither the process's memory nor Redis has seen their URLs.
    """
    samples: dict[str, list[float]] = {name: [] for name in deployments}
    states: dict[str, list[str]] = {name: [] for name in deployments}
    first = next(iter(deployments))
    for number in range(len(documents[first])):
        for name, deployment in turns(deployments, number):
            uri = quarter(documents[name][number])
            started = time.perf_counter()
            resp = deployment.target.client.get(uri)
            seconds = time.perf_counter() - started
            expect_jpeg(resp, f'{name}: cold GET {uri}')
            samples[name].append(seconds * 1000)
            states[name].append(resp.headers.get(CACHE_HEADER, '(none)'))
    stats = {name: Stats(values) for name, values in samples.items()}
    return stats, states


# Throughput: wrk


@dataclasses.dataclass
class WrkRun:
    requests_per_second: float
    requests: int
    transfer_per_second: str
    errors: int


def wrk(url: str, duration: int, headers: Sequence[str] = ()) -> WrkRun:
    """One ``wrk`` run against ``url``, with the request headers given."""
    args = [
        'wrk', f'-t{WRK_THREADS}', f'-c{WRK_CONNECTIONS}', f'-d{duration}s',
        '--timeout', '10s', *(part for header in headers for part in ('-H', header)),
        url,
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True)
    rate = re.search(r'Requests/sec:\s+([\d.]+)', done.stdout)
    count = re.search(r'(\d+) requests in', done.stdout)
    if done.returncode != 0 or not rate or not count:
        raise BenchError(f'{" ".join(args)} failed:\n{done.stdout}{done.stderr}')
    transfer = re.search(r'Transfer/sec:\s+(\S+)', done.stdout)
    # Errors make a run fast and wrong: count them, so that the report says so.
    non_2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', done.stdout)
    socket_errors = re.search(r'Socket errors: (.*)', done.stdout)
    errors = int(non_2xx[1]) if non_2xx else 0
    if socket_errors:
        errors += sum(int(found) for found in re.findall(r'\d+', socket_errors[1]))
    return WrkRun(
        float(rate[1]), int(count[1]), transfer[1] if transfer else '?', errors
    )


def throughput(
    deployments: Mapping[str, Deployment],
    uris: Mapping[str, str],
    duration: int,
    runs: int,
    headers: Sequence[str] = (),
) -> tuple[dict[str, Stats], Cpu, list[str]]:
    """req/s of each deployment's URI, taking turns; CPU ms per request; notes."""
    samples: dict[str, list[float]] = {name: [] for name in deployments}
    cpu = CpuMeter(deployments)
    notes = []
    for run in range(runs):
        for name, deployment in turns(deployments, run):
            url = deployment.target.server.url + uris[name]
            cpu.start(name)
            result = wrk(url, duration, headers)
            cpu.stop(name, result.requests)
            samples[name].append(result.requests_per_second)
            progress(
                f'  run {run + 1}/{runs} {name}: {result.requests_per_second:,.0f} '
                f'req/s, {result.transfer_per_second}/s'
            )
            if result.errors:
                notes.append(
                    f'{name}: {result.errors} errors or non-2xx responses in wrk '
                    f'run {run + 1} of {uris[name]}'
                )
    stats = {name: Stats(values) for name, values in samples.items()}
    return stats, cpu.per_request(), notes


# The store alone, from this process


def _timed(
    repeat: int, work: Callable[[], Any], before: Callable[[], Any] | None = None
) -> Stats:
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return Stats(samples)


async def _read(blobs: Blobs, key: str, start: int = 0, end: int | None = None) -> int:
    """Read as the service serves: in chunks of 1 MiB past 1 MiB."""
    found = await blobs.open(key, 1024 * 1024, start, end)
    assert found is not None, key
    if isinstance(found.body, bytes):
        return len(found.body)
    return sum([len(chunk) async for chunk in found.body])


def _span() -> tuple[int, int]:
    """RANGE as the backends take it: ``[start, end)``."""
    return RANGE[0], RANGE[1] + 1


def _backend(blobs: Blobs, data: bytes, small: bytes, repeat: int) -> dict[str, Stats]:
    """PUT, streamed GET and ranged GET of ``data``, GET of ``small``, in ms."""
    loop = asyncio.new_event_loop()
    key = 'images/probe.1.jpeg'
    thumbnail = 'thumbnails/probe.1/thumbnail.jpeg'
    try:
        run = loop.run_until_complete
        run(blobs.put(thumbnail, small))
        found = {
            'put': _timed(repeat, lambda: run(blobs.put(key, data)), os.sync),
            'get': _timed(repeat, lambda: run(_read(blobs, key))),
            'range': _timed(repeat, lambda: run(_read(blobs, key, *_span()))),
            'small': _timed(repeat, lambda: run(_read(blobs, thumbnail))),
        }
        run(blobs.delete([key, thumbnail]))
        run(blobs.close())
    finally:
        loop.close()
    return found


def store_alone(
    lab: Deployments, local_dir: str, data: bytes, small: bytes, repeat: int
) -> dict[str, dict[str, Stats]]:
    """What each backend takes, called directly from this process, in ms.

    ``put``: one write of ``data`` (a local one synced); ``get``: all of it,
    streamed in 1 MiB chunks; ``range``: its bytes of RANGE; ``small``: a GET
    of ``small`` (a thumbnail) whole; and, for the encryption itself,
    ``seal`` and ``unseal`` of ``data`` in memory, in one thread, in the
    format version new objects get (``sealing_version()``) and in version 1
    (AES-GCM: ``seal_v1``, ``unseal_v1``).
    """
    keyring = Keyring.from_settings(lab.key, None)
    assert keyring is not None
    name = 'images/probe.1.jpeg'
    sealed = seal(keyring, name, data)
    sealed_v1 = seal(keyring, name, data, version=GCM_VERSION)
    environ, url = lab.weed.environ, lab.weed.url
    return {
        'local': _backend(open_blobs(local_dir, environ), data, small, repeat),
        's3': _backend(open_blobs(f'{url}/probe', environ), data, small, repeat),
        's3_encrypted': _backend(
            SealedBlobs(open_blobs(f'{url}/probe-sealed', environ), keyring),
            data,
            small,
            repeat,
        ),
        'cpu': {
            'seal': _timed(repeat, lambda: seal(keyring, name, data)),
            'unseal': _timed(repeat, lambda: unseal(keyring, name, sealed)),
            'seal_v1': _timed(
                repeat, lambda: seal(keyring, name, data, version=GCM_VERSION)
            ),
            'unseal_v1': _timed(repeat, lambda: unseal(keyring, name, sealed_v1)),
        },
    }
