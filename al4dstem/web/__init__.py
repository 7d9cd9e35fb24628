"""The browser labeller: a local web page to label patterns, served while ``al4dstem label
--ui browser`` runs.

``LabelServer(session, host, port, token=None)`` serves the page (``start() -> url``, ``stop()``);
``server.oracle()`` is the ``BrowserOracle`` that hands the page's answers to the labelling loop.
Loaded lazily: importing ``al4dstem.web`` does not import starlette or uvicorn.
"""

from __future__ import annotations

__all__ = ["BrowserOracle", "LabelServer"]


def __getattr__(name):
    if name == "LabelServer":
        from al4dstem.web.server import LabelServer

        return LabelServer
    if name == "BrowserOracle":
        from al4dstem.web.oracle import BrowserOracle

        return BrowserOracle
    raise AttributeError(f"module 'al4dstem.web' has no attribute {name!r}")
