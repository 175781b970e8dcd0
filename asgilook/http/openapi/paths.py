"""``paths``: every route of the app, with its operations."""

from __future__ import annotations

from asgilook.config import Config
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.common import parameter_refs
from asgilook.http.openapi.common import ref
from asgilook.http.openapi.parameters import parameters
from asgilook.http.openapi.paths_gallery import get_asset
from asgilook.http.openapi.paths_gallery import get_events
from asgilook.http.openapi.paths_gallery import get_gallery
from asgilook.http.openapi.paths_gallery import get_picture
from asgilook.http.openapi.paths_images import delete_image
from asgilook.http.openapi.paths_images import get_animation
from asgilook.http.openapi.paths_images import get_image
from asgilook.http.openapi.paths_images import get_images
from asgilook.http.openapi.paths_images import get_original
from asgilook.http.openapi.paths_images import get_thumbnail
from asgilook.http.openapi.paths_images import upload_image
from asgilook.http.openapi.paths_service import get_health
from asgilook.http.openapi.paths_service import get_metrics
from asgilook.http.openapi.paths_service import get_openapi
from asgilook.http.openapi.responses import error_refs

#: What an ``OPTIONS`` checks of a path parameter: only what routes it (an
#: integer, a UUID); any size or name is routed, and answered.
_ROUTED = frozenset({'type', 'format'})


def paths(config: Config) -> Schema:
    table = {
        '/': _get_and_head(get_gallery()),
        '/static/{name}': _get_and_head(get_asset()),
        '/pictures/{image_id}': _get_and_head(get_picture()),
        '/events': {'get': get_events(config)},
        '/images': {**_get_and_head(get_images()), 'post': upload_image(config)},
        '/images/{image_id}.jpeg': {
            **_get_and_head(get_image()),
            'delete': delete_image(),
        },
        '/images/{image_id}.webp': _get_and_head(get_animation()),
        '/images/{image_id}/original': _get_and_head(get_original()),
        '/thumbnails/{image_id}/{width}x{height}.jpeg': _get_and_head(get_thumbnail()),
        '/healthz': _get_and_head(get_health()),
        '/metrics': {'get': get_metrics()},
        '/openapi.json': _get_and_head(get_openapi()),
    }
    for item in table.values():
        item['options'] = _options(item['get'])
        # NOTE: OpenAPI describes only the methods a path takes; what the
        #   others get is said beside them (see asgilook.http.edge).
        item['x-other-methods'] = error_refs('405', '501')
    # NOTE: Any request may have too long a target or too many headers: the
    #   app answers those before it even routes them (see asgilook.http.app).
    for item in table.values():
        for method, operation in item.items():
            if method.startswith('x-'):
                continue
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


def _options(get: Schema) -> Schema:
    """The ``OPTIONS`` of a path whose ``GET`` is ``get``: its methods, and
    CORS preflights."""
    described = parameters()
    path = [
        {
            **component,
            'schema': {
                key: value
                for key, value in component['schema'].items()
                if key in _ROUTED
            },
        }
        for component in (
            described[parameter['$ref'].rpartition('/')[2]]
            for parameter in get.get('parameters', [])
        )
        if component['in'] == 'path'
    ]
    responses = {'204': ref('responses', 'Options')}
    if path:
        # NOTE: A path parameter that is not what its route takes (an id
        #   that is no UUID) matches no route.
        responses.update(error_refs('404'))
    return {
        'summary': 'The methods of this URL; a CORS preflight',
        'description': (
            '`204`, with `Allow`: the methods this URL takes, the same as its '
            '`405` lists. With `Access-Control-Request-Method`, a preflight: '
            'what a page of another site may send too (whether its origin may '
            'is `Access-Control-Allow-Origin`, as on every answer).'
        ),
        'tags': get['tags'],
        'operationId': get['operationId'].replace('get', 'options', 1),
        'parameters': [
            *path,
            *parameter_refs(
                'Origin', 'AccessControlRequestMethod', 'AccessControlRequestHeaders'
            ),
        ],
        'responses': responses,
    }
