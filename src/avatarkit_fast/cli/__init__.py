"""``avatarkit-fast``: the command line (also ``python -m avatarkit_fast``).

Subcommands: ``demo`` (the whole host-mode pipeline on this machine, with
pictures), ``inspect FILE``, ``serve`` (the local motion server) and
``bench``.  Wrong arguments and unreadable inputs give one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
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
    src = demo.add_mutually_exclusive_group()
    src.add_argument("--audio", metavar="FILE.wav", help="speech to play (PCM WAV); default: made-up speech")
    src.add_argument("--recording", metavar="FILE.json", help="replay a recorded utterance (audio and envelopes)")
    demo.add_argument("--seconds", type=float, default=4.0, help="length of the made-up speech (default 4)")
    demo.add_argument("--out", default="demo-out", metavar="DIR", help="output folder (default demo-out)")
    demo.add_argument("--jitter-ms", type=float, default=30.0, metavar="N",
                      help="simulated network jitter on the relay, 0..N ms per message (default 30)")
    demo.add_argument("--interrupt-at", type=float, default=None, metavar="SECONDS",
                      help="interrupt the conversation at this playout time")
    demo.add_argument("--server-speed", type=float, default=None, metavar="X",
                      help="the motion server paces animation at X times real time (default: as fast "
                           "as audio arrives); 1.0 shows what a slow server does to playout")
    demo.add_argument("--realtime", action="store_true", help="pace the virtual clock to real time")
    demo.add_argument("--play", action="store_true", help="play through the sound card (implies --realtime)")
    demo.add_argument("--sync-mode", choices=("audio_independent", "strict_sync"), default="audio_independent")
    demo.add_argument("--interpolation", choices=("none", "linear"), default="none")
    demo.add_argument("--fps", type=int, default=25, help="video frames a second (default 25)")
    demo.add_argument("--video", choices=("auto", "gif", "mp4"), default="auto",
                      help="face film format (auto: mp4 when PyAV is installed, else gif)")
    demo.add_argument("--size", type=int, default=160, help="face picture size in pixels (default 160)")
    demo.add_argument("--seed", type=int, default=7, help="seed for made-up speech and jitter (default 7)")
    demo.add_argument("--session", choices=("auto", "spatius", "builtin"), default="auto",
                      help="server-side session: the spatius SDK when installed (auto), or the built-in client")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

    insp = sub.add_parser("inspect", help="summarize a recording, envelope file, keyframes.npy or WAV")
    insp.add_argument("file", metavar="FILE")
    insp.add_argument("--json", action="store_true", help="print the summary as JSON")

    serve = sub.add_parser("serve", help="run the local motion server (prints its two endpoint URLs)")
    from .serve import build_parser as _serve_options

    _serve_options(serve)

    bench = sub.add_parser("bench", help="a quick run of the key benchmarks, as a table")
    bench.add_argument("--rounds", type=int, default=None, help="rounds per case (default: quick)")
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
    parser.error(f"unknown command {args.command!r}")
