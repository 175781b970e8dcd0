// asgilook's gallery: the listing page by page in justified rows, a
// lightbox whose URL is the picture's page, uploads (chosen, dropped or
// pasted) with progress, deletion with the tokens this browser was given, an
// upload key kept for uploads that need one (its own pictures listed too,
// private and unlisted ones included), and live updates.
(() => {
  'use strict';

  // The service's root: '/', or its path prefix ('/gallery/') behind a
  // proxy. The page loads this script from <root>static/, wherever it is.
  const ROOT = new URL('..', document.currentScript.src).pathname;
  /** The URL of a path of the service: 'events', or a document's '/images/…'. */
  const at = (path) => ROOT + path.replace(/^\//, '');

  const PAGE_SIZE = 30;
  const FIRST_PAGE = at(`images?order=newest&limit=${PAGE_SIZE}`);
  const POLL_MS = 10_000;
  const RETRY_LIVE_MS = 30_000;
  // One or two at a time: the server decodes only a few pictures at once,
  // and a long queue of parallel uploads would only split the bandwidth.
  const PARALLEL_UPLOADS = 2;
  const TOKENS_KEY = 'asgilook.tokens';
  const UPLOAD_KEY = 'asgilook.key';
  // How much upscaling a rendition may take rather than one twice as large
  // (four times the bytes) be loaded: 15 %, which no one sees in a photo.
  const UPSCALE = 1.15;

  const $ = (selector) => document.querySelector(selector);
  const gallery = $('#gallery');
  const sentinel = $('#more');
  const statusLine = $('#status');
  const notice = $('#notice');
  const empty = $('#empty');
  const form = $('#upload');
  const fileInput = form.querySelector('input[type="file"]');
  const uploadList = $('#uploads');
  const uploadRegion = $('#upload-list');
  const clearUploads = $('#clear-uploads');
  const lightbox = $('#lightbox');
  const lightboxImage = lightbox.querySelector('img');
  const stage = lightbox.querySelector('.stage');
  const said = lightbox.querySelector('.said');
  const confirmDelete = $('#confirm-delete');
  const visibilityChoice = $('#visibility');
  const keyState = $('#key-state');
  const useKey = $('#use-key');
  const forgetKeyButton = $('#forget-key');
  const keyDialog = $('#key-dialog');
  const keyForm = $('#key-form');
  const keyInput = $('#key-input');
  const keyError = $('#key-error');
  const keyText = $('#key-text');
  // What the key dialog says, when it is opened from its button.
  const KEY_INTRO = keyText.textContent;

  /** id -> {doc, tile} for every picture on the page. */
  const shown = new Map();
  /** Ids known to be deleted: a listing fetched before the deletion must not bring them back. */
  const gone = new Set();
  /** Ids of the pictures the upload key kept here owns: from its listing, or uploaded with it. */
  const owned = new Set();
  // NOTE: Held here too (see readKey): without storage, it lasts as long as the page.
  let uploadKey = readKey();

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    // NOTE: In the order given: an img must have loading="lazy" before its
    //   src, or it starts loading at once.
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== undefined && value !== null) node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  // A document names its pictures by their paths, the root included; a
  // private picture's are signed, their query already begun.
  const versioned = (doc, uri) => `${uri}${uri.includes('?') ? '&' : '?'}v=${doc.version}`;
  const srcset = (doc) => doc.srcset;

  const isPublic = (doc) => (doc.visibility ?? 'public') === 'public';
  const BADGES = { private: 'Private', unlisted: 'Unlisted' };

  /** The picture's size and date, in words. */
  function sizeAndDate(doc) {
    const [width, height] = doc.size;
    const when = new Date(doc.modified);
    const date = Number.isNaN(when.getTime())
      ? doc.modified
      : when.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
    return `${width} × ${height} pixels, uploaded ${date}`;
  }

  /** The picture's alt text: the name it was uploaded under, if it has one. */
  function describe(doc) {
    return doc.name || `Picture of ${sizeAndDate(doc)}`;
  }

  /** The lightbox's caption: the name, the size and date, who may see it. */
  function caption(doc) {
    const parts = [doc.name, doc.name ? sizeAndDate(doc) : describe(doc), BADGES[doc.visibility]];
    return parts.filter(Boolean).join(' · ');
  }

  // Delete tokens

  function readTokens() {
    try {
      return JSON.parse(localStorage.getItem(TOKENS_KEY)) || {};
    } catch {
      return {};
    }
  }

  function writeTokens(tokens) {
    try {
      localStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
    } catch {
      // Storage full or disabled: the picture is there all the same, only
      // this browser cannot offer to delete it.
    }
  }

  function keepToken(id, token) {
    writeTokens({ ...readTokens(), [id]: token });
    const entry = shown.get(id);
    if (entry) markMine(entry.tile);
  }

  function forgetToken(id) {
    const tokens = readTokens();
    if (id in tokens) {
      delete tokens[id];
      writeTokens(tokens);
    }
  }

  // Tiles, in justified rows: each picture whole, at its own aspect ratio;
  // every row but the last exactly as wide as the gallery.

  const aspect = (doc) => doc.size[0] / doc.size[1];

  /** The widths of doc's renditions, smallest first, as its srcset says. */
  const widths = (doc) => doc.srcset.split(', ').map((source) => parseInt(source.split(' ')[1], 10));

  /**
   * The ``sizes`` that makes the browser load the right rendition for a
   * picture `width` CSS pixels wide: the smallest with the screen's pixels
   * (within UPSCALE), else the largest.
   *
   * NOTE: Chosen here, not left to the browser with the displayed width:
   *   Chromium takes a candidate below the screen's density when the
   *   geometric mean of it and the next one up is above it, so with a series
   *   that halves, pictures came out up to 1.41 times upscaled. A ``sizes`` of
   *   the chosen width over the density (a hair less) is a density just
   *   above the screen's for that candidate, and below it for the one before:
   *   the browser picks it. Tiles and the lightbox's picture have their size
   *   set in CSS, so ``sizes`` sizes nothing else.
   */
  function sizesFor(doc, width) {
    const density = window.devicePixelRatio || 1;
    const needed = width * density;
    const all = widths(doc);
    const chosen = all.find((side) => side * UPSCALE >= needed) ?? all.at(-1);
    return `${((chosen / density) * 0.999).toFixed(2)}px`;
  }
  // How much lower and higher than the rows aim at a full row may be.
  const SHORTEST = 0.55;
  const TALLEST = 1.5;

  /** The height rows aim at, by the window's width. */
  function rowHeight() {
    if (window.innerWidth <= 600) return 150;
    if (window.innerWidth <= 1000) return 200;
    return 260;
  }

  // What rows are laid out in: the gallery's width (whole pixels, rounded
  // down: a row a fraction wider than the gallery would wrap), the gap
  // between tiles, and the height rows aim at.
  // NOTE: A tile is made with the height kept here, not asked of the window:
  //   asked for each tile added (window.innerWidth), it made the browser lay
  //   the page out again for each, most of a slow phone's first second. The
  //   width is measured once more for each layout (see layOut).
  const room = { width: 0, gap: 0, aim: 0 };

  function measure() {
    room.width = Math.floor(gallery.getBoundingClientRect().width);
    room.gap = parseFloat(getComputedStyle(gallery).columnGap) || 0;
    room.aim = rowHeight();
  }

  function makeTile(doc) {
    if (!room.aim) measure();
    const width = Math.round(aspect(doc) * room.aim);
    const img = el('img', {
      loading: 'lazy',
      decoding: 'async',
      width: doc.size[0],
      height: doc.size[1],
      // Until the rows are laid out (at once: see layOut).
      sizes: sizesFor(doc, width),
      srcset: srcset(doc),
      src: versioned(doc, doc.thumbnails.at(-1) ?? doc.image),
      alt: describe(doc),
    });
    // The placeholder, a tiny picture stretched (and so blurred) over the
    // tile until the thumbnail covers it.
    if (doc.placeholder) img.style.backgroundImage = `url("${doc.placeholder}")`;
    const link = el('a', { href: doc.page }, img);
    // Who may see it, for its owner: a badge read out with the link. The
    // name is the picture's alt text already: shown, not read twice.
    if (BADGES[doc.visibility]) {
      link.append(el('span', { class: `badge ${doc.visibility}` }, BADGES[doc.visibility]));
    }
    if (doc.name) link.append(el('span', { class: 'label', 'aria-hidden': 'true' }, doc.name));
    const tile = el('li', { class: 'tile', 'data-id': doc.id }, link);
    markMine(tile);
    return tile;
  }

  /** Whether this browser may delete the tile's picture: its delete token,
   * or the upload key it keeps owns it. */
  function markMine(tile) {
    const id = tile.dataset.id;
    tile.dataset.mine = String(Boolean(readTokens()[id]) || owned.has(id));
    if (lightbox.open && lightbox.dataset.id === id) showActions();
  }

  let laidOutAt = 0; // the gallery's width at the last layout
  let layoutDue = false;

  /** Lay the rows out once the current task's changes are made. */
  function layOutSoon() {
    if (layoutDue) return;
    layoutDue = true;
    queueMicrotask(layOut);
  }

  function layOut() {
    layoutDue = false;
    // NOTE: Measured now, with the new tiles in the page, not kept from the
    //   last layout: the first page of tiles brings a scroll bar, which makes
    //   the gallery narrower. Rows laid out for the width before it were
    //   painted, then laid out again: every tile moved (a layout shift of 0.36
    //   on a laptop's screen).
    measure();
    const { width, gap, aim: target } = room;
    if (width <= 0) return;
    laidOutAt = width;
    let row = [];
    let ratios = 0;
    for (const tile of gallery.children) {
      const ratio = aspect(shown.get(tile.dataset.id).doc);
      const free = width - gap * row.length;
      const height = free / (ratios + ratio);
      if (height > target) {
        row.push([tile, ratio]);
        ratios += ratio;
        continue;
      }
      // Full with this picture. If that makes the row much lower than the
      // rows aim at (a portrait beside a panorama), the row ends before it:
      // filled, if it is not then much higher; else as high as rows aim at.
      if (row.length && height < SHORTEST * target) {
        const without = (free + gap) / ratios;
        if (without <= TALLEST * target) placeRow(row, without, free + gap);
        else placeRow(row, target, null);
        row = [[tile, ratio]];
        ratios = ratio;
        continue;
      }
      row.push([tile, ratio]);
      placeRow(row, height, free);
      row = [];
      ratios = 0;
    }
    // The last row keeps the height rows aim at, short of the full width.
    if (row.length) {
      const free = width - gap * (row.length - 1);
      if (free / ratios <= target) placeRow(row, free / ratios, free);
      else placeRow(row, target, null);
    }
  }

  /** Size a row's tiles to ``height``; ``free`` is the width they fill, if full. */
  function placeRow(row, height, free) {
    let left = free;
    row.forEach(([tile, ratio], index) => {
      const last = index === row.length - 1;
      const width = free !== null && last ? left : Math.floor(ratio * height);
      left -= width;
      tile.style.width = `${width}px`;
      tile.style.height = `${Math.round(height)}px`;
      // The rendition the browser picks is for this tile's own width.
      tile.querySelector('img').sizes = sizesFor(shown.get(tile.dataset.id).doc, width);
    });
  }

  // Called once the page is laid out, and whenever the gallery's width
  // changes: the window resized, a scroll bar come or gone.
  new ResizeObserver(() => {
    measure();
    if (room.width !== laidOutAt) layOut();
  }).observe(gallery);

  /** Show doc's tile before `before` (null: at the end), unless it is shown already. */
  function addTile(doc, before = null) {
    const entry = shown.get(doc.id);
    if (entry) return entry.tile;
    if (gone.has(doc.id)) return null;
    const tile = makeTile(doc);
    gallery.insertBefore(tile, before);
    shown.set(doc.id, { doc, tile });
    updateEmpty();
    layOutSoon();
    return tile;
  }

  /** Take a picture's tile away: deleted, unless `deleted` is false (no
   * longer to be listed here, as when its key is forgotten). */
  function removeTile(id, deleted = true) {
    if (deleted) gone.add(id);
    const entry = shown.get(id);
    if (!entry) return;
    // A picture deleted just after it appeared may still be loading: cancel
    // that, or its 404 would land in the console.
    const img = entry.tile.querySelector('img');
    img.removeAttribute('srcset');
    img.removeAttribute('src');
    if (lightbox.open && lightbox.dataset.id === id) {
      // Its picture too, now: the lightbox lets go of it only once closed.
      lightboxImage.removeAttribute('srcset');
      lightboxImage.removeAttribute('src');
      // Focus goes to a neighbour, once the lightbox has closed.
      const neighbour = entry.tile.nextElementSibling ?? entry.tile.previousElementSibling;
      lightbox.dataset.id = neighbour?.dataset.id ?? '';
      closeLightbox();
    }
    entry.tile.remove();
    shown.delete(id);
    updateEmpty();
    layOutSoon();
  }

  let listed = false; // whether the first page has been shown

  function updateEmpty() {
    empty.hidden = !listed || shown.size > 0;
  }

  // The listing

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorMessage(resp) {
    try {
      const body = await resp.json();
      return body.description || body.title || `${resp.status} ${resp.statusText}`;
    } catch {
      return `${resp.status} ${resp.statusText}`;
    }
  }

  /** The headers of a request made with upload key `key`, if any. */
  const withKey = (key, headers = {}) => (key ? { ...headers, Authorization: `Bearer ${key}` } : headers);

  /** A page of the listing: everyone's, or with `key`, the key's own. */
  async function fetchPage(url, key = null) {
    const resp = await fetch(url, { headers: withKey(key, { Accept: 'application/json' }) });
    if (!resp.ok) throw new HttpError(resp.status, await errorMessage(resp));
    const next = /<([^>]*)>\s*;\s*rel="?next"?/.exec(resp.headers.get('Link') ?? '');
    return { docs: await resp.json(), next: next ? next[1] : null };
  }

  function showNotice(message) {
    notice.textContent = message;
    notice.hidden = !message;
  }

  let nextPage = null;
  let syncing = null;

  /** Bring the first page up to date: add what is new, drop what is gone;
   * then the same for the key's own pictures. */
  function sync() {
    syncing ??= syncFirstPage().then(syncOwn).finally(() => { syncing = null; });
    return syncing;
  }

  async function syncFirstPage() {
    // Only these can be found deleted: a tile added by an event while the
    // page was on its way may simply be newer than the page.
    const before = new Set(shown.keys());
    let page;
    try {
      page = await fetchPage(FIRST_PAGE);
    } catch (ex) {
      showNotice(`The pictures could not be loaded: ${ex.message}`);
      return;
    }
    showNotice('');
    const ids = new Set(page.docs.map((doc) => doc.id));
    // Each new picture goes right after the one before it in the page, so
    // the order holds whatever is already shown.
    let previous = null;
    for (const doc of page.docs) {
      previous = addTile(doc, previous ? previous.nextSibling : gallery.firstChild) ?? previous;
    }
    // What the page covers: down to its last picture shown, or everything
    // when no page follows it. What else was shown in that range is deleted.
    const last = page.next ? previous : null;
    // Only public pictures are in it: the others are the key's to list.
    if (last || !page.next) {
      for (const tile of [...gallery.children]) {
        const id = tile.dataset.id;
        if (!ids.has(id) && before.has(id) && isPublic(shown.get(id).doc)) removeTile(id);
        if (tile === last) break;
      }
    }
    if (!listed || !page.next) nextPage = page.next;
    listed = true;
    placePending();
    updateEmpty();
    watchSentinel();
  }

  let loadingMore = false;

  /** The next page of the listing, and of the key's own pictures. */
  async function loadMore() {
    if (loadingMore || !listed || !(nextPage || ownNext)) return;
    loadingMore = true;
    try {
      if (nextPage) await loadMorePublic();
      if (ownNext) await loadMoreOwn();
    } finally {
      loadingMore = false;
    }
    placePending();
    watchSentinel();
  }

  async function loadMorePublic() {
    let page;
    try {
      page = await fetchPage(nextPage).catch((ex) => {
        // The page's cursor was deleted meanwhile: go on from the last
        // public picture still shown instead.
        const lastTile = [...gallery.children].findLast((tile) => isPublic(shown.get(tile.dataset.id).doc));
        if (ex.status !== 400 || !lastTile) throw ex;
        const after = encodeURIComponent(lastTile.dataset.id);
        return fetchPage(`${FIRST_PAGE}&after=${after}`);
      });
    } catch (ex) {
      showNotice(`More pictures could not be loaded: ${ex.message}`);
      return;
    }
    showNotice('');
    for (const doc of page.docs) addTile(doc);
    nextPage = page.next;
  }

  const nearTheEnd = new IntersectionObserver(
    (entries) => { if (entries.some((entry) => entry.isIntersecting)) loadMore(); },
    { rootMargin: '0px 0px 800px 0px' },
  );

  function watchSentinel() {
    // Observing again reports the sentinel afresh: while it stays in view
    // (a short page, a tall screen) no new intersection would be reported.
    nearTheEnd.unobserve(sentinel);
    if (nextPage || ownNext) nearTheEnd.observe(sentinel);
  }

  // The upload key's own pictures. Everyone's listing has the public ones;
  // the key's own listing adds its unlisted and private ones, merged in by
  // date, their links signed afresh at every sync.

  let ownNext = null; // the key's listing's next page
  let ownListed = false; // whether its first page has been shown
  /** Own pictures older than every tile, while the listing has more pages. */
  const pending = [];

  const takenAt = (doc) => Date.parse(doc.modified) || 0;

  /** Show one of the key's pictures: a public one comes with the listing. */
  function placeOwn(doc) {
    owned.add(doc.id);
    const entry = shown.get(doc.id);
    if (entry) {
      refresh(entry, doc);
      markMine(entry.tile);
      return;
    }
    if (isPublic(doc) || gone.has(doc.id)) return;
    const when = takenAt(doc);
    const older = [...gallery.children].find((tile) => takenAt(shown.get(tile.dataset.id).doc) < when);
    if (older || !nextPage) addTile(doc, older ?? null);
    else pending.push(doc);
  }

  /** A private picture's document anew: its links signed for longer. */
  function refresh(entry, doc) {
    if (isPublic(doc) || doc.srcset === entry.doc.srcset) return;
    entry.doc = doc;
    const img = entry.tile.querySelector('img');
    img.srcset = srcset(doc);
    img.src = versioned(doc, doc.thumbnails.at(-1) ?? doc.image);
    entry.tile.querySelector('a').href = doc.page;
  }

  function placePending() {
    for (const doc of pending.splice(0)) placeOwn(doc);
  }

  async function syncOwn() {
    const key = uploadKey;
    if (!key) return;
    const before = new Set(shown.keys());
    let page;
    try {
      page = await fetchPage(FIRST_PAGE, key);
    } catch (ex) {
      if (ex.status === 401 && key === uploadKey) {
        forgetKey();
        showNotice(`Your upload key was forgotten: ${ex.message}`);
      }
      return;
    }
    if (key !== uploadKey) return;
    // What the page covers (down to its oldest, or everything) and does not
    // have is deleted, if it was there before the page was asked for.
    const ids = new Set(page.docs.map((doc) => doc.id));
    const oldest = page.next ? takenAt(page.docs.at(-1)) : -Infinity;
    for (const { doc } of [...shown.values()]) {
      const covered = owned.has(doc.id) && !isPublic(doc) && takenAt(doc) >= oldest;
      if (covered && before.has(doc.id) && !ids.has(doc.id)) removeTile(doc.id);
    }
    for (const doc of page.docs) placeOwn(doc);
    if (!ownListed || !page.next) ownNext = page.next;
    ownListed = true;
    updateEmpty();
    watchSentinel();
  }

  async function loadMoreOwn() {
    const key = uploadKey;
    try {
      const page = await fetchPage(ownNext, key);
      if (key !== uploadKey) return;
      for (const doc of page.docs) placeOwn(doc);
      ownNext = page.next;
    } catch {
      // Its cursor was deleted, or the key revoked: the next sync says.
      ownNext = null;
    }
  }

  // The upload key: asked for when an upload is refused for want of one (or
  // given with "Enter upload key"), checked, and kept in localStorage.

  function readKey() {
    try {
      return localStorage.getItem(UPLOAD_KEY) || null;
    } catch {
      return null;
    }
  }

  function keepKey(key) {
    try {
      localStorage.setItem(UPLOAD_KEY, key);
    } catch {
      // Kept for this page only.
    }
    useKeyNow(key);
  }

  function forgetKey() {
    try {
      localStorage.removeItem(UPLOAD_KEY);
    } catch {
      // Nothing was kept.
    }
    useKeyNow(null);
  }

  /** Use `key` from now on: what the last one listed goes, the new one's comes. */
  function useKeyNow(key) {
    if (key === uploadKey) return;
    uploadKey = key;
    for (const { doc } of [...shown.values()]) {
      if (owned.has(doc.id) && !isPublic(doc)) removeTile(doc.id, false);
    }
    owned.clear();
    pending.length = 0;
    ownNext = null;
    ownListed = false;
    for (const { tile } of shown.values()) markMine(tile);
    showKeyState();
    if (key) syncOwn();
  }

  function showKeyState() {
    keyState.textContent = uploadKey ? 'Uploads use your upload key.' : 'Have an upload key?';
    useKey.hidden = Boolean(uploadKey);
    forgetKeyButton.hidden = !uploadKey;
  }

  /** Whether `key` is one the service takes: why not, if it is not. */
  async function keyProblem(key) {
    try {
      const headers = withKey(key, { Accept: 'application/json' });
      const resp = await fetch(at('images?limit=1'), { headers });
      if (resp.status === 401) return `That key is not accepted: ${await errorMessage(resp)}`;
    } catch {
      // Unreachable for now: the upload says, when it is tried.
    }
    return null;
  }

  let asking = null;
  /** Whether uploads were refused for want of a key, and no key was given. */
  let declined = false;

  /** Ask for a key (once, however many uploads wait for it), saying why
   * (`why`), or what went wrong (`reason`); resolves to the key kept, or
   * null if none was given. */
  function askForKey(reason = '', why = '') {
    asking ??= new Promise((resolve) => {
      keyText.textContent = why ? `${why} ${KEY_INTRO}` : KEY_INTRO;
      keyError.textContent = reason;
      keyInput.value = '';
      keyDialog.returnValue = '';
      keyDialog.addEventListener('close', () => {
        asking = null;
        const given = keyDialog.returnValue === 'ok';
        declined = !given;
        resolve(given ? uploadKey : null);
      }, { once: true });
      keyDialog.showModal();
    });
    return asking;
  }

  keyForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    const submit = keyForm.querySelector('button[type="submit"]');
    submit.disabled = true;
    keyError.textContent = '';
    const problem = await keyProblem(key);
    submit.disabled = false;
    if (problem) {
      keyError.textContent = problem;
      keyInput.select();
      return;
    }
    keepKey(key);
    keyDialog.close('ok');
  });

  keyDialog.addEventListener('click', (event) => {
    if (event.target.closest('button[value="cancel"]')) keyDialog.close('cancel');
  });

  useKey.addEventListener('click', async () => {
    await askForKey();
    (uploadKey ? forgetKeyButton : useKey).focus();
  });

  forgetKeyButton.addEventListener('click', () => {
    forgetKey();
    useKey.focus();
  });

  // Live updates, or polling while the event stream is unavailable

  let events = null;
  let pollTimer = null;
  let retryTimer = null;

  function setStatus(mode, text) {
    statusLine.dataset.mode = mode;
    statusLine.textContent = text;
  }

  function connect() {
    clearTimeout(retryTimer);
    const source = new EventSource(at('events'));
    events = source;
    source.addEventListener('open', () => {
      setStatus('live', 'live');
      clearInterval(pollTimer);
      pollTimer = null;
      // Whatever happened before the stream opened is not in it.
      sync();
    });
    source.addEventListener('image-created', (event) => {
      const doc = JSON.parse(event.data);
      gone.delete(doc.id);
      addTile(doc, gallery.firstChild);
    });
    source.addEventListener('image-deleted', (event) => {
      const { id } = JSON.parse(event.data);
      removeTile(id);
      forgetToken(id);
    });
    source.addEventListener('unavailable', fallBack);
    source.addEventListener('error', () => {
      if (source !== events) return;
      // EventSource reconnects by itself (and resumes with Last-Event-ID)
      // unless it has given up.
      if (source.readyState === EventSource.CLOSED) {
        fallBack();
      } else {
        setStatus('connecting', 'reconnecting…');
      }
    });
  }

  function fallBack() {
    if (events) events.close();
    events = null;
    setStatus('polling', 'updating every 10 s');
    if (!pollTimer) {
      pollTimer = setInterval(sync, POLL_MS);
      sync();
    }
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, RETRY_LIVE_MS);
  }

  // Uploads

  const queue = [];
  let uploading = 0;

  function formatBytes(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  }

  /** Upload `files`, seen by whom the form says (or `visibility`). */
  function enqueue(files, visibility = visibilityChoice.value) {
    // Chosen again: a key may be asked for again.
    declined = false;
    for (const file of files) {
      const progress = el('progress', { max: 1, value: 0, 'aria-label': `Upload of ${file.name}` });
      const state = el('span', { class: 'state' }, 'waiting');
      const row = el('li', { class: 'upload' },
        el('span', { class: 'name', title: file.name }, file.name),
        el('span', { class: 'size' }, formatBytes(file.size)),
        progress,
        state);
      uploadList.append(row);
      queue.push({ file, visibility, row, progress, state });
    }
    uploadRegion.hidden = !uploadList.children.length;
    // The newest row in view, in a list that scrolls.
    uploadList.lastElementChild?.scrollIntoView({ block: 'nearest' });
    pump();
  }

  /** A finished upload's row: its page to open, and its link to copy. */
  function offerLink(state, doc) {
    const copyButton = el('button', { type: 'button', class: 'link-action' }, 'Copy link');
    copyButton.addEventListener('click', async () => {
      const copied = await copyText(new URL(doc.page, location.href).href);
      copyButton.textContent = copied ? 'Link copied' : 'Copy failed';
    });
    state.replaceChildren(
      el('span', { class: 'done-text' }, 'uploaded'),
      ' ',
      el('a', { class: 'link-action', href: doc.page }, 'View'),
      ' ',
      copyButton,
    );
  }

  function pump() {
    while (uploading < PARALLEL_UPLOADS && queue.length) {
      uploading += 1;
      send(queue.shift()).then(() => {
        uploading -= 1;
        clearUploads.hidden = !uploadList.querySelector('.done, .failed');
        pump();
      });
    }
  }

  /** Upload one file; resolves (never rejects) once its row says how it went.
   *
   * Refused for want of an upload key (or for a wrong one), it asks for one
   * and goes again with it.
   */
  async function send(job) {
    for (;;) {
      const key = uploadKey;
      let answer = await post(job, key);
      // A large upload refused before it is read may come back as a broken
      // connection rather than its 401: an empty one says which it was.
      if (answer.broken && !key && await keyNeeded()) answer = { status: 401, body: null };
      if (answer.status !== 401) return settle(job, answer, key);
      // Another upload was given a key meanwhile: this one goes with it.
      if (uploadKey && uploadKey !== key) continue;
      // A key refused is wrong, or revoked: forgotten, and another asked for.
      if (key) forgetKey();
      const reason = key ? `Your upload key was not accepted: ${answer.body?.description ?? ''}` : '';
      // NOTE: Not asked again for each file of a batch once it was declined.
      const why = 'Uploads here need an upload key.';
      if ((declined && !key) || !(await askForKey(reason, why))) return settle(job, NO_KEY, key);
      job.state.textContent = 'waiting';
      job.progress.value = 0;
    }
  }

  /** What an upload's row says when no key was given for it. */
  const NO_KEY = {
    status: 401,
    body: { description: 'Uploads here need an upload key: choose “Enter upload key” to give yours.' },
  };

  /** Whether uploads here need a key: what an empty upload is answered. */
  async function keyNeeded() {
    try {
      const resp = await fetch(at('images'), { method: 'POST', headers: { Accept: 'application/json' } });
      return resp.status === 401;
    } catch {
      return false;
    }
  }

  /** POST one file, with its progress on its row: resolves to the answer. */
  function post({ file, visibility, progress, state }, key) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', at('images'));
      xhr.responseType = 'json';
      xhr.setRequestHeader('Accept', 'application/json');
      if (key) xhr.setRequestHeader('Authorization', `Bearer ${key}`);
      // fetch() cannot report upload progress; XMLHttpRequest can.
      xhr.upload.addEventListener('progress', (event) => {
        if (!event.lengthComputable) return;
        progress.value = event.loaded / event.total;
        state.textContent = `uploading ${Math.floor((100 * event.loaded) / event.total)}%`;
      });
      xhr.upload.addEventListener('load', () => {
        // Sent: the server now decodes it and makes its thumbnails.
        progress.removeAttribute('value');
        state.textContent = 'processing…';
      });
      xhr.addEventListener('load', () => resolve({
        status: xhr.status,
        statusText: xhr.statusText,
        body: xhr.response,
        retryAfter: xhr.getResponseHeader('Retry-After'),
      }));
      xhr.addEventListener('error', () => resolve({
        broken: true,
        error: 'The connection broke off before the upload finished.',
      }));
      xhr.addEventListener('abort', () => resolve({ error: 'The upload was cancelled.' }));
      const body = new FormData();
      // Before the picture: the server reads the form in order. The
      // picture's part carries the file's name, which the service keeps.
      body.append('visibility', visibility);
      body.append('image', file, file.name);
      xhr.send(body);
    });
  }

  /** Say on the upload's row how it went; show the picture if it is in. */
  function settle({ file, visibility, row, progress, state }, answer, key) {
    const body = answer.body;
    if (answer.error || answer.status !== 201 || !body || !body.id) {
      row.classList.add('failed');
      const message = answer.error || body?.description || body?.title
        || `${answer.status} ${answer.statusText}`;
      state.replaceChildren(el('span', { class: 'error' }, message));
      if (answer.status === 429) offerRetry(state, row, file, visibility, answer.retryAfter);
      // Longer now, in a list that scrolls: the reason in view.
      row.scrollIntoView({ block: 'nearest' });
      return;
    }
    const { delete_token: token, ...doc } = body;
    if (key && key === uploadKey) owned.add(doc.id);
    if (token) keepToken(doc.id, token);
    // NOTE: From the answer, not the events: a private or unlisted picture
    //   is never announced, not even to its owner.
    addTile(doc, gallery.firstChild);
    row.classList.add('done');
    progress.value = progress.max;
    offerLink(state, doc);
  }

  /** A row refused for too many uploads: when to try again, and a button to. */
  function offerRetry(state, row, file, visibility, retryAfter) {
    const seconds = parseInt(retryAfter, 10);
    const error = state.querySelector('.error');
    if (seconds > 0 && !/try again/i.test(error.textContent)) {
      error.append(` Try again in ${seconds} s.`);
    }
    const retry = el('button', { type: 'button', class: 'link-action' }, 'Try again');
    retry.addEventListener('click', () => {
      row.remove();
      enqueue([file], visibility);
    });
    state.append(' ', retry);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    enqueue([...fileInput.files]);
    fileInput.value = '';
  });

  fileInput.addEventListener('change', () => {
    enqueue([...fileInput.files]);
    // So that choosing the same file again uploads it again.
    fileInput.value = '';
  });

  clearUploads.addEventListener('click', () => {
    for (const row of uploadList.querySelectorAll('.done, .failed')) row.remove();
    clearUploads.hidden = true;
    uploadRegion.hidden = !uploadList.children.length;
  });

  // A picture pasted (a screenshot, an image copied in another app) is
  // uploaded as if it were chosen.
  document.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files ?? [])]
      .filter((file) => file.type.startsWith('image/'));
    if (!files.length) return;
    event.preventDefault();
    enqueue(files);
  });

  // The whole page takes drops. Capturing listeners also see drop events
  // that were dispatched without bubbling.
  let dragDepth = 0;
  const carriesFiles = (event) => Boolean(event.dataTransfer?.types?.includes('Files'));
  const dragOff = () => {
    dragDepth = 0;
    form.classList.remove('dragover');
  };
  document.addEventListener('dragenter', (event) => {
    if (!carriesFiles(event)) return;
    dragDepth += 1;
    form.classList.add('dragover');
  }, true);
  document.addEventListener('dragleave', (event) => {
    if (carriesFiles(event) && --dragDepth <= 0) dragOff();
  }, true);
  document.addEventListener('dragover', (event) => {
    if (!carriesFiles(event)) return;
    // Without this the browser would open the file instead of dropping it here.
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    form.classList.add('dragover');
  }, true);
  document.addEventListener('drop', (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dragOff();
    enqueue([...event.dataTransfer.files]);
  }, true);

  // Copying a link

  /** Copy text: the Clipboard API where the page may use it, else a selection. */
  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Not a secure context (plain http on another host), or refused.
      const field = el('textarea', { class: 'visually-hidden', readonly: '' });
      field.value = text;
      (lightbox.open ? lightbox : document.body).append(field);
      field.select();
      try {
        return document.execCommand('copy');
      } catch {
        return false;
      } finally {
        field.remove();
      }
    }
  }

  // Deleting, after a dialog that says what it does

  /** Ask before deleting; resolves to whether the user said to delete. */
  function confirmed() {
    return new Promise((resolve) => {
      const answer = (event) => {
        const button = event.target.closest('button');
        if (button) confirmDelete.close(button.value);
      };
      confirmDelete.returnValue = '';
      confirmDelete.addEventListener('click', answer);
      confirmDelete.addEventListener('close', () => {
        confirmDelete.removeEventListener('click', answer);
        resolve(confirmDelete.returnValue === 'delete');
      }, { once: true });
      confirmDelete.showModal();
    });
  }

  async function deleteImage(id) {
    // The key, for its own pictures: it deletes them from any browser.
    const token = owned.has(id) && uploadKey ? uploadKey : readTokens()[id];
    const entry = shown.get(id);
    if (!token || !entry || !(await confirmed())) return;
    const button = lightbox.querySelector('button.delete');
    button.disabled = true;
    let message;
    try {
      const resp = await fetch(entry.doc.image, {
        method: 'DELETE',
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      });
      if (resp.status === 204 || resp.status === 404) {
        // Gone either way: 404 means it was deleted already.
        forgetToken(id);
        owned.delete(id);
        removeTile(id);
        return;
      }
      message = `Not deleted: ${await errorMessage(resp)}`;
    } catch (ex) {
      message = `Not deleted: ${ex.message}`;
    } finally {
      button.disabled = false;
    }
    said.textContent = message;
  }

  // The lightbox: its URL is the picture's page, so Back closes it, and a
  // link copied from the address bar opens that page.

  /** The picture's size on the stage: as large as fits, never larger than itself. */
  function fitted(doc) {
    const box = stage.getBoundingClientRect();
    const [width, height] = doc.size;
    const scale = Math.min(box.width / width, box.height / height, 1);
    return [Math.max(1, Math.floor(width * scale)), Math.max(1, Math.floor(height * scale))];
  }

  function showPicture(doc) {
    const [width, height] = fitted(doc);
    lightboxImage.style.width = `${width}px`;
    lightboxImage.style.height = `${height}px`;
    const thumbnail = shown.get(doc.id)?.tile.querySelector('img').currentSrc;
    lightboxImage.style.backgroundImage = thumbnail ? `url("${thumbnail}")` : '';
    lightboxImage.alt = describe(doc);
    // Set together, in this order, before the browser picks: the rendition
    // for the size shown, so a phone never loads the original. An animated
    // picture plays its animation instead.
    lightboxImage.removeAttribute('src');
    if (doc.animation) {
      lightboxImage.removeAttribute('srcset');
      lightboxImage.src = versioned(doc, doc.animation);
    } else {
      lightboxImage.sizes = sizesFor(doc, width);
      lightboxImage.srcset = srcset(doc);
      lightboxImage.src = versioned(doc, doc.thumbnails[0] ?? doc.image);
    }
  }

  function showActions() {
    const { doc, tile } = shown.get(lightbox.dataset.id);
    lightbox.querySelector('button.delete').hidden = tile.dataset.mine !== 'true';
    lightbox.querySelector('.prev').disabled = !tile.previousElementSibling;
    lightbox.querySelector('.next').disabled = !tile.nextElementSibling && !nextPage;
    const download = downloadLink();
    // The original kept as uploaded (a transparent PNG, an animated GIF...)
    // if there is one, named by the server's Content-Disposition (an empty
    // download attribute); else the JPEG, under the name the picture was
    // uploaded with if it has one.
    download.href = versioned(doc, doc.original || doc.image);
    download.download = doc.original
      ? ''
      : doc.name ? `${doc.name.replace(/\.[^.]*$/, '')}.jpeg` : `asgilook-${doc.id}.jpeg`;
  }

  /**
   * The lightbox's link to the original, made the first time it is shown.
   *
   * NOTE: Not in the page's HTML: until a picture is shown it has nowhere to
   *   go, and a link without an address is one a crawler cannot follow
   *   (Lighthouse's crawlable-anchors audit failed on it).
   */
  function downloadLink() {
    let link = lightbox.querySelector('a.download');
    if (!link) {
      link = el('a', { class: 'action download' }, 'Download original');
      lightbox.querySelector('.copy-link').after(link);
    }
    return link;
  }

  /** Show picture `id` in the lightbox, opening it if need be. */
  function openLightbox(id, how = 'push') {
    const entry = shown.get(id);
    if (!entry) return;
    const { doc } = entry;
    lightbox.dataset.id = id;
    // Before it opens: focus goes to the close button (autofocus), never to
    // a button about to be disabled.
    showActions();
    lightbox.querySelector('.caption').textContent = caption(doc);
    said.textContent = '';
    if (!lightbox.open) lightbox.showModal();
    showPicture(doc);
    if (how === 'push') history.pushState({ picture: id }, '', doc.page);
    if (how === 'replace') history.replaceState({ picture: id }, '', doc.page);
    const focused = document.activeElement;
    if (!lightbox.contains(focused) || focused.disabled) lightbox.querySelector('.close').focus();
  }

  let closedByHistory = false;

  /** Close the lightbox; its history entry goes unless history closed it. */
  function closeLightbox(byHistory = false) {
    if (!lightbox.open) return;
    closedByHistory = byHistory;
    lightbox.close();
  }

  lightbox.addEventListener('close', () => {
    const entry = shown.get(lightbox.dataset.id);
    lightboxImage.removeAttribute('srcset');
    lightboxImage.removeAttribute('src');
    lightboxImage.style.backgroundImage = '';
    delete lightbox.dataset.id;
    if (history.state?.picture && !closedByHistory) history.back();
    closedByHistory = false;
    // Focus goes back to the tile of the picture last shown. Again in a
    // moment: the dialog gives focus back to where it was when it opened (the
    // tile first shown), and may do so after this event.
    const link = entry ? entry.tile.querySelector('a') : gallery.querySelector('a');
    if (link) {
      const focus = () => link.focus({ preventScroll: true });
      focus();
      setTimeout(focus, 0);
      link.scrollIntoView({ block: 'nearest' });
    }
  });

  async function step(forward) {
    const { tile } = shown.get(lightbox.dataset.id);
    let next = forward ? tile.nextElementSibling : tile.previousElementSibling;
    if (!next && forward && nextPage) {
      await loadMore();
      next = tile.nextElementSibling;
    }
    // NOTE: Replaced, not pushed: Back closes the lightbox, whatever was seen.
    if (next) openLightbox(next.dataset.id, 'replace');
  }

  window.addEventListener('popstate', (event) => {
    const id = event.state?.picture;
    if (id && shown.has(id)) {
      openLightbox(id, 'none');
    } else {
      closeLightbox(true);
    }
  });

  lightbox.addEventListener('click', (event) => {
    const target = event.target;
    // Only the dark space around the picture closes it, as a backdrop would.
    if (target === lightbox || target === stage) closeLightbox();
    else if (target.closest('.close')) closeLightbox();
    else if (target.closest('.prev')) step(false);
    else if (target.closest('.next')) step(true);
    else if (target.closest('.copy-link')) {
      const { doc } = shown.get(lightbox.dataset.id);
      copyText(new URL(doc.page, location.href).href).then((copied) => {
        said.textContent = copied ? 'Link copied.' : 'The link could not be copied: copy it from the address bar.';
      });
    } else if (target.closest('.delete')) deleteImage(lightbox.dataset.id);
  });

  // On the document: focus may be anywhere (on the page itself, after a
  // click on the picture) while the lightbox is open.
  document.addEventListener('keydown', (event) => {
    if (!lightbox.open || confirmDelete.open || keyDialog.open) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === 'ArrowRight') step(true);
    else if (event.key === 'ArrowLeft') step(false);
    else return;
    event.preventDefault();
  });

  // Swipe left or right for the next or previous picture.
  let touchStart = null;
  stage.addEventListener('touchstart', (event) => {
    touchStart = event.touches.length === 1 ? event.touches[0] : null;
  }, { passive: true });
  stage.addEventListener('touchend', (event) => {
    const end = event.changedTouches[0];
    if (!touchStart || !end) return;
    const dx = end.clientX - touchStart.clientX;
    const dy = end.clientY - touchStart.clientY;
    touchStart = null;
    if (Math.abs(dx) > 50 && Math.abs(dx) > 1.5 * Math.abs(dy)) step(dx < 0);
  });

  window.addEventListener('resize', () => {
    if (lightbox.open) showPicture(shown.get(lightbox.dataset.id).doc);
  });

  gallery.addEventListener('click', (event) => {
    const tile = event.target.closest('.tile');
    if (!tile) return;
    const opensElsewhere = event.button !== 0 || event.ctrlKey || event.metaKey
      || event.shiftKey || event.altKey;
    if (event.target.closest('a') && !opensElsewhere) {
      event.preventDefault();
      openLightbox(tile.dataset.id);
    }
  });

  // Another tab of this browser uploaded or deleted a picture.
  window.addEventListener('storage', (event) => {
    if (event.key === UPLOAD_KEY || event.key === null) useKeyNow(readKey());
    if (event.key !== TOKENS_KEY && event.key !== null) return;
    for (const { tile } of shown.values()) markMine(tile);
  });

  showKeyState();
  sync();
  connect();
})();
