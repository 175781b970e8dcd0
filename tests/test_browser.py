"""The gallery page in a real headless Chromium, against uvicorn with two workers.

Selenium drives Debian's ``chromium`` through its ``chromium-driver``; nothing
is downloaded. Each test saves a screenshot of every step it takes into
``ASGI_LOOK_ARTIFACTS`` (default ``/tmp/asgilook-browser-artifacts``), to be
looked at by a person: a test can say that a tile is there, not that the page
looks right.
"""

import io
import json
import os
import pathlib
import re
import signal
import time

import httpx
import PIL.Image
import PIL.ImageColor
import PIL.ImageDraw
import pytest
import redis
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.nginx import PREFIX
from tests.nginx import STRIPS
from tests.nginx import Nginx
from tests.servers import Uvicorn

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
TIMEOUT = 30
# A phone (as wide as an iPhone 12 to 15, three device pixels to a CSS
# pixel) and a laptop.
NARROW = (390, 844)
NARROW_SCALE = 3
WIDE = (1440, 900)
# Distinct colours, so that a tile can be told apart from its neighbours; and
# shapes: a photo of 4:3, a 16:9 one, a panorama, a portrait.
COLOURS = ('#c0392b', '#2471a3', '#229954', '#d4ac0d')
SHAPES = ((2048, 1536), (3200, 1800), (4000, 800), (1200, 1800))
# The most a tile's picture may be upscaled where a larger rendition exists.
UPSCALE = 1.25
THUMBNAIL = re.compile(r'/thumbnails/(?P<id>[^/]+)/(?P<width>\d+)x\d+\.jpeg')
ORIGINAL = re.compile(r'/images/(?P<id>[^/.]+)\.jpeg')
# What Chromium sends for an <img>.
IMG_ACCEPT = {
    'Accept': 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8'
}

# What Chromium logs when the page's policy refuses something.
CSP_MESSAGE = re.compile(r'Content Security Policy|Content-Security-Policy', re.I)

# Every tile's picture, scrolled into view until it has loaded (they are lazy).
LOAD_EVERY_TILE = """
const waiting = [];
for (const img of document.querySelectorAll('#gallery .tile img')) {
  if (!(img.complete && img.naturalWidth > 0)) {
    img.scrollIntoView({block: 'center'});
    waiting.push(img.closest('.tile').dataset.id);
  }
}
if (waiting.length === 0) window.scrollTo(0, 0);
return waiting;
"""

# Every change of the status line from now on, kept in the page.
WATCH_STATUS = """
const status = document.getElementById('status');
window.statusChanges = [];
new MutationObserver(() => {
  window.statusChanges.push(`${status.dataset.mode}: ${status.textContent}`);
}).observe(status, {attributes: true, childList: true, characterData: true});
"""

# What a user sees of each tile, top to bottom.
TILES = """
return [...document.querySelectorAll('#gallery .tile')].map((tile) => {
  const img = tile.querySelector('img');
  const link = tile.querySelector('a');
  return {
    id: tile.dataset.id,
    href: link && link.getAttribute('href'),
    loading: img.getAttribute('loading'),
    srcset: img.getAttribute('srcset'),
    sizes: img.getAttribute('sizes'),
    width: img.getAttribute('width'),
    height: img.getAttribute('height'),
    currentSrc: img.currentSrc,
    naturalWidth: img.naturalWidth,
    shownWidth: img.getBoundingClientRect().width,
    shownHeight: img.getBoundingClientRect().height,
    deletable: tile.dataset.mine === 'true',
    placeholder: getComputedStyle(img).backgroundImage,
  };
});
"""

# The lightbox as a user sees it (id: null when it is closed).
LIGHTBOX = """
const box = document.getElementById('lightbox');
const img = box.querySelector('img');
const rect = img.getBoundingClientRect();
const focused = document.activeElement;
return {
  id: box.open ? box.dataset.id : null,
  path: location.pathname,
  currentSrc: img.currentSrc,
  sizes: img.sizes,
  naturalWidth: img.naturalWidth,
  complete: img.complete,
  shownWidth: rect.width,
  caption: box.querySelector('.caption').textContent,
  download: box.querySelector('a.download').getAttribute('href'),
  downloadName: box.querySelector('a.download').getAttribute('download'),
  copy: box.querySelector('button.copy-link').checkVisibility(),
  deletable: !box.querySelector('button.delete').hidden,
  said: box.querySelector('.said').textContent,
  focusInside: box.contains(focused),
  focusedTile: focused.closest('.tile')?.dataset.id ?? null,
};
"""

# Each upload row: its classes, its progress bar and what it says.
UPLOAD_ROWS = """
return [...document.querySelectorAll('#uploads li.upload')].map((row) => {
  const progress = row.querySelector('progress');
  const error = row.querySelector('.error');
  return {
    classes: [...row.classList],
    name: row.querySelector('.name').textContent,
    text: row.innerText,
    value: progress && progress.hasAttribute('value') ? progress.value : null,
    max: progress && progress.max,
    error: error && error.textContent,
  };
});
"""


@pytest.fixture(scope='module')
def server(tmp_path_factory, redis_server):
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    storage = tmp_path_factory.mktemp('browser')
    uvicorn = Uvicorn(storage, redis_server.url, '--workers', '2')
    uvicorn.storage = storage
    yield uvicorn
    assert uvicorn.stop() in (0, -signal.SIGTERM)


@pytest.fixture(scope='module')
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope='module')
def artifacts():
    folder = pathlib.Path(
        os.environ.get('ASGI_LOOK_ARTIFACTS', '/tmp/asgilook-browser-artifacts')
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def screenshot(artifacts):
    """Save what a browser shows now, as ``<name>.png``."""

    def save(driver, name):
        path = artifacts / f'{name}.png'
        assert driver.save_screenshot(str(path)), path
        print(f'screenshot: {path}')
        return path

    return save


@pytest.fixture
def chromium(tmp_path_factory):
    """Open a headless Chromium on ``url``, ``size`` its window's (w, h)."""
    drivers = []

    def open_page(url, size, scale=1):
        width, height = size
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        # NOTE: The machine's network is closed: these keep Chromium from
        #   trying to reach Google's services (and from waiting on them).
        for argument in (
            '--headless=new',
            '--no-sandbox',
            '--disable-gpu',
            '--disable-dev-shm-usage',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
            f'--user-data-dir={tmp_path_factory.mktemp("chromium")}',
            f'--window-size={width},{height}',
        ):
            options.add_argument(argument)
        # NOTE: The performance log has the DevTools network events: what
        #   type each response was.
        options.set_capability(
            'goog:loggingPrefs', {'browser': 'ALL', 'performance': 'ALL'}
        )
        driver = webdriver.Chrome(
            options=options, service=Service(executable_path=CHROMEDRIVER)
        )
        drivers.append(driver)
        # NOTE: Headless Chromium keeps its windows at least 500 px wide: the
        #   viewport is set exactly, as a phone's would be, rather than by
        #   --window-size alone.
        driver.execute_cdp_cmd(
            'Emulation.setDeviceMetricsOverride',
            {
                'width': width,
                'height': height,
                'deviceScaleFactor': scale,
                'mobile': scale > 1,
            },
        )
        driver.get(url)
        assert driver.execute_script(
            'return [innerWidth, innerHeight, devicePixelRatio];'
        ) == [width, height, scale]
        return driver

    yield open_page
    for driver in drivers:
        driver.quit()


@pytest.fixture
def browser(server, chromium):
    """Open a headless Chromium on the gallery, ``size`` its window's (w, h)."""

    def open_gallery(size, scale=1):
        return chromium(server.url + '/', size, scale)

    return open_gallery


def picture(colour, size=(2048, 1536)):
    """A JPEG of one colour with a dark band across its bottom."""
    image = PIL.Image.new('RGB', size, colour)
    draw = PIL.ImageDraw.Draw(image)
    width, height = size
    draw.rectangle([(0, height * 4 // 5), (width, height)], fill='#262626')
    output = io.BytesIO()
    image.save(output, 'JPEG', quality=90)
    return output.getvalue()


@pytest.fixture(scope='module')
def pictures(http):
    """Four pictures of four shapes uploaded over HTTP, oldest first, their
    AVIF rendered."""
    documents = []
    for colour, size in zip(COLOURS, SHAPES, strict=True):
        resp = http.post('/images', content=picture(colour, size))
        assert resp.status_code == 201, resp.text
        documents.append(resp.json())
    # NOTE: The AVIF series is rendered after the first request for it (the
    #   JPEG answers until then); ask as Chromium does, until every worker
    #   has it.
    for document in documents:
        for uri in document['thumbnails']:
            for _ in range(200):
                resp = http.get(f'{uri}?v={document["version"]}', headers=IMG_ACCEPT)
                if resp.headers['Content-Type'] == 'image/avif':
                    break
                time.sleep(0.05)
            else:
                pytest.fail(f'{uri} never became AVIF')
    return documents


def served_types(driver):
    """The type of every response the page received so far, by URL."""
    types = {}
    for entry in driver.get_log('performance'):
        message = json.loads(entry['message'])['message']
        if message['method'] == 'Network.responseReceived':
            response = message['params']['response']
            types[response['url']] = response['mimeType']
    return types


def wait_for(driver, condition, failure):
    """Wait until ``condition(driver)`` holds; else fail, saying ``failure(driver)``.

    ``failure`` tells what was expected and what the page shows instead.
    """
    try:
        return WebDriverWait(driver, TIMEOUT).until(condition)
    except TimeoutException:
        pytest.fail(f'after {TIMEOUT} s: {failure(driver)}')


def tiles(driver):
    return driver.execute_script(TILES)


def tile_ids(driver):
    return [tile['id'] for tile in tiles(driver)]


def upload_rows(driver):
    return driver.execute_script(UPLOAD_ROWS)


def newest_first(http):
    return [document['id'] for document in http.get('/images?order=newest').json()]


def wait_for_listing(driver, http):
    """Wait until the page shows the server's listing, newest first."""
    wait_for(
        driver,
        lambda driver: tile_ids(driver) == newest_first(http),
        lambda driver: (
            f'.tile[data-id]: expected {newest_first(http)}, seen {tile_ids(driver)}'
        ),
    )


def choose_files(driver, paths):
    """Choose files in the upload form, as a user does in the file dialog."""
    field = driver.find_element(By.CSS_SELECTOR, '#upload input[type="file"]')
    field.send_keys('\n'.join(paths))


def load_every_tile(driver):
    wait_for(
        driver,
        lambda driver: not driver.execute_script(LOAD_EVERY_TILE),
        lambda driver: (
            '.tile img: expected naturalWidth > 0, seen 0 in the tiles '
            f'{driver.execute_script(LOAD_EVERY_TILE)}'
        ),
    )
    return tiles(driver)


def rendition_width(url, documents):
    """The width of the rendition a URL names, from the URL itself."""
    path = httpx.URL(url).path
    if match := THUMBNAIL.fullmatch(path):
        return int(match['width'])
    if match := ORIGINAL.fullmatch(path):
        return documents[match['id']]['size'][0]
    raise AssertionError(f'currentSrc is no picture of this service: {url}')


def assert_quiet_console(driver, allowed=()):
    """No SEVERE entry in the browser's log but those ``allowed`` patterns match;
    and none at all, of any level, about the page's Content-Security-Policy."""
    entries = driver.get_log('browser')
    refused = [entry for entry in entries if CSP_MESSAGE.search(entry['message'])]
    assert not refused, json.dumps({'Content-Security-Policy': refused}, indent=2)
    severe = [
        entry
        for entry in entries
        if entry['level'] == 'SEVERE'
        and not any(re.search(pattern, entry['message']) for pattern in allowed)
    ]
    warnings = [entry for entry in entries if entry['level'] == 'WARNING']
    assert not severe, json.dumps({'severe': severe, 'warnings': warnings}, indent=2)
    for entry in warnings:
        print(f'console warning: {entry["message"]}')


def deleted(image_id):
    """The console's line for a rendition of ``image_id`` answered ``404``.

    NOTE: A page may ask for another rendition of a picture in the instant
    it is deleted (its tile or the lightbox picking a size as the layout
    changes), before it hears of the deletion: ``404`` is then the right
    answer, and the only one these tests let pass.
    """
    return (
        rf'/thumbnails/{image_id}/\d+x\d+\.\w+\S* - Failed to load resource: '
        'the server responded with a status of 404'
    )


def open_lightbox(driver, image_id):
    """Click a tile, as a user does; wait until its lightbox is open, at the
    picture's page."""
    link = driver.find_element(By.CSS_SELECTOR, f'.tile[data-id="{image_id}"] a')
    page = link.get_attribute('href')
    link.click()
    wait_for(
        driver,
        lambda driver: driver.execute_script(LIGHTBOX)['id'] == image_id,
        lambda driver: (
            f'#lightbox: expected open on {image_id}, seen '
            f'{driver.execute_script(LIGHTBOX)}'
        ),
    )
    state = driver.execute_script(LIGHTBOX)
    assert driver.current_url == page, state
    assert state['focusInside'], state
    return state


def delete_through_lightbox(driver, image_id, screenshot):
    """Delete a picture as a user does: its lightbox, Delete, and the dialog."""
    open_lightbox(driver, image_id)
    driver.find_element(By.CSS_SELECTOR, '#lightbox button.delete').click()
    dialog = driver.find_element(By.ID, 'confirm-delete')
    wait_for(
        driver,
        lambda driver: dialog.get_attribute('open') is not None,
        lambda driver: '#confirm-delete: expected open',
    )
    screenshot(driver, f'delete-dialog-{driver.execute_script("return innerWidth;")}')
    dialog.find_element(By.CSS_SELECTOR, 'button[value="delete"]').click()


def wait_until_live(driver):
    wait_for(
        driver,
        lambda driver: (
            driver.find_element(By.ID, 'status').get_attribute('data-mode') == 'live'
        ),
        lambda driver: (
            '#status: expected data-mode="live", seen '
            + repr(driver.find_element(By.ID, 'status').get_attribute('outerHTML'))
        ),
    )


def mean_colour(element):
    image = PIL.Image.open(io.BytesIO(element.screenshot_as_png)).convert('RGB')
    width, height = image.size
    # The picture's own colour, well above its dark band.
    top = image.crop((width // 4, height // 8, width * 3 // 4, height // 3))
    return top.resize((1, 1), PIL.Image.Resampling.BOX).getpixel((0, 0))


def near(seen, expected, tolerance=40):
    expected = PIL.ImageColor.getrgb(expected)
    return all(abs(a - b) <= tolerance for a, b in zip(seen, expected, strict=True))


def sharpness(tile, documents, scale):
    """How many of its rendition's pixels a tile shows per device pixel.

    Fails if the tile is upscaled past :data:`UPSCALE` while a larger
    rendition than the one shown exists.
    """
    document = documents[tile['id']]
    # NOTE: Not naturalWidth, which is in CSS pixels: the rendition's width
    #   over its density (its width over the sizes that chose it).
    width = rendition_width(tile['currentSrc'], documents)
    ratio = width / (tile['shownWidth'] * scale)
    if ratio < 1 / UPSCALE:
        assert width == document['size'][0], ('upscaled', ratio, tile)
    return ratio


def test_the_gallery_keeps_each_pictures_shape_and_sharpness(
    browser, http, pictures, screenshot
):
    documents = {document['id']: document for document in pictures}
    colours = {
        document['id']: colour
        for document, colour in zip(pictures, COLOURS, strict=True)
    }
    chosen = {}
    for name, size, scale in (('narrow', NARROW, NARROW_SCALE), ('wide', WIDE, 1)):
        driver = browser(size, scale)
        wait_for_listing(driver, http)
        shown = load_every_tile(driver)
        screenshot(driver, f'gallery-{name}')
        gallery = driver.execute_script(
            "return document.getElementById('gallery').getBoundingClientRect();"
        )

        for tile in shown:
            document = documents[tile['id']]
            assert tile['href'] == document['page'], tile
            assert tile['loading'] == 'lazy', tile
            assert tile['srcset'] and tile['sizes'], tile
            assert [tile['width'], tile['height']] == [
                str(side) for side in document['size']
            ], tile
            # Whole: the tile has the picture's shape, within a pixel or two.
            width, height = document['size']
            assert abs(tile['shownWidth'] - tile['shownHeight'] * width / height) < 3
            assert tile['shownWidth'] <= gallery['width'], tile
            # Behind the thumbnail, shown until it loads: the placeholder.
            assert tile['placeholder'] == f'url("{document["placeholder"]}")', tile
            ratio = sharpness(tile, documents, scale)
            chosen.setdefault(name, []).append(
                (rendition_width(tile['currentSrc'], documents), round(ratio, 2))
            )
        print(
            f'{name} {size} x{scale}: (width, pixels per device pixel) {chosen[name]}'
        )
        # Never the original, for pictures this size.
        assert all(width < 2048 for width, _ in chosen[name]), chosen
        # The same URLs, in the format the browser takes best.
        types = served_types(driver)
        assert {types.get(tile['currentSrc']) for tile in shown} == {'image/avif'}, (
            name,
            types,
        )
        # Each tile shows its own picture, not a neighbour's.
        for tile in driver.find_elements(By.CSS_SELECTOR, '#gallery .tile'):
            seen = mean_colour(tile.find_element(By.TAG_NAME, 'img'))
            expected = colours[tile.get_attribute('data-id')]
            assert near(seen, expected), (name, seen, expected)
        assert_quiet_console(driver)


def test_uploads_appear_live_in_another_window_and_a_delete_vanishes_there(
    browser, http, pictures, screenshot, tmp_path
):
    uploader = browser(WIDE)
    watcher = browser(NARROW)
    for driver in (uploader, watcher):
        wait_for_listing(driver, http)
        wait_until_live(driver)
        # Kept by the page itself: it is lost if the page is reloaded.
        driver.execute_script(WATCH_STATUS)
    before = tile_ids(uploader)
    screenshot(watcher, 'live-narrow-watcher-before')

    sizes = {'landscape.jpg': (1600, 1200), 'portrait.jpg': (1200, 1600)}
    paths = []
    for (name, size), colour in zip(sizes.items(), ('#8e44ad', '#e67e22'), strict=True):
        path = tmp_path / name
        path.write_bytes(picture(colour, size))
        paths.append(str(path))
    choose_files(uploader, paths)

    def finished(driver):
        rows = upload_rows(driver)
        return len(rows) == 2 and all(
            'done' in row['classes'] and row['value'] == row['max'] for row in rows
        )

    wait_for(
        uploader,
        finished,
        lambda driver: (
            '#uploads li.upload: expected 2 rows with class "done" and their '
            f'progress at its max, seen {upload_rows(driver)}'
        ),
    )
    assert [row['name'] for row in upload_rows(uploader)] == list(sizes)
    new = newest_first(http)[:2]
    assert set(new).isdisjoint(before)

    def shows_the_new_tiles_first(driver):
        ids = tile_ids(driver)
        return set(ids[:2]) == set(new) and ids[2:] == before

    for driver in (uploader, watcher):
        wait_for(
            driver,
            shows_the_new_tiles_first,
            lambda driver: (
                f'.tile[data-id]: expected {new} (in either order) then {before}, '
                f'seen {tile_ids(driver)}'
            ),
        )
        shown = {tile['id']: tile for tile in load_every_tile(driver)}
        assert {
            (int(shown[id]['width']), int(shown[id]['height'])) for id in new
        } == set(sizes.values())
    # Only the uploading browser has the delete tokens.
    assert [tile['deletable'] for tile in tiles(uploader)] == [True, True] + [
        False
    ] * len(before)
    assert not any(tile['deletable'] for tile in tiles(watcher))
    screenshot(uploader, 'live-wide-uploaded')
    screenshot(watcher, 'live-narrow-watcher-uploaded')

    gone, kept = new
    delete_through_lightbox(uploader, gone, screenshot)
    for driver in (uploader, watcher):
        wait_for(
            driver,
            lambda driver: gone not in tile_ids(driver),
            lambda driver: (
                f'.tile[data-id="{gone}"]: expected gone, seen {tile_ids(driver)}'
            ),
        )
        assert tile_ids(driver) == [kept, *before]
    assert http.get(f'/images/{gone}.jpeg').status_code == 404
    # All through the event stream: no reload, no fallback to polling.
    for driver in (uploader, watcher):
        assert driver.execute_script('return window.statusChanges;') == [], (
            '#status: expected to stay "live", no reload'
        )
    screenshot(uploader, 'live-wide-deleted')
    screenshot(watcher, 'live-narrow-watcher-deleted')
    assert_quiet_console(uploader, [deleted(gone)])
    assert_quiet_console(watcher, [deleted(gone)])


def test_a_refused_file_says_why_beside_an_accepted_one(
    browser, http, pictures, screenshot, tmp_path
):
    fake = tmp_path / 'fake.jpg'
    fake.write_bytes(b'This is a shopping list, not a picture.\n')
    real = tmp_path / 'real.jpg'
    real.write_bytes(picture('#16a085', (1024, 768)))
    # What the server says of it, asked the way the form asks.
    refused = http.post(
        '/images', files={'image': ('fake.jpg', fake.read_bytes(), 'image/jpeg')}
    )
    assert refused.status_code // 100 == 4, refused.text
    description = refused.json()['description']

    driver = browser(NARROW)
    wait_for_listing(driver, http)
    choose_files(driver, [str(real), str(fake)])

    def settled(driver):
        rows = upload_rows(driver)
        return len(rows) == 2 and all(
            {'done', 'failed'} & set(row['classes']) for row in rows
        )

    wait_for(
        driver,
        settled,
        lambda driver: (
            '#uploads li.upload: expected 2 rows, each "done" or "failed", '
            f'seen {upload_rows(driver)}'
        ),
    )
    accepted, failed = upload_rows(driver)
    assert accepted['name'] == 'real.jpg', accepted
    assert 'done' in accepted['classes'], accepted
    assert accepted['value'] == accepted['max'], accepted
    assert failed['name'] == 'fake.jpg', failed
    assert 'failed' in failed['classes'], failed
    assert failed['error'] == description, failed
    wait_for_listing(driver, http)
    first = load_every_tile(driver)[0]
    assert first['deletable'], first
    assert rendition_width(first['currentSrc'], {}) <= 512, first
    screenshot(driver, 'refused-narrow')
    # The browser logs the refusal itself (the 4xx to the POST), as it should.
    assert_quiet_console(
        driver,
        allowed=[rf'/images - Failed to load resource: .* {refused.status_code}'],
    )


# Things the page's Content-Security-Policy must refuse, tried in the page:
# each is reported, none takes effect.
TRY_WHAT_THE_POLICY_REFUSES = """
const done = arguments[arguments.length - 1];
const seen = [];
document.addEventListener('securitypolicyviolation', (event) => {
  seen.push(event.effectiveDirective);
});
window.inlineRan = false;
const script = document.createElement('script');
script.textContent = 'window.inlineRan = true;';
document.body.append(script);
const styled = document.createElement('p');
styled.setAttribute('style', 'color: rgb(1, 2, 3)');
document.body.append(styled);
const outside = new Image();
outside.src = 'https://example.org/elsewhere.png';
fetch('https://example.org/data').catch(() => {});
setTimeout(() => done({
  seen: [...new Set(seen)].sort(),
  inlineRan: window.inlineRan,
  colour: getComputedStyle(styled).color,
  framed: window.top !== window,
}), 1000);
"""


def test_the_page_runs_under_its_policy_and_the_policy_holds(
    browser, http, pictures, screenshot
):
    driver = browser(WIDE)
    wait_for_listing(driver, http)
    load_every_tile(driver)
    wait_until_live(driver)
    # The page itself, its placeholders, thumbnails, listing and live events
    # included, needs nothing the policy refuses.
    assert_quiet_console(driver)
    tried = driver.execute_async_script(TRY_WHAT_THE_POLICY_REFUSES)
    screenshot(driver, 'policy-held')
    assert tried['inlineRan'] is False, tried
    assert tried['colour'] != 'rgb(1, 2, 3)', tried
    assert tried['seen'] == [
        'connect-src',
        'img-src',
        'script-src-elem',
        'style-src-attr',
    ], tried
    # Each refusal is in the console too, where the other tests look.
    messages = [entry['message'] for entry in driver.get_log('browser')]
    assert sum(bool(CSP_MESSAGE.search(message)) for message in messages) >= 3, messages


@pytest.fixture(scope='module')
def proxied(server, redis_server):
    """The same service under /gallery/: another uvicorn on its storage and
    Redis, with ``--root-path /gallery``, behind nginx stripping the prefix."""
    uvicorn = Uvicorn(
        server.storage, redis_server.url, '--workers', '2', '--root-path', PREFIX
    )
    nginx = Nginx(STRIPS, uvicorn.port)
    yield nginx
    assert nginx.stop() == 0
    assert uvicorn.stop() in (0, -signal.SIGTERM)


def test_the_gallery_works_under_a_path_prefix_behind_nginx(
    chromium, proxied, http, pictures, screenshot, tmp_path
):
    gallery = f'{proxied.url}{PREFIX}/'
    uploader = chromium(gallery, WIDE)
    watcher = chromium(gallery, NARROW)
    for driver in (uploader, watcher):
        wait_for_listing(driver, http)
        wait_until_live(driver)
        driver.execute_script(WATCH_STATUS)
    before = tile_ids(uploader)
    path = tmp_path / 'prefixed.jpg'
    path.write_bytes(picture('#1abc9c', (1200, 900)))

    choose_files(uploader, [str(path)])
    wait_for(
        uploader,
        lambda driver: (
            [row['classes'] for row in upload_rows(driver)] == [['upload', 'done']]
        ),
        lambda driver: (
            f'#uploads li.upload: expected one "done", seen {upload_rows(driver)}'
        ),
    )
    new = newest_first(http)[0]
    for driver in (uploader, watcher):
        # The watcher hears of it through /gallery/events.
        wait_for(
            driver,
            lambda driver: tile_ids(driver) == [new, *before],
            lambda driver: (
                f'.tile[data-id]: expected {[new, *before]}, seen {tile_ids(driver)}'
            ),
        )
        for tile in load_every_tile(driver):
            assert tile['href'].startswith(f'{PREFIX}/pictures/'), tile
            assert all(
                candidate.startswith(f'{PREFIX}/')
                for candidate in tile['srcset'].split(', ')
            ), tile
            assert httpx.URL(tile['currentSrc']).path.startswith(f'{PREFIX}/'), tile
            assert tile['naturalWidth'] > 0, tile
    screenshot(uploader, 'prefixed-wide-uploaded')
    screenshot(watcher, 'prefixed-narrow-watcher-uploaded')

    delete_through_lightbox(uploader, new, screenshot)
    for driver in (uploader, watcher):
        wait_for(
            driver,
            lambda driver: tile_ids(driver) == before,
            lambda driver: (
                f'.tile[data-id="{new}"]: expected gone, seen {tile_ids(driver)}'
            ),
        )
        assert driver.execute_script('return window.statusChanges;') == [], (
            '#status: expected to stay "live", no reload'
        )
        assert_quiet_console(driver, [deleted(new)])
    assert http.get(f'/images/{new}.jpeg').status_code == 404
    screenshot(watcher, 'prefixed-narrow-watcher-deleted')


# The lightbox and the picture's page, on a phone and on a laptop.


def lightbox_loaded(driver):
    state = driver.execute_script(LIGHTBOX)
    return state if state['complete'] and state['naturalWidth'] > 0 else None


def swipe(driver, dx, dy):
    """One finger across the lightbox's picture, by ``dx``, ``dy`` CSS pixels,
    as the touch screen reports it (Chromium's input events, not script)."""
    stage = driver.find_element(By.CSS_SELECTOR, '#lightbox .stage')
    box = driver.execute_script(
        'const r = arguments[0].getBoundingClientRect();'
        'return [r.left + r.width / 2, r.top + r.height / 2];',
        stage,
    )
    x, y = box[0] - dx / 2, box[1] - dy / 2
    for kind, points in (
        ('touchStart', [{'x': x, 'y': y}]),
        ('touchMove', [{'x': x + dx / 2, 'y': y + dy / 2}]),
        ('touchMove', [{'x': x + dx, 'y': y + dy}]),
        ('touchEnd', []),
    ):
        driver.execute_cdp_cmd(
            'Input.dispatchTouchEvent', {'type': kind, 'touchPoints': points}
        )
        # NOTE: A finger takes its time: events sent at once are taken for a
        #   tap, which clicks where it ends.
        time.sleep(0.05)


def until_lightbox(driver, key, value):
    """Wait until the lightbox's ``key`` (see :data:`LIGHTBOX`) is ``value``."""

    def reached(driver):
        state = driver.execute_script(LIGHTBOX)
        return state if state[key] == value else None

    return wait_for(
        driver,
        reached,
        lambda driver: (
            f'#lightbox: expected {key} {value!r}, seen '
            f'{driver.execute_script(LIGHTBOX)}'
        ),
    )


@pytest.mark.parametrize(
    ('name', 'size', 'scale'), [('narrow', NARROW, NARROW_SCALE), ('wide', WIDE, 1)]
)
def test_the_lightbox_is_the_pictures_page_and_back_closes_it(
    browser, http, pictures, screenshot, name, size, scale
):
    documents = {document['id']: document for document in pictures}
    driver = browser(size, scale)
    wait_for_listing(driver, http)
    # The 16:9 picture, and the 4:3 one uploaded before it: the next tile.
    first, second = pictures[1]['id'], pictures[0]['id']
    ids = tile_ids(driver)
    assert ids.index(second) == ids.index(first) + 1, ids
    open_lightbox(driver, first)
    state = wait_for(driver, lightbox_loaded, lambda driver: 'lightbox loading')
    screenshot(driver, f'lightbox-{name}')
    assert state['path'] == documents[first]['page'], state
    # The rendition for the size shown: sharp, and a thumbnail when one is
    # sharp enough, never the original.
    needed = state['shownWidth'] * scale
    width = rendition_width(state['currentSrc'], documents)
    assert width >= needed / UPSCALE, state
    assert '/thumbnails/' in state['currentSrc'], json.dumps(state)
    print(f'{name}: the lightbox shows {width} px across {needed} device px')
    assert state['copy'], state
    document = documents[first]
    # A JPEG's original is its JPEG, under the name it came with.
    assert document['original'] is None, document
    assert state['download'] == f'{document["image"]}?v={document["version"]}'
    assert state['downloadName'] == f'asgilook-{document["id"]}.jpeg', state
    assert state['deletable'] is False, state

    # The arrow keys and the buttons go through the pictures; the URL follows.
    # Keys go where focus is, as a user's do.
    keys = ActionChains(driver)
    keys.send_keys(Keys.ARROW_RIGHT).perform()
    until_lightbox(driver, 'id', second)
    assert driver.execute_script(LIGHTBOX)['path'] == documents[second]['page']
    screenshot(driver, f'lightbox-{name}-next')
    driver.find_element(By.CSS_SELECTOR, '#lightbox button.prev').click()
    until_lightbox(driver, 'path', documents[first]['page'])
    driver.find_element(By.CSS_SELECTOR, '#lightbox button.next').click()
    until_lightbox(driver, 'path', documents[second]['page'])
    # A finger's swipe to the right goes back, to the left forward; a short
    # or mostly vertical one does nothing.
    swipe(driver, 40, 0)
    swipe(driver, 120, 200)
    assert driver.execute_script(LIGHTBOX)['path'] == documents[second]['page']
    swipe(driver, 160, 10)
    until_lightbox(driver, 'path', documents[first]['page'])
    swipe(driver, -160, -10)
    until_lightbox(driver, 'path', documents[second]['page'])

    # Back closes it, at the gallery's URL; focus is on the tile last shown.
    # (Focus may come after the dialog's own, which goes back to where it was
    # when the lightbox opened: the first tile.)
    driver.back()
    state = until_lightbox(driver, 'id', None)
    assert state['path'] == '/', state
    state = until_lightbox(driver, 'focusedTile', second)
    assert state['id'] is None and state['path'] == '/', state
    screenshot(driver, f'lightbox-{name}-closed')

    # Escape closes it too, and so does the space around the picture; a
    # click on the picture does not.
    open_lightbox(driver, first)
    driver.find_element(By.CSS_SELECTOR, '#lightbox img').click()
    assert driver.execute_script(LIGHTBOX)['id'] == first
    keys.send_keys(Keys.ESCAPE).perform()
    until_lightbox(driver, 'path', '/')
    open_lightbox(driver, first)
    # Its top left corner, beside the picture.
    stage = driver.find_element(By.CSS_SELECTOR, '#lightbox .stage')
    ActionChains(driver).move_to_element_with_offset(
        stage, -stage.size['width'] // 2 + 3, -stage.size['height'] // 2 + 3
    ).click().perform()
    until_lightbox(driver, 'path', '/')
    assert driver.execute_script(LIGHTBOX)['focusedTile'] == first

    # The URL loaded as it is: the picture's page.
    driver.get(str(httpx.URL(driver.current_url).join(document['page'])))
    page = wait_for(
        driver,
        lambda driver: driver.execute_script(PAGE_PICTURE),
        lambda driver: "the page's picture never loaded",
    )
    screenshot(driver, f'page-{name}')
    assert '/thumbnails/' in page['currentSrc'], page
    width = rendition_width(page['currentSrc'], documents)
    assert width >= page['shownWidth'] * scale / UPSCALE, page
    print(f'{name}: the page shows {width} px across {page["shownWidth"] * scale}')
    assert page['copy'], page
    assert_quiet_console(driver)


# The picture of a picture's page, once loaded.
PAGE_PICTURE = """
const img = document.querySelector('figure.picture img');
if (!img || !img.complete || !img.naturalWidth) return null;
return {
  currentSrc: img.currentSrc,
  naturalWidth: img.naturalWidth,
  shownWidth: img.getBoundingClientRect().width,
  copy: document.getElementById('copy-link').checkVisibility(),
};
"""

# Paste a picture drawn in the page, as Ctrl+V of a screenshot does.
PASTE_A_PICTURE = """
const done = arguments[arguments.length - 1];
const canvas = document.createElement('canvas');
canvas.width = 800;
canvas.height = 500;
const context = canvas.getContext('2d');
context.fillStyle = '#8e44ad';
context.fillRect(0, 0, 800, 500);
canvas.toBlob((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], 'image.png', { type: 'image/png' }));
  document.dispatchEvent(new ClipboardEvent('paste', {
    clipboardData: data, bubbles: true, cancelable: true,
  }));
  done();
}, 'image/png');
"""


def test_a_pasted_picture_is_uploaded_and_offers_its_link(
    browser, http, pictures, screenshot
):
    driver = browser(NARROW, NARROW_SCALE)
    wait_for_listing(driver, http)
    before = tile_ids(driver)
    driver.execute_async_script(PASTE_A_PICTURE)
    wait_for(
        driver,
        lambda driver: (
            [row['classes'] for row in upload_rows(driver)] == [['upload', 'done']]
        ),
        lambda driver: f'#uploads: expected one "done", seen {upload_rows(driver)}',
    )
    new = newest_first(http)[0]
    assert new not in before
    document = http.get('/images?order=newest&limit=1').json()[0]
    assert document['size'] == [800, 500]
    row = driver.find_element(By.CSS_SELECTOR, '#uploads li.upload')
    assert row.find_element(By.CSS_SELECTOR, 'a.link-action').get_attribute(
        'href'
    ) == httpx.URL(driver.current_url).join(document['page'])
    row.find_element(By.CSS_SELECTOR, 'button.link-action').click()
    wait_for(
        driver,
        lambda driver: 'Link copied' in row.text or 'Copy failed' in row.text,
        lambda driver: f'#uploads: expected a copied link, seen {row.text!r}',
    )
    # The list scrolls on its own and takes keyboard focus to do so.
    region = driver.find_element(By.ID, 'upload-list')
    assert region.get_attribute('tabindex') == '0'
    assert region.get_attribute('role') == 'region'
    assert region.get_attribute('aria-label') == 'Uploads'
    wait_for(
        driver,
        lambda driver: tile_ids(driver) == [new, *before],
        lambda driver: f'.tile[data-id]: expected {new} first, seen {tile_ids(driver)}',
    )
    screenshot(driver, 'pasted-narrow')
    state = open_lightbox(driver, new)
    assert state['deletable'], state
    # A pasted picture is a PNG: its original is kept as it came, and the
    # download is that PNG, named by the server.
    assert document['original'], document
    assert state['download'] == f'{document["original"]}?v={document["version"]}'
    assert state['downloadName'] == '', state
    original = http.get(state['download'])
    assert original.headers['Content-Type'] == 'image/png'
    assert original.headers['Content-Disposition'].startswith('attachment;')
    assert original.content.startswith(b'\x89PNG')
    driver.find_element(By.CSS_SELECTOR, '#lightbox button.copy-link').click()
    wait_for(
        driver,
        lambda driver: driver.execute_script(LIGHTBOX)['said'],
        lambda driver: '#lightbox .said: expected what the copy did',
    )
    print(f'copy link: {driver.execute_script(LIGHTBOX)["said"]}')
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    until_lightbox(driver, 'id', None)
    delete_through_lightbox(driver, new, screenshot)
    wait_for(
        driver,
        lambda driver: tile_ids(driver) == before,
        lambda driver: (
            f'.tile[data-id="{new}"]: expected gone, seen {tile_ids(driver)}'
        ),
    )
    state = driver.execute_script(LIGHTBOX)
    assert (state['id'], state['path']) == (None, '/'), state
    assert http.get(document['page']).status_code == 404
    screenshot(driver, 'pasted-deleted-narrow')
    assert_quiet_console(driver)
