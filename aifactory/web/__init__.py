"""The Starlette web layer: app factory and lifespan (`app`), HTTP routes, the two WebSocket endpoints."""

from aifactory.web.app import create_app

__all__ = ["create_app"]
