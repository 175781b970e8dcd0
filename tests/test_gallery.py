"""The gallery page and its assets, as HTTP sees them (the browser tests drive it)."""

import re

import pytest

from asgilook.http.gallery import STATIC
from asgilook.http.gallery import Gallery
from tests.helpers import FIRST_IDS
from tests.helpers import decode
from tests.helpers import draw_image

BROWSER_ACCEPT = (
    'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,'
    'image/webp,*/*;q=0.8'
)


def asset_urls(page):
    return re.findall(r'"(/static/[^"]+)"', page)


def test_the_page_names_every_asset_by_its_content(client):
    resp = client.simulate_get('/', headers={'Accept': BROWSER_ACCEPT})
    assert resp.status_code == 200
    assert resp.headers['Content-Type'] == 'text/html; charset=utf-8'
    assert resp.headers['Cache-Control'] == 'no-cache'
    urls = asset_urls(resp.text)
    names = {url.split('?')[0].rsplit('/', 1)[1] for url in urls}
    assert {'gallery.css', 'gallery.js', 'favicon.svg'} <= names
    for url in urls:
        assert re.fullmatch(r'/static/[\w.-]+\?v=[0-9a-f]{16}', url), url
        asset = client.simulate_get(url)
        assert asset.status_code == 200
        assert asset.headers['Cache-Control'] == 'public, max-age=31536000, immutable'
        path, _, _ = url.partition('?')
        assert asset.content == (STATIC / path.rsplit('/', 1)[1]).read_bytes()


def test_the_file_input_offers_heic_and_avif_too(client):
    # "image/*" alone hides .heic files in the file pickers of systems that
    # give the extension no image type.
    page = client.simulate_get('/', headers={'Accept': BROWSER_ACCEPT}).text

    accept = re.search(r'<input type="file"[^>]* accept="([^"]+)"', page).group(1)
    assert accept.split(',') == [
        'image/*',
        'image/heic',
        'image/heif',
        'image/avif',
        '.heic',
        '.heif',
        '.avif',
    ]
    assert 'JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC or AVIF, up to 32 MiB each.' in page


@pytest.mark.parametrize(
    ('name', 'content_type'),
    [
        ('gallery.css', 'text/css; charset=utf-8'),
        ('gallery.js', 'text/javascript; charset=utf-8'),
        ('favicon.svg', 'image/svg+xml'),
    ],
)
def test_assets_have_their_types_validators_and_a_304(client, name, content_type):
    resp = client.simulate_get(f'/static/{name}')
    assert resp.headers['Content-Type'] == content_type
    # Not named by its content: revalidated every time.
    assert resp.headers['Cache-Control'] == 'no-cache'
    etag = resp.headers['ETag']
    again = client.simulate_get(f'/static/{name}', headers={'If-None-Match': etag})
    assert (again.status_code, again.content) == (304, b'')
    head = client.simulate_head(f'/static/{name}')
    assert (head.status_code, head.content) == (200, b'')
    assert head.headers['ETag'] == etag


def test_the_page_is_a_304_while_it_is_the_same(client):
    etag = client.simulate_get('/').headers['ETag']
    assert client.simulate_get('/', headers={'If-None-Match': etag}).status_code == 304


def test_an_unknown_asset_is_a_json_404(client):
    resp = client.simulate_get('/static/nothing.js', headers={'Accept': BROWSER_ACCEPT})
    assert resp.status_code == 404
    assert resp.headers['Content-Type'] == 'application/json'
    assert 'nothing.js' in resp.json['description']


@pytest.mark.parametrize('uri', ['/nowhere', '/images/not-an-id.jpeg'])
def test_a_browser_gets_errors_as_json_too(client, uri):
    resp = client.simulate_get(uri, headers={'Accept': BROWSER_ACCEPT})
    assert resp.status_code == 404
    assert resp.headers['Content-Type'] == 'application/json'
    assert resp.json['title']


def test_the_page_needs_only_its_own_folder(tmp_path):
    (tmp_path / 'index.html').write_text(
        '<link href="/static/a.css"><script src="/static/b.js"></script>'
        '<img src="/static/elsewhere.png">'
    )
    (tmp_path / 'a.css').write_text('body {}')
    (tmp_path / 'b.js').write_text('1')
    (tmp_path / 'sub').mkdir()
    gallery = Gallery(tmp_path)
    page = gallery._page.data.decode()
    assert re.search(r'"/static/a.css\?v=[0-9a-f]{16}"', page)
    assert re.search(r'"/static/b.js\?v=[0-9a-f]{16}"', page)
    # Not a file of the folder: left alone.
    assert '"/static/elsewhere.png"' in page
    assert sorted(gallery._assets) == ['a.css', 'b.js']


# The listing as the gallery reads it: newest first, and a srcset per picture.


def upload_sizes(client, sizes):
    return [
        client.simulate_post('/images', body=draw_image(size)).json for size in sizes
    ]


def test_the_listing_newest_first_pages_back_in_time(client):
    ids = [document['id'] for document in upload_sizes(client, [(160, 120)] * 5)]
    seen = []
    uri, query = '/images', 'order=newest&limit=2'
    while True:
        resp = client.simulate_get(uri, query_string=query)
        assert resp.status_code == 200
        seen += [document['id'] for document in resp.json]
        link = resp.headers.get('Link')
        if link is None:
            break
        uri, _, query = link[1 : link.index('>')].partition('?')
        assert 'order=newest' in query
    assert seen == ids[::-1]


def test_a_bad_order_is_a_400(client):
    resp = client.simulate_get('/images', query_string='order=random')
    assert resp.status_code == 400
    assert 'newest' in resp.json['description']


def test_newest_first_is_a_page_of_its_own_in_the_cache(client):
    upload_sizes(client, [(160, 120)] * 2)
    oldest = client.simulate_get('/images')
    newest = client.simulate_get('/images', query_string='order=newest')
    again = client.simulate_get('/images', query_string='order=newest&limit=100')
    assert [d['id'] for d in newest.json] == [d['id'] for d in oldest.json][::-1]
    assert again.json == newest.json
    assert again.headers['X-ASGILook-Cache'] == 'Hit'


def test_the_srcset_lists_every_rendition_smallest_first(client):
    document = upload_sizes(client, [(640, 360)])[0]
    version = document['version']
    image_id = FIRST_IDS[0]
    assert document['srcset'] == (
        f'/thumbnails/{image_id}/160x90.jpeg?v={version} 160w, '
        f'/thumbnails/{image_id}/320x180.jpeg?v={version} 320w, '
        f'/images/{image_id}.jpeg?v={version} 640w'
    )
    for candidate in document['srcset'].split(', '):
        uri, _, width = candidate.partition(' ')
        resp = client.simulate_get(uri)
        assert resp.status_code == 200
        assert resp.headers['Cache-Control'] == 'public, max-age=31536000, immutable'
        assert width == f'{decode(resp.content).width}w'


def test_a_picture_too_small_for_thumbnails_has_itself_in_its_srcset(client):
    document = upload_sizes(client, [(100, 80)])[0]
    assert document['thumbnails'] == []
    assert document['srcset'] == f'{document["image"]}?v={document["version"]} 100w'


def test_the_folders_other_pages_are_templates_not_assets(tmp_path):
    (tmp_path / 'index.html').write_text('<a href="/">home</a>')
    (tmp_path / 'other.html').write_text(
        '<link href="/static/a.css"><a href="/">back</a><a href="$page">it</a>'
    )
    (tmp_path / 'a.css').write_text('body {}')
    gallery = Gallery(tmp_path)
    assert sorted(gallery._assets) == ['a.css']
    plain = gallery.template('other.html')
    assert re.fullmatch(
        r'<link href="/static/a.css\?v=[0-9a-f]{16}"><a href="/">back</a>'
        r'<a href="\$page">it</a>',
        plain,
    )
    # Below a root path, its own paths are; what it is filled with is not.
    rooted = gallery.template('other.html', '/my gallery')
    assert rooted == plain.replace('"/', '"/my%20gallery/')
    assert gallery.template('other.html', '/my gallery') is rooted


def test_a_template_is_no_asset(client):
    assert client.simulate_get('/static/picture.html').status_code == 404
    assert client.simulate_get('/static/picture.js').status_code == 200
