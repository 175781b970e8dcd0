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
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.nginx import PREFIX
from tests.nginx import STRIPS
from tests.nginx import Nginx
from tests.servers import Uvicorn

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
TIMEOUT = 30
NARROW = (400, 800)
WIDE = (1600, 1000)
# Distinct colours, so that a tile can be told apart from its neighbours.
COLOURS = ('#c0392b', '#2471a3', '#229954', '#d4ac0d')
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
    deletable: tile.querySelector('button.delete') !== null,
    placeholder: getComputedStyle(img).backgroundImage,
  };
});
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

    def open_page(url, size):
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
            '--force-device-scale-factor=1',
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
            {'width': width, 'height': height, 'deviceScaleFactor': 1, 'mobile': False},
        )
        driver.get(url)
        assert driver.execute_script('return [innerWidth, innerHeight];') == [
            width,
            height,
        ]
        return driver

    yield open_page
    for driver in drivers:
        driver.quit()


@pytest.fixture
def browser(server, chromium):
    """Open a headless Chromium on the gallery, ``size`` its window's (w, h)."""

    def open_gallery(size):
        return chromium(server.url + '/', size)

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
    """Four pictures uploaded over HTTP, oldest first, their AVIF rendered."""
    documents = []
    for colour in COLOURS:
        resp = http.post('/images', content=picture(colour))
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


def test_the_gallery_serves_small_thumbnails_narrow_and_larger_ones_wide(
    browser, http, pictures, screenshot
):
    documents = {document['id']: document for document in pictures}
    colours = {
        document['id']: colour
        for document, colour in zip(pictures, COLOURS, strict=True)
    }
    chosen = {}
    for name, size in (('narrow', NARROW), ('wide', WIDE)):
        driver = browser(size)
        wait_for_listing(driver, http)
        shown = load_every_tile(driver)
        screenshot(driver, f'gallery-{name}')

        for tile in shown:
            document = documents[tile['id']]
            assert tile['href'].split('?')[0] == document['image'], tile
            assert tile['loading'] == 'lazy', tile
            assert tile['srcset'] and tile['sizes'], tile
            assert [tile['width'], tile['height']] == [
                str(side) for side in document['size']
            ], tile
            assert tile['naturalWidth'] > 0, tile
            # Behind the thumbnail, shown until it loads: the placeholder.
            assert tile['placeholder'] == f'url("{document["placeholder"]}")', tile
            width = rendition_width(tile['currentSrc'], documents)
            # Sharp: at least as many pixels across as the tile shows.
            assert width >= tile['shownWidth'], (name, tile)
            chosen.setdefault(name, []).append(width)
        print(f'{name} {size}: currentSrc widths {chosen[name]}')
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

    assert max(chosen['narrow']) <= 512, chosen
    assert min(chosen['wide']) > max(chosen['narrow']), chosen


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
    uploader.find_element(
        By.CSS_SELECTOR, f'.tile[data-id="{gone}"] button.delete'
    ).click()
    WebDriverWait(uploader, TIMEOUT).until(expected_conditions.alert_is_present())
    uploader.switch_to.alert.accept()
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
    assert_quiet_console(uploader)
    assert_quiet_console(watcher)


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
            assert tile['href'].startswith(f'{PREFIX}/images/'), tile
            assert all(
                candidate.startswith(f'{PREFIX}/')
                for candidate in tile['srcset'].split(', ')
            ), tile
            assert httpx.URL(tile['currentSrc']).path.startswith(f'{PREFIX}/'), tile
            assert tile['naturalWidth'] > 0, tile
    screenshot(uploader, 'prefixed-wide-uploaded')
    screenshot(watcher, 'prefixed-narrow-watcher-uploaded')

    uploader.find_element(
        By.CSS_SELECTOR, f'.tile[data-id="{new}"] button.delete'
    ).click()
    WebDriverWait(uploader, TIMEOUT).until(expected_conditions.alert_is_present())
    uploader.switch_to.alert.accept()
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
        assert_quiet_console(driver)
    assert http.get(f'/images/{new}.jpeg').status_code == 404
    screenshot(watcher, 'prefixed-narrow-watcher-deleted')
