"""The live view: a page on loopback that shows the face and plays the sound
of a conversation as it happens, in sync by the browser's audio clock.

- :mod:`.server`: :class:`~.server.LiveViewer` (the aiohttp routes, the page's
  WebSocket and the thread-safe feed), :class:`~.server.ControllerTap` (what
  ``demo --live`` plays, handed to the viewer) and
  :class:`~.server.MotionObserver` (what ``serve --viewer`` receives and sends);
- ``page/index.html`` and ``page/viewer.js``: the page and its own script
  (canvas drawing, Web Audio playout, reconnection), served as package data.

The message format is documented in :mod:`.server` and in the manual
(``docs/cli.md``, "The live view").  Needs ``aiohttp`` (the ``demo`` or
``server`` extra).
"""

from __future__ import annotations

__all__ = ["ControllerTap", "LiveViewer", "MotionObserver", "open_browser"]


def __getattr__(name: str):
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
