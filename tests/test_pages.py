"""A picture's page, ``GET /pictures/{id}``: its tags, URLs, escaping and caching."""

import html.parser
import signal

import falcon
import falcon.testing
import httpx
import msgpack
import pytest
import redis

from asgilook.config import Config
from asgilook.http.app import create_app
from asgilook.http.pages import preview
from asgilook.storage.image import Image
from tests.helpers import FIRST_IDS
from tests.helpers import decode
from tests.helpers import draw_image
from tests.servers import Uvicorn

BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
PREFIX = '/gallery'
PUBLIC = 'https://pics.example.org'
# falcon.testing's Host, unless a test gives its own.
ORIGIN = 'http://falconframework.org'


class Page(html.parser.HTMLParser):
    """What a page says: its tags, its picture, links, buttons and scripts."""

    def __init__(self, text):
        super().__init__()
        self.meta = {}
        self.links = {}
        self.anchors = []
        self.images = []
        self.scripts = []
        self.buttons = {}
        self.inputs = {}
        self.title = ''
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'meta' and 'content' in attrs:
            self.meta[attrs.get('property') or attrs.get('name')] = attrs['content']
        elif tag == 'link':
            self.links[attrs['rel']] = attrs['href']
        elif tag == 'a':
            self.anchors.append(attrs)
        elif tag == 'img':
            self.images.append(attrs)
        elif tag == 'script':
            self.scripts.append(attrs)
        elif tag == 'button':
            self.buttons[attrs.get('id')] = attrs
        elif tag == 'input':
            self.inputs[attrs.get('id')] = attrs
        self._in_title = tag == 'title'

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    @property
    def picture(self):
        """The picture's ``<img>``: the one with a srcset."""
        (found,) = [image for image in self.images if 'srcset' in image]
        return found

    def anchor(self, cls):
        (found,) = [a for a in self.anchors if cls in a.get('class', '').split()]
        return found


def upload(client, size=(3000, 1688), path='/images', **kwargs):
    resp = client.simulate_post(path, body=draw_image(size), **kwargs)
    assert resp.status_code == 201, resp.text
    return resp.json


def page_of(client, document, **kwargs):
    resp = client.simulate_get(document['page'], **kwargs)
    assert resp.status_code == 200, resp.text
    return resp, Page(resp.text)


def test_every_document_names_its_page(client):
    document = upload(client)
    assert document['page'] == f'/pictures/{FIRST_IDS[0]}'
    assert client.simulate_get('/images').json[0]['page'] == document['page']


def test_the_page_has_the_tags_that_unfurl_a_link(client):
    document = upload(client)
    version, image_id = document['version'], document['id']
    resp, page = page_of(client, document)

    assert resp.headers['Content-Type'] == 'text/html; charset=utf-8'
    assert resp.headers['Cache-Control'] == 'no-cache'
    assert "script-src 'self'" in resp.headers['Content-Security-Policy']
    url = f'{ORIGIN}/pictures/{image_id}'
    preview_url = f'{ORIGIN}/thumbnails/{image_id}/1500x844.jpeg?v={version}'
    assert page.links['canonical'] == url
    shared = {name: page.meta[name] for name in page.meta if ':' in name}
    assert shared == {
        'og:site_name': 'asgilook',
        'og:type': 'website',
        'og:title': 'Picture of 3000 × 1688 pixels - asgilook',
        'og:description': page.meta['description'],
        'og:url': url,
        'og:image': preview_url,
        'og:image:width': '1500',
        'og:image:height': '844',
        'og:image:alt': 'Picture of 3000 × 1688 pixels',
        'twitter:card': 'summary_large_image',
        'twitter:title': page.meta['og:title'],
        'twitter:description': page.meta['description'],
        'twitter:image': preview_url,
        'twitter:image:alt': page.meta['og:image:alt'],
    }
    assert page.title == page.meta['og:title']
    assert page.meta['description'].startswith('A picture of 3000 × 1688 pixels')
    # The picture: every rendition, never the original as its src.
    picture = page.picture
    assert picture['srcset'] == document['srcset']
    assert picture['src'] == f'/thumbnails/{image_id}/1500x844.jpeg?v={version}'
    assert (picture['width'], picture['height']) == ('3000', '1688')
    assert picture['sizes'].startswith('min(')
    # Its link, to copy; the original, to download; the way back.
    assert page.inputs['link']['value'] == url
    assert 'copy-link' in page.buttons
    # The PNG uploaded, as it was: the JPEG is its conversion.
    download = page.anchor('action')
    assert download['href'] == f'{document["original"]}?v={version}'
    assert download['download'] == f'asgilook-{image_id}.png'
    assert page.anchor('back')['href'] == '/'
    assert [script['src'].split('?')[0] for script in page.scripts] == [
        '/static/picture.js'
    ]
    assert '3000 × 1688 pixels, uploaded' in resp.text

    # What the tags name is there.
    shown = client.simulate_get(preview_url.removeprefix(ORIGIN))
    assert decode(shown.content).size == (1500, 844)


@pytest.mark.parametrize(
    ('size', 'width'),
    [
        ((640, 360), 640),
        ((2400, 1350), 1200),
        ((5000, 1000), 1250),
        ((100, 80), 100),
    ],
)
def test_og_image_is_the_rendition_closest_to_1200_pixels_wide(config, size, width):
    image = Image(config, FIRST_IDS[0], size)
    uri, (found, _) = preview(image)
    assert found == width
    if width == size[0]:
        assert uri.startswith('/images/')


def test_the_request_scheme_and_host_make_the_absolute_urls(client):
    document = upload(client)
    _, page = page_of(
        client, document, protocol='https', host='photos.example.net:8443'
    )
    origin = 'https://photos.example.net:8443'
    assert page.meta['og:url'] == f'{origin}{document["page"]}'
    assert page.meta['og:image'].startswith(f'{origin}/thumbnails/')
    assert page.links['canonical'] == page.meta['og:url']


def test_the_public_url_makes_them_whatever_the_host(config):
    config.public_url = PUBLIC
    client = falcon.testing.TestClient(create_app(config))
    document = upload(client)
    _, page = page_of(client, document, host='elsewhere.example')
    assert page.meta['og:url'] == f'{PUBLIC}{document["page"]}'
    assert page.meta['og:image'].startswith(f'{PUBLIC}/thumbnails/')
    assert page.inputs['link']['value'] == page.meta['og:url']


@pytest.mark.parametrize('public', [None, PUBLIC])
def test_under_a_prefix_every_url_carries_it(config, public):
    config.public_url = public
    client = falcon.testing.TestClient(create_app(config))
    document = upload(client, path=f'{PREFIX}/images', root_path=PREFIX)
    assert document['page'] == f'{PREFIX}/pictures/{FIRST_IDS[0]}'
    resp = client.simulate_get(document['page'], root_path=PREFIX)
    assert resp.status_code == 200
    page = Page(resp.text)
    origin = public or ORIGIN
    assert page.meta['og:url'] == f'{origin}{document["page"]}'
    assert page.links['canonical'] == page.meta['og:url']
    assert page.meta['og:image'].startswith(f'{origin}{PREFIX}/thumbnails/')
    assert page.picture['srcset'] == document['srcset']
    assert all(
        candidate.startswith(f'{PREFIX}/')
        for candidate in page.picture['srcset'].split(', ')
    )
    assert page.picture['src'].startswith(f'{PREFIX}/thumbnails/')
    assert page.anchor('back')['href'] == f'{PREFIX}/'
    assert page.anchor('home')['href'] == f'{PREFIX}/'
    assert page.anchor('action')['href'].startswith(f'{PREFIX}/images/')
    assert page.links['stylesheet'].startswith(f'{PREFIX}/static/gallery.css?v=')
    assert page.scripts[0]['src'].startswith(f'{PREFIX}/static/picture.js?v=')
    # The asset it names is there, below the prefix.
    stylesheet = client.simulate_get(page.links['stylesheet'], root_path=PREFIX)
    assert stylesheet.status_code == 200


def test_everything_put_in_the_page_is_escaped(client):
    document = upload(client)
    host = 'x"><script>alert(1)</script>'
    resp, page = page_of(client, document, host=host)
    assert '<script>alert' not in resp.text
    assert '&quot;&gt;&lt;script&gt;' in resp.text
    # Read back, the value is what was put in, and nothing else was added.
    assert page.meta['og:url'] == f'http://{host}{document["page"]}'
    assert [script['src'].split('?')[0] for script in page.scripts] == [
        '/static/picture.js'
    ]


def test_an_unknown_picture_is_a_404_json_for_clients_a_page_for_browsers(client):
    path = f'/pictures/{FIRST_IDS[1]}'
    plain = client.simulate_get(path)
    assert plain.status_code == 404
    assert plain.headers['Content-Type'] == falcon.MEDIA_JSON
    assert plain.json['title'] == 'Not Found'
    assert FIRST_IDS[1] in plain.json['description']

    packed = client.simulate_get(path, headers={'Accept': falcon.MEDIA_MSGPACK})
    assert packed.status_code == 404
    assert msgpack.unpackb(packed.content)['title'] == 'Not Found'

    browser = client.simulate_get(path, headers={'Accept': BROWSER_ACCEPT})
    assert browser.status_code == 404
    assert browser.headers['Content-Type'] == 'text/html; charset=utf-8'
    assert browser.headers['Cache-Control'] == 'no-store'
    assert browser.headers['Vary'] == 'Accept'
    assert 'No such picture' in browser.text
    assert FIRST_IDS[1] in browser.text
    assert Page(browser.text).anchors == [{'href': '/'}]

    under = client.simulate_get(
        PREFIX + path, root_path=PREFIX, headers={'Accept': BROWSER_ACCEPT}
    )
    assert Page(under.text).anchors == [{'href': f'{PREFIX}/'}]

    # Not an id at all: no route, Falcon's JSON error.
    assert client.simulate_get('/pictures/nope').status_code == 404


@pytest.mark.parametrize('public', [None, PUBLIC])
def test_cached_then_a_404_once_deleted(config, public):
    config.public_url = public
    client = falcon.testing.TestClient(create_app(config))
    document = upload(client)
    first, _ = page_of(client, document)
    again, _ = page_of(client, document)
    assert first.headers['X-ASGILook-Cache'] == 'Miss'
    assert again.headers['X-ASGILook-Cache'] == 'Hit'
    assert again.content == first.content
    assert again.headers['ETag'] == first.headers['ETag']

    token = document['delete_token']
    deleted = client.simulate_delete(
        document['image'], headers={'Authorization': f'Bearer {token}'}
    )
    assert deleted.status_code == 204
    for accept in (falcon.MEDIA_JSON, BROWSER_ACCEPT):
        gone = client.simulate_get(document['page'], headers={'Accept': accept})
        assert gone.status_code == 404
        assert gone.headers['X-ASGILook-Cache'] == 'Miss'


def test_each_host_has_its_own_entry(client):
    document = upload(client)
    pages = [
        page_of(client, document, host=host)
        for host in ('a.example', 'b.example', 'a.example')
    ]
    assert [resp.headers['X-ASGILook-Cache'] for resp, _ in pages] == [
        'Miss',
        'Miss',
        'Hit',
    ]
    assert [page.meta['og:url'].split('/')[2] for _, page in pages] == [
        'a.example',
        'b.example',
        'a.example',
    ]


@pytest.mark.parametrize('public', [None, PUBLIC])
def test_a_conditional_get_is_a_304_and_head_has_no_body(config, public):
    config.public_url = public
    client = falcon.testing.TestClient(create_app(config))
    document = upload(client)
    first, _ = page_of(client, document)
    etag = first.headers['ETag']
    for _ in range(2):  # Made by the app, then answered from a cache.
        again = client.simulate_get(document['page'], headers={'If-None-Match': etag})
        assert (again.status_code, again.content) == (304, b'')
        assert again.headers['ETag'] == etag
    head = client.simulate_head(document['page'])
    assert (head.status_code, head.content) == (200, b'')
    assert head.headers['ETag'] == etag


@pytest.mark.parametrize(
    ('raw', 'value'),
    [
        ('', None),
        ('https://pics.example.org', 'https://pics.example.org'),
        ('https://pics.example.org/', 'https://pics.example.org'),
        ('http://127.0.0.1:8000', 'http://127.0.0.1:8000'),
    ],
)
def test_the_public_url_setting(tmp_path, raw, value):
    environ = {'ASGI_LOOK_STORAGE_PATH': str(tmp_path), 'ASGI_LOOK_PUBLIC_URL': raw}
    assert Config.from_environ(environ).public_url == value


@pytest.mark.parametrize(
    'raw',
    [
        'pics.example.org',
        'ftp://pics.example.org',
        'https://pics.example.org/gallery',
        'https://pics.example.org/?a=1',
        'https://user@pics.example.org',
        'https://pics.example.org:99999',
        'https://pics.example.org:0',
        'https://',
    ],
)
def test_a_public_url_must_be_an_origin(tmp_path, raw):
    environ = {'ASGI_LOOK_STORAGE_PATH': str(tmp_path), 'ASGI_LOOK_PUBLIC_URL': raw}
    with pytest.raises(ValueError, match='ASGI_LOOK_PUBLIC_URL must be an http'):
        Config.from_environ(environ)


# End to end: a real uvicorn and redis-server; what the tags name is fetched.


@pytest.fixture(scope='module')
def served(tmp_path_factory, redis_server):
    redis_url = f'{redis_server.url}/14'
    redis.Redis.from_url(redis_url).flushdb()
    server = Uvicorn(tmp_path_factory.mktemp('pages'), redis_url, '--proxy-headers')
    yield server
    assert server.stop() in (0, -signal.SIGTERM)


@pytest.mark.e2e
def test_what_the_tags_name_is_served_by_uvicorn(served):
    with httpx.Client(timeout=30) as http:
        document = http.post(
            f'{served.url}/images', content=draw_image((2600, 1400))
        ).json()
        url = f'{served.url}{document["page"]}'
        first = http.get(url, headers={'Accept': BROWSER_ACCEPT})
        again = http.get(url)
        assert [first.status_code, again.status_code] == [200, 200]
        assert first.headers['X-ASGILook-Cache'] == 'Miss'
        assert again.headers['X-ASGILook-Cache'] == 'Hit'
        page = Page(first.text)
        assert page.meta['og:url'] == url

        # Both absolute URLs work as they are.
        shown = http.get(page.meta['og:image'])
        assert shown.status_code == 200
        assert shown.headers['Content-Type'] == 'image/jpeg'
        assert list(decode(shown.content).size) == [
            int(page.meta['og:image:width']),
            int(page.meta['og:image:height']),
        ]
        assert http.get(page.meta['og:url']).text == first.text

        # Behind a proxy that says the client used https (uvicorn trusts
        # loopback's X-Forwarded-Proto): https URLs, in an entry of their own.
        proxied = http.get(url, headers={'X-Forwarded-Proto': 'https'})
        assert proxied.headers['X-ASGILook-Cache'] == 'Miss'
        https = Page(proxied.text).meta['og:url']
        assert https == url.replace('http://', 'https://')
        assert Page(http.get(url).text).meta['og:url'] == url
