"""The HTTP interface: a FastAPI app (``create_app``) with one module of routes per protocol.

No storage logic lives here: routes parse with ``tsdb.protocols``, call the engine and format
the answer. See docs/server.md for the routes, settings and status codes.
"""

from tsdb.server.app import create_app

__all__ = ["create_app"]
