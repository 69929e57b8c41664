"""AIFactory web server: the event bus, its Redis fan-out bridge and the WebSocket endpoints.

Kept import-light on purpose: the validator imports `aifactory.redis_url` and `aifactory.constants` on its
cold-start path.
"""

from aifactory.constants import VERSION as __version__

__all__ = ["__version__"]
