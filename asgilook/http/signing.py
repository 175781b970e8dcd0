"""Signed, expiring URLs: how a private picture is shown to those given its link.

A private picture is served only through a URL that carries an expiry and an
HMAC-SHA256 of that expiry and the URL's path (``?expires=E&signature=S``),
made with the service's secret. Whoever has the link may use it until it
expires; nobody can make one for another path or a later expiry without the
secret. A link that fails the check is answered like a picture that does not
exist (``404``), so it tells nothing; that is up to the resources.

Secrets rotate: :class:`Signer` signs with the first and accepts any, so a new
secret goes first and an old one stays behind it until the links it signed
have expired (``ASGI_LOOK_URL_SECRETS``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Callable
from collections.abc import Sequence


class Signer:
    """Sign paths with an expiry, and check what comes back.

    The expiry is at least ``ttl`` seconds away, rounded *up* to a whole
    number of :attr:`step` seconds since the epoch (a tenth of ``ttl``, a
    minute at least). Every link signed within one step therefore comes out
    the same, so a page that lists signed URLs keeps its URLs (and its ETag,
    and the browser's cached pictures) for a while rather than changing on
    every request; a link lives between ``ttl`` and ``ttl + step`` seconds.

    Args:
        secrets: The HMAC keys; the first signs, every one verifies.
        ttl: The least number of seconds a link stays good.
        clock: The time now, in seconds since the epoch (tests inject one).

    Raises:
        ValueError: no secret, an empty one, or a ``ttl`` below one second.
    """

    #: What the MAC is cut to, in bytes. NOTE: 128 bits: a forger can only
    #: try guesses one HTTP request at a time, against which 2**128 is as good
    #: as 2**256, and a shorter signature keeps the URLs shorter (22 characters
    #: rather than 43), in pages, srcsets and chats alike.
    MAC_BYTES = 16
    #: The least step, in seconds, that expiries are rounded up to.
    MIN_STEP = 60
    #: Seconds that another machine's clock may be behind this one's.
    #: NOTE: Without it, a link signed at the start of a step, on a machine
    #: whose clock is ahead, would look too far in the future on this one.
    SKEW = 30
    # What every signed message starts with: no other MAC made with these
    # secrets can pass for a URL's signature.
    _PURPOSE = b'asgilook signed url v1\n'

    def __init__(
        self,
        secrets: Sequence[bytes],
        ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets or not all(secrets):
            raise ValueError('at least one secret, none empty, must sign URLs')
        if ttl < 1:
            raise ValueError('signed URLs must live a second at least')
        self._secrets = tuple(secrets)
        self._ttl = ttl
        self._clock = clock
        #: Expiries are whole multiples of this many seconds.
        self.step = max(self.MIN_STEP, ttl // 10)

    def sign(self, path: str) -> str:
        """``path`` with ``expires`` and ``signature`` added to its query.

        Only the path (what comes before any ``?``) is signed, as that is all
        :meth:`valid` is given; parameters already in the query are kept but
        not covered by the signature.
        """
        expires = self._expiry()
        signature = self._signature(self._secrets[0], path.partition('?')[0], expires)
        separator = '&' if '?' in path else '?'
        return f'{path}{separator}expires={expires}&signature={signature}'

    def valid(self, path: str, expires: str | None, signature: str | None) -> bool:
        """Whether ``signature`` signs ``path`` until ``expires``, not yet past.

        ``expires`` and ``signature`` are the query's parameters as received
        (None when missing); any text is answered, never raised on. False
        when either is missing or malformed, when ``expires`` is past or
        further away than any link this service signs, or when no secret
        made ``signature``.
        """
        if expires is None or signature is None:
            return False
        # NOTE: Digits only, written as sign() writes them (no sign, no
        #   leading zero, no spaces): int() alone would take ' +1_0'.
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 20:
            return False
        when = int(expires)
        if str(when) != expires:
            return False
        now = self._clock()
        if not now < when <= now + self._ttl + self.step + self.SKEW:
            return False
        # NOTE: Compared as the text sign() writes, in constant time: no
        #   decoding, so other paddings or alphabets of one MAC never pass.
        given = signature.encode('utf-8', 'surrogatepass')
        return any(
            hmac.compare_digest(self._signature(secret, path, when).encode(), given)
            for secret in self._secrets
        )

    def _expiry(self) -> int:
        """The next multiple of the step that is ``ttl`` seconds away or more."""
        return math.ceil((self._clock() + self._ttl) / self.step) * self.step

    def _signature(self, secret: bytes, path: str, expires: int) -> str:
        # NOTE: The expiry first: its digits end at the first newline, so no
        #   path (whatever it holds, newlines included) and expiry can make
        #   the message of another pair.
        message = b'%s%d\n%s' % (
            self._PURPOSE,
            expires,
            path.encode('utf-8', 'surrogatepass'),
        )
        mac = hmac.new(secret, message, hashlib.sha256).digest()[: self.MAC_BYTES]
        return base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')
