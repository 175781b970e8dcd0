"""``asgilook check``: a storage directory damaged on purpose, checked and repaired."""

import asyncio
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import types
import uuid

import falcon.testing
import PIL.Image
import pytest
import redis
import redis.asyncio

from asgilook.commands import check
from asgilook.commands import cli
from asgilook.commands.check import output
from asgilook.commands.check import walk
from asgilook.commands.check.report import Kind
from asgilook.commands.processes import free_port
from asgilook.http.app import create_app
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.store import Store
from tests.helpers import draw_image
from tests.test_placeholders import gif

TWO_HOURS = 2 * 3600


def anyone(entry):
    return True


def make_old(*paths):
    """Age files, and folders with what is in them (objects have no folders:
    a thumbnail folder is as old as its newest object)."""
    # NOTE: Two hours before now, not before the tests were collected: a
    #   slow session must not make the files older than the checks expect.
    then = time.time() - TWO_HOURS
    for path in paths:
        for aged in [*(path.iterdir() if path.is_dir() else ()), path]:
            os.utime(aged, (then, then))


def animation():
    return gif(['red', 'lime', 'blue'], size=(256, 128))


async def save(config, pictures, unlisted=()):
    """Store ``pictures`` (name: data), each under an id of its own; then take
    the ``unlisted`` ones out of the index, as if their commit had never
    happened. Their images, by name."""
    store = Store(config)
    try:
        images = {}
        for name, data in pictures.items():
            images[name], _ = await store.save(str(uuid.uuid4()), data)
        for name in unlisted:
            await store.index.delete(images[name].image_id, anyone)
    finally:
        await store.process_shutdown(None, None)
    return images


def storage(config):
    return pathlib.Path(str(config.storage_path))


def series_of(image):
    return image.thumbnail_path(image.thumbnail_sizes()[0]).parent


@pytest.fixture
def quiet(monkeypatch):
    for name in ('ASGI_LOOK_DATABASE_URL', 'ASGI_LOOK_STORAGE_PATH'):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def damaged(config):
    """A storage directory with something of every kind wrong, and strays."""
    still = draw_image((640, 360))
    images = asyncio.run(
        save(
            config,
            {
                'gone': still,
                'emptied': still,
                'one-thumbnail': draw_image((640, 360)),
                'no-thumbnails': draw_image((640, 360)),
                'intact': draw_image((640, 360)),
                'moving': animation(),
                'still-moving': animation(),
                'orphan': animation(),
                'young': draw_image((640, 360)),
            },
            unlisted=('orphan', 'young'),
        )
    )
    root = storage(config)
    images['gone'].path.unlink()
    images['emptied'].path.write_bytes(b'')
    images['one-thumbnail'].thumbnail_path((160, 90)).unlink()
    shutil.rmtree(series_of(images['no-thumbnails']))
    images['moving'].animation_path.unlink()
    orphan = images['orphan']
    make_old(orphan.path, orphan.animation_path, series_of(orphan))
    stale = [
        root / 'images/.lost.jpeg.0123abcd.partial',
        series_of(images['intact']) / '.320x180.webp.89abcdef.partial',
    ]
    for path in stale:
        path.write_bytes(b'half')
    make_old(*stale)
    young_partial = root / 'images/.upload.jpeg.fedcba98.partial'
    young_partial.write_bytes(b'in progress')
    strays = [root / 'images/notes.txt', root / 'thumbnails/README']
    for path in strays:
        path.write_text('Not a picture.\n')
    (root / 'images/lost+found').mkdir()
    strays.append(root / 'images/lost+found')
    return types.SimpleNamespace(
        root=root,
        images=images,
        stale=stale,
        young=[
            images['young'].path,
            series_of(images['young']),
            young_partial,
            # The uploads kept as they came of both unlisted pictures (the
            # orphan's is not made old).
            images['young'].path.with_suffix('.original'),
            orphan.path.with_suffix('.original'),
        ],
        strays=strays,
    )


def run(capsys, *args):
    """``asgilook check`` in this process: its status, stdout and stderr."""
    status = cli.main(['check', *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def snapshot(root):
    """Every file and folder (but the index's) with its size and time, and
    the index's entries."""

    async def entries():
        index = SQLiteIndex(root)
        try:
            return (await index.page())[0]
        finally:
            await index.close()

    files = {
        path: (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob('*')
        if not path.name.startswith(SQLiteIndex.FILE)
    }
    return files, asyncio.run(entries())


def seen(root):
    """The files a check looks at: in images/, and in each thumbnail folder."""
    files = [path for path in (root / 'images').iterdir() if path.is_file()]
    for folder in (root / 'thumbnails').iterdir():
        if folder.is_dir():
            files.extend(path for path in folder.iterdir() if path.is_file())
    return len(files), sum(path.stat().st_size for path in files)


def decode(data, size=None):
    image = PIL.Image.open(io.BytesIO(data))
    image.load()
    if size is not None:
        assert image.size == size
    return image


def test_check_reports_every_kind_of_damage_and_changes_nothing(capsys, quiet, damaged):
    root, images = damaged.root, damaged.images
    before = snapshot(root)
    files, size = seen(root)

    status, out, err = run(capsys, '--storage', root)

    assert (status, err) == (1, '')
    assert snapshot(root) == before
    assert out.startswith(
        f'Checked {root} against its index (SQLite, index.sqlite3): 7 images, '
        f'{files} files, {output.size(size)}.\n'
    )
    orphan = images['orphan']
    orphan_bytes = (
        orphan.path.stat().st_size
        + orphan.animation_path.stat().st_size
        + sum(path.stat().st_size for path in series_of(orphan).iterdir())
    )
    for expected in [
        'Images without their picture (the original is missing or empty): 2',
        f'  images/{images["gone"].path.name}  missing\n',
        f'  images/{images["emptied"].path.name}  empty\n',
        'Images missing thumbnails: 2',
        f'  thumbnails/{series_of(images["one-thumbnail"]).name}/  160x90.jpeg\n',
        f'  thumbnails/{series_of(images["no-thumbnails"]).name}/  '
        '320x180.jpeg, 160x90.jpeg\n',
        'Images missing their animation (it cannot be made again): 1',
        f'  images/{images["moving"].animation_path.name}  missing\n',
        'Orphans (files and thumbnail folders no image refers to): '
        f'3, {output.size(orphan_bytes)}\n',
        f'  images/{orphan.path.name}  {output.size(orphan.path.stat().st_size)}, '
        '2.0 h old\n',
        f'  thumbnails/{series_of(orphan).name}/  ',
        'Stale .partial files (writes that never finished): 2, 8 B\n',
        '  images/.lost.jpeg.0123abcd.partial  4 B, 2.0 h old\n',
        f'  thumbnails/{series_of(images["intact"]).name}/'
        '.320x180.webp.89abcdef.partial  4 B, 2.0 h old\n',
        # The partial, the young picture's objects, and the orphan's upload
        # kept as it came (not made old).
        'Left alone (younger than --grace, 3600 s: maybe uploads in progress): 5, ',
        '  images/.upload.jpeg.fedcba98.partial  11 B, 0 min old\n',
        '\n10 problems found; nothing was changed. --repair repairs them (but not a '
        'missing animation).\n',
    ]:
        assert expected in out
    assert '-> ' not in out
    for stray in ('notes.txt', 'README', 'lost+found'):
        assert stray not in out


def test_repair_fixes_what_it_can_and_the_service_serves_everything(
    capsys, quiet, damaged, config
):
    root, images = damaged.root, damaged.images
    kept = images['one-thumbnail'].thumbnail_path((320, 180)).read_bytes()
    young = {path: path.stat().st_mtime_ns for path in damaged.young + damaged.strays}

    status, out, err = run(capsys, '--storage', root, '--repair')

    assert (status, err) == (1, '')
    for expected in [
        f'images/{images["gone"].path.name}  missing  -> removed from the index\n',
        f'images/{images["emptied"].path.name}  empty  -> removed from the index\n',
        '160x90.jpeg  -> rendered again\n',
        '320x180.jpeg, 160x90.jpeg  -> rendered again\n',
        f'images/{images["moving"].animation_path.name}  missing  -> cannot be '
        'repaired: it was made from the upload, which is not kept (delete the '
        'image, and upload the picture again)\n',
        f'images/{images["orphan"].path.name}  ',
        '\nRepaired 9 of 10 problems; 1 could not be (see above).\n',
    ]:
        assert expected in out
    assert out.count('  -> removed\n') == 5  # 3 orphans, 2 partials
    # What an upload in progress may be, and what is not asgilook's, is there.
    assert {path: path.stat().st_mtime_ns for path in young} == young
    for image_id in ('gone', 'emptied', 'orphan'):
        image = images[image_id]
        for path in (image.path, image.animation_path, series_of(image)):
            assert not path.exists()
    assert not any(path.exists() for path in damaged.stale)
    for image_id in ('one-thumbnail', 'no-thumbnails'):
        image = images[image_id]
        for size in image.thumbnail_sizes():
            decode(image.thumbnail_path(size).read_bytes(), size)
    # The thumbnail that was there keeps its bytes (and so its entity tag).
    assert images['one-thumbnail'].thumbnail_path((320, 180)).read_bytes() == kept

    again, out, err = run(capsys, '--storage', root)
    assert again == 1
    assert 'Checked' in out and ': 5 images, ' in out
    assert 'Images missing their animation (it cannot be made again): 1\n' in out
    assert 'Left alone (younger than --grace, 3600 s' in out
    assert out.endswith('\n1 problem found, which --repair cannot repair.\n')
    assert run(capsys, '--storage', root, '--repair')[0] == 1

    client = falcon.testing.TestClient(create_app(config))
    listing = client.simulate_get('/images').json
    listed = ('one-thumbnail', 'no-thumbnails', 'intact', 'moving', 'still-moving')
    assert {document['id'] for document in listing} == {
        images[name].image_id for name in listed
    }
    for document in listing:
        response = client.simulate_get(document['image'])
        assert response.status_code == 200
        assert list(decode(response.content).size) == document['size']
        for uri in document['thumbnails']:
            width, height = uri.rpartition('/')[2].removesuffix('.jpeg').split('x')
            response = client.simulate_get(uri)
            assert response.status_code == 200
            decode(response.content, (int(width), int(height)))
    response = client.simulate_get(images['still-moving'].animation_uri)
    moving = decode(response.content)
    assert (moving.format, moving.n_frames) == ('WEBP', 3)
    # The one whose animation is lost says so.
    broken = client.simulate_get(images['moving'].animation_uri)
    assert broken.status_code == 404
    assert 'has no animation' in broken.json['description']


def test_json_lists_every_problem(capsys, quiet, damaged, monkeypatch):
    root, images = damaged.root, damaged.images
    monkeypatch.setattr(output, 'EXAMPLES', 1)

    status, out, err = run(capsys, '--storage', root)
    assert status == 1
    assert '  ... and 1 more (--json lists them all)\n' in out

    status, out, err = run(capsys, '--storage', root, '--json')
    assert status == 1
    document = json.loads(out)
    files, size = seen(root)
    assert {key: document[key] for key in document if key != 'problems'} == {
        'storage': str(root),
        'renditions': None,
        'index': 'SQLite, index.sqlite3',
        'repair': False,
        'verify': False,
        'grace': 3600,
        'images': 7,
        'files': files,
        'bytes': size,
        'left_alone': document['left_alone'],
        'refused': None,
        'cache': None,
        'found': 10,
        'remaining': 10,
        'status': 1,
    }
    problems = document['problems']
    assert {kind: len(found) for kind, found in problems.items()} == {
        'no-picture': 2,
        'thumbnails': 2,
        'animation': 1,
        'kept-original': 0,
        'damaged': 0,
        'orphan': 3,
        'partial': 2,
    }
    image_id = images['gone'].image_id
    gone = next(p for p in problems['no-picture'] if p['image_id'] == image_id)
    assert gone == {
        'path': f'images/{images["gone"].path.name}',
        'image_id': image_id,
        'bytes': 0,
        'age': None,
        'detail': 'missing',
        'repaired': False,
        'outcome': None,
    }
    partial = problems['partial'][0]
    assert partial['image_id'] is None
    assert partial['bytes'] == 4
    assert 7100 < partial['age'] < 7300
    assert sorted(p['path'] for p in document['left_alone']) == sorted(
        str(path.relative_to(root)) + ('/' if path.is_dir() else '')
        for path in damaged.young
    )

    # With no grace at all, what is young is taken for orphans too.
    status, out, err = run(capsys, '--storage', root, '--json', '--grace', '0')
    document = json.loads(out)
    assert document['left_alone'] == []
    assert len(document['problems']['orphan']) == 7
    assert len(document['problems']['partial']) == 3


@pytest.mark.e2e
def test_python_dash_m_asgilook_check(damaged):
    env = dict(os.environ, ASGI_LOOK_STORAGE_PATH=str(damaged.root))
    env.pop('ASGI_LOOK_DATABASE_URL', None)

    done = subprocess.run(
        [sys.executable, '-m', 'asgilook', 'check'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert (done.returncode, done.stderr) == (1, '')
    assert done.stdout.startswith(f'Checked {damaged.root} against its index')
    assert done.stdout.endswith(
        '10 problems found; nothing was changed. --repair repairs them (but not a '
        'missing animation).\n'
    )


@pytest.mark.postgres
def test_a_postgresql_index(capsys, quiet, config, postgres_server):
    url = postgres_server.database()
    config.database_url = url
    images = asyncio.run(
        save(
            config,
            {name: draw_image((256, 256)) for name in ('a', 'b', 'c', 'orphan')},
            unlisted=('orphan',),
        )
    )
    root = storage(config)
    images['a'].path.unlink()
    images['b'].thumbnail_path((64, 64)).unlink()
    orphan = images['orphan'].path
    make_old(orphan, orphan.with_suffix('.original'), series_of(images['orphan']))
    # No SQLite index is made, or needed.
    assert not (root / SQLiteIndex.FILE).exists()

    status, out, err = run(capsys, '--storage', root, '--database-url', url)
    assert (status, err) == (1, '')
    assert out.startswith(
        f'Checked {root} against its index (PostgreSQL at {url}): 3 images, '
    )
    assert out.endswith(
        '\n5 problems found; nothing was changed. --repair repairs them.\n'
    )

    status, out, err = run(capsys, '--storage', root, '--database-url', url, '--repair')
    assert (status, err) == (0, '')
    assert out.endswith('\nRepaired 5 problems.\n')

    status, out, err = run(capsys, '--storage', root, '--database-url', url)
    assert status == 0
    # Each image's JPEG, its PNG kept as uploaded, and two thumbnails.
    assert re.search(r': 2 images, 8 files, [\d.]+ kB\.\n\nNo problems found\.\n$', out)
    assert not (root / SQLiteIndex.FILE).exists()


def test_repairs_are_refused_when_no_picture_of_the_index_is_there(
    capsys, quiet, config
):
    images = asyncio.run(
        save(config, {name: draw_image((256, 256)) for name in ('a', 'b')})
    )
    root = storage(config)
    for image in images.values():
        image.path.unlink()
    before = snapshot(root)

    status, out, err = run(capsys, '--storage', root, '--repair')

    assert status == 1
    assert out.endswith(
        '\n2 problems found. Nothing was repaired: no image of the index has its '
        'picture in this storage directory, so they may not belong together (see '
        '--storage and --database-url).\n'
    )
    assert snapshot(root) == before


def test_what_a_service_changes_meanwhile_is_not_taken_for_damage(
    quiet, config, monkeypatch
):
    """A service replaces and lists images while the check reads and repairs."""
    pictures = {name: draw_image((256, 256)) for name in 'abcde'}
    images = asyncio.run(
        save(config, {**pictures, 'o': draw_image((256, 256))}, unlisted=('o',))
    )
    root = storage(config)
    for name in 'bc':
        images[name].path.unlink()
    make_old(images['o'].path, series_of(images['o']))
    replaced = {}

    class Meddling(SQLiteIndex):
        """The index, changed by a service just before some of its calls."""

        before = {}

        async def meddle(self, key):
            action = self.before.pop(key, None)
            if action is not None:
                await action()

        async def page(self, limit=None, after=None, newest_first=False, **which):
            await self.meddle(('page', after))
            return await super().page(limit, after, newest_first, **which)

        async def get(self, image_id):
            await self.meddle(('get', image_id))
            return await super().get(image_id)

        async def delete(self, image_id, allowed):
            await self.meddle(('delete', image_id))
            return await super().delete(image_id, allowed)

    def replace(name):
        async def action():
            store = Store(config)
            try:
                image_id = images[name].image_id
                replaced[name], _ = await store.save(image_id, draw_image())
            finally:
                await store.process_shutdown(None, None)

        return action

    async def list_o():
        index = SQLiteIndex(root)
        entry = images['o']
        await index.put(entry.image_id, entry.path.name, entry.size, 'f' * 64)
        await index.close()

    Meddling.before = {
        # The cursor of the second page is replaced: it becomes the newest.
        ('page', images['d'].image_id): replace('d'),
        # A missing original is replaced before it is reported,
        ('get', images['b'].image_id): replace('b'),
        # and another one just before it is removed from the index.
        ('delete', images['c'].image_id): replace('c'),
        # An upload whose commit was not confirmed turns out to be listed.
        ('get', images['o'].image_id): list_o,
    }
    monkeypatch.setattr(walk, 'PAGE', 2)
    monkeypatch.setattr(check, 'open_index', lambda config: Meddling(root))

    report = asyncio.run(check.check(config, repair=True))

    assert Meddling.before == {}
    # Each version seen once: a, b, c, d (before it was replaced) and e.
    assert report.images == 5
    (problem,) = report.problems[Kind.NO_PICTURE]
    assert (problem.image_id, problem.repaired) == (images['c'].image_id, True)
    assert problem.outcome == 'left alone: the image was changed meanwhile'
    assert report.found == 1 and report.status == 0
    assert output.summary(report).endswith('\nRepaired 1 problem.\n')
    for image in [*replaced.values(), images['o']]:
        assert image.path.exists()
        assert series_of(image).exists()


def test_a_repair_that_fails_is_reported(capsys, quiet, config, monkeypatch):
    images = asyncio.run(
        save(config, {name: draw_image((256, 256)) for name in ('a', 'b', 'o')}, ('o',))
    )
    root = storage(config)
    images['a'].path.write_bytes(b'This is not a JPEG any more.')
    images['a'].thumbnail_path((64, 64)).unlink()
    # An empty thumbnail is as good as missing.
    images['b'].thumbnail_path((64, 64)).write_bytes(b'')
    make_old(images['o'].path, series_of(images['o']))

    def refuse(path):
        raise PermissionError(13, 'Permission denied', str(path))

    monkeypatch.setattr(shutil, 'rmtree', refuse)
    status, out, err = run(capsys, '--storage', root, '--repair')

    assert status == 1
    assert '64x64.jpeg  -> could not be rendered again: cannot identify image' in out
    folder = series_of(images['o'])
    size = output.size(sum(path.stat().st_size for path in folder.iterdir()))
    assert (
        f'  thumbnails/{folder.name}/  {size}, 2.0 h old  -> could not be removed: '
        'Permission denied\n'
    ) in out
    assert f'  images/{images["o"].path.name}  ' in out
    assert '64x64.jpeg  -> rendered again\n' in out
    assert out.endswith('\nRepaired 2 of 4 problems; 2 could not be (see above).\n')
    assert not images['o'].path.exists()
    decode(images['b'].thumbnail_path((64, 64)).read_bytes(), (64, 64))


def test_a_storage_directory_that_cannot_be_checked(
    capsys, quiet, tmp_path, config, monkeypatch
):
    nowhere = tmp_path / 'nowhere'
    status, out, err = run(capsys, '--storage', nowhere)
    assert (status, out) == (3, '')
    assert err == (
        f'asgilook check: cannot check {nowhere}: there is no storage directory '
        f'{nowhere}\n'
    )

    # A directory without an index: none is made, and nothing is taken for
    # orphans.
    empty = tmp_path / 'empty'
    (empty / 'images').mkdir(parents=True)
    status, out, err = run(capsys, '--storage', empty, '--repair')
    assert status == 3
    assert f'there is no index in {empty} (index.sqlite3): is it a storage ' in err
    assert 'With a PostgreSQL index, give its --database-url.\n' in err
    assert sorted(path.name for path in empty.iterdir()) == ['images']

    asyncio.run(save(config, {'a': draw_image((256, 256))}))
    root = storage(config)
    shutil.rmtree(root / 'images')
    status, out, err = run(capsys, '--storage', root)
    assert status == 3
    assert f'cannot check {root}: [Errno 2] No such file or directory: ' in err

    # The environment's settings are read, as a service reads them; the one
    # naming a storage directory is put back.
    monkeypatch.setenv('ASGI_LOOK_STORAGE_PATH', str(tmp_path / 'other'))
    monkeypatch.setenv('ASGI_LOOK_MAX_PIXELS', 'many')
    status, out, err = run(capsys, '--storage', root)
    assert status == 3
    assert "ASGI_LOOK_MAX_PIXELS must be a positive number, not 'many'" in err
    assert os.environ['ASGI_LOOK_STORAGE_PATH'] == str(tmp_path / 'other')
    assert not (tmp_path / 'other').exists()


def test_the_environment_given_is_read_and_never_written(
    capsys, quiet, tmp_path, config, monkeypatch
):
    """The settings come from the environment that ``cli.main`` is given,
    read-only here; ``os.environ`` is not touched."""
    asyncio.run(save(config, {'a': draw_image((256, 256))}))
    root = storage(config)
    monkeypatch.setenv('ASGI_LOOK_STORAGE_PATH', str(tmp_path / 'other'))
    before = dict(os.environ)

    def written(*args):
        raise AssertionError(f'os.environ was written: {args}')

    def check_in(environ):
        with monkeypatch.context() as patch:
            patch.setattr(type(os.environ), '__setitem__', written)
            patch.setattr(type(os.environ), '__delitem__', written)
            status = cli.main(['check', '--storage', str(root)], environ)
        return (status, *capsys.readouterr())

    elsewhere = {'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'elsewhere')}
    status, out, err = check_in(
        types.MappingProxyType({**elsewhere, 'ASGI_LOOK_MAX_PIXELS': 'many'})
    )
    assert (status, out) == (3, '')
    assert "ASGI_LOOK_MAX_PIXELS must be a positive number, not 'many'" in err

    status, out, err = check_in(types.MappingProxyType(elsewhere))
    assert (status, err) == (0, '')
    assert out.startswith(f'Checked {root} against its index (SQLite, ')

    # Without --storage, the storage directory is the environment's.
    status = cli.main(
        ['check'], types.MappingProxyType({'ASGI_LOOK_STORAGE_PATH': str(root)})
    )
    assert status == 0
    assert capsys.readouterr().out.startswith(f'Checked {root} against its index')
    assert dict(os.environ) == before
    assert not (tmp_path / 'other').exists()
    assert not (tmp_path / 'elsewhere').exists()


def test_a_clean_storage_directory(capsys, quiet, config, monkeypatch):
    asyncio.run(save(config, {'a': draw_image((256, 256)), 'b': animation()}))
    root = storage(config)
    # The default storage directory is `asgilook serve`'s.
    monkeypatch.setenv('ASGI_LOOK_STORAGE_PATH', str(root))

    status, out, err = run(capsys)

    assert (status, err) == (0, '')
    assert out == (
        f'Checked {root} against its index (SQLite, index.sqlite3): 2 images, '
        f'{seen(root)[0]} files, {output.size(seen(root)[1])}.\n\nNo problems found.\n'
    )


@pytest.mark.parametrize(
    'args, message',
    [
        (['--grace', '-1'], "'-1' is not a whole number of seconds"),
        (['--grace', 'soon'], "'soon' is not a whole number of seconds"),
        (['--repair', 'now'], 'unrecognized arguments: now'),
    ],
)
def test_usage_errors_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit:
        cli.main(['check', *args])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_help_says_the_examples_and_exit_statuses(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(['check', '--help'])
    assert exit.value.code == 0
    help = capsys.readouterr().out
    assert 'asgilook check --storage /srv/asgilook --repair' in help
    assert '1  problems remain' in help
    assert '3  the check could not be made' in help


def test_sizes_and_ages_are_said_in_few_digits():
    assert output.size(999) == '999 B'
    assert output.size(1500) == '1.5 kB'
    assert output.size(2_500_000) == '2.5 MB'
    assert output.size(7 * 10**15) == '7000.0 TB'
    assert output.age(-5) == '0 min'
    assert output.age(1800) == '30 min'
    assert output.age(5400) == '1.5 h'


def cached_listing(client):
    """``GET /images`` until it comes from the cache: the listing, and whether
    it did."""
    response = client.simulate_get('/images')
    return response.json, response.headers.get('X-ASGILook-Cache')


def test_a_repair_that_unlists_images_makes_the_services_cache_stale(
    capsys, quiet, config, redis_server, monkeypatch
):
    redis.Redis.from_url(redis_server.url).flushall()
    config.redis_from_url = redis.asyncio.from_url
    config.redis_host = redis_server.url
    monkeypatch.setenv('ASGI_LOOK_REDIS_URL', redis_server.url)
    images = asyncio.run(
        save(config, {'gone': draw_image((640, 360)), 'kept': draw_image((640, 360))})
    )
    client = falcon.testing.TestClient(create_app(config))
    client.simulate_get('/images')
    listing, cache = cached_listing(client)
    assert cache == 'Hit' and len(listing) == 2
    images['gone'].path.unlink()

    status, out, err = run(capsys, '--storage', storage(config), '--repair')

    assert (status, err) == (0, '')
    assert (
        f'The responses cached in Redis at {redis_server.url} were made stale.\n' in out
    )
    listing, cache = cached_listing(client)
    assert cache == 'Miss'
    assert [document['id'] for document in listing] == [images['kept'].image_id]


def test_a_redis_that_cannot_be_told_is_said_and_is_no_failure(
    capsys, quiet, config, monkeypatch
):
    monkeypatch.setenv('ASGI_LOOK_REDIS_URL', f'redis://127.0.0.1:{free_port()}')
    pictures = {'gone': draw_image((640, 360)), 'kept': draw_image((640, 360))}
    images = asyncio.run(save(config, pictures))
    images['gone'].path.unlink()

    status, out, err = run(capsys, '--storage', storage(config), '--repair')

    assert (status, err) == (0, '')
    assert 'The cache in Redis at redis://127.0.0.1:' in out
    assert ' could not be told (' in out
    assert 'may show the images removed from the index for up to 60 minutes.' in out
    assert out.endswith('\nRepaired 1 problem.\n')


def test_private_and_unlisted_pictures_are_checked_too(
    capsys, quiet, config, monkeypatch
):
    """The check walks every picture the index lists to anyone, its key or
    nobody: a damaged private picture is found like any other."""

    async def made():
        store = Store(config)
        try:
            return [
                (
                    await store.save(
                        str(uuid.uuid4()), draw_image((256, 256)), visibility=v
                    )
                )[0]
                for v in ('public', 'unlisted', 'private')
            ]
        finally:
            await store.process_shutdown(None, None)

    public, unlisted, private = asyncio.run(made())
    root = storage(config)
    monkeypatch.setenv('ASGI_LOOK_STORAGE_PATH', str(root))
    private.path.unlink()

    status, out, _ = run(capsys)

    assert status != 0
    assert ': 3 images,' in out
    assert private.image_id in out
    assert public.image_id not in out and unlisted.image_id not in out
