"""Storage: the pictures' objects, and the index that says which are current.

What the app uses is :class:`asgilook.storage.store.Store`; the rest is how
it keeps its word that an image is listed only once its objects are durable.
The modules:

* :mod:`asgilook.storage.store`: the store, saving, looking up, paging through,
  deleting and opening images.
* :mod:`asgilook.storage.image`: what the store hands out, an image version
  (``Image``).
* :mod:`asgilook.storage.renderer`: a version's objects made from its picture,
  at upload and (a missing thumbnail series) after the fact.
* :mod:`asgilook.storage.workers`: the threads for Pillow and for the disk.
* :mod:`asgilook.storage.objects`: the layout, which object of a version is
  which, in the backends configured (originals, renditions apart or not).
* :mod:`asgilook.storage.blobs`: where a storage's objects live, a local
  directory or an S3-compatible bucket, written durably and read by range,
  and :mod:`~asgilook.storage.blobs.sealed`, encryption around either.
* :mod:`asgilook.storage.crypto`: encryption at rest, the sealed format of
  stored objects, with :mod:`~asgilook.storage.keyring` (the keys that seal
  and open) and :mod:`~asgilook.storage.ciphers` (which cipher each format
  version's segments use).
* :mod:`asgilook.storage.space`: the free space of the local directories that
  hold objects, against what the largest upload needs.
* :mod:`asgilook.storage.index`: the index of images and its upload order,
  with its backends, :mod:`~asgilook.storage.index.sqlite` (the default) and
  :mod:`~asgilook.storage.index.postgres`, and the old
  :mod:`~asgilook.storage.index.journal`; :mod:`~asgilook.storage.index.wal`
  tells the SQLite fast path, without a system call, that nothing changed.

Within asgilook it stands on :mod:`asgilook.pictures` (Pillow, bytes to bytes),
:mod:`asgilook.config` and :mod:`asgilook.errors` only: nothing here knows
of Falcon, HTTP, the caches or the commands.
"""
