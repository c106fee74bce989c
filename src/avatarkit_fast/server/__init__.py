"""The local motion server: the AvatarKit driving protocol on loopback.

``avatarkit-fast serve`` (or ``python -m avatarkit_fast.server``) runs it;
:class:`MotionServer` embeds it in an asyncio program.  It shares the wire
codec with the client side and nothing else.  The HTTP/WebSocket layer needs
``aiohttp`` (the ``server`` extra), imported only when a server starts.
"""

from .app import (
    FIRST_BATCH,
    NEXT_BATCH,
    MotionServer,
    ServerStats,
    build_parser,
    main,
    run_args,
    serve,
    serve_async,
)
from .motion import MotionSynth, synthesize

__all__ = [
    "FIRST_BATCH",
    "MotionServer",
    "MotionSynth",
    "NEXT_BATCH",
    "ServerStats",
    "build_parser",
    "main",
    "run_args",
    "serve",
    "serve_async",
    "synthesize",
]
