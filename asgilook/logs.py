"""The service's log: two formats, plain and JSON, and the request a record was made in.

A logging configuration (:func:`config`; ``asgilook serve`` gives uvicorn one,
and ``deploy/logging.json`` is the JSON one, for ``uvicorn --log-config``)
sends every record, of uvicorn's loggers and the service's, to stderr through
one formatter:

- :class:`JSONFormatter` (``ASGI_LOOK_LOG_FORMAT=json``): one JSON object per
  record, on one line: ``time`` (ISO 8601, UTC, to the millisecond),
  ``level``, ``logger``, ``message``, then every field the record was given
  (the access log's ``method``, ``status``, ``duration`` ...), and ``exc``,
  the exception (see below) as one string.
- :class:`PlainFormatter` (``plain``, the default): one line per record, the
  time, the level, the logger and the message, and ``request_id=...`` when
  the record was made for a request; a traceback follows on lines of its own.

An unexpected failure of the service's own work (a render, an answer that
became a ``500``) is logged with :func:`failure`: one ERROR record whose
message ends with the exception's type and message, on one line in either
format, and whose ``exc`` field holds just that; its traceback goes in a
DEBUG record of the same logger, for when that level is turned on.

:class:`RequestFields`, the handler's filter, gives every record made while a
request is answered (a warning of the cache, a render that failed) the id of
that request, as ``request_id``, and every record that is not the access log's
the ``image_id`` it is about, when it names one or its request's path does.
The request being answered is :data:`CURRENT`, which the access log
(:mod:`asgilook.http.access`) sets.

This module imports nothing of the app: ``asgilook serve`` imports it, and
``python -m asgilook.logs json`` prints the configuration that
``deploy/logging.json`` holds.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from typing import Any
from typing import Protocol


class Request(Protocol):
    """What the log says of the request a record was made in."""

    #: Its id: the client's ``X-Request-ID``, or one made for it.
    request_id: str
    #: The path it asked for (with its query string).
    path: str


#: The request being answered, in the context of the code that answers it
#: (and of the tasks that code starts); None outside of any.
CURRENT: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    'asgilook_request', default=None
)

#: The formats of ``ASGI_LOOK_LOG_FORMAT``, and the formatter of each.
FORMATTERS = {'plain': 'PlainFormatter', 'json': 'JSONFormatter'}
# NOTE: Not __name__, which is __main__ under `python -m asgilook.logs`.
_MODULE = 'asgilook.logs'

# NOTE: What every LogRecord has; the rest is what the call gave it (extra=).
#   uvicorn gives its messages a coloured copy, which a log has no use for.
_STANDARD = frozenset(
    [
        *logging.LogRecord('', 0, '', 0, '', (), None).__dict__,
        'message',
        'asctime',
        'taskName',
        'color_message',
    ]
)
# NOTE: One encoder for every record: json.dumps() with default= makes one
#   a call.
_ENCODE = json.JSONEncoder(default=str).encode
# An image id, as the service spells it: a UUID in its canonical form.
_IMAGE_ID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


class _Formatter(logging.Formatter):
    """A formatter that writes the time of a record as ISO 8601, in UTC."""

    def __init__(self) -> None:
        super().__init__()
        # NOTE: Most records fall in the second of the one before: its date
        #   and time are kept, not made again (one tuple, for the threads).
        self._last = (-1, '')

    def _time(self, record: logging.LogRecord) -> str:
        """The record's time, ISO 8601 in UTC, to the millisecond."""
        second, stamp = self._last
        if int(record.created) != second:
            second = int(record.created)
            stamp = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))
            self._last = (second, stamp)
        return f'{stamp}.{int(record.msecs):03d}Z'


class JSONFormatter(_Formatter):
    """Each record as one JSON object on one line.

    ``time``, ``level``, ``logger`` and ``message`` first, then the record's
    own fields in the order given, then ``exc`` (and ``stack``) if it has one.
    A field that JSON cannot hold is written as its ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            'time': self._time(record),
            'level': record.levelname,
            'logger': record.name,
            'message': record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD:
                document[name] = value
        if record.exc_info:
            document['exc'] = self.formatException(record.exc_info)
        elif record.exc_text:
            document['exc'] = record.exc_text
        if record.stack_info:
            document['stack'] = self.formatStack(record.stack_info)
        return _ENCODE(document)


class PlainFormatter(_Formatter):
    """Each record as a line: time, level, logger, message, request id.

    ``2025-06-01T09:30:00.123Z INFO asgilook.http.access: GET /images 200 ...
    request_id=4f1c...``; an exception's traceback follows on lines of its own.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line = f'{self._time(record)} {record.levelname} {record.name}: {message}'
        request_id = record.__dict__.get('request_id')
        if request_id is not None:
            line = f'{line} request_id={request_id}'
        if record.exc_info:
            line = f'{line}\n{self.formatException(record.exc_info)}'
        elif record.exc_text:
            line = f'{line}\n{record.exc_text}'
        if record.stack_info:
            line = f'{line}\n{self.formatStack(record.stack_info)}'
        return line


class RequestFields(logging.Filter):
    """Gives a record the ``request_id`` and ``image_id`` it was made for.

    A record that has a ``request_id`` already (the access log's) is left as
    it is. Any other gets the id of the request being answered, if any, and
    the first image id that its message names, or else its request's path.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if 'request_id' in record.__dict__:
            return True
        request = CURRENT.get()
        if request is not None:
            record.request_id = request.request_id
        if 'image_id' not in record.__dict__:
            named = _IMAGE_ID.search(record.getMessage())
            if named is None and request is not None:
                named = _IMAGE_ID.search(request.path)
            if named is not None:
                record.image_id = named.group()
        return True


def one_line(ex: BaseException) -> str:
    """An exception's type and message, on one line: ``OSError: [Errno 28] ...``."""
    text = str(ex).replace('\r', '\\r').replace('\n', '\\n')
    name = type(ex).__name__
    return f'{name}: {text}' if text else name


def failure(
    logger: logging.Logger,
    message: str,
    *args: object,
    ex: BaseException,
    **fields: object,
) -> None:
    """Log an unexpected failure in one line; its traceback only at DEBUG.

    The ERROR record's message is ``message % args``, a colon, and the
    exception's type and message (:func:`one_line`); it has ``exc`` (that
    same text) and ``fields`` (``image_id=...``, say) as fields of its own.
    The DEBUG record that follows, if the logger is enabled for DEBUG, has
    the traceback.
    """
    exc = one_line(ex)
    logger.error(f'{message}: %s', *args, exc, extra={'exc': exc, **fields})
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            f'The traceback of: {message}',
            *args,
            exc_info=(type(ex), ex, ex.__traceback__),
            extra=fields,
        )


def config(format: str) -> dict[str, Any]:
    """The logging configuration (for ``logging.config.dictConfig``) of a format.

    Every record of INFO or above of the ``asgilook`` and ``uvicorn`` loggers,
    and of WARNING or above of any other, goes to stderr in ``format``;
    uvicorn's own access log is off (``uvicorn.access`` has no handler, so
    uvicorn does not even make its records): the app's own,
    ``asgilook.http.access``, says more.

    Raises:
        KeyError: ``format`` is not one of :data:`FORMATTERS`.
    """
    return {
        'version': 1,
        'disable_existing_loggers': False,
        'filters': {'request': {'()': f'{_MODULE}.RequestFields'}},
        'formatters': {format: {'()': f'{_MODULE}.{FORMATTERS[format]}'}},
        'handlers': {
            'stderr': {
                'class': 'logging.StreamHandler',
                'stream': 'ext://sys.stderr',
                'formatter': format,
                'filters': ['request'],
            }
        },
        'loggers': {
            'asgilook': {'level': 'INFO'},
            'uvicorn': {'level': 'INFO'},
            'uvicorn.access': {'handlers': [], 'propagate': False},
        },
        'root': {'handlers': ['stderr'], 'level': 'WARNING'},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m asgilook.logs FORMAT``: print the configuration, as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in FORMATTERS:
        print(
            f'usage: python -m asgilook.logs {{{",".join(FORMATTERS)}}}',
            file=sys.stderr,
        )
        return 2
    print(json.dumps(config(args[0]), indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
