"""The tutorial's ``asgilook.app``: :func:`create_app` (asgilook.http.app)."""

from asgilook.http.app import create_app

__all__ = ['create_app']
