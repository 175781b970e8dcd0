"""The ciphers of the segments of sealed objects, by format version.

The version byte of a sealed object (see :mod:`asgilook.storage.crypto`)
names the cipher of its segments: AES-256-GCM in version 1, AES-256-OCB3 in
version 2. Both take 12-byte nonces and give 16-byte tags, so the layout is
the same. Some builds of the cryptography library (on LibreSSL or
BoringSSL) have no AES-OCB3: there, :func:`sealing_version` is 1, and the
log says so once.
"""

from __future__ import annotations

import functools
import logging
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.aead import AESOCB3

log = logging.getLogger(__name__)

#: Segments in AES-256-GCM; read, and written where there is no AES-OCB3.
GCM_VERSION = 1
#: Segments in AES-256-OCB3: what new objects are sealed in.
OCB_VERSION = 2
VERSIONS = (GCM_VERSION, OCB_VERSION)

Cipher: TypeAlias = AESGCM | AESOCB3


def cipher(version: int, key: bytes) -> Cipher:
    """The cipher of the segments of ``version``, under the data key ``key``.

    Raises:
        UnsupportedAlgorithm: Version 2, and the library has no AES-OCB3.
    """
    return AESOCB3(key) if version == OCB_VERSION else AESGCM(key)


# NOTE: Cached: what the library can do is the same for the whole process,
#   and the warning is said once, not for every object sealed.
@functools.cache
def sealing_version() -> int:
    """The version new objects are sealed in: 2, or 1 without AES-OCB3."""
    try:
        AESOCB3(bytes(32))
    except UnsupportedAlgorithm:
        log.warning(
            'the cryptography library of this process has no AES-OCB3 (a build '
            'on LibreSSL or BoringSSL): objects are sealed in format version 1 '
            '(AES-256-GCM, slower to read), and objects of version 2 cannot be '
            'read here'
        )
        return GCM_VERSION
    return OCB_VERSION
