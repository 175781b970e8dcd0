"""Machines on one bucket are one service: real uvicorn, PostgreSQL, SeaweedFS.

Two uvicorn processes ("machines"), each on an empty storage directory of
its own, share one PostgreSQL database, one Redis and one prefix of a
SeaweedFS bucket (ASGI_LOOK_STORAGE_URL=s3://...), as the machines of a
service behind a load balancer would (see tests/cluster.py). What one
stores the other lists and serves byte for byte, ranges included; a machine
killed mid-upload leaves nothing half-visible; the store going away is a
503 that ends when it comes back; encryption at rest leaves nothing of a
picture in the bucket, and a damaged or unreadable object is an error,
never the picture. A key rotation (``asgilook rekey``) and a move from a
machine's own directory to the bucket (``asgilook migrate``) are run as real
processes while the machines serve, and every picture is served the same
before and after.
"""

import base64
import collections
import concurrent.futures
import io
import json
import re
import secrets
import threading
import time

import httpx
import PIL.Image
import pytest

from asgilook.storage.crypto import FIXED_SIZE
from asgilook.storage.crypto import HEADER_SIZE
from asgilook.storage.crypto import MAGIC
from asgilook.storage.crypto import Header
from asgilook.storage.crypto import key_id
from tests.cluster import Bucket
from tests.cluster import Command
from tests.cluster import Deployment
from tests.cluster import pictures_in
from tests.cluster import run_command
from tests.helpers import decode
from tests.helpers import draw_image
from tests.helpers import stored_objects

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.s3]

#: Long enough for any answer of a healthy machine; an answer that takes
#: longer fails the test (an httpx timeout), without a timed assertion.
TIMEOUT = 30
#: The bound on an answer while the store is away: "soon", not "after every
#: retry of every layer".
OUTAGE_TIMEOUT = 15
DAMAGED = 'Stored Object Damaged'
UNAVAILABLE = 'Storage Unavailable'


# The deployments.


def new_key():
    return base64.b64encode(secrets.token_bytes(32)).decode()


class RedisDatabases:
    """Hands each deployment a Redis database of its own: the listing cache
    and its generation are per service, as with a Redis per service."""

    def __init__(self, server):
        self.server = server
        self.number = 0

    def url(self):
        self.number += 1
        return f'{self.server.url}/{self.number}'


#: A deployment, its first two machines and its bucket prefix.
Service = collections.namedtuple('Service', 'deployment a b bucket')


@pytest.fixture(scope='module')
def redis_databases(redis_server):
    return RedisDatabases(redis_server)


@pytest.fixture(scope='module')
def store(seaweed_server):
    """The session's SeaweedFS, running (a test that stops it starts it)."""
    if seaweed_server.process is None:
        seaweed_server.start()
    return seaweed_server


def deployment(factory, name, redis, postgres, bucket, key=None):
    return Deployment(
        factory.mktemp(name),
        redis.url(),
        postgres.database(),
        bucket.url,
        bucket.server.environ,
        key,
    )


def service(factory, name, redis, postgres, store, key=None):
    """A deployment on a fresh prefix and database, with machines a and b;
    every machine it started is stopped at the end."""
    bucket = Bucket(store)
    started = deployment(factory, name, redis, postgres, bucket, key)
    try:
        yield Service(started, started.start('a'), started.start('b'), bucket)
    finally:
        started.close()


@pytest.fixture(scope='module')
def shared(tmp_path_factory, redis_databases, postgres_server, store):
    """Machines ``a`` and ``b`` on one database and one bucket prefix, no key."""
    yield from service(
        tmp_path_factory, 'shared', redis_databases, postgres_server, store
    )


@pytest.fixture(scope='module')
def sealed(tmp_path_factory, redis_databases, postgres_server, store):
    """Machines ``a`` and ``b`` of a service that encrypts at rest."""
    yield from service(
        tmp_path_factory,
        'sealed',
        redis_databases,
        postgres_server,
        store,
        key=new_key(),
    )


# Pictures, and what they are served and stored as.


def animated_gif(size=(256, 192)):
    """Three frames of three colours, each with a shape of its own."""
    frames = []
    for number, colour in enumerate([(220, 0, 0), (0, 160, 0), (0, 0, 220)]):
        frame = PIL.Image.new('RGB', size, colour)
        frame.paste((255, 255, 255), (10 + 40 * number, 10, 50 + 40 * number, 50))
        frames.append(frame)
    output = io.BytesIO()
    frames[0].save(
        output, 'GIF', save_all=True, append_images=frames[1:], duration=80, loop=0
    )
    return output.getvalue()


def photo_with_exif(size=(480, 320)):
    """A JPEG with an Exif block (a camera's Make), as phones send them."""
    image = PIL.Image.open(io.BytesIO(draw_image(size))).convert('RGB')
    exif = PIL.Image.Exif()
    exif[0x010F] = 'asgilook test camera'
    exif[0x0112] = 1  # upright
    output = io.BytesIO()
    image.save(output, 'JPEG', quality=92, exif=exif.tobytes())
    data = output.getvalue()
    assert b'Exif' in data
    return data


def noise(size=(600, 600)):
    """A picture whose JPEG is big (several 64 KiB segments once sealed)."""
    output = io.BytesIO()
    PIL.Image.effect_noise(size, 64).convert('RGB').save(output, 'PNG')
    return output.getvalue()


def upload(url, data):
    resp = httpx.post(f'{url}/images', content=data, timeout=TIMEOUT)
    assert resp.status_code == 201, resp.text
    return resp.json()


def listing(url):
    resp = httpx.get(f'{url}/images', params={'limit': 1000}, timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    return resp.json()


def listed_ids(url):
    return [document['id'] for document in listing(url)]


def fetch(url, uri):
    resp = httpx.get(f'{url}{uri}', timeout=TIMEOUT)
    assert resp.status_code == 200, (url, uri, resp.status_code, resp.text[:300])
    return resp.content


def uris(document):
    """Every picture of a listed document: original, thumbnails, animation,
    and the upload kept as it came."""
    found = [document['image'], *document['thumbnails']]
    for field in ('animation', 'original'):
        if document[field]:
            found.append(document[field])
    return found


def key_of(document, uri):
    """The object key that ``uri`` of the document is served from."""
    stem = f'{document["id"]}.{document["version"]}'
    if uri == document['image']:
        return f'images/{stem}.jpeg'
    if uri == document['animation']:
        return f'images/{stem}.webp'
    if uri == document['original']:
        return f'images/{stem}.original'
    return f'thumbnails/{stem}/{uri.rpartition("/")[2]}'


def check_picture(document, uri, data):
    """``data`` is the whole picture that ``uri`` of the document names."""
    if uri == document['animation']:
        image = PIL.Image.open(io.BytesIO(data))
        assert image.format == 'WEBP'
        assert image.n_frames == 3
        image.seek(2)
        image.load()
        return
    if uri == document['original']:
        image = PIL.Image.open(io.BytesIO(data))
        assert image.format in ('PNG', 'GIF', 'WEBP')
        assert image.size == tuple(document['size'])
        image.load()
        return
    size = tuple(document['size'])
    if uri != document['image']:
        width, _, height = uri.rpartition('/')[2].removesuffix('.jpeg').partition('x')
        size = (int(width), int(height))
    assert decode(data).size == size


def served_alike(document, first, second):
    """Every picture of the document, as ``second`` and then ``first`` serve
    it: the same bytes, whole. Returns them by URI."""
    served = {}
    for uri in uris(document):
        data = fetch(second.url, uri)
        assert fetch(first.url, uri) == data, uri
        check_picture(document, uri, data)
        served[uri] = data
    return served


def noted(machine, documents):
    """Every picture of the documents as ``machine`` serves it, by URI."""
    return {uri: fetch(machine.url, uri) for d in documents for uri in uris(d)}


def same_bytes(machine, served):
    """``machine`` serves every picture of ``served`` (by URI) byte for byte."""
    for uri, data in served.items():
        assert fetch(machine.url, uri) == data, (machine, uri)


def error_of(resp, status, title):
    """The JSON body of an error answer, checked; never a picture."""
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers['content-type'].startswith('application/json')
    assert b'\xff\xd8\xff' not in resp.content
    assert not resp.content.startswith(MAGIC)
    body = resp.json()
    assert body['title'] == title
    assert body['description']
    return body


# 1. Uploads through one machine are the other's too.


def test_uploads_through_one_machine_are_listed_and_served_by_the_other(shared):
    a, b, bucket = shared.a, shared.b, shared.bucket
    uploads = [
        (a, b, draw_image((640, 360))),
        (a, b, animated_gif()),
        (b, a, draw_image((300, 500))),
        (b, a, animated_gif((200, 200))),
    ]
    documents = []
    for through, other, data in uploads:
        document = upload(through.url, data)
        shown = {k: v for k, v in document.items() if k != 'delete_token'}
        assert shown in listing(other.url)
        assert bool(document['animation']) == data.startswith(b'GIF8')
        served = served_alike(document, through, other)
        # What is served is what is stored, byte for byte, and nothing else.
        for uri, picture in served.items():
            assert bucket.get(key_of(document, uri)) == picture, uri
        documents.append(document)

    assert listing(a.url) == listing(b.url)
    assert listed_ids(a.url)[-4:] == [document['id'] for document in documents]
    for machine in (a, b):
        assert pictures_in(machine.directory) == [], machine


# 2. Byte ranges, from the bucket and from a local directory.


def range_cases(size, etag):
    """(request headers, status, the bytes [start, end) answered)."""
    cases = [
        ({'Range': 'bytes=10-99'}, 206, (10, 100)),
        ({'Range': f'bytes={size - 50}-'}, 206, (size - 50, size)),
        ({'Range': 'bytes=-30'}, 206, (size - 30, size)),
        ({'Range': f'bytes=100-{size + 1000}'}, 206, (100, size)),
        ({'Range': f'bytes={size}-'}, 416, None),
        ({'Range': f'bytes={size + 10}-{size + 20}'}, 416, None),
        ({'Range': 'bytes=5-20', 'If-Range': etag}, 206, (5, 21)),
    ]
    if size > 140_000:
        # NOTE: Across the 64 KiB segments of a sealed object.
        cases.append(({'Range': 'bytes=65530-140000'}, 206, (65530, 140001)))
    # NOTE: Last: the whole picture it answers may be remembered, and then
    #   every range after it would be cut from memory, not read.
    cases.append(
        ({'Range': 'bytes=5-20', 'If-Range': '"000000000000"'}, 200, (0, size))
    )
    return cases


def ask_ranges(http, uri, size, etag):
    return [
        (headers, status, span, http.get(uri, headers=headers))
        for headers, status, span in range_cases(size, etag)
    ]


def check_ranges(answers, whole, etag):
    size = len(whole)
    for headers, status, span, resp in answers:
        assert resp.status_code == status, (headers, resp.status_code, resp.text)
        if status == 416:
            assert resp.headers['content-range'] == f'bytes */{size}'
            error_of(resp, 416, 'Range Not Satisfiable')
            continue
        start, end = span
        assert resp.content == whole[start:end], headers
        assert resp.headers['accept-ranges'] == 'bytes'
        assert resp.headers['etag'] == etag
        assert int(resp.headers['content-length']) == end - start
        if status == 206:
            assert resp.headers['content-range'] == f'bytes {start}-{end - 1}/{size}'
        else:
            assert 'content-range' not in resp.headers


def ranges_of(url, uri):
    """Every kind of range of ``uri``, asked of a machine that has not served
    it yet (read from the store), then again once it has (from its memory).
    Returns the whole picture."""
    with httpx.Client(base_url=url, timeout=TIMEOUT) as http:
        head = http.head(uri)
        assert head.status_code == 200
        assert head.headers['accept-ranges'] == 'bytes'
        size, etag = int(head.headers['content-length']), head.headers['etag']
        first = ask_ranges(http, uri, size, etag)
        whole = http.get(uri)
        assert whole.status_code == 200
        assert whole.headers['accept-ranges'] == 'bytes'
        assert (len(whole.content), whole.headers['etag']) == (size, etag)
        check_ranges(first, whole.content, etag)
        check_ranges(ask_ranges(http, uri, size, etag), whole.content, etag)
        return whole.content


@pytest.fixture
def local(tmp_path, redis_databases):
    """One machine with no storage URL and no database: its own directory."""
    alone = Deployment(tmp_path, redis_databases.url())
    try:
        machine = alone.start('local')
        yield Service(alone, machine, machine, None)
    finally:
        alone.close()


@pytest.mark.parametrize('where', ['bucket', 'local'])
def test_byte_ranges_of_originals_and_thumbnails(where, request):
    _, a, b, _ = request.getfixturevalue('shared' if where == 'bucket' else 'local')
    # Stored through one machine, ranges through the other (if there are two).
    document = upload(a.url, noise((400, 300)))
    for uri in (document['image'], document['thumbnails'][0]):
        whole = ranges_of(b.url, uri)
        check_picture(document, uri, whole)
        assert fetch(a.url, uri) == whole


# 3. kill -9 in the middle of uploads.


def upload_until(url, stop, acknowledged):
    """Upload through ``url`` until told to stop or the machine is gone."""
    with httpx.Client(timeout=TIMEOUT) as http:
        while not stop.is_set():
            try:
                resp = http.post(f'{url}/images', content=draw_image((320, 240)))
            except httpx.TransportError:
                return  # killed: whatever was in flight was not acknowledged
            assert resp.status_code == 201, resp.text
            acknowledged.append(resp.json())


def test_kill_9_mid_uploads_leaves_every_listed_picture_whole(shared):
    survivor, bucket = shared.b, shared.bucket
    victim = shared.deployment.start('victim')
    acknowledged = []
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        clients = [
            pool.submit(upload_until, victim.url, stop, acknowledged) for _ in range(3)
        ]
        deadline = time.monotonic() + 60
        while len(acknowledged) < 9 and time.monotonic() < deadline:
            if any(client.done() for client in clients):
                break  # one failed: its error is raised below
            time.sleep(0.01)
        victim.kill()  # kill -9, uploads in flight
        stop.set()
        for client in clients:
            client.result(timeout=TIMEOUT)
    assert len(acknowledged) >= 9

    listed = listing(survivor.url)
    assert {d['id'] for d in acknowledged} <= {d['id'] for d in listed}
    # Every object of every listed version is in the bucket, before anything
    # is asked of it (a missing thumbnail would be rendered on demand).
    stored = set(bucket.keys())
    for document in listed:
        assert {key_of(document, uri) for uri in uris(document)} <= stored
    for document in listed:
        for uri in uris(document):
            check_picture(document, uri, fetch(survivor.url, uri))
    again = upload(survivor.url, draw_image((100, 100)))
    assert listed_ids(survivor.url) == [d['id'] for d in listed] + [again['id']]
    for machine in (victim, survivor):
        assert pictures_in(machine.directory) == [], machine


# 4. The store goes away, and comes back.


def health(url):
    resp = httpx.get(f'{url}/healthz', timeout=OUTAGE_TIMEOUT)
    return resp.status_code, resp.json()


def check_outage(machines, held, unheld, before):
    for machine in machines:
        resp = httpx.post(
            f'{machine.url}/images', content=draw_image(), timeout=OUTAGE_TIMEOUT
        )
        error_of(resp, 503, UNAVAILABLE)
        assert int(resp.headers['retry-after']) > 0
        # The index answers: the listing does, unchanged.
        assert listing(machine.url) == before
        # What this machine keeps in memory is served still.
        for uri, data in held.items():
            assert fetch(machine.url, uri) == data, uri
        # What it does not is a 503 too, never a broken picture.
        resp = httpx.get(f'{machine.url}{unheld}', timeout=OUTAGE_TIMEOUT)
        error_of(resp, 503, UNAVAILABLE)
        status, report = health(machine.url)
        assert status == 503
        assert report['status'] == 'degraded'
        assert report['storage']['ok'] is False
        assert 'image store cannot be used' in report['storage']['detail']
        assert 'connection refused' in report['storage']['detail']
        assert report['redis']['ok'] is True


def test_the_store_going_away_is_a_503_until_it_comes_back(shared, store):
    a, b = shared.a, shared.b
    kept = upload(a.url, draw_image((256, 256)))
    # Asked of nobody before the outage: in no machine's memory.
    unheld = upload(b.url, draw_image((256, 256)))
    small = kept['thumbnails'][-1]
    held = {small: fetch(a.url, small)}
    assert fetch(b.url, small) == held[small]
    before = listing(a.url)

    store.stop()
    try:
        check_outage([a, b], held, unheld['image'], before)
    finally:
        store.start()

    # The same processes, by themselves: no restart.
    for through, other in ((a, b), (b, a)):
        document = upload(through.url, draw_image((200, 150)))
        assert document['id'] in listed_ids(other.url)
        served_alike(document, through, other)
        status, report = health(through.url)
        assert status == 200
        assert (report['status'], report['storage']['ok']) == ('ok', True)
    for uri in uris(unheld):
        check_picture(unheld, uri, fetch(a.url, uri))


# 5. Encryption at rest.


def runs(data, length=32):
    return {data[at : at + length] for at in range(len(data) - length + 1)}


def check_sealed(objects, plaintexts):
    """No stored object shows anything of the plaintexts."""
    jpeg_starts = {data[:4] for data in plaintexts if data.startswith(b'\xff\xd8')}
    every_run = set().union(*(runs(data) for data in plaintexts))
    for key, stored in objects.items():
        if key.startswith(('images/', 'thumbnails/')):
            assert stored.startswith(MAGIC), key
        # NOTE: FF D8 FF and the byte after it, as every JPEG served begins:
        #   three random bytes of ciphertext would match now and then.
        assert not any(start in stored for start in jpeg_starts), key
        assert b'Exif' not in stored, key
        assert not any(run in every_run for run in runs(stored)), key


def test_pictures_are_sealed_at_rest_and_served_by_every_machine(sealed):
    a, b, bucket = sealed.a, sealed.b, sealed.bucket
    # Ranges of a sealed original (across its segments) and of a thumbnail,
    # read from the bucket by the machine that did not store them.
    big = upload(a.url, noise())
    ranges_of(b.url, big['image'])
    ranges_of(b.url, big['thumbnails'][-1])

    uploads = [(a, b, photo_with_exif()), (b, a, animated_gif())]
    plaintexts = []
    keys = set()
    for through, other, data in uploads:
        document = upload(through.url, data)
        served = served_alike(document, through, other)
        plaintexts += [data, *served.values()]
        keys |= {key_of(document, uri) for uri in served}
    served = served_alike(big, a, b)
    plaintexts += served.values()
    keys |= {key_of(big, uri) for uri in served}

    objects = bucket.objects()
    assert keys <= set(objects)
    check_sealed(objects, plaintexts)


def test_a_machine_without_the_key_never_serves_a_sealed_picture(sealed):
    a, bucket = sealed.a, sealed.bucket
    keyless = sealed.deployment.start('keyless', ASGI_LOOK_ENCRYPTION_KEY='')
    document = upload(a.url, animated_gif())
    assert document['id'] in listed_ids(keyless.url)
    for uri in uris(document):
        key = key_of(document, uri)
        stored = bucket.get(key)
        assert stored.startswith(MAGIC)
        for headers in ({}, {'Range': 'bytes=0-99'}):
            resp = httpx.get(f'{keyless.url}{uri}', headers=headers, timeout=TIMEOUT)
            error_of(resp, 500, DAMAGED)
            assert stored[len(MAGIC) : len(MAGIC) + 32] not in resp.content
        assert f'object {key} failed authentication' in keyless.log()
    # The machines with the key serve it all the same.
    served_alike(document, a, sealed.b)


def test_pictures_stored_before_the_key_was_set_stay_readable(
    tmp_path_factory, redis_databases, postgres_server, store
):
    bucket = Bucket(store)
    service = deployment(
        tmp_path_factory, 'later', redis_databases, postgres_server, bucket
    )
    try:
        plain = service.start('a')
        before = upload(plain.url, animated_gif())
        served = {uri: fetch(plain.url, uri) for uri in uris(before)}
        for uri, data in served.items():
            assert bucket.get(key_of(before, uri)) == data  # stored plain

        key = new_key()
        keyed = service.restart(plain, ASGI_LOOK_ENCRYPTION_KEY=key)
        other = service.start('b', ASGI_LOOK_ENCRYPTION_KEY=key)
        assert served_alike(before, keyed, other) == served
        after = upload(keyed.url, draw_image((320, 240)))
        served_alike(after, keyed, other)
        for uri in uris(after):
            assert bucket.get(key_of(after, uri)).startswith(MAGIC)
        assert listed_ids(other.url) == [before['id'], after['id']]
    finally:
        service.close()


# 6. A damaged object.


def flipped(data, count=8):
    """``data`` with ``count`` bytes in its middle inverted."""
    middle = len(data) // 2
    damaged = bytes(byte ^ 0xFF for byte in data[middle : middle + count])
    return data[:middle] + damaged + data[middle + count :]


def test_a_damaged_object_is_an_error_never_the_picture(sealed):
    a, b, bucket = sealed.a, sealed.b, sealed.bucket
    document = upload(a.url, draw_image((640, 360)))
    target = document['thumbnails'][0]
    key = key_of(document, target)
    stored = bucket.get(key)
    assert stored.startswith(MAGIC)
    bucket.put(key, flipped(stored))

    for machine in (b, a):
        for headers in ({}, {'Range': 'bytes=0-99'}):
            resp = httpx.get(f'{machine.url}{target}', headers=headers, timeout=TIMEOUT)
            error_of(resp, 500, DAMAGED)
        assert f'object {key} failed authentication' in machine.log(), machine
    # The other objects of the version are whole, and served.
    for uri in uris(document):
        if uri != target:
            check_picture(document, uri, fetch(b.url, uri))


# 7. A key rotation, with asgilook rekey run while the machines serve.

#: A count of the summary of migrate or rekey: ``  9  rewrapped  301.2 kB``.
SUMMARY_LINE = re.compile(
    r'^ *(\d+) {2,}([a-z]+(?: [a-z]+)?) {2,}\d+(?:\.\d+)? (?:bytes?|[kMGT]B)$', re.M
)
REKEYED = (
    'Every object is under the current key: the old keys may now be removed '
    'from ASGI_LOOK_ENCRYPTION_OLD_KEYS.'
)


def summary(out):
    """The counts of a command's summary, by outcome."""
    return {outcome: int(count) for count, outcome in SUMMARY_LINE.findall(out)}


def keys_of(documents):
    """The object keys of every picture of the documents."""
    return {key_of(d, uri) for d in documents for uri in uris(d)}


def by_key(documents, served):
    """The served bytes of every picture of the documents, by object key."""
    return {key_of(d, uri): served[uri] for d in documents for uri in uris(d)}


def upload_all(uploads):
    """Upload each picture through a machine; both serve all of it alike.
    Returns the documents, and what was served by URI."""
    documents, served = [], {}
    for through, other, data in uploads:
        document = upload(through.url, data)
        served.update(served_alike(document, through, other))
        documents.append(document)
    return documents, served


def key_ids(bucket, keys):
    """The id of the key that sealed each object (as its header says), by key."""
    return {key: Header.parse(bucket.get(key), key).key_id for key in keys}


def id_of(key):
    return key_id(base64.b64decode(key))


def parts_alike(url, served):
    """Two ranges of every picture, as ``url`` serves them: never the whole
    picture, so that each is read from the store, not from the machine's
    memory of a whole answer."""
    with httpx.Client(base_url=url, timeout=TIMEOUT) as http:
        for uri, data in served.items():
            for first, last in ((0, 99), (len(data) // 2, len(data) - 1)):
                resp = http.get(uri, headers={'Range': f'bytes={first}-{last}'})
                assert resp.status_code == 206, (uri, resp.status_code, resp.text)
                assert resp.content == data[first : last + 1], (uri, first, last)


def serving_while(command, serve):
    """``serve()`` over and over until the command ends (once at least, and
    once after its end); then the command's exit status, stdout and stderr."""
    while command.running():
        serve()
    serve()
    return command.result()


def check_rewrapped(before, after, rewrapped, key):
    """The objects of ``rewrapped`` have a new header under ``key``, their
    salt and segments untouched; the others were not rewritten."""
    assert set(after) == set(before)
    for name, stored in after.items():
        if name not in rewrapped:
            assert stored == before[name], name
            continue
        assert Header.parse(stored, name).key_id == id_of(key), name
        assert stored[:FIXED_SIZE] == before[name][:FIXED_SIZE], name
        assert stored[HEADER_SIZE:] == before[name][HEADER_SIZE:], name
        assert stored[FIXED_SIZE:HEADER_SIZE] != before[name][FIXED_SIZE:HEADER_SIZE]


def check_never_served(machine, documents):
    """Every picture of the documents is a 500 with the JSON error body."""
    for document in documents:
        for uri in uris(document):
            resp = httpx.get(f'{machine.url}{uri}', timeout=TIMEOUT)
            error_of(resp, 500, DAMAGED)
            key = key_of(document, uri)
            assert f'object {key} failed authentication' in machine.log(), key


@pytest.fixture
def under_a(tmp_path_factory, redis_databases, postgres_server, store):
    """Machines ``a`` and ``b`` of a service of its own, sealing under a key."""
    yield from service(
        tmp_path_factory,
        'rotation',
        redis_databases,
        postgres_server,
        store,
        key=new_key(),
    )


def test_a_key_rotation_with_rekey_while_the_machines_serve(under_a):
    deployment, bucket = under_a.deployment, under_a.bucket
    key_a, key_b = deployment.env['ASGI_LOOK_ENCRYPTION_KEY'], new_key()
    a, b = under_a.a, under_a.b
    documents, served = upload_all(
        [(a, b, draw_image((640, 360))), (b, a, animated_gif()), (a, b, noise())]
    )

    # The new key on every machine, the old one to read with. Machine a
    # serves every picture; b, none whole until rekey has run.
    rotated = {
        'ASGI_LOOK_ENCRYPTION_KEY': key_b,
        'ASGI_LOOK_ENCRYPTION_OLD_KEYS': key_a,
    }
    a = deployment.restart(a, **rotated)
    b = deployment.restart(b, **rotated)
    same_bytes(a, served)
    later = [upload(a.url, photo_with_exif())]
    served.update(noted(a, later))
    under_old, under_new = keys_of(documents), keys_of(later)
    assert set(bucket.keys()) == under_old | under_new
    assert key_ids(bucket, under_old) == dict.fromkeys(under_old, id_of(key_a))
    assert key_ids(bucket, under_new) == dict.fromkeys(under_new, id_of(key_b))
    before = bucket.objects()

    # Machine b reads parts of every picture from the bucket while rekey
    # rewrites it; then all of each.
    with Command('rekey', '--storage', a.directory, env=a.env) as rekey:
        status, out, err = serving_while(rekey, lambda: parts_alike(b.url, served))
    same_bytes(b, served)
    assert status == 0, out + err
    assert summary(out) == {
        'rewrapped': len(under_old),
        'reencrypted': 0,
        'sealed': 0,
        'current': len(under_new),
        'missing': 0,
        'failed': 0,
    }
    assert out.endswith(f'{REKEYED}\n'), out
    check_rewrapped(before, bucket.objects(), under_old, key_b)
    status, out, err = run_command(
        'rekey', '--json', '--storage', b.directory, env=b.env
    )
    assert status == 0, out + err
    document = json.loads(out)
    assert document['key_id'] == id_of(key_b).hex()
    assert document['objects'] == {
        **dict.fromkeys(('rewrapped', 'reencrypted', 'sealed', 'missing'), 0),
        'current': len(under_old | under_new),
        'failed': 0,
    }

    # The old key removed: everything is served, and opens with the new one.
    a = deployment.restart(a, ASGI_LOOK_ENCRYPTION_OLD_KEYS='')
    b = deployment.restart(b, ASGI_LOOK_ENCRYPTION_OLD_KEYS='')
    everything = documents + later
    for document in everything:
        assert served_alike(document, b, a) == {u: served[u] for u in uris(document)}
    for name, data in by_key(everything, served).items():
        assert bucket.plaintext(name, key_b) == data, name
    # And the old key alone opens nothing.
    old = deployment.start('old', ASGI_LOOK_ENCRYPTION_KEY=key_a)
    check_never_served(old, everything)


# 8. asgilook migrate, from a machine's own directory to the bucket.


@pytest.fixture
def on_postgres(tmp_path, redis_databases, postgres_server):
    """A deployment with a PostgreSQL index, no storage URL: each machine
    keeps the pictures in its own directory."""
    alone = Deployment(tmp_path, redis_databases.url(), postgres_server.database())
    try:
        yield alone
    finally:
        alone.close()


def check_migrated(result, local, bucket, already):
    """A run of migrate from the directory of ``local`` to the bucket ended
    well, with ``already`` objects already there; returns how many it copied."""
    status, out, err = result
    assert status == 0, out + err
    assert out.startswith(f'From {local.directory} to {bucket.url}:\n'), out
    assert f'serve them with ASGI_LOOK_STORAGE_URL={bucket.url} (' in out
    counts = summary(out)
    assert counts == {
        'copied': counts.get('copied'),
        'already there': already,
        'gone': 0,
        'failed': 0,
    }, out
    return counts['copied']


def check_bucket(bucket, stored, key=None):
    """The bucket holds the objects of ``stored`` (their bytes by key) and
    nothing else: sealed under ``key`` if there is one, else as they are."""
    assert set(bucket.keys()) == set(stored)
    for name, data in stored.items():
        assert bucket.plaintext(name, key) == data, name
        assert bucket.get(name).startswith(MAGIC) == bool(key), name
    if key:
        check_sealed(bucket.objects(), list(stored.values()))


def test_migrate_from_a_local_directory_while_it_serves(on_postgres, store):
    local = on_postgres.start('local')
    documents = [
        upload(local.url, data)
        for data in (draw_image((640, 360)), animated_gif(), photo_with_exif())
    ]
    served = noted(local, documents)
    first_objects = stored_objects(local.directory)
    assert by_key(documents, served) == first_objects
    bucket = Bucket(store)
    environ = {**local.env, **store.environ}
    migrate = ('migrate', '--to', bucket.url, '--storage', local.directory)

    # An upload as the first run starts; the machine serves on meanwhile.
    with Command(*migrate, env=environ) as first:
        during = upload(local.url, animated_gif((200, 200)))
        served.update(noted(local, [during]))
        result = serving_while(first, lambda: same_bytes(local, served))
    copied = check_migrated(result, local, bucket, already=0)
    assert len(bucket.keys()) == copied
    # The next run copies what the first did not, and only that.
    after = upload(local.url, draw_image((300, 500)))
    documents += [during, after]
    served.update(noted(local, [after]))
    stored = stored_objects(local.directory)
    assert by_key(documents, served) == stored
    assert len(first_objects) <= copied <= len(stored) - len(keys_of([after]))
    again = run_command(*migrate, env=environ)
    assert check_migrated(again, local, bucket, already=copied) == len(stored) - copied
    check_bucket(bucket, stored)
    # Also to a prefix of its own, sealed under a key on the way.
    sealed, key = Bucket(store), new_key()
    keyed = {**environ, 'ASGI_LOOK_ENCRYPTION_KEY': key}
    result = run_command(
        'migrate', '--to', sealed.url, '--storage', local.directory, env=keyed
    )
    assert check_migrated(result, local, sealed, already=0) == len(stored)
    check_bucket(sealed, stored, key)

    # The service moved to the bucket: new machines, on empty directories.
    listed = listing(local.url)
    local.stop()
    moved = {**store.environ, 'ASGI_LOOK_STORAGE_URL': bucket.url}
    c, d = on_postgres.start('c', **moved), on_postgres.start('d', **moved)
    moved_sealed = {**moved, 'ASGI_LOOK_STORAGE_URL': sealed.url}
    e = on_postgres.start('e', **moved_sealed, ASGI_LOOK_ENCRYPTION_KEY=key)
    for machine in (c, d, e):
        assert listing(machine.url) == listed, machine
    for document in documents:
        assert served_alike(document, c, d) == {u: served[u] for u in uris(document)}
    same_bytes(e, served)
    for machine in (c, d, e):
        assert pictures_in(machine.directory) == [], machine
