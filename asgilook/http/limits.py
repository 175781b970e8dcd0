"""Limits on the size of a request's head, enforced in front of Falcon.

See :class:`asgilook.http.app.App`; the body's limits are in asgilook.http.uploads.
"""

#: The longest request target (path and query string) answered, in bytes;
#: a longer one is a 414 before anything else is done with it.
MAX_TARGET = 8 * 1024
#: The longest query string answered: no query of this service needs a tenth
#: of it, and room is left for the tracking parameters links pick up.
MAX_QUERY = 4 * 1024
#: The most bytes of header names and values answered (what nginx allows by
#: default, ``large_client_header_buffers 4 8k``). uvicorn's httptools parser
#: has no limit of its own, and h11's holds only while headers trickle in.
MAX_HEADERS = 32 * 1024
