"""The module-level app that ``uvicorn asgilook.asgi:app`` serves."""

from asgilook.http.app import create_app

app = create_app()
