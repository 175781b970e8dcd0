"""``asgilook rekey`` and the format versions of sealed objects.

Run in this process on a real storage directory, as in test_migrate.py: a
rotation keeps each object's version, ``--reencrypt`` writes version 2.
"""

import asyncio
import base64
import pathlib

from asgilook.storage.crypto import Header
from asgilook.storage.crypto import Keyring
from asgilook.storage.crypto import seal
from asgilook.storage.crypto import unseal
from tests.helpers import stored_objects
from tests.test_migrate import KEY_A
from tests.test_migrate import KEY_B
from tests.test_migrate import OBJECTS
from tests.test_migrate import run_json
from tests.test_migrate import served
from tests.test_migrate import settings
from tests.test_migrate import upload


def versions(storage):
    return {
        key: Header.parse(data, key).version
        for key, data in stored_objects(storage).items()
    }


def rewrite_in_version_1(storage, key):
    """Seal every object of ``storage`` again in version 1, as older code did."""
    keyring = Keyring(base64.b64decode(key))
    for name, data in stored_objects(storage).items():
        plain = unseal(keyring, name, data)
        path = pathlib.Path(storage, name)
        path.write_bytes(seal(keyring, name, plain, version=1))


def test_a_rotation_keeps_version_1_and_reencrypt_makes_version_2(capsys, tmp_path):
    storage = tmp_path / 'storage'
    under_a = settings(storage, ASGI_LOOK_ENCRYPTION_KEY=KEY_A)
    asyncio.run(upload(under_a))
    assert set(versions(storage).values()) == {2}
    rewrite_in_version_1(storage, KEY_A)
    assert set(versions(storage).values()) == {1}
    before = asyncio.run(served(under_a))
    rotated = settings(
        storage, ASGI_LOOK_ENCRYPTION_KEY=KEY_B, ASGI_LOOK_ENCRYPTION_OLD_KEYS=KEY_A
    )

    status, document, _ = run_json(capsys, rotated, 'rekey')
    assert status == 0
    assert document['objects']['rewrapped'] == OBJECTS
    assert set(versions(storage).values()) == {1}

    under_b = settings(storage, ASGI_LOOK_ENCRYPTION_KEY=KEY_B)
    status, document, _ = run_json(capsys, under_b, 'rekey', '--reencrypt')
    assert status == 0
    assert document['objects']['reencrypted'] == OBJECTS
    assert set(versions(storage).values()) == {2}
    assert asyncio.run(served(under_b)) == before
