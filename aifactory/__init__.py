"""AIFactory web server: the event bus, its Redis fan-out bridge and the WebSocket endpoints.

Kept import-light on purpose: the validator imports `aifactory.redis_url` on its cold-start path.
"""

__version__ = "1.1.0"
