"""The shared index: several Journal objects on one directory act as processes."""

import concurrent.futures
import logging
import os
import time

import pytest

from asgilook.errors import DeleteForbidden
from asgilook.errors import ImageNotFound
from asgilook.errors import UnknownCursor
from asgilook.journal import Behind
from asgilook.journal import Journal


def put(journal, image_id, token='t'):
    name = f'{image_id}.{time.monotonic_ns()}.jpeg'
    (journal.images / name).write_bytes(b'jpeg')
    return journal.put(image_id, name, (100, 50), token)


def ids(journal, **kwargs):
    return [entry.image_id for entry in journal.page(**kwargs)]


def lines(journal):
    return (journal.root / Journal.FILE).read_bytes().splitlines()


def test_processes_see_each_others_changes_at_once(tmp_path):
    one, two = Journal(tmp_path), Journal(tmp_path)
    put(one, 'a')
    assert two.get('a').size == (100, 50)
    put(two, 'b')
    assert ids(one) == ['a', 'b']

    two.delete('a', lambda entry: True)
    assert one.get('a') is None
    assert ids(one) == ['b']


def test_replacing_moves_the_image_to_the_end_and_removes_its_old_file(tmp_path):
    journal = Journal(tmp_path)
    first = put(journal, 'a')
    put(journal, 'b')
    second = put(journal, 'a')
    assert ids(journal) == ['b', 'a']
    assert not (journal.images / first.file).exists()
    assert (journal.images / second.file).exists()


def test_pages_follow_the_upload_order(tmp_path):
    journal = Journal(tmp_path)
    for image_id in 'abcdef':
        put(journal, image_id)
    journal.delete('c', lambda entry: True)

    assert ids(journal, limit=2) == ['a', 'b']
    assert ids(journal, limit=2, after='b') == ['d', 'e']
    assert ids(journal, limit=2, after='e') == ['f']
    assert ids(journal, after='f') == []
    with pytest.raises(UnknownCursor, match='no image x to list after'):
        journal.page(limit=2, after='x')


def test_a_deleted_image_keeps_its_place_as_a_cursor(tmp_path):
    journal = Journal(tmp_path)
    other = Journal(tmp_path)
    for image_id in 'abcdef':
        put(journal, image_id)
    # A client's page ended with c; c and d are deleted meanwhile, in
    # another process.
    other.delete('c', lambda entry: True)
    other.delete('d', lambda entry: True)
    assert ids(journal, limit=2, after='c') == ['e', 'f']
    assert ids(journal, limit=2, after='d', newest_first=True) == ['b', 'a']
    # Uploaded again, it is where it is now.
    put(other, 'c')
    assert ids(journal, after='c') == []
    # A restarted worker reads the deletions from the journal too.
    assert ids(Journal(tmp_path), after='d') == ['e', 'f', 'c']


def test_delete_checks_before_it_changes_anything(tmp_path):
    journal = Journal(tmp_path)
    entry = put(journal, 'a', token='right')
    with pytest.raises(DeleteForbidden):
        journal.delete('a', lambda entry: entry.token_hash == 'wrong')
    with pytest.raises(ImageNotFound):
        journal.delete('nope', lambda entry: True)
    assert ids(Journal(tmp_path)) == ['a']
    assert (journal.images / entry.file).exists()
    assert len(lines(journal)) == 2  # the header and one put


def test_concurrent_writers_agree_on_one_order(tmp_path):
    writers = [Journal(tmp_path) for _ in range(4)]

    def upload(number):
        return put(writers[number % 4], f'id-{number:03}').image_id

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        uploaded = list(pool.map(upload, range(200)))

    orders = [ids(writer) for writer in writers] + [ids(Journal(tmp_path))]
    assert all(order == orders[0] for order in orders)
    assert sorted(orders[0]) == sorted(uploaded)
    stamps = [entry.modified for entry in Journal(tmp_path).page()]
    assert stamps == sorted(stamps) and len(set(stamps)) == 200


def test_a_torn_line_is_never_read_and_is_cut_by_the_next_writer(tmp_path, caplog):
    journal = Journal(tmp_path)
    put(journal, 'a')
    with open(tmp_path / Journal.FILE, 'ab') as file:
        file.write(b'{"op":"put","id":"torn","fi')  # a crash mid-write

    reader = Journal(tmp_path)
    assert ids(reader) == ['a']
    with caplog.at_level(logging.WARNING, logger='asgilook.journal'):
        put(journal, 'b')
    assert 'torn journal line' in caplog.text
    assert ids(reader) == ['a', 'b']
    assert len(lines(journal)) == 3  # the header and two puts


def test_a_journal_that_is_one_torn_line_is_emptied(tmp_path):
    (tmp_path / Journal.FILE).write_bytes(b'{"op":"journal","id":"4f')
    journal = Journal(tmp_path)
    assert ids(journal) == []
    put(journal, 'a')
    assert ids(Journal(tmp_path)) == ['a']


@pytest.mark.parametrize(
    'damaged',
    [b'not json', b'{"op":"put","id":"x"}', b'{"op":"move","id":"a"}', b'[1, 2]'],
)
def test_a_damaged_line_is_skipped_with_a_warning(tmp_path, caplog, damaged):
    journal = Journal(tmp_path)
    put(journal, 'a')
    with open(tmp_path / Journal.FILE, 'ab') as file:
        file.write(damaged + b'\n')
    put(journal, 'b')

    with caplog.at_level(logging.WARNING, logger='asgilook.journal'):
        assert ids(Journal(tmp_path)) == ['a', 'b']
    assert 'unreadable journal line' in caplog.text


def test_compaction_keeps_the_listing_and_readers_follow_it(tmp_path, monkeypatch):
    monkeypatch.setattr(Journal, 'COMPACT_MIN_DEAD', 10)
    writer, reader = Journal(tmp_path), Journal(tmp_path)
    for image_id in 'abcde':
        put(writer, image_id)
    assert ids(reader) == list('abcde')
    header = lines(writer)[0]

    for _ in range(6):
        for image_id in 'bd':
            put(writer, image_id)
    writer.delete('e', lambda entry: True)

    assert lines(writer)[0] != header
    assert len(lines(writer)) < 10
    expected = ['a', 'c', 'b', 'd']
    assert ids(writer) == ids(reader) == ids(Journal(tmp_path)) == expected
    stamps = {entry.image_id: entry.modified for entry in reader.page()}
    assert stamps == {entry.image_id: entry.modified for entry in writer.page()}


def test_compaction_removes_old_orphans_only(tmp_path, monkeypatch):
    monkeypatch.setattr(Journal, 'COMPACT_MIN_DEAD', 2)
    journal = Journal(tmp_path)
    old = journal.images / 'crashed-long-ago.jpeg'
    young = journal.images / 'upload-waiting-for-the-lock.jpeg'
    old_thumbnails = journal.thumbnails / 'crashed-long-ago'
    young_thumbnails = journal.thumbnails / 'upload-waiting-for-the-lock'
    for path in (old, young):
        path.write_bytes(b'x')
    for path in (old_thumbnails, young_thumbnails):
        path.mkdir()
        (path / '80x40.jpeg').write_bytes(b'x')
    an_hour_and_more = time.time() - Journal.ORPHAN_GRACE_SECONDS - 60
    for path in (old, old_thumbnails):
        os.utime(path, (an_hour_and_more, an_hour_and_more))

    for _ in range(3):
        entry = put(journal, 'a')
    # The live version's thumbnails stay, however old.
    live = journal.thumbnails_of(entry.file)
    live.mkdir()
    os.utime(live, (an_hour_and_more, an_hour_and_more))
    for _ in range(3):
        entry = put(journal, 'b')
        journal.delete('b', lambda entry: True)

    assert not old.exists()
    assert not old_thumbnails.exists()
    assert young.exists()
    assert young_thumbnails.exists()
    assert live.exists()
    assert ids(journal) == ['a']


def test_a_vanished_journal_empties_the_index(tmp_path):
    journal = Journal(tmp_path)
    put(journal, 'a')
    assert ids(journal) == ['a']
    os.unlink(tmp_path / Journal.FILE)
    assert ids(journal) == []
    assert journal.get('a') is None


def test_peek_answers_from_memory_only_while_the_journal_is_unchanged(tmp_path):
    journal = Journal(tmp_path)
    other = Journal(tmp_path)
    with pytest.raises(Behind):
        journal.peek('a')  # Never caught up yet.
    put(journal, 'a')
    assert journal.peek('a').image_id == 'a'
    assert journal.peek('b') is None

    put(other, 'b')
    with pytest.raises(Behind):
        journal.peek('b')
    assert journal.get('b').image_id == 'b'
    assert journal.peek('b').image_id == 'b'


def test_peek_never_waits_for_a_thread_that_reads_the_journal(tmp_path):
    journal = Journal(tmp_path)
    put(journal, 'a')
    with concurrent.futures.ThreadPoolExecutor(1) as reader:
        holding = reader.submit(journal._mutex.acquire)
        assert holding.result()
        with pytest.raises(Behind):
            journal.peek('a')
        reader.submit(journal._mutex.release).result()
    assert journal.peek('a').image_id == 'a'


def test_a_vanished_journal_makes_peek_unsure(tmp_path):
    journal = Journal(tmp_path)
    put(journal, 'a')
    os.unlink(tmp_path / Journal.FILE)
    with pytest.raises(Behind):
        journal.peek('a')
