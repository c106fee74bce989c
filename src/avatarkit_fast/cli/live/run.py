"""The live view in the two commands: ``demo --live`` (the demo's controller,
as played) and ``serve --viewer`` (a running motion server's requests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Callable

__all__ = ["DEFAULT_LIVE_PORT", "start_for_demo", "serve_with_viewer", "VIEWER_PREFIX"]

#: ``demo --live-port`` default: fixed, so a page left open reconnects to the next run.
DEFAULT_LIVE_PORT = 8766
#: Where ``serve --viewer`` mounts the page on the motion server's port.
VIEWER_PREFIX = "/viewer"


def _announce(url: str, open_page: bool, out) -> None:
    from .server import open_browser

    opened = open_page and open_browser(url)
    print(f"live view: {url}" + ("  (opened in the browser)" if opened else ""), file=out, flush=True)


def start_for_demo(args, ctrl, sample_rate: int) -> tuple[object, Callable[[], None]]:
    """Start the page for ``demo --live``: the controller wrapped in a
    :class:`~.server.ControllerTap` (use it in the controller's place) and the
    function that ends the view once playout is over.

    Prints the URL, opens a browser unless ``--no-open``, then waits up to
    ``--live-wait`` seconds for a page to connect so that it sees the start.
    A port that cannot be listened on is a :class:`~avatarkit_fast.cli.UsageError`."""
    from .. import UsageError

    try:
        from .server import ControllerTap, LiveViewer
    except ImportError:  # aiohttp
        raise UsageError("--live needs aiohttp: pip install 'avatarkit-fast[demo]'") from None
    viewer = LiveViewer(title="avatarkit-fast demo: live view",
                        counters=lambda: ctrl.stats, counters_source="controller")
    try:
        url = viewer.start_in_thread("127.0.0.1", args.live_port)
    except OSError as exc:
        raise UsageError(f"--live-port {args.live_port}: cannot listen on 127.0.0.1 "
                         f"({exc.strerror or exc})") from None
    _announce(url, not args.no_open, sys.stdout)
    if args.live_wait > 0 and not viewer.wait_for_page(args.live_wait):
        print(f"live view: no page connected within {args.live_wait:g} s; playing anyway", file=sys.stderr)
    # A name of its own per run: a page left open tells this run from the last.
    tap = ControllerTap(ctrl, viewer, sample_rate=sample_rate, fps=args.fps,
                        conv=f"demo-{os.getpid()}-{time.time_ns() // 1_000_000}")

    def finish() -> None:
        tap.finish()
        viewer.stop(linger=1.0)

    return tap, finish


def serve_with_viewer(host: str, port: int, *, open_page: bool = True, **options) -> None:
    """``serve --viewer``: the motion server with the page at ``/viewer/`` on its
    port, showing the request begun last; until SIGINT or SIGTERM."""
    from ...server import MotionServer
    from .server import LiveViewer, MotionObserver

    viewer = LiveViewer(title="avatarkit-fast serve: live view", counters_source="server")
    observer = MotionObserver(viewer)

    class ViewedServer(MotionServer):
        def application(self):
            app = super().application()
            viewer.add_routes(app, VIEWER_PREFIX)
            return app

    server = ViewedServer(observer=observer, **options)
    viewer.counters_fn = lambda: server.stats

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await server.start(host, port)
        print(f"console_endpoint_url={server.console_endpoint_url}")
        print(f"ingress_endpoint_url={server.ingress_endpoint_url}", flush=True)
        _announce(f"{server.console_endpoint_url}{VIEWER_PREFIX}/", open_page, sys.stdout)
        try:
            await stop.wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
