"""``avatarkit-fast livekit-worker``: the avatar as a LiveKit ``AgentServer`` worker.

It registers with the LiveKit server (``--livekit-url``, key and secret, or
``LIVEKIT_URL``/``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``) under
``--agent-name``; each job it is dispatched joins the room as the avatar, takes
the agent's speech (``DataStreamAudioOutput`` on the agent's side) and
publishes the avatar's audio and video (:mod:`avatarkit_fast.livekit.worker`).
Every option is checked before anything starts (one line, exit 2); without the
``livekit`` extra, one line and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

__all__ = ["build_parser", "run_args"]

_ENV = {
    "api_key": "AVATARKIT_API_KEY",
    "app_id": "AVATARKIT_APP_ID",
    "avatar_id": "AVATARKIT_AVATAR_ID",
    "console": "AVATARKIT_CONSOLE_URL",
    "ingress": "AVATARKIT_INGRESS_URL",
    "livekit_url": "LIVEKIT_URL",
    "livekit_api_key": "LIVEKIT_API_KEY",
    "livekit_api_secret": "LIVEKIT_API_SECRET",
}


def build_parser(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    from .options import bounded_int

    for dest, env in _ENV.items():
        flag = "--" + dest.replace("_", "-")
        parser.add_argument(flag, dest=dest, default=None, metavar="VALUE",
                            help=f"(default: ${env})")
    parser.add_argument("--agent-name", default=None, help="the name jobs are dispatched to (default: avatarkit-avatar)")
    parser.add_argument("--capacity", type=bounded_int(1, 1000), default=4,
                        help="avatar sessions this worker takes at most (the load is sessions over it, or CPU)")
    parser.add_argument("--width", type=bounded_int(16, 4096), default=256)
    parser.add_argument("--height", type=bounded_int(16, 4096), default=256)
    parser.add_argument("--verbose", action="store_true", help="log what the worker does")


def _value(args: argparse.Namespace, dest: str) -> str:
    from . import UsageError

    value = getattr(args, dest) or os.environ.get(_ENV[dest], "")
    if not value:
        raise UsageError(f"--{dest.replace('_', '-')} (or ${_ENV[dest]}) is required")
    return value


def run_args(args: argparse.Namespace) -> int:
    """Run the worker until SIGINT or SIGTERM; returns the exit status."""
    from . import PROG

    values = {dest: _value(args, dest) for dest in _ENV}
    for dest in ("console", "ingress", "livekit_url"):
        if not values[dest].startswith(("http://", "https://", "ws://", "wss://")):
            from . import UsageError

            raise UsageError(f"--{dest.replace('_', '-')} must be an http(s):// or ws(s):// URL, got {values[dest]!r}")
    try:
        import asyncio

        from ..livekit import AVATAR_AGENT_NAME, AvatarWorkerConfig, build_server
    except ImportError as exc:
        print(f"{PROG} livekit-worker: {exc} (pip install 'avatarkit-fast[livekit]')", file=sys.stderr)
        return 1
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = AvatarWorkerConfig(
        api_key=values["api_key"], app_id=values["app_id"], avatar_id=values["avatar_id"],
        console_endpoint_url=values["console"], ingress_endpoint_url=values["ingress"],
        width=args.width, height=args.height, capacity=args.capacity,
        agent_name=args.agent_name or AVATAR_AGENT_NAME,
    )
    server = build_server(config, ws_url=values["livekit_url"], api_key=values["livekit_api_key"],
                          api_secret=values["livekit_api_secret"])
    try:
        asyncio.run(server.run())
    except KeyboardInterrupt:
        pass
    return 0
