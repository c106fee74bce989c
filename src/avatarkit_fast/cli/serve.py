"""``avatarkit-fast serve``: run the local motion server in the foreground.

Every option is checked before anything starts: a bad value (out of range,
not a number, NaN or infinite, empty, a key or id a header cannot carry) is
one line on stderr and exit status 2, as is an address the server cannot
listen on.  The server itself is :mod:`avatarkit_fast.server`; it is imported
only when the command runs (it needs ``aiohttp``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import re
import sys
from typing import Callable, Sequence

__all__ = [
    "MAX_SESSIONS",
    "MAX_SESSION_SECONDS",
    "build_parser",
    "main",
    "run_args",
]

#: Largest ``--max-sessions`` (sessions at once; each holds a socket and a task).
MAX_SESSIONS = 100_000
#: Largest ``--max-session-seconds`` (one week).
MAX_SESSION_SECONDS = 7 * 24 * 3600.0
#: Largest ``--speed`` (times real time); the server's own bound, repeated here
#: so that ``--help`` needs no aiohttp.
MAX_SPEED = 1000.0

# What an HTTP header value or a query parameter carries without escaping trouble.
_TOKEN = re.compile(r"[!-~]+")


def _int_in(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be in {lo}..{hi}, got {value}")
        return value

    return parse


def _seconds_or_times(what: str, hi: float, unit: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(value) or not 0 < value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be > 0 and at most {hi:g}{unit}, got {text!r}")
        return value

    return parse


def _host(text: str) -> str:
    if not text or not _TOKEN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"host must be an address or name without spaces, got {text!r}")
    return text


def _api_key(text: str) -> str:
    key, sep, app_id = text.partition(":")
    if not key or not _TOKEN.fullmatch(key):
        raise argparse.ArgumentTypeError(f"API key must be non-empty printable ASCII without spaces, got {text!r}")
    if sep and (not app_id or not _TOKEN.fullmatch(app_id)):
        raise argparse.ArgumentTypeError(f"APP_ID after ':' must be non-empty printable ASCII, got {text!r}")
    return text


def _avatar(text: str) -> str:
    if not text or not _TOKEN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"avatar id must be non-empty printable ASCII without spaces, got {text!r}")
    return text


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``serve`` options (added to ``parser`` if given), each one bounded."""
    if parser is None:
        parser = argparse.ArgumentParser(
            prog="avatarkit-fast serve",
            description="Run the local AvatarKit motion server (HTTP and WebSocket on one port).",
        )
    parser.add_argument("--host", type=_host, default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_int_in(0, 65535, "port"), default=8765,
                        help="port, 0..65535 (default 8765; 0 picks a free one)")
    parser.add_argument(
        "--api-key", action="append", type=_api_key, metavar="KEY[:APP_ID]",
        help="accept only this API key (repeatable; bind its tokens to APP_ID). Default: any key",
    )
    parser.add_argument("--avatar", action="append", type=_avatar, metavar="ID",
                        help="accept only this avatar id (repeatable)")
    parser.add_argument(
        "--speed", type=_seconds_or_times("speed", MAX_SPEED, " times real time"), default=None, metavar="X",
        help=f"pace animation at X times real time, 0 < X <= {MAX_SPEED:g} (default: as fast as audio arrives)",
    )
    parser.add_argument(
        "--max-session-seconds", type=_seconds_or_times("max-session-seconds", MAX_SESSION_SECONDS, " s"),
        default=None, metavar="S",
        help=f"end sessions after S seconds, 0 < S <= {MAX_SESSION_SECONDS:g} (ServerError and close code 4002)",
    )
    parser.add_argument(
        "--max-sessions", type=_int_in(1, MAX_SESSIONS, "max-sessions"), default=None, metavar="N",
        help=f"refuse sessions beyond N at once, 1..{MAX_SESSIONS} (ServerError and close code 4003)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log sessions and errors")
    parser.add_argument("--viewer", action="store_true",
                        help="serve a live view of the request begun last at /viewer/ on the same port "
                             "(prints its URL and opens it)")
    parser.add_argument("--no-open", action="store_true", help="with --viewer, print the URL but open no browser")
    return parser


def _parse_api_keys(values: Sequence[str] | None) -> dict[str, str | None] | None:
    if not values:
        return None
    keys: dict[str, str | None] = {}
    for value in values:
        key, sep, app_id = value.partition(":")
        keys[key] = app_id if sep else None
    return keys


def run_args(args: argparse.Namespace) -> int:
    """Run ``serve`` from parsed options until SIGINT or SIGTERM; returns the exit status.

    Raises :class:`~avatarkit_fast.cli.UsageError` when the server cannot listen
    where the options say (exit 2); a missing ``aiohttp`` is one line and exit 1.
    """
    from . import PROG, UsageError

    try:
        from ..server import serve
    except ImportError as exc:  # aiohttp missing: the server says what to install
        print(f"{PROG} serve: {exc}", file=sys.stderr)
        return 1
    if args.no_open and not args.viewer:
        raise UsageError("--no-open goes with --viewer")
    if args.viewer:
        from .live.run import serve_with_viewer

        serve = functools.partial(serve_with_viewer, open_page=not args.no_open)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        serve(
            args.host,
            args.port,
            api_keys=_parse_api_keys(args.api_key),
            avatars=args.avatar,
            speed=args.speed,
            max_session_seconds=args.max_session_seconds,
            max_sessions=args.max_sessions,
        )
    except OSError as exc:  # cannot resolve the host, or bind the port
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    except ValueError as exc:  # a bound the server checks itself
        raise UsageError(str(exc)) from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avatarkit_fast.server ARGS``: the same as ``avatarkit-fast serve ARGS``."""
    from . import main as cli_main

    return cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])
