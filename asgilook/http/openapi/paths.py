"""``paths``: every route of the app, with its operations."""

from __future__ import annotations

from asgilook.config import Config
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.paths_gallery import get_asset
from asgilook.http.openapi.paths_gallery import get_events
from asgilook.http.openapi.paths_gallery import get_gallery
from asgilook.http.openapi.paths_images import delete_image
from asgilook.http.openapi.paths_images import get_animation
from asgilook.http.openapi.paths_images import get_image
from asgilook.http.openapi.paths_images import get_images
from asgilook.http.openapi.paths_images import get_thumbnail
from asgilook.http.openapi.paths_images import upload_image
from asgilook.http.openapi.paths_service import get_health
from asgilook.http.openapi.paths_service import get_metrics
from asgilook.http.openapi.paths_service import get_openapi
from asgilook.http.openapi.responses import error_refs


def paths(config: Config) -> Schema:
    table = {
        '/': _get_and_head(get_gallery()),
        '/static/{name}': _get_and_head(get_asset()),
        '/events': {'get': get_events(config)},
        '/images': {**_get_and_head(get_images()), 'post': upload_image(config)},
        '/images/{image_id}.jpeg': {
            **_get_and_head(get_image()),
            'delete': delete_image(),
        },
        '/images/{image_id}.webp': _get_and_head(get_animation()),
        '/thumbnails/{image_id}/{width}x{height}.jpeg': _get_and_head(get_thumbnail()),
        '/healthz': _get_and_head(get_health()),
        '/metrics': {'get': get_metrics()},
        '/openapi.json': _get_and_head(get_openapi()),
    }
    # NOTE: Any request may have too long a target or too many headers: the
    #   app answers those before it even routes them (see asgilook.http.app).
    for item in table.values():
        for operation in item.values():
            operation['responses'] = {
                **operation['responses'],
                **error_refs('414', '431'),
            }
    return table


def _get_and_head(get: Schema) -> Schema:
    """A GET, and a HEAD that answers the GET's headers without its body."""
    head = {
        **get,
        'summary': f'{get["summary"]}: the headers alone',
        'operationId': get['operationId'].replace('get', 'head', 1),
    }
    return {'get': get, 'head': head}
