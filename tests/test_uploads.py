"""Reading uploads: raw bodies and forms, the size limit, the admission budget."""

import asyncio
import itertools
import os

import falcon
import falcon.asgi
import falcon.testing
import httpx
import pytest

from asgilook.http import uploads
from asgilook.http.app import create_app
from tests.helpers import decode
from tests.helpers import draw_image

CHUNK = 64 * 1024


async def read_upload(req, max_bytes):
    async with uploads.upload(req, max_bytes) as data:
        return data


def stored_files(config):
    return sorted(os.listdir(os.fspath(config.storage_path)))


def form(*parts, fields=None):
    """A multipart/form-data body as httpx encodes it: (body, headers)."""
    request = httpx.Request('POST', 'http://asgilook/images', files=parts, data=fields)
    return request.read(), {'Content-Type': request.headers['Content-Type']}


def image_part(data=None, name='image'):
    return (name, ('photo.png', draw_image((320, 240)) if data is None else data))


def without_content_length(headers=()):
    """ASGI scope extras: the request's headers, none of them Content-Length."""
    return {
        'headers': [
            (name.lower().encode(), value.encode())
            for name, value in dict(headers).items()
        ]
    }


def assert_error(resp, status, title, words):
    assert resp.status_code == status
    assert resp.headers['Content-Type'] == 'application/json'
    assert resp.json['title'] == title
    assert words in resp.json['description']


def test_a_form_with_an_image_field_is_stored(client):
    body, headers = form(image_part())

    resp = client.simulate_post('/images', body=body, headers=headers)

    assert resp.status_code == 201
    assert resp.json['size'] == [320, 240]
    assert decode(client.simulate_get(resp.headers['Location']).content).size == (
        320,
        240,
    )


def test_other_fields_of_the_form_are_skipped(client):
    body, headers = form(
        ('before', ('notes.txt', b'x' * 5000)),
        image_part(),
        ('after', ('other.png', draw_image((10, 10)))),
        fields={'title': 'A holiday'},
    )
    resp = client.simulate_post('/images', body=body, headers=headers)
    assert resp.status_code == 201
    assert resp.json['size'] == [320, 240]


def test_a_raw_body_with_any_content_type_is_the_picture(client):
    for content_type in ('image/png', 'application/x-www-form-urlencoded', None):
        headers = {'Content-Type': content_type} if content_type else {}
        resp = client.simulate_post('/images', body=draw_image(), headers=headers)
        assert resp.status_code == 201


@pytest.mark.parametrize(
    ('parts', 'words'),
    [
        ([('picture', ('photo.png', b'png bytes'))], 'The form has no "image" field'),
        ([image_part(), image_part()], 'more than one "image" field'),
    ],
    ids=['no-image-field', 'two-image-fields'],
)
def test_a_form_without_exactly_one_image_is_400(client, config, parts, words):
    files_before = stored_files(config)
    body, headers = form(*parts)

    resp = client.simulate_post('/images', body=body, headers=headers)

    assert_error(resp, 400, 'Invalid Form', words)
    assert 'curl -F image=@photo.jpg' in resp.json['description']
    assert stored_files(config) == files_before


def raw_form(*parts):
    """A multipart/form-data body of ``(headers, data)`` parts, byte for byte."""
    boundary = b'asgilook-test-boundary'
    body = b''.join(
        b'--' + boundary + b'\r\n' + headers + b'\r\n\r\n' + data + b'\r\n'
        for headers, data in parts
    )
    body += b'--' + boundary + b'--\r\n'
    return body, {'Content-Type': f'multipart/form-data; boundary={boundary.decode()}'}


PICTURE_PART = (
    b'Content-Disposition: form-data; name="image"\r\nContent-Type: image/png',
    draw_image((32, 24)),
)


def test_a_picture_part_without_a_file_name_is_stored_without_a_name(client):
    body, headers = raw_form(PICTURE_PART)
    resp = client.simulate_post('/images', body=body, headers=headers)
    assert resp.status_code == 201
    assert resp.json['name'] is None
    assert resp.json['size'] == [32, 24]


@pytest.mark.parametrize(
    ('value', 'words'),
    [
        # NOTE: More bytes than 255 characters of UTF-8 can take: refused
        #   before they are all read.
        (b'x' * 1021, 'is longer than 255 characters'),
        (b'\xff\xfe photo', 'is not UTF-8 text'),
    ],
    ids=['too-many-bytes', 'not-utf-8'],
)
def test_a_name_field_that_is_not_a_name_is_400(client, config, value, words):
    files_before = stored_files(config)
    name_part = (b'Content-Disposition: form-data; name="name"', value)
    body, headers = raw_form(name_part, PICTURE_PART)

    resp = client.simulate_post('/images', body=body, headers=headers)

    assert_error(resp, 400, 'Invalid Form', f'The "name" field {words}')
    assert stored_files(config) == files_before
    assert client.simulate_get('/images').json == []


def test_an_empty_image_field_is_400(client):
    body, headers = form(image_part(b''))
    resp = client.simulate_post('/images', body=body, headers=headers)
    assert_error(resp, 400, 'Invalid Image', 'The upload is empty')


def _malformed_forms():
    body, headers = form(image_part())
    boundary = headers['Content-Type'].split('boundary=')[1].encode()
    cut = body[: len(body) - 100]
    many = (
        b''.join(
            b'--%s\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n'
            % (boundary, i)
            for i in range(100)
        )
        + b'--%s--\r\n' % boundary
    )
    latin = body.replace(b'name="image"', b'name="\xe9image"')
    return [
        (cut, headers['Content-Type'], 'malformed'),
        (b'just some text', headers['Content-Type'], 'malformed'),
        (many, headers['Content-Type'], 'malformed'),
        (body, 'multipart/form-data', 'malformed'),
        (latin, headers['Content-Type'], 'not UTF-8'),
    ]


@pytest.mark.parametrize(
    ('body', 'content_type', 'words'),
    _malformed_forms(),
    ids=['cut-off', 'no-parts', 'too-many-parts', 'no-boundary', 'not-utf-8'],
)
def test_a_malformed_form_is_400(client, config, body, content_type, words):
    files_before = stored_files(config)

    resp = client.simulate_post(
        '/images', body=body, headers={'Content-Type': content_type}
    )

    assert_error(resp, 400, 'Invalid Form', words)
    assert stored_files(config) == files_before


@pytest.mark.parametrize('content_length', [True, False], ids=['length', 'chunked'])
def test_a_raw_body_over_the_limit_is_413(client, config, content_length):
    config.max_upload_bytes = 10_000
    files_before = stored_files(config)
    extras = {} if content_length else without_content_length()

    resp = client.simulate_post('/images', body=b'\xff' * 10_001, extras=extras)

    assert_error(resp, 413, 'Upload Too Large', 'at most 10,000 bytes')
    assert stored_files(config) == files_before


@pytest.mark.parametrize('content_length', [True, False], ids=['length', 'chunked'])
def test_a_body_of_exactly_the_limit_is_read(client, config, content_length):
    picture = draw_image((64, 64))
    config.max_upload_bytes = len(picture)
    extras = {} if content_length else without_content_length()

    resp = client.simulate_post('/images', body=picture, extras=extras)

    assert resp.status_code == 201


@pytest.mark.parametrize('content_length', [True, False], ids=['length', 'chunked'])
def test_a_form_whose_picture_is_over_the_limit_is_413(client, config, content_length):
    config.max_upload_bytes = 10_000
    body, headers = form(image_part(b'\xff' * 10_001))
    extras = {} if content_length else without_content_length(headers)

    resp = client.simulate_post('/images', body=body, headers=headers, extras=extras)

    assert_error(resp, 413, 'Upload Too Large', 'at most 10,000 bytes')


@pytest.mark.parametrize('content_length', [True, False], ids=['length', 'chunked'])
def test_a_form_over_the_limit_with_other_fields_is_413(client, config, content_length):
    config.max_upload_bytes = 10_000
    filler = ('filler', ('filler.bin', b'\0' * (uploads.FORM_OVERHEAD + 10_000)))
    body, headers = form(filler, image_part(b'\xff' * 100))
    extras = {} if content_length else without_content_length(headers)

    resp = client.simulate_post('/images', body=body, headers=headers, extras=extras)

    assert_error(resp, 413, 'Upload Too Large', 'at most 10,000 bytes')


def test_a_body_shorter_than_its_content_length_is_400(client, config):
    files_before = stored_files(config)
    picture = draw_image((64, 64))
    extras = {'headers': [(b'content-length', str(len(picture) * 2).encode())]}

    resp = client.simulate_post('/images', body=picture, extras=extras)

    assert_error(resp, 400, 'Incomplete Upload', f'after {len(picture):,} of the')
    assert stored_files(config) == files_before


class Client:
    """An ASGI ``receive`` that sends a body in chunks and counts what was read."""

    def __init__(self, chunks, disconnect=False):
        self._chunks = iter(chunks)
        self._disconnect = disconnect
        self.received = 0
        self.gate = None

    async def receive(self):
        if self.gate is not None:
            await self.gate.wait()
        chunk = next(self._chunks, None)
        if chunk is None:
            if self._disconnect:
                return {'type': 'http.disconnect'}
            return {'type': 'http.request', 'body': b'', 'more_body': False}
        self.received += len(chunk)
        return {'type': 'http.request', 'body': chunk, 'more_body': True}

    def request(self, headers=None, content_length=None, timeout=60, min_rate=1):
        """A request whose body, as the app arranges, is read through a Body."""
        scope = falcon.testing.create_scope(
            method='POST',
            path='/images',
            headers=headers,
            content_length=content_length,
        )
        body = scope[uploads.BODY] = uploads.Body(self.receive, timeout, min_rate)
        return falcon.asgi.Request(scope, body)


def endless(chunk=b'\xff' * CHUNK):
    while True:
        yield chunk


def test_an_endless_body_is_read_only_up_to_the_limit():
    client = Client(endless())

    with pytest.raises(falcon.HTTPContentTooLarge):
        asyncio.run(read_upload(client.request(), 1_000_000))

    assert 1_000_000 < client.received <= 1_000_000 + CHUNK


def test_an_endless_form_is_read_only_up_to_its_limit():
    body, headers = form(('filler', ('filler.bin', b'\0' * 16)))
    head = body[: body.index(b'\0' * 16)]
    client = Client(itertools.chain([head], endless(b'\0' * CHUNK)))

    with pytest.raises(falcon.HTTPContentTooLarge):
        asyncio.run(read_upload(client.request(headers), 1_000_000))

    limit = 1_000_000 + uploads.FORM_OVERHEAD
    assert limit < client.received <= limit + 2 * CHUNK


@pytest.mark.parametrize('is_form', [False, True], ids=['raw', 'form'])
def test_a_content_length_over_the_limit_reads_nothing(is_form):
    headers = form(image_part())[1] if is_form else None
    client = Client(endless())
    too_long = 1_000_000 + uploads.FORM_OVERHEAD + 1

    with pytest.raises(falcon.HTTPContentTooLarge):
        asyncio.run(read_upload(client.request(headers, too_long), 1_000_000))

    assert client.received == 0


@pytest.mark.parametrize('is_form', [False, True], ids=['raw', 'form'])
def test_a_body_cut_off_by_a_disconnect_is_400(is_form):
    # NOTE: Falcon's own stream ends quietly at a disconnect, as if the body
    #   were whole; without Content-Length (chunked), nothing else tells.
    body, headers = form(image_part()) if is_form else (draw_image((64, 64)), None)
    client = Client([body[: len(body) // 2]], disconnect=True)

    with pytest.raises(falcon.HTTPBadRequest) as raised:
        asyncio.run(read_upload(client.request(headers), 1_000_000))

    assert raised.value.title == 'Incomplete Upload'
    assert f'closed after {len(body) // 2:,} bytes' in raised.value.description


def budget_of(max_bytes):
    return uploads._budget(
        uploads.UPLOADS_AT_ONCE * (max_bytes + uploads.FORM_OVERHEAD)
    )


def test_a_body_takes_its_share_of_the_budget_as_it_arrives(monkeypatch):
    # Room for one body of the limit and a half: the second body reads its
    # first chunk, then waits for the first upload to end.
    monkeypatch.setattr(uploads, 'UPLOADS_AT_ONCE', 1)
    monkeypatch.setattr(uploads, 'FORM_OVERHEAD', 50_000)
    first = Client([b'1' * 50_000, b'1' * 50_000])
    second = Client([b'2' * 50_000, b'2' * 50_000])

    async def both():
        budget = budget_of(100_000)
        one = uploads.upload(first.request(), 100_000)
        data = await one.__aenter__()
        two = asyncio.create_task(read_upload(second.request(), 100_000))
        await asyncio.sleep(0.05)
        waited = (budget.free, second.received)
        await one.__aexit__(None, None, None)
        return waited, data, await two, budget.free

    waited, one, two, free = asyncio.run(both())

    # The second body got its first chunk in and was held at the second.
    assert waited == (0, 100_000)
    assert (one, two) == (b'1' * 100_000, b'2' * 100_000)
    assert free == 150_000


def hold_the_budget(max_bytes):
    """An upload that holds the whole budget (of one upload at once) until
    the returned coroutine is awaited."""
    client = Client([b'1' * max_bytes])

    async def held():
        one = uploads.upload(client.request(), max_bytes)
        await one.__aenter__()
        return one.__aexit__(None, None, None)

    return held()


@pytest.fixture
def one_at_once(monkeypatch):
    monkeypatch.setattr(uploads, 'UPLOADS_AT_ONCE', 1)
    monkeypatch.setattr(uploads, 'FORM_OVERHEAD', 0)


def test_a_full_budget_turns_a_body_away_with_503(monkeypatch, one_at_once):
    monkeypatch.setattr(uploads, 'BUDGET_WAIT', 0.05)
    second = Client([b'2' * 10, b'2'])

    async def scenario():
        release = await hold_the_budget(100_000)
        with pytest.raises(falcon.HTTPServiceUnavailable) as raised:
            await read_upload(second.request(), 100_000)
        await release
        return raised.value, budget_of(100_000).free

    error, free = asyncio.run(scenario())

    assert error.title == 'Too Many Uploads'
    assert error.headers['Retry-After'] == '1'
    assert error.headers['Connection'] == 'close'
    assert free == 100_000


def test_a_wait_for_the_budget_is_not_counted_against_the_client(one_at_once):
    second = Client([b'2' * 10, b'2'])

    async def scenario():
        release = await hold_the_budget(100_000)
        # Its whole timeout is 0.05 s, but the server keeps it waiting 0.1 s.
        two = asyncio.create_task(read_upload(second.request(timeout=0.05), 100_000))
        await asyncio.sleep(0.1)
        await release
        return await two

    assert asyncio.run(scenario()) == b'2' * 11


def test_an_upload_holds_its_share_of_the_budget_until_the_block_ends():
    picture = draw_image((64, 64))
    client = Client([picture])

    async def scenario():
        budget = budget_of(1_000_000)
        async with uploads.upload(client.request(), 1_000_000) as data:
            held = budget.capacity - budget.free
        return data, held, budget.capacity - budget.free

    data, held, after = asyncio.run(scenario())

    assert data == picture
    # What arrived, not the limit (nor a Content-Length), is held.
    assert (held, after) == (len(picture), 0)


def test_many_concurrent_uploads_all_finish(config):
    config.max_upload_bytes = 100_000
    client = falcon.testing.TestClient(create_app(config))

    async def burst():
        async with client as conductor:
            return await asyncio.gather(
                *(
                    conductor.simulate_post('/images', body=draw_image((64, 64)))
                    for _ in range(12)
                )
            )

    assert [resp.status_code for resp in asyncio.run(burst())] == [201] * 12


def test_a_budget_grants_in_order_of_arrival():
    async def scenario():
        budget = uploads._Budget(10)
        order = []

        async def take(name, size, hold):
            await budget.acquire(size)
            order.append(name)
            await asyncio.sleep(hold)
            budget.release(size)

        big = asyncio.create_task(take('big', 8, 0.02))
        await asyncio.sleep(0)
        # 'large' waits for 'big'; 'small' would fit now, but queues behind.
        large = asyncio.create_task(take('large', 10, 0))
        await asyncio.sleep(0)
        small = asyncio.create_task(take('small', 1, 0))
        await asyncio.gather(big, large, small)
        return order, budget.free

    assert asyncio.run(scenario()) == (['big', 'large', 'small'], 10)


def test_a_cancelled_wait_gives_its_place_to_the_next():
    async def scenario():
        budget = uploads._Budget(10)
        held = asyncio.Event()
        done = asyncio.Event()

        async def hold():
            await budget.acquire(10)
            held.set()
            await done.wait()
            budget.release(10)

        holder = asyncio.create_task(hold())
        await held.wait()
        blocked = asyncio.create_task(budget.acquire(10))
        behind = asyncio.create_task(budget.acquire(3))
        await asyncio.sleep(0)
        blocked.cancel()
        done.set()
        await holder
        await behind
        with pytest.raises(asyncio.CancelledError):
            await blocked
        return budget.free

    assert asyncio.run(scenario()) == 7


def test_a_wait_cancelled_after_its_grant_gives_the_bytes_back():
    async def scenario():
        budget = uploads._Budget(10)
        await budget.acquire(10)
        waiting = asyncio.create_task(budget.acquire(4))
        await asyncio.sleep(0)
        budget.release(10)  # Grants the waiting task ...
        waiting.cancel()  # ... which is cancelled before it runs.
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return budget.free

    assert asyncio.run(scenario()) == 10


def test_a_cancelled_head_of_the_queue_holds_back_nobody():
    async def scenario():
        budget = uploads._Budget(10)
        await budget.acquire(10)
        first = asyncio.create_task(budget.acquire(10))
        second = asyncio.create_task(budget.acquire(5))
        await asyncio.sleep(0)
        first.cancel()
        budget.release(10)  # The cancelled head has not left the queue yet.
        await second
        with pytest.raises(asyncio.CancelledError):
            await first
        return budget.free

    assert asyncio.run(scenario()) == 5


def test_each_event_loop_has_a_budget_of_its_own():
    async def budget():
        return uploads._budget(100), uploads._budget(100)

    first, again = asyncio.run(budget())
    other, _ = asyncio.run(budget())
    assert first is again
    assert first is not other
