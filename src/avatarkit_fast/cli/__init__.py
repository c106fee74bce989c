"""``avatarkit-fast``: the command line (also ``python -m avatarkit_fast``).

Subcommands: ``demo`` (the whole host-mode pipeline on this machine, with
pictures), ``inspect FILE``, ``serve`` (the local motion server) and
``bench``.  Wrong arguments and unreadable inputs give one line on stderr and
exit status 2, before any work starts; a failure of the run itself (a server
error) one line and status 1.  No traceback is shown, not even for a fault of
the package itself (``AVATARKIT_CLI_TRACEBACK=1`` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Sequence

__all__ = ["main", "UsageError"]

PROG = "avatarkit-fast"


class UsageError(Exception):
    """A bad argument or an unreadable input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line, not the usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Host-mode runtime for real-time talking avatars.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="run the whole host-mode pipeline on this machine and draw what happened",
        description=(
            "Local motion server on loopback, a server-side session, the msgpack relay over a "
            "loopback WebSocket with simulated jitter, the client controller and a virtual "
            "clock (or the sound card with --play). Writes played.wav, keyframes.npy, "
            "report.json, timeline.png and avatar.gif (avatar.mp4 with PyAV) into --out."
        ),
    )
    from .demo import add_arguments as _demo_arguments

    _demo_arguments(demo)

    insp = sub.add_parser("inspect", help="summarize a recording, envelope file, keyframes.npy or WAV")
    insp.add_argument("file", metavar="FILE")
    insp.add_argument("--json", action="store_true", help="print the summary as JSON")

    serve = sub.add_parser("serve", help="run the local motion server (prints its two endpoint URLs)")
    from .serve import build_parser as _serve_options

    _serve_options(serve)

    from .livekit_worker import build_parser as _worker_options

    _worker_options(sub.add_parser("livekit-worker", help="run the avatar as a LiveKit AgentServer worker"))

    bench = sub.add_parser("bench", help="a quick run of the key benchmarks, as a table")
    from .options import bounded_int

    # About 0.05 s a case a round: 1000 rounds is a long run, not one that looks hung.
    bench.add_argument("--rounds", type=bounded_int(1, 1000), default=None,
                       help="rounds per case, 1..1000 (default: quick)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from ..errors import AvatarKitError

    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
        if args.command == "inspect":
            from .inspection import run_inspect

            return run_inspect(args)
        if args.command == "serve":
            from .serve import run_args

            return run_args(args)
        if args.command == "livekit-worker":
            from .livekit_worker import run_args as _run_worker

            return _run_worker(args)
        if args.command == "bench":
            from .bench import run_bench

            return run_bench(args)
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except AvatarKitError as exc:
        # Failures of the run itself (no sound device, a server error): one line too.
        print(f"{PROG} {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a fault of ours: still one line, never a traceback
        if os.environ.get("AVATARKIT_CLI_TRACEBACK") == "1":
            raise
        print(f"{PROG} {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(AVATARKIT_CLI_TRACEBACK=1 shows where)", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")
