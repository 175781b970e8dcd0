"""The operations that serve the operators: health, metrics, this document."""

from __future__ import annotations

from asgilook.http.metrics import CONTENT_TYPE
from asgilook.http.openapi.common import CACHE
from asgilook.http.openapi.common import JSON
from asgilook.http.openapi.common import TEXT
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.common import data
from asgilook.http.openapi.common import header_refs
from asgilook.http.openapi.common import parameter_refs
from asgilook.http.openapi.common import schema_ref
from asgilook.http.openapi.responses import not_modified

#: What ``/metrics`` answers: Prometheus's text exposition format.
PROMETHEUS = CONTENT_TYPE


def get_health() -> Schema:
    return {
        'summary': 'Health',
        'description': (
            'Whether this process can store pictures (a file written in the '
            'storage directory), and whether Redis answers. `200` while '
            'pictures can be stored, `"degraded"` without Redis (which only '
            'makes the service slower) or with too little room for the '
            'largest upload; `503` when they cannot (the storage cannot be '
            'written, or is full).'
        ),
        'tags': ['operations'],
        'operationId': 'getHealth',
        'responses': {
            status: {
                'description': description,
                'headers': header_refs('Cache-Control.no-store', 'Vary', CACHE),
                'content': data(schema_ref('Health')),
            }
            for status, description in (
                ('200', 'Pictures can be stored.'),
                ('503', 'Pictures cannot be stored.'),
            )
        },
    }


def get_metrics() -> Schema:
    return {
        'summary': 'Metrics',
        'description': (
            "Prometheus's text format, counted across workers; `503` from one "
            'of several workers that would count alone.'
        ),
        'tags': ['operations'],
        'operationId': 'getMetrics',
        'responses': {
            '200': {
                'description': 'The metrics of every worker.',
                'headers': header_refs('Cache-Control.no-store', CACHE),
                'content': {PROMETHEUS: TEXT},
            },
            '503': {
                'description': (
                    'This process is one of several workers (uvicorn '
                    '`--workers N`) without `PROMETHEUS_MULTIPROC_DIR`: it '
                    'counts only what it answered itself, so it refuses rather '
                    'than answer a share (`Counted Per Worker`); the description '
                    'says how to count right: that variable, naming an empty '
                    'directory that every worker shares, or `asgilook serve '
                    '--workers N`, which sets it.'
                ),
                'headers': header_refs('Vary', 'Cache-Control.no-store', CACHE),
                'content': data(schema_ref('Error')),
            },
        },
    }


def get_openapi() -> Schema:
    return {
        'summary': 'This document',
        'tags': ['meta'],
        'operationId': 'getOpenAPI',
        'parameters': parameter_refs('IfNoneMatch'),
        'responses': {
            '200': {
                'description': 'The OpenAPI document.',
                'headers': header_refs('ETag', 'Cache-Control.no-cache', CACHE),
                'content': {
                    JSON: {
                        'schema': {
                            'type': 'object',
                            'required': ['openapi', 'info', 'paths'],
                        }
                    }
                },
            },
            **not_modified(),
        },
    }
