"""The gallery with upload keys, in a real headless Chromium: uvicorn with
``ASGI_LOOK_UPLOADS=keys``, keys made by ``asgilook keys add``, a real
redis-server for the keys' rates.

Each step's screenshot goes into the test's ``tmp_path``, to be looked at.
"""

import httpx
import pytest
import redis
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests import test_browser
from tests.servers import Uvicorn
from tests.test_browser import NARROW
from tests.test_browser import NARROW_SCALE
from tests.test_browser import WIDE
from tests.test_browser import assert_quiet_console
from tests.test_browser import choose_files
from tests.test_browser import delete_through_lightbox
from tests.test_browser import deleted
from tests.test_browser import lightbox_loaded
from tests.test_browser import open_lightbox
from tests.test_browser import picture
from tests.test_browser import tile_ids
from tests.test_browser import tiles
from tests.test_browser import until_lightbox
from tests.test_browser import upload_rows
from tests.test_browser import wait_for
from tests.test_sharing_e2e import keys_add

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# A fixture of test_browser's: headless Chromium windows, closed after the test.
chromium = test_browser.chromium

# NOTE: A database of the session's redis-server that no other test uses.
REDIS_DB = 8
# What the browser logs of the refusals these tests cause: the 401s that
# ask for a key (of an upload, of a wrong key checked), 413 and 429.
REFUSED = [
    r'/images - Failed to load resource: .* 401',
    r'/images\?limit=1 - Failed to load resource: .* 401',
]

# One tile as its owner sees it: its badge, its name, its picture loaded.
TILE = """
const tile = document.querySelector(`.tile[data-id="${arguments[0]}"]`);
if (!tile) return null;
const img = tile.querySelector('img');
img.scrollIntoView({block: 'center'});
return {
  alt: img.alt,
  badge: tile.querySelector('.badge')?.textContent ?? null,
  label: tile.querySelector('.label')?.textContent ?? null,
  loaded: img.complete && img.naturalWidth > 0,
  currentSrc: img.currentSrc,
  deletable: tile.dataset.mine === 'true',
};
"""

# How often the key dialog closes, from now on: once per question asked.
COUNT_DIALOGS = """
window.dialogsClosed = 0;
document.getElementById('key-dialog').addEventListener('close', () => {
  window.dialogsClosed += 1;
});
"""

# The upload key's controls and dialog, as a user sees them.
KEY_STATE = """
const dialog = document.getElementById('key-dialog');
return {
  open: dialog.open,
  focused: document.activeElement.id,
  error: document.getElementById('key-error').textContent,
  state: document.getElementById('key-state').textContent,
  use: document.getElementById('use-key').checkVisibility(),
  forget: document.getElementById('forget-key').checkVisibility(),
  kept: localStorage.getItem('asgilook.key'),
};
"""


@pytest.fixture(scope='module')
def keyed(tmp_path_factory, redis_server):
    """A service whose uploads need a key; its keys by name."""
    storage = tmp_path_factory.mktemp('keyed')
    # NOTE: Made before the service starts, as an operator would.
    keys = {
        'owner': keys_add(storage, 'owner'),
        'other': keys_add(storage, 'other'),
        'limited': keys_add(storage, 'limited', '--rate', '1'),
        'small': keys_add(storage, 'small', '--quota', '20KB'),
    }
    url = f'{redis_server.url}/{REDIS_DB}'
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    server = Uvicorn(storage, url, env={'ASGI_LOOK_UPLOADS': 'keys'})
    server.keys = keys
    yield server
    server.stop()


@pytest.fixture(scope='module')
def http(keyed):
    with httpx.Client(base_url=keyed.url, timeout=30) as client:
        yield client


def auth(key):
    return {'Authorization': f'Bearer {key}'}


@pytest.fixture(scope='module')
def others(keyed, http):
    """Another key's pictures: a public one, and a private one never shown
    to anyone else."""
    made = {}
    for visibility, colour in (('public', '#2471a3'), ('private', '#c0392b')):
        resp = http.post(
            '/images',
            files={'image': (f'{visibility}.jpg', picture(colour, (800, 600)))},
            data={'visibility': visibility},
            headers=auth(keyed.keys['other']),
        )
        assert resp.status_code == 201, resp.text
        made[visibility] = resp.json()
    return made


@pytest.fixture
def shoot(tmp_path):
    """Save what a browser shows now, as ``<name>.png`` in ``tmp_path``."""

    def save(driver, name):
        path = tmp_path / f'{name}.png'
        assert driver.save_screenshot(str(path)), path
        print(f'screenshot: {path}')
        return path

    return save


def listed(http, key=None):
    resp = http.get('/images?order=newest', headers=auth(key) if key else {})
    return [document['id'] for document in resp.json()]


def key_state(driver):
    return driver.execute_script(KEY_STATE)


def tile(driver, image_id):
    return driver.execute_script(TILE, image_id)


def wait_for_tiles(driver, expected):
    """Wait until the page shows exactly the pictures ``expected``, any order."""
    wait_for(
        driver,
        lambda driver: set(tile_ids(driver)) == set(expected),
        lambda driver: f'.tile[data-id]: expected {expected}, seen {tile_ids(driver)}',
    )


def wait_for_rows(driver, expected):
    """Wait until the upload rows' last classes are ``expected`` (done, failed),
    in any order; return the rows, in the order of ``expected``.

    NOTE: The gallery sends two uploads at once: which of two files chosen
    together reaches the server first (and takes a rate's one slot) is the
    network's to say.
    """

    def classes(driver):
        return sorted(row['classes'][-1] for row in upload_rows(driver))

    wait_for(
        driver,
        lambda driver: classes(driver) == sorted(expected),
        lambda driver: f'#uploads: expected {expected}, seen {upload_rows(driver)}',
    )
    rows = upload_rows(driver)
    return sorted(rows, key=lambda row: expected.index(row['classes'][-1]))


def wait_for_tile(driver, image_id, **expected):
    """Wait until tile ``image_id`` is shown, its picture loaded, as ``expected``."""

    def seen(driver):
        state = tile(driver, image_id)
        if state and state['loaded'] and expected.items() <= state.items():
            return state
        return None

    return wait_for(
        driver,
        seen,
        lambda driver: (
            f'tile {image_id}: expected {expected}, seen {tile(driver, image_id)}'
        ),
    )


def give_key(driver, key, submit=None):
    """Type ``key`` in the open key dialog; submit it with its button, or by
    typing ``submit`` after it."""
    field = driver.find_element(By.ID, 'key-input')
    field.clear()
    field.send_keys(key)
    if submit:
        field.send_keys(submit)
    else:
        driver.find_element(By.CSS_SELECTOR, '#key-form button[type="submit"]').click()


def wait_for_dialog(driver, is_open, focused=None):
    """The key dialog's state once it is open or closed, and focus has moved.

    Focus moves after the dialog closes: the browser first gives it back to
    the button that opened the dialog, then the page moves it on.
    """

    def settled(state):
        return state['open'] == is_open and focused in (None, state['focused'])

    return wait_for(
        driver,
        lambda driver: settled(state := key_state(driver)) and state,
        lambda driver: (
            f'#key-dialog: expected open {is_open} and focus on {focused}, '
            f'seen {key_state(driver)}'
        ),
    )


@pytest.mark.parametrize(
    ('name', 'size', 'scale'), [('phone', NARROW, NARROW_SCALE), ('desktop', WIDE, 1)]
)
def test_an_owner_uploads_with_a_key_and_sees_their_private_pictures(
    keyed, http, others, chromium, shoot, tmp_path, name, size, scale
):
    key = keyed.keys['owner']
    driver = chromium(keyed.url + '/', size, scale)
    wait_for_tiles(driver, listed(http))
    assert others['private']['id'] not in tile_ids(driver)
    state = key_state(driver)
    assert (state['use'], state['forget'], state['kept']) == (True, False, None)
    shoot(driver, f'{name}-1-gallery')

    # Two uploads without a key are refused; the page asks for one, once, in
    # a dialog with focus in its field.
    driver.execute_script(COUNT_DIALOGS)
    harbour = tmp_path / 'Harbour at dusk.jpg'
    harbour.write_bytes(picture('#229954', (1600, 1200)))
    boats = tmp_path / 'Boats.jpg'
    boats.write_bytes(picture('#2471a3', (1200, 1200)))
    choose_files(driver, [str(harbour), str(boats)])
    state = wait_for_dialog(driver, True)
    assert state['focused'] == 'key-input', state
    shoot(driver, f'{name}-2-asks-for-a-key')

    # A wrong key is said to be wrong, and asked again.
    give_key(driver, 'not-a-key-at-all')
    wait_for(
        driver,
        lambda driver: 'not accepted' in key_state(driver)['error'],
        lambda driver: f'#key-error: expected "not accepted", seen {key_state(driver)}',
    )
    state = key_state(driver)
    assert state['open'] and state['kept'] is None, state
    shoot(driver, f'{name}-3-wrong-key')

    # The right one (Enter submits it): kept, and both uploads go again with it.
    give_key(driver, key, Keys.ENTER)
    state = wait_for_dialog(driver, False)
    assert state['kept'] == key, state
    assert (state['use'], state['forget']) == (False, True), state
    wait_for_rows(driver, ['done', 'done'])
    assert driver.execute_script('return window.dialogsClosed;') == 1
    documents = http.get('/images?limit=2&order=newest', headers=auth(key)).json()
    by_name = {document['name']: document for document in documents}
    assert set(by_name) == {'Harbour at dusk.jpg', 'Boats.jpg'}, documents
    assert {document['visibility'] for document in documents} == {'public'}
    uploaded = by_name['Harbour at dusk.jpg']['id']
    assert uploaded in listed(http)  # public: everyone's listing has it
    state = wait_for_tile(driver, uploaded, deletable=True)
    assert (state['alt'], state['badge']) == ('Harbour at dusk.jpg', None), state
    assert set(tile_ids(driver)[:2]) == {document['id'] for document in documents}
    mine = listed(http, key)
    shoot(driver, f'{name}-4-uploaded')

    # The key stays through a reload.
    driver.refresh()
    wait_for_tiles(driver, set(listed(http)) | set(mine))
    state = key_state(driver)
    assert (state['kept'], state['use'], state['forget']) == (key, False, True), state
    wait_for_tile(driver, uploaded, deletable=True)
    shoot(driver, f'{name}-5-reloaded')

    # A private upload: no key asked; its tile has its badge, and its
    # picture loads, through a signed link.
    Select(driver.find_element(By.ID, 'visibility')).select_by_value('private')
    secret = tmp_path / 'Secret.jpg'
    secret.write_bytes(picture('#d4ac0d', (1200, 1800)))
    choose_files(driver, [str(secret)])
    wait_for_rows(driver, ['done'])
    assert not key_state(driver)['open']
    private = listed(http, key)[0]
    assert private not in listed(http)
    state = wait_for_tile(driver, private, badge='Private', alt='Secret.jpg')
    assert 'signature=' in state['currentSrc'], state
    assert state['deletable'], state
    shoot(driver, f'{name}-6-private-uploaded')

    # After a reload it comes from the key's own listing.
    driver.refresh()
    wait_for_tiles(driver, set(listed(http)) | set(listed(http, key)))
    state = wait_for_tile(driver, private, badge='Private', deletable=True)
    assert 'signature=' in state['currentSrc'], state
    shoot(driver, f'{name}-7-private-reloaded')
    state = open_lightbox(driver, private)
    state = wait_for(driver, lightbox_loaded, lambda driver: 'lightbox loading')
    assert state['caption'].startswith('Secret.jpg · 1200 × 1800 pixels'), state
    assert state['caption'].endswith(' · Private'), state
    assert state['deletable'], state
    assert 'signature=' in state['currentSrc'], state
    shoot(driver, f'{name}-8-private-lightbox')
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    until_lightbox(driver, 'id', None)

    # Another browser, without the key, never sees it.
    stranger = chromium(keyed.url + '/', size, scale)
    wait_for_tiles(stranger, listed(http))
    assert private not in tile_ids(stranger)
    assert not any(tile['deletable'] for tile in tiles(stranger))
    shoot(stranger, f'{name}-9-stranger')

    # Its owner deletes it, with the key: no delete token needed.
    signed = http.get('/images', headers=auth(key)).json()
    link = next(doc['image'] for doc in signed if doc['id'] == private)
    assert http.get(link).status_code == 200
    driver.execute_script("localStorage.removeItem('asgilook.tokens');")
    delete_through_lightbox(driver, private, shoot)
    wait_for(
        driver,
        lambda driver: private not in tile_ids(driver),
        lambda driver: f'tile {private}: expected gone, seen {tile_ids(driver)}',
    )
    assert private not in listed(http, key)
    assert http.get(link).status_code == 404
    shoot(driver, f'{name}-10-private-deleted')

    # An unlisted upload has its badge; forgetting the key takes it away.
    Select(driver.find_element(By.ID, 'visibility')).select_by_value('unlisted')
    choose_files(driver, [str(secret)])
    wait_for_rows(driver, ['done'])
    unlisted = listed(http, key)[0]
    wait_for_tile(driver, unlisted, badge='Unlisted')
    shoot(driver, f'{name}-11-unlisted')
    driver.find_element(By.ID, 'forget-key').click()
    wait_for_tiles(driver, listed(http))
    state = key_state(driver)
    assert (state['kept'], state['use'], state['forget']) == (None, True, False), state
    assert state['focused'] == 'use-key', state
    shoot(driver, f'{name}-12-key-forgotten')
    for browser in (driver, stranger):
        assert_quiet_console(browser, [*REFUSED, deleted(private)])


def test_a_keys_rate_and_quota_say_why_beside_the_file(
    keyed, http, others, chromium, shoot, tmp_path
):
    driver = chromium(keyed.url + '/', NARROW, NARROW_SCALE)
    wait_for_tiles(driver, listed(http))
    # A key given before any upload, from its button.
    driver.find_element(By.ID, 'use-key').click()
    wait_for_dialog(driver, True)
    give_key(driver, keyed.keys['limited'])
    state = wait_for_dialog(driver, False, 'forget-key')
    assert state['kept'] == keyed.keys['limited'], state

    paths = []
    for index, colour in enumerate(('#8e44ad', '#e67e22')):
        path = tmp_path / f'rate-{index}.jpg'
        path.write_bytes(picture(colour, (640, 480)))
        paths.append(str(path))
    choose_files(driver, paths)
    first, second = wait_for_rows(driver, ['done', 'failed'])
    # One a minute: the second waits, and says for how long.
    assert 'may upload 1 pictures a minute; try again in' in second['error'], second
    assert 'Try again' in second['text'], second
    shoot(driver, 'phone-rate-limited')

    # Another key, whose quota the next picture is too large for.
    driver.find_element(By.ID, 'forget-key').click()
    driver.find_element(By.ID, 'use-key').click()
    wait_for_dialog(driver, True)
    give_key(driver, keyed.keys['small'])
    wait_for_dialog(driver, False)
    large = tmp_path / 'large.jpg'
    large.write_bytes(picture('#16a085', (1600, 1200)))
    choose_files(driver, [str(large)])
    rows = wait_for_rows(driver, ['done', 'failed', 'failed'])
    # The new row is the newest: the list keeps the order files were chosen.
    error = upload_rows(driver)[-1]['error']
    assert error.startswith('The upload key "small" may keep 20 kB of pictures'), rows
    assert 'is left' in error, rows
    shoot(driver, 'phone-over-quota')
    assert_quiet_console(
        driver, [*REFUSED, r'/images - Failed to load resource: .* 4(13|29)']
    )
