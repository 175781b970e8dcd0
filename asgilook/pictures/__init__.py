"""Pictures: synchronous functions from bytes to bytes, run in the store's pool.

The modules, each with one reason to change:

- :mod:`~asgilook.pictures.pixels`: the pipeline the other layers call: check
  and decode an upload, store it as it is or convert it, render its thumbnails.
- :mod:`~asgilook.pictures.decoding`: where untrusted bytes meet Pillow: the
  accepted formats, the checks before anything is decoded, the errors.
- :mod:`~asgilook.pictures.colour`: Pillow's modes and ICC profiles to 8-bit sRGB.
- :mod:`~asgilook.pictures.encoding`: the stored original and the JPEG
  thumbnail series (their sizes, resampling and quality).
- :mod:`~asgilook.pictures.animation`: an animated GIF, WebP or APNG as an
  animated WebP.
- :mod:`~asgilook.pictures.renditions`: thumbnails in AVIF or WebP, and
  placeholders.
- :mod:`~asgilook.pictures.jpeg`: a JPEG's metadata stripped, its data untouched.
- :mod:`~asgilook.pictures.containers`: the same for PNG, GIF and WebP.
- :mod:`~asgilook.pictures.kept`: the original kept as uploaded beside the
  stored JPEG, for people to download.
- :mod:`~asgilook.pictures.heif`: the sizes an HEIF or AVIF file declares, read
  without decoding.

NOTE: This is the lowest layer (see ``[tool.importlinter]`` in
``pyproject.toml``). It imports nothing of ``asgilook.http``,
``asgilook.caching``, ``asgilook.storage``, ``asgilook.commands`` or
``asgilook.config``, no Falcon, nothing that touches files (aiofiles), Redis or
a database: only :mod:`asgilook.errors`, Pillow and pillow-heif. So every
function here can be tested, benchmarked and fuzzed on bytes alone.
"""

#: A picture's width and height, in pixels.
Size = tuple[int, int]
