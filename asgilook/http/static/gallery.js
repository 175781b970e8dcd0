// asgilook's gallery: the listing page by page, uploads with progress,
// deletion with the tokens this browser was given, and live updates.
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
  // NOTE: The same breakpoints, paddings, gaps and column counts as
  //   gallery.css: a column is (viewport - 2 * pad - (cols - 1) * gap) / cols.
  const SIZES = [
    '(max-width: 600px) calc((100vw - 30px) / 2)',
    '(max-width: 1000px) calc((100vw - 48px) / 3)',
    '(max-width: 1600px) calc((100vw - 72px) / 4)',
    'calc((100vw - 80px) / 5)',
  ].join(', ');

  const $ = (selector) => document.querySelector(selector);
  const gallery = $('#gallery');
  const sentinel = $('#more');
  const statusLine = $('#status');
  const notice = $('#notice');
  const empty = $('#empty');
  const form = $('#upload');
  const fileInput = form.querySelector('input[type="file"]');
  const uploadList = $('#uploads');
  const clearUploads = $('#clear-uploads');
  const lightbox = $('#lightbox');
  const lightboxImage = lightbox.querySelector('img');

  /** id -> {doc, tile} for every picture on the page. */
  const shown = new Map();
  /** Ids known to be deleted: a listing fetched before the deletion must not bring them back. */
  const gone = new Set();

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

  // A document names its pictures by their paths, the root included.
  const versioned = (doc, uri) => `${uri}?v=${doc.version}`;
  const srcset = (doc) => doc.srcset;

  function describe(doc) {
    const [width, height] = doc.size;
    const when = new Date(doc.modified);
    const date = Number.isNaN(when.getTime())
      ? doc.modified
      : when.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
    return `Picture of ${width} × ${height} pixels, uploaded ${date}`;
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
    if (entry) showDeleteButton(entry.tile);
  }

  function forgetToken(id) {
    const tokens = readTokens();
    if (id in tokens) {
      delete tokens[id];
      writeTokens(tokens);
    }
  }

  // Tiles

  function makeTile(doc) {
    const img = el('img', {
      loading: 'lazy',
      decoding: 'async',
      width: doc.size[0],
      height: doc.size[1],
      sizes: SIZES,
      srcset: srcset(doc),
      src: versioned(doc, doc.thumbnails.at(-1) ?? doc.image),
      alt: describe(doc),
    });
    // The placeholder, a tiny picture stretched (and so blurred) over the
    // tile until the thumbnail covers it.
    if (doc.placeholder) img.style.backgroundImage = `url("${doc.placeholder}")`;
    const link = el('a', { href: versioned(doc, doc.image) }, img);
    const tile = el('li', { class: 'tile', 'data-id': doc.id }, link);
    showDeleteButton(tile);
    return tile;
  }

  function showDeleteButton(tile) {
    const token = readTokens()[tile.dataset.id];
    const button = tile.querySelector('button.delete');
    if (token && !button) {
      tile.append(el('button', {
        type: 'button', class: 'delete', 'aria-label': 'Delete this picture', title: 'Delete',
      }, '×'));
    } else if (!token && button) {
      button.remove();
    }
  }

  /** Show doc's tile before `before` (null: at the end), unless it is shown already. */
  function addTile(doc, before = null) {
    const entry = shown.get(doc.id);
    if (entry) return entry.tile;
    if (gone.has(doc.id)) return null;
    const tile = makeTile(doc);
    gallery.insertBefore(tile, before);
    shown.set(doc.id, { doc, tile });
    updateEmpty();
    return tile;
  }

  function removeTile(id) {
    gone.add(id);
    const entry = shown.get(id);
    if (!entry) return;
    // A picture deleted just after it appeared may still be loading: cancel
    // that, or its 404 would land in the console.
    const img = entry.tile.querySelector('img');
    img.removeAttribute('srcset');
    img.removeAttribute('src');
    entry.tile.remove();
    shown.delete(id);
    if (lightbox.open && lightbox.dataset.id === id) lightbox.close();
    updateEmpty();
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

  async function fetchPage(url) {
    const resp = await fetch(url, { headers: { Accept: 'application/json' } });
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

  /** Bring the first page up to date: add what is new, drop what is gone. */
  function sync() {
    syncing ??= syncFirstPage().finally(() => { syncing = null; });
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
    if (last || !page.next) {
      for (const tile of [...gallery.children]) {
        const id = tile.dataset.id;
        if (!ids.has(id) && before.has(id)) removeTile(id);
        if (tile === last) break;
      }
    }
    if (!listed || !page.next) nextPage = page.next;
    listed = true;
    updateEmpty();
    watchSentinel();
  }

  let loadingMore = false;

  async function loadMore() {
    if (loadingMore || !listed || !nextPage) return;
    loadingMore = true;
    let page;
    try {
      page = await fetchPage(nextPage).catch((ex) => {
        // The page's cursor was deleted meanwhile: go on from the last
        // picture still shown instead.
        const lastTile = gallery.lastElementChild;
        if (ex.status !== 400 || !lastTile) throw ex;
        const after = encodeURIComponent(lastTile.dataset.id);
        return fetchPage(`${FIRST_PAGE}&after=${after}`);
      });
    } catch (ex) {
      showNotice(`More pictures could not be loaded: ${ex.message}`);
      return;
    } finally {
      loadingMore = false;
    }
    showNotice('');
    for (const doc of page.docs) addTile(doc);
    nextPage = page.next;
    watchSentinel();
  }

  const nearTheEnd = new IntersectionObserver(
    (entries) => { if (entries.some((entry) => entry.isIntersecting)) loadMore(); },
    { rootMargin: '0px 0px 800px 0px' },
  );

  function watchSentinel() {
    // Observing again reports the sentinel afresh: while it stays in view
    // (a short page, a tall screen) no new intersection would be reported.
    nearTheEnd.unobserve(sentinel);
    if (nextPage) nearTheEnd.observe(sentinel);
  }

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

  function enqueue(files) {
    for (const file of files) {
      const progress = el('progress', { max: 1, value: 0, 'aria-label': `Upload of ${file.name}` });
      const state = el('span', { class: 'state' }, 'waiting');
      const row = el('li', { class: 'upload' },
        el('span', { class: 'name', title: file.name }, file.name),
        el('span', { class: 'size' }, formatBytes(file.size)),
        progress,
        state);
      uploadList.append(row);
      queue.push({ file, row, progress, state });
    }
    pump();
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

  /** Upload one file; resolves (never rejects) once its row says how it went. */
  function send({ file, row, progress, state }) {
    return new Promise((resolve) => {
      const fail = (message) => {
        row.classList.add('failed');
        state.replaceChildren(el('span', { class: 'error' }, message));
      };
      const xhr = new XMLHttpRequest();
      xhr.addEventListener('loadend', () => resolve());
      xhr.open('POST', at('images'));
      xhr.responseType = 'json';
      xhr.setRequestHeader('Accept', 'application/json');
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
      xhr.addEventListener('load', () => {
        const body = xhr.response;
        if (xhr.status !== 201 || !body || !body.id) {
          fail(body?.description || body?.title || `${xhr.status} ${xhr.statusText}`);
          return;
        }
        const { delete_token: token, ...doc } = body;
        if (token) keepToken(doc.id, token);
        addTile(doc, gallery.firstChild);
        row.classList.add('done');
        progress.value = progress.max;
        state.textContent = 'uploaded';
      });
      xhr.addEventListener('error', () => fail('The connection broke off before the upload finished.'));
      xhr.addEventListener('abort', () => fail('The upload was cancelled.'));
      const body = new FormData();
      body.append('image', file, file.name);
      xhr.send(body);
    });
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

  // Deleting

  async function deleteImage(tile) {
    const id = tile.dataset.id;
    const token = readTokens()[id];
    const entry = shown.get(id);
    if (!token || !entry) return;
    if (!window.confirm('Delete this picture for everyone?')) return;
    const button = tile.querySelector('button.delete');
    button.disabled = true;
    tile.querySelector('.error')?.remove();
    let message;
    try {
      const resp = await fetch(entry.doc.image, {
        method: 'DELETE',
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      });
      if (resp.status === 204 || resp.status === 404) {
        // Gone either way: 404 means it was deleted already.
        forgetToken(id);
        removeTile(id);
        return;
      }
      message = `Not deleted: ${await errorMessage(resp)}`;
    } catch (ex) {
      message = `Not deleted: ${ex.message}`;
    }
    button.disabled = false;
    tile.append(el('p', { class: 'error', role: 'alert', title: 'Click to dismiss' }, message));
  }

  // The lightbox

  function openLightbox(tile) {
    const { doc } = shown.get(tile.dataset.id);
    const thumbnail = tile.querySelector('img').currentSrc;
    lightboxImage.style.backgroundImage = thumbnail ? `url("${thumbnail}")` : '';
    lightboxImage.width = doc.size[0];
    lightboxImage.height = doc.size[1];
    lightboxImage.alt = describe(doc);
    // An animated picture plays its animation here.
    lightboxImage.src = versioned(doc, doc.animation ?? doc.image);
    lightbox.querySelector('.caption span').textContent = describe(doc);
    lightbox.querySelector('.caption a').href = versioned(doc, doc.image);
    lightbox.dataset.id = doc.id;
    lightbox.showModal();
  }

  gallery.addEventListener('click', (event) => {
    const tile = event.target.closest('.tile');
    if (!tile) return;
    if (event.target.matches('.error')) {
      event.target.remove();
      return;
    }
    if (event.target.closest('button.delete')) {
      deleteImage(tile);
      return;
    }
    const opensElsewhere = event.button !== 0 || event.ctrlKey || event.metaKey
      || event.shiftKey || event.altKey;
    if (event.target.closest('a') && !opensElsewhere) {
      event.preventDefault();
      openLightbox(tile);
    }
  });

  // A click anywhere closes it; Escape closes a modal dialog by itself.
  lightbox.addEventListener('click', () => lightbox.close());
  lightbox.addEventListener('close', () => {
    lightboxImage.removeAttribute('src');
    lightboxImage.style.backgroundImage = '';
    delete lightbox.dataset.id;
  });

  // Another tab of this browser uploaded or deleted a picture.
  window.addEventListener('storage', (event) => {
    if (event.key !== TOKENS_KEY) return;
    for (const { tile } of shown.values()) showDeleteButton(tile);
  });

  sync();
  connect();
})();
