"""The keys of encryption at rest: which one seals, which ones still open.

``ASGI_LOOK_ENCRYPTION_KEY`` is the current key (the base64 of 32 random
bytes): it wraps the data key of every object sealed from now on.
``ASGI_LOOK_ENCRYPTION_OLD_KEYS`` (comma-separated base64) are keys that
still unwrap the data keys of the objects they sealed, and seal nothing: so
that a key can be rotated. Each key is known by its id, a hash of it that is
stored in the headers it wrapped (:func:`key_id`), never by the key itself.

The wrap is AES-256-GCM whatever the version of an object's segments (see
:mod:`asgilook.storage.crypto`, which defines what is wrapped and how).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CURRENT_KEY_VARIABLE = 'ASGI_LOOK_ENCRYPTION_KEY'
OLD_KEYS_VARIABLE = 'ASGI_LOOK_ENCRYPTION_OLD_KEYS'

KEY_SIZE = 32
KEY_ID_SIZE = 8

_KEY_ID_LABEL = b'asgilook key id\x00'


def key_id(key: bytes) -> bytes:
    """The 8-byte id of a key, stored in the headers it wraps; not secret."""
    return hashlib.sha256(_KEY_ID_LABEL + key).digest()[:KEY_ID_SIZE]


def _decode_key(value: str, where: str) -> bytes:
    """A key from its base64; ``where`` names the setting in the error."""
    hint = f'the base64 of {KEY_SIZE} random bytes (openssl rand -base64 32)'
    # NOTE: The messages never quote the value: it is a secret.
    try:
        key = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f'{where} is not base64; it must be {hint}') from None
    if len(key) != KEY_SIZE:
        raise ValueError(
            f'{where} decodes to {len(key)} bytes, not {KEY_SIZE}; it must be {hint}'
        )
    return key


class Keyring:
    """The keys of the service: the current one seals, all of them open.

    Args:
        current: The key that wraps the data key of every object sealed from
            now on (32 bytes), or None to seal nothing.
        old: Keys that still open the objects they wrapped (32 bytes each).

    Raises:
        ValueError: A key is not 32 bytes long.
    """

    def __init__(self, current: bytes | None, old: Sequence[bytes] = ()) -> None:
        # NOTE: One AESGCM per key, made once: it holds the expanded key.
        self._wrappers: dict[bytes, AESGCM] = {}
        self.current_id: bytes | None = None
        if current is not None:
            self.current_id = self._add(current)
        for key in old:
            self._add(key)

    def _add(self, key: bytes) -> bytes:
        if len(key) != KEY_SIZE:
            raise ValueError(
                f'an encryption key must be {KEY_SIZE} bytes, not {len(key)}'
            )
        identity = key_id(key)
        self._wrappers[identity] = AESGCM(key)
        return identity

    @classmethod
    def from_settings(cls, current: str | None, old: str | None) -> Keyring | None:
        """The keyring of the settings, or None when no key is set.

        Args:
            current: The value of ``ASGI_LOOK_ENCRYPTION_KEY`` (base64).
            old: The value of ``ASGI_LOOK_ENCRYPTION_OLD_KEYS`` (base64 keys
                separated by commas; blanks are ignored).

        Raises:
            ValueError: A key is not the base64 of exactly 32 bytes; the
                message names the variable (and which of the old keys).
        """
        current = (current or '').strip()
        olds = [item.strip() for item in (old or '').split(',') if item.strip()]
        if not current and not olds:
            return None
        return cls(
            _decode_key(current, CURRENT_KEY_VARIABLE) if current else None,
            [
                _decode_key(value, f'{OLD_KEYS_VARIABLE} (key {n} of {len(olds)})')
                for n, value in enumerate(olds, 1)
            ],
        )

    @property
    def encrypts(self) -> bool:
        """Whether there is a current key, so that new objects are sealed."""
        return self.current_id is not None

    def sealing(self) -> tuple[bytes, AESGCM]:
        """The current key's id and its cipher, to wrap a new header with.

        Raises:
            ValueError: There is no current key.
        """
        if self.current_id is None:
            raise ValueError(
                f'no current encryption key ({CURRENT_KEY_VARIABLE} is not set): '
                'nothing can be sealed'
            )
        return self.current_id, self._wrappers[self.current_id]

    def opening(self, identity: bytes) -> AESGCM | None:
        """The cipher of the key whose id is ``identity``; None if not configured."""
        return self._wrappers.get(identity)

    def __repr__(self) -> str:
        # NOTE: Ids only: a keyring may end up in a log or a traceback.
        current = self.current_id.hex() if self.current_id else None
        return (
            f'<Keyring current={current} ids={sorted(i.hex() for i in self._wrappers)}>'
        )
