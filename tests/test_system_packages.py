"""scripts/system-packages.sh: what `make test` installs before the tests run."""

import os
import pathlib
import subprocess
import tempfile

import pytest

SCRIPT = pathlib.Path(__file__).parent.parent / 'scripts' / 'system-packages.sh'
PACKAGES = ['curl', 'chromium', 'chromium-driver', 'postgresql', 'nginx']


@pytest.fixture
def world():
    """A folder that any user can read (pytest's tmp_path is its owner's only)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        yield pathlib.Path(folder)


def run(root, user=None):
    env = {'PATH': os.environ['PATH'], 'ASGILOOK_SYSTEM_ROOT': str(root)}
    command = ['bash', str(SCRIPT)]
    if user is not None:
        command = ['runuser', '-u', user, '--', *command]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def test_without_root_it_names_the_missing_packages_and_the_command(world):
    tmp_path = world
    (tmp_path / 'usr' / 'bin').mkdir(parents=True)
    (tmp_path / 'usr' / 'bin' / 'curl').write_text('')
    (tmp_path / 'usr' / 'bin' / 'curl').chmod(0o755)

    # NOTE: As root (as in CI), the script is run as nobody.
    done = run(tmp_path, user='nobody' if os.geteuid() == 0 else None)

    assert done.returncode == 1
    assert done.stdout == ''
    missing = ' '.join(PACKAGES[1:])
    assert done.stderr.splitlines() == [
        f'The tests need these Debian packages: {missing}. '
        f'Install them with: sudo apt-get install {missing}'
    ]


def test_with_every_package_there_it_does_nothing(tmp_path):
    for name in ('curl', 'chromium', 'chromedriver'):
        path = tmp_path / 'usr' / 'bin' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('')
        path.chmod(0o755)
    initdb = tmp_path / 'usr' / 'lib' / 'postgresql' / '15' / 'bin' / 'initdb'
    initdb.parent.mkdir(parents=True)
    initdb.write_text('')
    nginx = tmp_path / 'usr' / 'sbin' / 'nginx'
    nginx.parent.mkdir(parents=True)
    nginx.write_text('')
    nginx.chmod(0o755)

    done = run(tmp_path)

    assert (done.returncode, done.stdout, done.stderr) == (0, '', '')
