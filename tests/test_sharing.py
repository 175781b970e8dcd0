"""Upload keys, visibility, signed links and names, through the app (falcon.testing).

Keys are made in the index itself, as ``asgilook keys add`` makes them; the
app finds them in the same SQLite file. Processes that share a rate, and the
events a private picture never makes, are in tests/test_sharing_e2e.py.
"""

import asyncio
import functools
import hashlib
import html.parser
import os
import time
import urllib.parse

import fakeredis
import falcon
import falcon.testing
import pytest

from asgilook.http import sharing
from asgilook.http.app import create_app
from asgilook.http.signing import Signer
from asgilook.storage.index import UploadKey
from asgilook.storage.index import key_hash
from asgilook.storage.index.sqlite import SQLiteIndex
from tests.helpers import draw_image
from tests.test_events import named
from tests.test_events import read_until
from tests.test_uploads import form
from tests.test_uploads import image_part
from tests.test_uploads import without_content_length

PICTURE = draw_image((320, 240))


def add_key(config, name, **fields):
    """A new upload key in the app's index: its secret text."""
    secret = f'alk_test_{name}_{os.urandom(4).hex()}'

    async def add():
        index = SQLiteIndex(config.storage_path)
        try:
            await index.add_key(
                UploadKey(name, hashlib.sha256(secret.encode()).hexdigest(), **fields)
            )
        finally:
            await index.close()

    asyncio.run(add())
    return secret


def revoke(config, name):
    async def run():
        index = SQLiteIndex(config.storage_path)
        try:
            await index.revoke_key(name)
        finally:
            await index.close()

    asyncio.run(run())


def bearer(key):
    return {'Authorization': f'Bearer {key}'}


def post(client, key=None, body=PICTURE, params=None, headers=None):
    return client.simulate_post(
        '/images',
        body=body,
        params=params or {},
        headers={**(bearer(key) if key else {}), **(headers or {})},
    )


def originals(config):
    """The stored JPEGs (not the PNGs kept as uploaded beside them)."""
    folder = os.path.join(os.fspath(config.storage_path), 'images')
    found = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(name for name in found if name.endswith('.jpeg'))


def ids(listing):
    return [document['id'] for document in listing.json]


@pytest.fixture
def keyed(config):
    config.uploads = 'keys'
    return config


# Who may upload


def test_open_uploads_stay_open_and_public(client):
    created = post(client)
    assert created.status_code == 201
    assert created.json['visibility'] == 'public'
    assert created.json['name'] is None
    assert ids(client.simulate_get('/images')) == [created.json['id']]


def test_with_keys_an_upload_without_one_is_401_and_writes_nothing(client, keyed):
    for headers in ({}, bearer('alk_not_a_key'), {'Authorization': 'Basic eDp5'}):
        refused = post(client, headers=headers)
        assert refused.status_code == 401
        assert refused.headers['WWW-Authenticate'] == 'Bearer'
        assert refused.json['title'] in ('Upload Key Required', 'Invalid Upload Key')
    assert originals(keyed) == []
    assert client.simulate_get('/images').json == []


def test_a_key_uploads_until_it_is_revoked(client, keyed):
    key = add_key(keyed, 'alice')
    created = post(client, key)
    assert created.status_code == 201
    revoke(keyed, 'alice')
    refused = post(client, key)
    assert refused.status_code == 401
    assert 'revoked' in refused.json['description']
    assert len(originals(keyed)) == 1


def test_a_key_sent_to_open_uploads_makes_the_picture_its_own(client, config):
    key = add_key(config, 'bob')
    created = post(client, key, params={'visibility': 'unlisted'})
    assert created.status_code == 201
    assert client.simulate_get('/images').json == []
    assert ids(client.simulate_get('/images', headers=bearer(key))) == [
        created.json['id']
    ]


def test_a_quota_refuses_what_it_cannot_take_and_says_what_is_left(client, keyed):
    key = add_key(keyed, 'carol', quota=len(PICTURE) * 3 // 2)
    assert post(client, key).status_code == 201
    # NOTE: Refused before its body is read (Content-Length), and without
    #   it (chunked), once it is.
    for extras in ({}, without_content_length(bearer(key))):
        refused = client.simulate_post(
            '/images', body=PICTURE, headers=bearer(key), extras=extras
        )
        assert refused.status_code == 413
        assert refused.json['title'] == 'Quota Exceeded'
        description = refused.json['description']
        assert '"carol"' in description
        assert 'left' in description
    assert len(originals(keyed)) == 1


def test_a_quota_is_exact_under_concurrent_uploads(config):
    """Many uploads at once, each within the quota alone: the index lets in
    exactly as many as fit, and the others leave no file behind."""
    config.uploads = 'keys'
    key = add_key(config, 'dave', quota=len(PICTURE) * 3)

    async def run():
        app = create_app(config)
        async with falcon.testing.ASGIConductor(app) as conductor:
            answers = await asyncio.gather(
                *(
                    conductor.simulate_post(
                        '/images', body=PICTURE, headers=bearer(key)
                    )
                    for _ in range(8)
                )
            )
        return [answer.status_code for answer in answers]

    statuses = asyncio.run(run())
    assert sorted(statuses) == [201] * 3 + [413] * 5
    assert len(originals(config)) == 3


def test_a_rate_answers_429_with_retry_after(client, keyed):
    key = add_key(keyed, 'erin', rate=2)
    assert [post(client, key).status_code for _ in range(2)] == [201, 201]
    refused = post(client, key)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers['Retry-After']) <= 60
    assert '2 pictures a minute' in refused.json['description']
    other = add_key(keyed, 'frank', rate=2)
    assert post(client, other).status_code == 201  # Each key has its own.


# Who may delete


def test_a_key_deletes_its_own_pictures_and_an_admin_key_any(client, keyed, caplog):
    caplog.set_level('INFO', logger='asgilook.storage.store')
    alice, bob = add_key(keyed, 'alice'), add_key(keyed, 'bob')
    admin = add_key(keyed, 'root', admin=True)
    first = post(client, alice).json['id']
    second = post(client, alice).json['id']
    assert (
        client.simulate_delete(f'/images/{first}.jpeg', headers=bearer(bob)).status_code
        == 403
    )
    assert (
        client.simulate_delete(
            f'/images/{first}.jpeg', headers=bearer(alice)
        ).status_code
        == 204
    )
    assert (
        client.simulate_delete(
            f'/images/{second}.jpeg', headers=bearer(admin)
        ).status_code
        == 204
    )
    assert originals(keyed) == []
    deleted = [r for r in caplog.records if 'deleted with' in r.getMessage()]
    assert [(r.deleted_by, r.upload_key) for r in deleted] == [
        ('owner', 'alice'),
        ('admin', 'root'),
    ]
    assert deleted[0].getMessage() == f'Image {first} deleted with the upload key alice'


def test_a_revoked_key_deletes_nothing(client, keyed):
    alice = add_key(keyed, 'alice')
    image_id = post(client, alice).json['id']
    revoke(keyed, 'alice')
    refused = client.simulate_delete(f'/images/{image_id}.jpeg', headers=bearer(alice))
    assert refused.status_code == 403
    assert len(originals(keyed)) == 1


# Who sees what


def uploads_of_each_visibility(client, key):
    return {
        visibility: post(client, key, params={'visibility': visibility}).json
        for visibility in ('public', 'unlisted', 'private')
    }


def test_only_public_pictures_are_listed_to_everyone(client, config):
    key = add_key(config, 'alice')
    made = uploads_of_each_visibility(client, key)
    anyone = client.simulate_get('/images')
    assert ids(anyone) == [made['public']['id']]
    own = client.simulate_get('/images', headers=bearer(key))
    assert ids(own) == [made[v]['id'] for v in ('public', 'unlisted', 'private')]
    assert own.headers['Cache-Control'] == 'private, no-cache'
    # Not kept for anyone else, nor replayed to the key from another's.
    assert ids(client.simulate_get('/images')) == [made['public']['id']]
    assert len(ids(client.simulate_get('/images', headers=bearer(key)))) == 3
    other = add_key(config, 'bob')
    assert client.simulate_get('/images', headers=bearer(other)).json == []
    admin = add_key(config, 'root', admin=True)
    assert len(ids(client.simulate_get('/images', headers=bearer(admin)))) == 3
    assert client.simulate_get('/images', headers=bearer('nope')).status_code == 401


def test_paging_the_public_listing_skips_hidden_pictures(client, config):
    key = add_key(config, 'alice')
    public = []
    for visibility in ('public', 'private', 'unlisted', 'public', 'private', 'public'):
        document = post(client, key, params={'visibility': visibility}).json
        if visibility == 'public':
            public.append(document['id'])
    first = client.simulate_get('/images', params={'limit': 2})
    assert ids(first) == public[:2]
    after = client.simulate_get('/images', params={'limit': 2, 'after': public[1]})
    assert ids(after) == public[2:]


def test_an_unlisted_picture_is_served_to_whoever_has_its_url(client, config):
    document = post(client, params={'visibility': 'unlisted'}).json
    assert client.simulate_get(document['image']).status_code == 200
    assert client.simulate_get(document['thumbnails'][0]).status_code == 200
    page = client.simulate_get(document['page'], headers={'Accept': 'text/html'})
    assert page.status_code == 200
    assert page.headers['X-Robots-Tag'] == 'noindex'


def private_urls(document):
    return [document['image'], *document['thumbnails'], document['page']]


def test_a_private_picture_is_404_without_a_good_signature(client, config):
    document = post(client, params={'visibility': 'private'}).json
    urls = private_urls(document)
    assert all('signature=' in url and 'expires=' in url for url in urls)
    for url in urls:
        path, _, query = url.partition('?')
        signed = client.simulate_get(path, query_string=query)
        assert signed.status_code == 200, url
        assert signed.headers['Cache-Control'].startswith('private')
        assert client.simulate_get(path).status_code == 404
        params = dict(urllib.parse.parse_qsl(query))
        forged = {**params, 'signature': params['signature'][:-2] + 'AA'}
        assert client.simulate_get(path, params=forged).status_code == 404
        other = client.simulate_get(
            path.replace(document['id'], document['id'][:-1] + '0'), query_string=query
        )
        assert other.status_code == 404
    srcset = [part.split()[0] for part in document['srcset'].split(', ')]
    for url in srcset:
        path, _, query = url.partition('?')
        assert client.simulate_get(path, query_string=query).status_code == 200


def test_an_expired_link_is_404(client, config, monkeypatch):
    now = [time.time()]
    monkeypatch.setattr(
        sharing, 'Signer', functools.partial(Signer, clock=lambda: now[0])
    )
    config.signed_url_ttl = 60
    document = post(client, params={'visibility': 'private'}).json
    path, _, query = document['image'].partition('?')
    assert client.simulate_get(path, query_string=query).status_code == 200
    now[0] += 3600
    expired = client.simulate_get(path, query_string=query)
    assert expired.status_code == 404
    assert expired.json['title'] == 'Not Found'


def test_links_signed_by_configured_secrets_rotate(config, predictable_uuid):
    config.url_secrets = ('the-first-secret-of-many',)
    old = falcon.testing.TestClient(create_app(config))
    document = post(old, params={'visibility': 'private'}).json
    path, _, query = document['image'].partition('?')
    config.url_secrets = ('a-second-secret-now-signs', 'the-first-secret-of-many')
    rotated = falcon.testing.TestClient(create_app(config))
    assert rotated.simulate_get(path, query_string=query).status_code == 200
    config.url_secrets = ('a-second-secret-now-signs',)
    dropped = falcon.testing.TestClient(create_app(config))
    assert dropped.simulate_get(path, query_string=query).status_code == 404


def test_a_bad_visibility_is_400_and_writes_nothing(client, config):
    refused = post(client, params={'visibility': 'secret'})
    assert refused.status_code == 400
    assert (
        'visibility' in refused.json['description'].lower()
        or 'unlisted' in (refused.json['description'])
    )
    body, headers = form(image_part(), fields={'visibility': 'everyone'})
    assert post(client, body=body, headers=headers).status_code == 400
    assert originals(config) == []


# Names


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.title = ''
        self.alts = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self._in_title = tag == 'title'
        if tag == 'img':
            self.alts.append(dict(attrs).get('alt'))

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def test_a_form_keeps_the_file_name_and_a_name_field_wins(client):
    body, headers = form(image_part())
    assert post(client, body=body, headers=headers).json['name'] == 'photo.png'
    body, headers = form(image_part(), fields={'name': 'Harbour at dusk'})
    assert post(client, body=body, headers=headers).json['name'] == 'Harbour at dusk'
    named = post(client, params={'name': 'C:\\fakepath\\cat.jpg'}).json
    assert named['name'] == 'cat.jpg'
    listed = {d['name'] for d in client.simulate_get('/images').json}
    assert listed == {'photo.png', 'Harbour at dusk', 'cat.jpg'}


def test_a_hostile_name_is_shown_escaped(client):
    # NOTE: No slash: a name is its last path part (see the next test).
    hostile = '<script>alert(1)<script>"><img src=x onerror=alert(2)> &amp;'
    document = post(client, params={'name': hostile}).json
    assert document['name'] == hostile
    page = client.simulate_get(document['page'], headers={'Accept': 'text/html'})
    assert '<script>alert(1)' not in page.text
    assert 'onerror=alert(2)>' not in page.text
    tags = _Tags()
    tags.feed(page.text)
    assert hostile in tags.title
    assert hostile in tags.alts


def test_a_long_or_unprintable_name_is_cut_and_cleaned(client):
    body, headers = form(image_part(), fields={'name': 'x' * 300})
    assert post(client, body=body, headers=headers).status_code == 400
    body, headers = form(image_part(), fields={'name': 'tab\there\x00.png'})
    assert post(client, body=body, headers=headers).json['name'] == 'tabhere.png'
    body, headers = form(image_part(), fields={'name': b'\xff\xfe'.decode('latin-1')})
    assert post(client, body=body, headers=headers).status_code == 201


def test_key_hash_is_the_sha256_the_index_keeps():
    assert key_hash('abc') == hashlib.sha256(b'abc').hexdigest()


def test_only_public_pictures_are_announced(config):
    """A stream open to anyone hears of public uploads and deletions only."""
    server = fakeredis.FakeServer()
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=server)
    config.events_keepalive = 0.2
    key = add_key(config, 'alice')

    async def scenario():
        async with falcon.testing.ASGIConductor(create_app(config)) as listener:
            async with falcon.testing.ASGIConductor(create_app(config)) as changer:
                async with listener.simulate_get_stream('/events') as sr:
                    await read_until(sr.stream, lambda events: events)
                    hidden = []
                    for visibility in ('private', 'unlisted'):
                        answer = await changer.simulate_post(
                            '/images',
                            body=PICTURE,
                            params={'visibility': visibility},
                            headers=bearer(key),
                        )
                        hidden.append(answer.json['id'])
                        await changer.simulate_delete(
                            f'/images/{answer.json["id"]}.jpeg', headers=bearer(key)
                        )
                    shown = await changer.simulate_post('/images', body=PICTURE)
                    events = await read_until(
                        sr.stream, lambda events: named(events, 'image-created')
                    )
                    return hidden, shown.json['id'], events

    hidden, shown, events = asyncio.run(scenario())
    created = named(events, 'image-created')
    assert [shown in event['data'] for event in created] == [True]
    assert named(events, 'image-deleted') == []
    assert not any(image_id in str(events) for image_id in hidden)


def test_a_private_picture_under_a_path_prefix(client):
    """Links are signed below the prefix, so they hold under any prefix."""
    prefix = '/gallery'
    made = client.simulate_request(
        'POST',
        f'{prefix}/images',
        root_path=prefix,
        body=PICTURE,
        params={'visibility': 'private'},
    ).json
    assert made['image'].startswith(f'{prefix}/images/')
    for url in (made['image'], made['thumbnails'][0]):
        path, _, query = url.partition('?')
        served = client.simulate_get(path, root_path=prefix, query_string=query)
        assert served.status_code == 200, url
        bare = client.simulate_get(path, root_path=prefix)
        assert bare.status_code == 404


def test_the_access_log_names_the_key_never_the_secret(client, config, caplog):
    key = add_key(config, 'alice')
    caplog.set_level('INFO', logger='asgilook.http.access')
    post(client, key)
    post(client)
    records = [r for r in caplog.records if r.name == 'asgilook.http.access']
    assert [r.upload_key for r in records] == ['alice', None]
    assert key not in caplog.text


def test_a_key_looked_up_outside_a_logged_request_is_still_found(config):
    """The key's name goes to the access record of the request in hand, if
    there is one; without one (an app without the access log), the lookup
    works all the same."""
    from asgilook import logs
    from asgilook.storage.store import Store

    key = add_key(config, 'alice', rate=3)
    req = falcon.testing.create_asgi_req(path='/images', headers=bearer(key))

    async def run():
        store = Store(config)
        try:
            return await sharing.Sharing(config, store, None).uploader(req, 10)
        finally:
            await store.process_shutdown(None, None)

    found = asyncio.run(run())
    assert (found.name, found.rate) == ('alice', 3)
    assert logs.CURRENT.get() is None
