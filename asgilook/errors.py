"""The domain errors of the store and the pixel pipeline.

They know nothing of HTTP; ``create_app`` maps each to an HTTP error in one
place. ``str(ex)`` is written for the client: it says what was wrong.
"""


class StoreError(Exception):
    """Base class of the store's domain errors; ``str(ex)`` says what was wrong."""


class ImageNotFound(StoreError):
    """No image with that id, or no thumbnail of that size for it."""


class InvalidImage(StoreError):
    """The upload is empty, truncated or corrupt: it cannot be decoded."""


class UnsupportedImage(InvalidImage):
    """The upload is not in any image format that the store reads."""


class ImageTooLarge(InvalidImage):
    """The upload has more pixels than the store is willing to decode."""


class UnknownCursor(StoreError):
    """A listing was asked to start after an image that does not exist."""


class DeleteForbidden(StoreError):
    """The credential given may not delete that image."""


class StorageFull(StoreError):
    """The storage volume has no room (or quota) left for the upload."""


class StorageUnavailable(StoreError):
    """The storage volume cannot be written or read right now."""


class Unsure(Exception):
    """The index may be behind: a request must take the long way.

    Not a client's error: :meth:`asgilook.storage.store.Store.current` raises it
    and :class:`asgilook.caching.memory.ResponseMemory` falls back to the app.
    """


class DamagedObject(StoreError):
    """A stored object failed authentication: damaged, swapped, or sealed with
    a key this service does not have. It is never served as the picture."""
