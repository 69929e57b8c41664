"""Compatibility path: `from aifactory.app import create_app` keeps working; the app is in aifactory.web."""

from aifactory.web.app import create_app

__all__ = ["create_app"]
