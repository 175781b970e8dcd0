"""Compressed answers: Brotli or gzip as Accept-Encoding asks, Vary, coded ETags,
never for pictures, ranges or streams, each body compressed once
(asgilook/http/compression.py)."""

import asyncio
import gzip
import random
import signal

import brotli
import falcon
import falcon.testing
import httpx
import pytest
import redis

from asgilook.caching.conditional import coded
from asgilook.caching.conditional import not_modified
from asgilook.caching.conditional import uncoded
from asgilook.http import compression
from asgilook.http.app import create_app
from asgilook.http.compression import MIN_SIZE
from asgilook.http.compression import Compression
from asgilook.http.compression import Memo
from asgilook.http.compression import Unknown
from asgilook.http.compression import compressible
from asgilook.http.compression import negotiate
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image
from tests.servers import Uvicorn

IMAGE = f'/images/{FIRST_IDS[0]}.jpeg'
THUMBNAIL = f'/thumbnails/{FIRST_IDS[0]}/320x180.jpeg'
MSGPACK = falcon.MEDIA_MSGPACK
# (path, Accept) of every kind of text the service answers with.
TEXTS = [
    ('/images', None),
    ('/images', MSGPACK),
    ('/openapi.json', None),
    ('/', None),
    ('/static/gallery.js', None),
    ('/static/gallery.css', None),
]
TEXT_IDS = ['listing', 'listing-msgpack', 'openapi', 'page', 'script', 'style']
COMPRESS = compression.compress
DECODE = {'br': brotli.decompress, 'gzip': gzip.decompress}
# The headers that two answers of the same may differ in: what the cache did,
# and the request's id.
PER_ANSWER = {'x-asgilook-cache', 'cache-status', 'x-request-id'}


class Counting:
    """A compressor that counts its calls, by coding."""

    def __init__(self):
        self.calls = {'br': 0, 'gzip': 0}

    def __call__(self, body, coding):
        self.calls[coding] += 1
        return COMPRESS(body, coding)


class FalconCount:
    """Middleware that counts the requests Falcon itself handled."""

    def __init__(self):
        self.requests = 0

    async def process_request(self, req, resp):
        self.requests += 1


@pytest.fixture
def counted(config, monkeypatch):
    """A client of an app whose compressor counts its calls, the counter,
    and a count of the requests Falcon handled; with pictures uploaded."""
    counting = Counting()
    monkeypatch.setattr(compression, 'compress', counting)
    app = create_app(config)
    handled = FalconCount()
    app.add_middleware(handled)
    client = falcon.testing.TestClient(app)
    for size in ((640, 360), (300, 200), (200, 300)):
        assert client.simulate_post('/images', body=draw_image(size)).status_code == 201
    return client, counting, handled


def get(client, path, accept=None, method='GET', **headers):
    if accept is not None:
        headers['Accept'] = accept
    headers = {name.replace('_', '-'): value for name, value in headers.items()}
    return client.simulate_request(method, path, headers=headers)


def varies(resp):
    return 'Accept-Encoding' in [
        part.strip() for part in resp.headers.get('Vary', '').split(',')
    ]


# Negotiation


@pytest.mark.parametrize(
    ('accept_encoding', 'coding', 'identity'),
    [
        ('gzip', 'gzip', True),
        ('br', 'br', True),
        ('gzip, deflate, br, zstd', 'br', True),
        ('br;q=0.5, gzip', 'gzip', True),
        ('br;q=0, gzip', 'gzip', True),
        ('GZIP;Q=0.8', 'gzip', True),
        ('x-gzip', 'gzip', True),
        ('*', 'br', True),
        ('*;q=0.5, br;q=0', 'gzip', True),
        ('br;level=4', 'br', True),
        ('gzip;q=0.5, identity', None, True),
        ('gzip;q=0.5, identity;q=0.5', 'gzip', True),
        ('identity', None, True),
        ('', None, True),
        (' , ;q=1', None, True),
        ('deflate, zstd', None, True),
        ('gzip;q=high', None, True),
        ('gzip;q=2', None, True),
        ('gzip;q=-1', None, True),
        ('gzip;q=0, br;q=0', None, True),
        ('identity;q=0', None, False),
        ('*;q=0', None, False),
        ('*;q=0, identity', None, True),
        ('gzip, identity;q=0', 'gzip', False),
    ],
)
def test_accept_encoding_is_negotiated(accept_encoding, coding, identity):
    assert negotiate(accept_encoding) == (coding, identity)


@pytest.mark.parametrize(
    ('content_type', 'expected'),
    [
        (b'application/json', True),
        (b'application/msgpack', True),
        (b'application/problem+json', True),
        (b'application/openapi+json', True),
        (b'text/html; charset=utf-8', True),
        (b'Text/CSS; charset=utf-8', True),
        (b'text/javascript; charset=utf-8', True),
        (b'application/javascript', True),
        (b'image/svg+xml', True),
        (b'text/plain; version=0.0.4; charset=utf-8', True),
        (b'image/jpeg', False),
        (b'image/avif', False),
        (b'image/webp', False),
        (b'text/event-stream', False),
        (b'application/octet-stream', False),
        (b'', False),
    ],
)
def test_only_text_is_compressible(content_type, expected):
    assert compressible(content_type) is expected


# ETags


def test_a_compressed_representation_has_an_etag_of_its_own():
    assert coded('"abc"', 'br') == '"abc-br"'
    assert coded('W/"abc"', 'gzip') == 'W/"abc-gzip"'
    assert (
        uncoded(' W/"abc-gzip"') == uncoded('"abc-br"') == uncoded('"abc"') == '"abc"'
    )
    # Only the codings it makes: a thumbnail's tag stays whole.
    assert uncoded('"v1-320x180"') == '"v1-320x180"'
    assert uncoded('"abc-deflate"') == '"abc-deflate"'


@pytest.mark.parametrize(
    ('if_none_match', 'expected'),
    [
        ('"abc-br"', True),
        ('W/"abc-gzip"', True),
        ('"other", "abc-gzip"', True),
        ('"abc"', True),
        ('"abc-deflate"', False),
        ('"abcd-br"', False),
        ('"ab-br"', False),
    ],
)
def test_a_compressed_copy_is_current_while_the_identity_is(if_none_match, expected):
    assert not_modified(if_none_match, None, '"abc"', None) is expected


# Through the app


@pytest.mark.parametrize('coding', ['br', 'gzip'])
@pytest.mark.parametrize(('path', 'accept'), TEXTS, ids=TEXT_IDS)
def test_each_text_is_compressed_in_the_coding_asked_for(counted, path, accept, coding):
    client, _, _ = counted
    identity = get(client, path, accept)
    for _ in range(2):
        resp = get(client, path, accept, accept_encoding=coding)
        assert resp.status_code == 200
        assert resp.headers['Content-Encoding'] == coding
        assert int(resp.headers['Content-Length']) == len(resp.content)
        assert len(resp.content) < len(identity.content)
        assert DECODE[coding](resp.content) == identity.content
        assert resp.headers['ETag'] == coded(identity.headers['ETag'], coding)
        assert resp.headers['Content-Type'] == identity.headers['Content-Type']
        assert varies(resp) and varies(identity)
        # Everything else is the identity's.
        others = {'content-encoding', 'content-length', 'etag', *PER_ANSWER}
        assert {
            name: value
            for name, value in resp.headers.items()
            if name.lower() not in others
        } == {
            name: value
            for name, value in identity.headers.items()
            if name.lower() not in others
        }
    assert 'Content-Encoding' not in identity.headers


def test_the_listing_keeps_its_other_headers(counted):
    client, _, _ = counted
    get(client, '/images')
    resp = get(client, '/images', accept_encoding='br', origin='https://example.org')
    assert resp.headers['Vary'] == 'Accept, Accept-Encoding'
    assert resp.headers['Access-Control-Allow-Origin'] == '*'
    assert resp.headers['X-Content-Type-Options'] == 'nosniff'
    assert resp.headers['Surrogate-Key'].startswith('asgilook-listing')
    assert resp.headers['Cache-Status'] == 'asgilook; hit'
    assert resp.headers['X-ASGILook-Cache'] == 'Hit'


@pytest.mark.parametrize(
    'accept_encoding', [None, '', 'identity', 'deflate', 'br;q=0, gzip;q=0', '*;q=0']
)
def test_without_an_acceptable_coding_the_identity_is_sent(counted, accept_encoding):
    client, counting, _ = counted
    identity = get(client, '/openapi.json')
    headers = {} if accept_encoding is None else {'accept_encoding': accept_encoding}
    resp = get(client, '/openapi.json', **headers)
    assert 'Content-Encoding' not in resp.headers
    assert resp.content == identity.content
    assert resp.headers['ETag'] == identity.headers['ETag']
    assert resp.headers['Vary'] == 'Accept-Encoding'
    assert counting.calls == {'br': 0, 'gzip': 0}


def test_a_refused_coding_is_never_sent(counted):
    client, _, _ = counted
    resp = get(client, '/openapi.json', accept_encoding='br;q=0, gzip')
    assert resp.headers['Content-Encoding'] == 'gzip'
    resp = get(client, '/openapi.json', accept_encoding='gzip;q=0.1, br;q=0.9')
    assert resp.headers['Content-Encoding'] == 'br'


@pytest.mark.parametrize(
    ('path', 'accept'),
    [
        (IMAGE, None),
        (THUMBNAIL, None),
        (THUMBNAIL, 'image/avif,image/webp,*/*'),
        (THUMBNAIL, 'image/webp,*/*'),
    ],
)
def test_pictures_are_never_compressed(counted, path, accept):
    client, counting, _ = counted
    for _ in range(2):
        resp = get(client, path, accept, accept_encoding='br, gzip')
        assert resp.status_code == 200
        assert resp.headers['Content-Type'].startswith('image/')
        assert 'Content-Encoding' not in resp.headers
        assert not varies(resp)
        assert int(resp.headers['Content-Length']) == len(resp.content)
        head = get(client, path, accept, 'HEAD', accept_encoding='br, gzip')
        assert 'Content-Encoding' not in head.headers
    assert counting.calls == {'br': 0, 'gzip': 0}


def test_a_range_is_never_compressed(counted):
    client, counting, _ = counted
    whole = get(client, IMAGE)
    resp = get(client, IMAGE, accept_encoding='gzip', range='bytes=10-99')
    assert resp.status_code == 206
    assert 'Content-Encoding' not in resp.headers
    assert resp.content == whole.content[10:100]
    assert counting.calls == {'br': 0, 'gzip': 0}


def test_a_small_body_is_sent_as_it_is(counted):
    client, counting, _ = counted
    resp = get(client, '/static/favicon.svg', accept_encoding='br, gzip')
    assert resp.headers['Content-Type'] == 'image/svg+xml'
    assert len(resp.content) < MIN_SIZE
    assert 'Content-Encoding' not in resp.headers
    assert varies(resp)
    head = get(client, '/static/favicon.svg', method='HEAD', accept_encoding='br')
    assert headers_of(head) == headers_of(resp)
    assert counting.calls == {'br': 0, 'gzip': 0}


def test_errors_are_not_compressed(counted):
    client, _, _ = counted
    resp = client.simulate_get(
        '/images', query_string='limit=0', headers={'Accept-Encoding': 'gzip'}
    )
    assert resp.status_code == 400
    assert 'Content-Encoding' not in resp.headers
    assert resp.headers['Vary'] == 'Accept'
    assert resp.json['title'] == 'Invalid Parameter'


def test_the_memo_compresses_each_body_once_per_coding(counted):
    client, counting, handled = counted
    for _ in range(10):
        for path, accept in TEXTS:
            for coding in ('br', 'gzip'):
                get(client, path, accept, accept_encoding=coding)
                get(client, path, accept, 'HEAD', accept_encoding=coding)
    assert counting.calls == {'br': len(TEXTS), 'gzip': len(TEXTS)}

    # A new listing is another body: compressed once more, once.
    before = handled.requests
    client.simulate_post('/images', body=draw_image((100, 100)))
    for _ in range(5):
        resp = get(client, '/images', accept_encoding='br')
    assert resp.headers['X-ASGILook-Cache'] == 'Hit'
    assert handled.requests == before + 2
    assert counting.calls == {'br': len(TEXTS) + 1, 'gzip': len(TEXTS)}


def test_a_body_without_etag_is_compressed_every_time(counted):
    client, counting, _ = counted
    for _ in range(3):
        resp = get(client, '/metrics', accept_encoding='gzip')
        assert 'ETag' not in resp.headers
        assert resp.headers['Content-Encoding'] == 'gzip'
        assert gzip.decompress(resp.content).startswith(b'# HELP')
    assert counting.calls == {'br': 0, 'gzip': 3}


def headers_of(resp):
    return {
        name.lower(): value
        for name, value in resp.headers.items()
        if name.lower() not in PER_ANSWER
    }


@pytest.mark.parametrize('coding', ['br', 'gzip', 'identity'])
@pytest.mark.parametrize(('path', 'accept'), TEXTS, ids=TEXT_IDS)
def test_a_head_says_what_its_get_says(counted, path, accept, coding):
    client, _, _ = counted
    # First: before any GET was compressed.
    head = get(client, path, accept, 'HEAD', accept_encoding=coding)
    resp = get(client, path, accept, accept_encoding=coding)
    again = get(client, path, accept, 'HEAD', accept_encoding=coding)
    assert head.status_code == again.status_code == 200
    assert head.content == again.content == b''
    assert headers_of(head) == headers_of(resp) == headers_of(again)
    assert int(head.headers['Content-Length']) == len(resp.content)


def test_a_head_from_memory_is_answered_by_falcon_until_its_length_is_known(counted):
    client, counting, handled = counted
    # The listing, remembered from an identity GET: its replays are known...
    get(client, '/images')
    before = handled.requests
    get(client, '/images')
    get(client, '/images', method='HEAD', accept_encoding='identity')
    assert handled.requests == before
    # ... but not how long it is compressed: Falcon answers the first HEAD.
    head = get(client, '/images', method='HEAD', accept_encoding='br')
    assert handled.requests == before + 1
    assert counting.calls['br'] == 1
    # Then memory does, GETs included, from the same compressed bytes.
    again = get(client, '/images', method='HEAD', accept_encoding='br')
    resp = get(client, '/images', accept_encoding='br')
    assert handled.requests == before + 1
    assert counting.calls['br'] == 1
    assert headers_of(head) == headers_of(again) == headers_of(resp)
    assert again.headers['X-ASGILook-Cache'] == 'Hit'


@pytest.mark.parametrize('path', ['/images', '/openapi.json', '/static/gallery.js'])
def test_a_compressed_copy_is_revalidated(counted, path):
    client, _, _ = counted
    identity = get(client, path).headers['ETag']
    br, gzipped = coded(identity, 'br'), coded(identity, 'gzip')
    assert get(client, path, accept_encoding='br').headers['ETag'] == br

    for if_none_match, accept_encoding, etag in [
        # The copy the client has is named, whatever it would get now.
        (br, 'br', br),
        (br, 'gzip', br),
        (br, 'identity', br),
        (f'W/{br}', 'br', br),
        (gzipped, None, gzipped),
        (identity, 'br', identity),
        # Of several, the one it would get now, else the first compressed one.
        (f'{gzipped}, {br}', 'br', br),
        (f'{identity}, {gzipped}', None, identity),
        (f'{identity}, {gzipped}', 'gzip', gzipped),
        (f'{br}, {identity}', 'gzip', br),
        ('*', 'br', identity),
    ]:
        headers = {'if_none_match': if_none_match}
        if accept_encoding is not None:
            headers['accept_encoding'] = accept_encoding
        for method in ('GET', 'HEAD'):
            resp = get(client, path, method=method, **headers)
            assert resp.status_code == 304, (if_none_match, accept_encoding)
            assert resp.content == b''
            assert resp.headers['ETag'] == etag, (if_none_match, accept_encoding)
            assert 'Content-Encoding' not in resp.headers
            assert varies(resp) is (etag != identity)

    # Another body: the copy is not current.
    resp = get(client, path, if_none_match=coded('"other"', 'br'), accept_encoding='br')
    assert resp.status_code == 200
    assert resp.headers['ETag'] == br


# The wrapper alone: what the app never sends, or cannot yet.


def run(messages, method='GET', replaying=False, wrapper=None, root_path='', **headers):
    """What ``wrapper.wrap`` (a new Compression's) sends of ``messages``, for a
    request with ``headers``."""
    scope = {
        'method': method,
        'root_path': root_path,
        'headers': [
            (name.replace('_', '-').encode(), value.encode())
            for name, value in headers.items()
        ],
    }
    sent = []

    async def send(message):
        sent.append(message)

    async def answer():
        wrapped = (wrapper or Compression()).wrap(scope, send, replaying)
        for message in messages:
            await wrapped(message)

    asyncio.run(answer())
    return sent


TEXT = b'{"text": "' + b'compressible ' * 100 + b'"}'


def start(status=200, content_type=b'application/json', *headers):
    return {
        'type': 'http.response.start',
        'status': status,
        'headers': [(b'content-type', content_type), *headers],
    }


def body(data=TEXT, more_body=False):
    return {'type': 'http.response.body', 'body': data, 'more_body': more_body}


@pytest.mark.parametrize(
    'headers',
    [[(b'content-range', b'bytes 0-1299/5000')], [(b'content-encoding', b'gzip')]],
    ids=['content-range', 'content-encoding'],
)
def test_an_answer_with_a_range_or_a_coding_is_left_alone(headers):
    sent = run(
        [start(200, b'application/json', *headers), body()], accept_encoding='br'
    )
    assert sent == [start(200, b'application/json', *headers), body()]


def test_only_a_200_of_a_known_type_is_compressed():
    partial = [start(206, b'text/plain', (b'content-range', b'bytes 0-1/2')), body()]
    assert run(partial, accept_encoding='br') == partial
    untyped = [{'type': 'http.response.start', 'status': 200, 'headers': []}, body()]
    assert run(untyped, accept_encoding='br') == untyped


def test_a_stream_is_neither_held_nor_compressed():
    messages = [start(), body(b'first ' * 100, more_body=True), body(b'last')]
    # The start waits for the first part only, then both go as they are.
    assert run(messages[:1], accept_encoding='br') == []
    sent = run(messages, accept_encoding='br')
    assert sent[0]['headers'] == [
        (b'content-type', b'application/json'),
        (b'vary', b'Accept-Encoding'),
    ]
    assert sent[1:] == messages[1:]


def test_vary_is_merged_once():
    for vary, merged in [
        (b'Accept', b'Accept, Accept-Encoding'),
        (b'accept-encoding', b'accept-encoding'),
        (b'*', b'*'),
    ]:
        sent = run([start(200, b'text/css', (b'vary', vary)), body()])
        assert sent[0]['headers'] == [(b'content-type', b'text/css'), (b'vary', merged)]
    two = [(b'vary', b'Accept'), (b'vary', b'Origin, Accept-Encoding')]
    sent = run([start(200, b'text/css', *two), body()])
    assert sent[0]['headers'] == [(b'content-type', b'text/css'), *two]
    two = [(b'vary', b'Accept'), (b'vary', b'Origin')]
    sent = run([start(200, b'text/css', *two), body()])
    assert sent[0]['headers'] == [
        (b'content-type', b'text/css'),
        (b'vary', b'Accept, Accept-Encoding'),
        (b'vary', b'Origin'),
    ]


def test_a_body_that_compression_would_grow_is_sent_as_it_is():
    noise = random.Random(9).randbytes(600)
    sent = run([start(), body(noise)], accept_encoding='gzip')
    assert sent[1]['body'] == noise
    assert (b'content-encoding', b'gzip') not in sent[0]['headers']


def test_without_the_identity_even_a_small_body_is_compressed():
    small = b'{}'
    sent = run([start(), body(small)], accept_encoding='gzip, identity;q=0')
    assert (b'content-encoding', b'gzip') in sent[0]['headers']
    assert gzip.decompress(sent[1]['body']) == small


def test_a_304_without_an_etag_or_a_precondition_is_left_alone():
    answer = start(304, b'text/css')
    assert run([answer], if_none_match='"a-br"') == [answer]
    tagged = start(304, b'text/css', (b'etag', b'"a"'))
    assert run([tagged], accept_encoding='br') == [tagged]


def test_a_head_from_memory_whose_length_is_unknown_raises_before_sending():
    messages = [start(200, b'text/css', (b'content-length', b'1302')), body(b'')]
    sent = []
    with pytest.raises(Unknown):
        sent = run(messages, 'HEAD', replaying=True, accept_encoding='br')
    assert sent == []
    # From Falcon, without the body kept: the identity.
    assert run(messages, 'HEAD', accept_encoding='br') == [
        {
            **messages[0],
            'headers': [*messages[0]['headers'], (b'vary', b'Accept-Encoding')],
        },
        messages[1],
    ]


def test_one_etag_under_two_root_paths_may_be_two_bodies():
    wrapper = Compression()
    for root_path, text in (('', b'a'), ('/gallery', b'b'), ('', b'a')):
        messages = [start(200, b'text/html', (b'etag', b'"same"')), body(text * 300)]
        sent = run(messages, wrapper=wrapper, root_path=root_path, accept_encoding='br')
        assert brotli.decompress(sent[1]['body']) == text * 300


def test_other_methods_are_not_wrapped():
    async def send(message):
        pass

    wrapper = Compression()
    assert wrapper.wrap({'method': 'POST'}, send) is send
    assert wrapper.wrap({'method': 'GET', 'headers': []}, send) is not send


@pytest.mark.parametrize(
    ('path', 'wrapped'),
    [
        ('/thumbnails/x/80x60.jpeg', False),
        ('/images/x.jpeg', False),
        ('/images', True),
        ('/static/gallery.js', True),
    ],
)
def test_the_answers_of_pictures_pass_by_untouched(path, wrapped):
    async def send(message):
        pass

    scope = {'method': 'GET', 'path': path, 'headers': []}
    assert (Compression().wrap(scope, send) is not send) == wrapped


def test_the_memo_keeps_the_most_recently_used_bytes():
    memo = Memo(10)
    memo.put(('a',), b'aaaa')
    memo.put(('b',), b'bbbb')
    assert memo.get(('a',)) == b'aaaa'
    memo.put(('c',), b'cccc')
    assert (memo.get(('a',)), memo.get(('b',)), memo.get(('c',))) == (
        b'aaaa',
        None,
        b'cccc',
    )
    memo.put(('a',), b'AA')
    memo.put(('d',), b'dddd')
    assert [memo.get((key,)) for key in 'acd'] == [b'AA', b'cccc', b'dddd']
    memo.put(('e',), b'e' * 11)
    assert memo.get(('e',)) is None
    assert memo.get(('a',)) == b'AA'


# End to end: real uvicorn, real clients.


@pytest.mark.e2e
def test_clients_over_http_get_compressed_answers(tmp_path, redis_server):
    redis_url = f'{redis_server.url}/5'
    redis.Redis.from_url(redis_url).flushdb()
    server = Uvicorn(tmp_path, redis_url)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.post('/images', content=draw_image((640, 360)))
            identity = http.get('/images', headers={'Accept-Encoding': 'identity'})
            for coding in ('br', 'gzip'):
                for _ in range(2):
                    with http.stream(
                        'GET', '/images', headers={'Accept-Encoding': coding}
                    ) as resp:
                        raw = b''.join(resp.iter_raw())
                    assert resp.headers['content-encoding'] == coding
                    assert int(resp.headers['content-length']) == len(raw)
                    assert DECODE[coding](raw) == identity.content
                    assert resp.headers['vary'] == 'Accept, Accept-Encoding'
                etag = resp.headers['etag']
                again = http.get(
                    '/images',
                    headers={'Accept-Encoding': coding, 'If-None-Match': etag},
                )
                assert (again.status_code, again.headers['etag']) == (304, etag)
            head = http.head('/openapi.json', headers={'Accept-Encoding': 'br'})
            document = http.get('/openapi.json', headers={'Accept-Encoding': 'br'})
            assert head.headers['content-length'] == document.headers['content-length']
            assert document.json()['openapi'].startswith('3.')
            picture = http.get(
                f'/images/{identity.json()[0]["id"]}.jpeg',
                headers={'Accept-Encoding': 'br, gzip'},
            )
            assert 'content-encoding' not in picture.headers
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
