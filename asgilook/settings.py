"""Every ``ASGI_LOOK_*`` setting, declared once: its variable, type, default and help.

:class:`asgilook.config.Config` reads the ones it holds from an environment it
is given (:meth:`~asgilook.config.Config.from_environ`); ``asgilook serve``
reads the ones it uses itself. ``docs/configuration.rst`` shows this
declaration as a table, and a test fails when the two differ.

This module imports nothing of the app, so that every command may read it.
"""

from __future__ import annotations

import base64
import dataclasses
import pathlib
import urllib.parse
from collections.abc import Callable

# NOTE: A parser's ValueError says what the value must be: Config's message
#   is "<variable> must be <that>, not <the text>".
_POSITIVE = 'a positive number'


def positive_int(raw: str) -> int:
    """A whole number above zero; ValueError otherwise."""
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(_POSITIVE) from None
    if value <= 0:
        raise ValueError(_POSITIVE)
    return value


def positive_float(raw: str) -> float:
    """A number above zero; ValueError otherwise (NaN included)."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(_POSITIVE) from None
    if not value > 0:
        raise ValueError(_POSITIVE)
    return value


def optional(raw: str) -> str | None:
    """A text that an empty value leaves unset."""
    return raw or None


def encryption_key(raw: str) -> str | None:
    """The base64 text of 32 bytes (a key for AES-256); empty leaves it unset."""
    if not raw:
        return None
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        key = b''
    if len(key) != 32:
        raise ValueError('the base64 of 32 random bytes (`openssl rand -base64 32`)')
    return raw.strip()


def encryption_keys(raw: str) -> tuple[str, ...]:
    """Comma-separated keys, each as :func:`encryption_key` reads one."""
    keys = (encryption_key(part) for part in raw.split(','))
    return tuple(key for key in keys if key is not None)


_FLAG = '1 or 0 (also true or false, yes or no, on or off)'


def flag(raw: str) -> bool:
    """On (``1``, ``true``, ``yes``, ``on``) or off (``0``, ... or empty)."""
    value = raw.strip().lower()
    if value in ('1', 'true', 'yes', 'on'):
        return True
    if value in ('', '0', 'false', 'no', 'off'):
        return False
    raise ValueError(_FLAG)


_SIZE = (
    'a size in bytes such as 1000, 512k, 3MB, 1.5GB or 10GiB (k, MB, GB, TB '
    'count in thousands; KiB, MiB, GiB, TiB in 1024s), under 8 EiB'
)
_PER_UNIT: dict[str, int] = {
    '': 1,
    'b': 1,
    **{
        f'{letter}{end}': 1000**power
        for power, letter in enumerate('kmgtpe', 1)
        for end in ('', 'b')
    },
    **{f'{letter}ib': 1024**power for power, letter in enumerate('kmgtpe', 1)},
}
# NOTE: The largest signed 64-bit number: a quota goes into a BIGINT column.
_MAX_SIZE = 2**63 - 1
_LETTERS = 'abcdefghijklmnopqrstuvwxyz'


def byte_size(raw: str) -> int:
    """A number of bytes, written as people write sizes: ``3MB``, ``10 GiB``.

    A whole or decimal number (``1.5GB``), then, after optional spaces, a unit
    in any case: none or ``B`` (bytes), ``k``/``kB``, ``MB``, ``GB``, ``TB``
    (powers of 1000; ``B`` is always bytes, never bits) or ``KiB``, ``MiB``,
    ``GiB``, ``TiB`` (powers of 1024); ``PB``, ``EB``, ``PiB`` and ``EiB``
    too, for what :func:`format_bytes` shows. Zero is a size (nothing may be
    stored). A fraction of a byte is dropped. ValueError for anything else:
    signs, exponents, NaN, other units, over 2**63 - 1.
    """
    text = raw.strip().lower()
    number = text.rstrip(_LETTERS)
    per_unit = _PER_UNIT.get(text[len(number) :])
    whole, point, fraction = number.rstrip().partition('.')
    digits = whole + fraction
    # NOTE: isascii() too, as isdigit() takes '²' and other scripts' digits;
    #   the length keeps int() away from its limit on long numbers.
    if (
        per_unit is None
        or not (whole.isascii() and whole.isdigit())
        or (point and not (fraction.isascii() and fraction.isdigit()))
        or len(digits) > 40
    ):
        raise ValueError(_SIZE)
    size: int = int(digits) * per_unit // 10 ** len(fraction)
    if size > _MAX_SIZE:
        raise ValueError(_SIZE)
    return size


_DECIMAL_UNITS = ('B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB')


def format_bytes(n: int) -> str:
    """A number of bytes for people: ``512 B``, ``200 kB``, ``2.8 MB``.

    Decimal units (powers of 1000), as file managers and phones show sizes,
    and as :func:`byte_size` reads them back; one decimal under ten units,
    none from ten up. NOTE: Rounded down, never up, so that "2.8 MB left"
    never promises more room than there is.
    """
    if n < 0:
        return f'-{format_bytes(-n)}'
    power = 0
    while power < len(_DECIMAL_UNITS) - 1 and n >= 1000 ** (power + 1):
        power += 1
    unit = 1000**power
    name = _DECIMAL_UNITS[power]
    tenths = n * 10 // unit
    if power and tenths < 100 and tenths % 10:
        return f'{tenths // 10}.{tenths % 10} {name}'
    return f'{n // unit} {name}'


#: Every origin may read (``ASGI_LOOK_CORS_ORIGINS``).
ANY_ORIGIN = '*'
_ORIGINS = '`*`, or comma-separated origins such as https://example.org'
# NOTE: Browsers leave the scheme's default port out of Origin.
_DEFAULT_PORTS = {'http': 80, 'https': 443}


def origins(raw: str) -> tuple[str, ...]:
    """``*`` (any origin), or origins (``scheme://host[:port]``), comma-separated.

    Each origin is returned as browsers send it in ``Origin``: lower case,
    without a trailing slash. Empty: no origin but the service's own.
    """
    listed = tuple(part.strip() for part in raw.split(',') if part.strip())
    if listed == (ANY_ORIGIN,):
        return listed
    return tuple(_origin(part) for part in listed)


def _origin(raw: str) -> str:
    try:
        parts = urllib.parse.urlsplit(raw.lower().removesuffix('/'))
        port = parts.port
    except ValueError:
        raise ValueError(_ORIGINS) from None
    host = parts.hostname
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not host
        or port == 0
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
    ):
        raise ValueError(_ORIGINS)
    if ':' in host:
        host = f'[{host}]'
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f'{host}:{port}'
    return f'{parts.scheme}://{host}'


_PUBLIC_URL = (
    'an http:// or https:// URL with a host and no path, such as '
    'https://pics.example.org, or empty'
)


def public_url(raw: str) -> str | None:
    """The scheme and host (and port) the service is reached at; empty leaves
    it unset.

    Returned without a trailing slash. A path is refused: the root path (see
    :mod:`asgilook.http.mount`) is put after it.
    """
    url = raw.strip().removesuffix('/')
    if not url:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        # NOTE: Read for its check: a port out of range is a ValueError.
        port = parts.port
    except ValueError:
        raise ValueError(_PUBLIC_URL) from None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or port == 0
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
    ):
        raise ValueError(_PUBLIC_URL)
    return url


_PURGE_URL = 'an http:// or https:// URL, or empty'
_METHOD = 'an HTTP method, such as PURGE, BAN or POST'


def purge_url(raw: str) -> str | None:
    """An ``http://`` or ``https://`` URL with a host; empty leaves it unset."""
    url = raw.strip()
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(_PURGE_URL)
    return url


def method(raw: str) -> str:
    """An HTTP method (a token of letters, dashes and digits), in upper case."""
    name = raw.strip().upper()
    if not name or not name.replace('-', '').isalnum() or not name.isascii():
        raise ValueError(_METHOD)
    return name


#: The formats of the log (``ASGI_LOOK_LOG_FORMAT``), the default first.
LOG_FORMATS = ('plain', 'json')


def log_format(raw: str) -> str:
    """``plain`` or ``json``, in any case; empty is ``plain``."""
    name = raw.strip().lower() or LOG_FORMATS[0]
    if name not in LOG_FORMATS:
        raise ValueError(' or '.join(LOG_FORMATS))
    return name


#: Who may upload (``ASGI_LOOK_UPLOADS``): anyone (the default), or only
#: the holders of upload keys.
UPLOADS = ('open', 'keys')


def uploads(raw: str) -> str:
    """``open`` or ``keys``, in any case; empty is ``open``."""
    name = raw.strip().lower() or UPLOADS[0]
    if name not in UPLOADS:
        raise ValueError(' or '.join(UPLOADS))
    return name


_SECRETS = 'comma-separated secrets of 16 characters or more, or empty'


def url_secrets(raw: str) -> tuple[str, ...]:
    """Secrets that sign links, comma-separated, the one that signs first."""
    secrets = tuple(part.strip() for part in raw.split(',') if part.strip())
    if any(len(secret) < 16 for secret in secrets):
        raise ValueError(_SECRETS)
    return secrets


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable: what it sets, how it is read, what it means."""

    #: The environment variable.
    variable: str
    #: What it is, as the documentation says: path, URL, bytes, seconds...
    kind: str
    #: One line of help, for the documentation.
    help: str
    #: Turns the variable's text into the value; if it cannot, raises a
    #: ValueError that says what the text must be.
    parse: Callable[[str], object] = str
    #: The :class:`~asgilook.config.Config` attribute it sets, or None when only
    #: a command reads it.
    attribute: str | None = None
    #: The name of Config's ``DEFAULT_*`` constant that holds its default, for
    #: a Config attribute (tests may change the constant).
    default: str | None = None
    #: The default, as the documentation shows it, when only a command reads it.
    shown: str = ''


SETTINGS: tuple[Setting, ...] = (
    Setting(
        'ASGI_LOOK_STORAGE_PATH',
        'path',
        'The storage directory: pictures, thumbnails, the SQLite index; created '
        'if missing. `asgilook serve` defaults to ~/.local/share/asgilook.',
        pathlib.Path,
        'storage_path',
        'DEFAULT_CONFIG_PATH',
    ),
    Setting(
        'ASGI_LOOK_STORAGE_URL',
        'path or URL',
        'Where pictures are kept: a directory, or s3://BUCKET[/PREFIX] with the '
        'AWS_* variables; unset, the storage directory itself.',
        optional,
        'storage_url',
        'DEFAULT_STORAGE_URL',
    ),
    Setting(
        'ASGI_LOOK_RENDITIONS_URL',
        'path or URL',
        'Where thumbnails, renditions and animations are kept, as '
        'ASGI_LOOK_STORAGE_URL; unset, with the originals.',
        optional,
        'renditions_url',
        'DEFAULT_RENDITIONS_URL',
    ),
    Setting(
        'ASGI_LOOK_ENCRYPTION_KEY',
        'base64',
        'Turns encryption at rest on: every object written is sealed with '
        'AES-256-OCB3 under this key (base64 of 32 random bytes).',
        encryption_key,
        'encryption_key',
        'DEFAULT_ENCRYPTION_KEY',
    ),
    Setting(
        'ASGI_LOOK_ENCRYPTION_OLD_KEYS',
        'base64, ...',
        'Earlier keys, comma-separated: objects they sealed stay readable until '
        '`asgilook rekey` seals them under the current key.',
        encryption_keys,
        'encryption_old_keys',
        'DEFAULT_ENCRYPTION_OLD_KEYS',
    ),
    Setting(
        'ASGI_LOOK_REDIS_URL',
        'URL',
        'The Redis that caches responses and carries events; `asgilook serve` '
        'starts a private one when this is unset.',
        str,
        'redis_host',
        'DEFAULT_REDIS_HOST',
    ),
    Setting(
        'ASGI_LOOK_REDIS_TIMEOUT',
        'seconds',
        'How long a request waits for Redis before it is answered without it.',
        positive_float,
        'redis_timeout',
        'DEFAULT_REDIS_TIMEOUT',
    ),
    Setting(
        'ASGI_LOOK_REDIS_PREFIX',
        'text',
        'Put in front of every key this service keeps in Redis, for '
        'deployments that share one Redis and want no key in common.',
        str,
        'redis_prefix',
        'DEFAULT_REDIS_PREFIX',
    ),
    Setting(
        'ASGI_LOOK_REDIS_MAXMEMORY',
        'bytes',
        "The memory limit of `asgilook serve`'s private Redis (its maxmemory), "
        'past which it evicts the least recently used entries.',
        shown='256mb',
    ),
    Setting(
        'ASGI_LOOK_DATABASE_URL',
        'URL',
        'A PostgreSQL database for the index (postgresql://...), for several '
        'machines; unset, the index is a SQLite file in the storage directory.',
        optional,
        'database_url',
        'DEFAULT_DATABASE_URL',
    ),
    Setting(
        'ASGI_LOOK_IGNORE_SQLITE_INDEX',
        'flag',
        'With a database URL, start even if the storage directory holds a '
        'SQLite index with pictures (which are then not listed); see '
        '`asgilook migrate --to-database`.',
        flag,
        'ignore_sqlite_index',
        'DEFAULT_IGNORE_SQLITE_INDEX',
    ),
    Setting(
        'ASGI_LOOK_ADMIN_TOKEN',
        'text',
        "A token that may delete any picture; unset, only a picture's own "
        'delete token can delete it.',
        optional,
        'admin_token',
        'DEFAULT_ADMIN_TOKEN',
    ),
    Setting(
        'ASGI_LOOK_UPLOADS',
        'open or keys',
        "`open`: anyone may upload (the tutorial's way); `keys`: only with an "
        'upload key (`asgilook keys add`), as `Authorization: Bearer KEY`.',
        uploads,
        'uploads',
        'DEFAULT_UPLOADS',
    ),
    Setting(
        'ASGI_LOOK_SIGNED_URL_TTL',
        'seconds',
        'How long the signed links of a private picture stay good (rounded up '
        'to a tenth of it, a minute at least).',
        positive_int,
        'signed_url_ttl',
        'DEFAULT_SIGNED_URL_TTL',
    ),
    Setting(
        'ASGI_LOOK_URL_SECRETS',
        'text, ...',
        "Secrets that sign private pictures' links, the signing one first, "
        'older ones after it until their links expire; unset, a random secret '
        'kept in the index.',
        url_secrets,
        'url_secrets',
        'DEFAULT_URL_SECRETS',
    ),
    Setting(
        'ASGI_LOOK_IMAGE_WORKERS',
        'count',
        'Threads that decode and encode pictures, per process.',
        positive_int,
        'image_workers',
        'DEFAULT_IMAGE_WORKERS',
    ),
    Setting(
        'ASGI_LOOK_MAX_UPLOAD_BYTES',
        'bytes',
        'The largest upload accepted; a larger one is a 413.',
        positive_int,
        'max_upload_bytes',
        'DEFAULT_MAX_UPLOAD_BYTES',
    ),
    Setting(
        'ASGI_LOOK_MAX_PIXELS',
        'pixels',
        'The most pixels (width x height) a picture may have; more is a 413.',
        positive_int,
        'max_pixels',
        'DEFAULT_MAX_PIXELS',
    ),
    Setting(
        'ASGI_LOOK_UPLOAD_TIMEOUT',
        'seconds',
        'How long a whole request body may take to arrive; slower is a 408.',
        positive_float,
        'upload_timeout',
        'DEFAULT_UPLOAD_TIMEOUT',
    ),
    Setting(
        'ASGI_LOOK_UPLOAD_MIN_RATE',
        'bytes a second',
        'The least average rate a request body must keep after a few seconds; '
        'slower is a 408.',
        positive_int,
        'upload_min_rate',
        'DEFAULT_UPLOAD_MIN_RATE',
    ),
    Setting(
        'ASGI_LOOK_CACHE_MAX_ENTRY',
        'bytes',
        'The largest response kept in Redis or in process memory.',
        positive_int,
        'cache_max_entry',
        'DEFAULT_CACHE_MAX_ENTRY',
    ),
    Setting(
        'ASGI_LOOK_MEMORY_CACHE',
        'bytes',
        "How much of each process's memory keeps whole responses.",
        positive_int,
        'memory_cache',
        'DEFAULT_MEMORY_CACHE',
    ),
    Setting(
        'ASGI_LOOK_CORS_ORIGINS',
        'origins',
        'The other sites whose pages may read the service (CORS): `*` for '
        'any, or comma-separated origins such as https://example.org; empty '
        'for none.',
        origins,
        'cors_origins',
        'DEFAULT_CORS_ORIGINS',
    ),
    Setting(
        'ASGI_LOOK_PUBLIC_URL',
        'URL',
        'Where people reach the service (https://pics.example.org), for the '
        "absolute links of a picture's page (og:url, og:image, canonical); "
        "unset, the request's scheme and Host. The root path follows it.",
        public_url,
        'public_url',
        'DEFAULT_PUBLIC_URL',
    ),
    Setting(
        'ASGI_LOOK_PURGE_URL',
        'URL',
        'Where to send a purge of the surrogate keys of a deleted or replaced '
        'picture (a Varnish or a CDN); unset, none is sent.',
        purge_url,
        'purge_url',
        'DEFAULT_PURGE_URL',
    ),
    Setting(
        'ASGI_LOOK_PURGE_METHOD',
        'method',
        'The method of that purge request; the keys go in its Surrogate-Key header.',
        method,
        'purge_method',
        'DEFAULT_PURGE_METHOD',
    ),
    Setting(
        'ASGI_LOOK_EVENTS_KEEPALIVE',
        'seconds',
        'How often /events sends a comment to keep an idle stream open.',
        positive_float,
        'events_keepalive',
        'DEFAULT_EVENTS_KEEPALIVE',
    ),
    Setting(
        'ASGI_LOOK_LOG_FORMAT',
        'plain or json',
        "The format of `asgilook serve`'s log: `plain` lines, or `json`, one "
        'JSON object per request and per event (see docs/deployment.rst).',
        log_format,
        shown='plain',
    ),
)
