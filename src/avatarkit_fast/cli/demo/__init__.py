"""``avatarkit-fast demo``: host mode end to end on this machine, with pictures.

The pipeline, all real, on loopback:

    speech -> backend --(server SDK session)--> local motion server
              backend <--(animation envelopes)--
              backend --(msgpack relay, WebSocket, simulated jitter)--> client
              client: RelayReceiver -> AvatarController -> virtual clock / sound card

The backend sends the speech as a TTS engine would, as fast as it is made.
With the default virtual clock the network part runs first while the client
logs each relay message with its arrival time; the clock then replays those
arrivals into the controller, frame by frame, as fast as the machine goes:
exactly what a player would have done with that network, and repeatable.
``--realtime`` and ``--play`` instead feed the controller live and pull from it
on a paced clock (or the sound card's callback) in another thread.

The package, one job a module: ``inputs`` (what is played), ``backends`` (the
backend's server session), ``network`` (motion server, jitter link, relay and
the client's read loop), ``playout`` (the recorder, the replay and live
runners), ``report`` (measurement, report and summary), ``counters`` (reading the
controller's and the server's counters); this module parses the
subcommand's arguments and runs the parts in order.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .. import UsageError

__all__ = ["add_arguments", "run_demo", "sync_errors"]


# Bounds of the options, checked while parsing (one line, exit status 2, before
# any work starts).  Durations are bounded so that no value makes a run that
# looks like a hang: at most ten minutes of speech, one second of jitter.
MAX_SECONDS = 600.0
MAX_JITTER_MS = 1000.0
SPEED_RANGE = (0.05, 1000.0)
FPS_RANGE = (1, 120)
SIZE_RANGE = (32, 1024)
MAX_SEED = 2**32 - 1
DEFAULT_SECONDS = 4.0
DEFAULT_SESSION = "auto"


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The ``demo`` subcommand's options, on its parser, each number bounded."""
    from ..options import bounded_float, bounded_int

    src = demo.add_mutually_exclusive_group()
    src.add_argument("--audio", metavar="FILE",
                     help="speech to play (WAV of any PCM width or float, FLAC, Ogg; stereo is mixed "
                          "down, other rates resampled); default: made-up speech")
    src.add_argument("--recording", metavar="FILE.json", help="replay a recorded utterance (audio and envelopes)")
    demo.add_argument("--seconds", type=bounded_float(0.2, MAX_SECONDS, " s"), default=None,
                      help=f"length of the made-up speech, 0.2..{MAX_SECONDS:g} (default {DEFAULT_SECONDS:g})")
    demo.add_argument("--out", default="demo-out", metavar="DIR", help="output folder (default demo-out)")
    demo.add_argument("--jitter-ms", type=bounded_float(0.0, MAX_JITTER_MS, " ms"), default=30.0, metavar="N",
                      help=f"simulated network jitter on the relay, 0..N ms per message, N at most "
                           f"{MAX_JITTER_MS:g} (default 30)")
    demo.add_argument("--interrupt-at", type=bounded_float(0.0, MAX_SECONDS, " s"), default=None,
                      metavar="SECONDS",
                      help="interrupt the conversation at this playout time (before the speech ends)")
    demo.add_argument("--server-speed", type=bounded_float(*SPEED_RANGE), default=None, metavar="X",
                      help="the motion server paces animation at X times real time (default: as fast "
                           "as audio arrives); 1.0 shows what a slow server does to playout; "
                           "not with --recording")
    demo.add_argument("--realtime", action="store_true", help="pace the virtual clock to real time")
    demo.add_argument("--play", action="store_true", help="play through the sound card (implies --realtime)")
    demo.add_argument("--sync-mode", choices=("audio_independent", "strict_sync"), default="audio_independent")
    demo.add_argument("--interpolation", choices=("none", "linear"), default="none")
    # The demo plays the keyframes plain by default, so that its report can
    # measure sync to the frame against the server's keyframes; these show
    # what a viewer of the controller's defaults sees (the report then
    # measures the speaking frames; the timeline marks the states).
    demo.add_argument("--idle", choices=("none", "breathing"), default="none",
                      help="idle motion between utterances (default none: the still idle frame)")
    demo.add_argument("--transition-in", type=bounded_float(0.0, 10.0, " s"), default=0.0,
                      help="seconds of the blend into the keyframes, 0..10 (default 0)")
    demo.add_argument("--transition-out", type=bounded_float(0.0, 10.0, " s"), default=0.0,
                      help="seconds of the blend back to the idle, 0..10 (default 0)")
    demo.add_argument("--fps", type=bounded_int(*FPS_RANGE), default=25,
                      help="video frames a second, 1..120 (default 25)")
    demo.add_argument("--video", choices=("auto", "gif", "mp4"), default="auto",
                      help="face film format (auto: mp4 when PyAV is installed, else gif)")
    demo.add_argument("--size", type=bounded_int(*SIZE_RANGE, " pixels"), default=160,
                      help="face picture size in pixels, 32..1024 (default 160)")
    demo.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=7,
                      help="seed for made-up speech and jitter, 0..2**32-1 (default 7)")
    demo.add_argument("--session", choices=("auto", "spatius", "builtin"), default=None,
                      help="server-side session: the spatius SDK when installed (auto), or the built-in "
                           "client; not with --recording")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    # The live view (avatarkit_fast.cli.live): the page, its port, the wait for it.
    demo.add_argument("--live", action="store_true",
                      help="show the face and play the sound live in a browser page on loopback "
                           "(implies --realtime; prints the URL)")
    demo.add_argument("--live-port", type=bounded_int(0, 65535), default=None, metavar="PORT",
                      help="the page's port with --live, 0..65535 (default 8766; 0 picks a free one)")
    demo.add_argument("--live-wait", type=bounded_float(0.0, MAX_SECONDS, " s"), default=None, metavar="S",
                      help="with --live, wait up to S seconds for the page before playing (default 30)")
    demo.add_argument("--no-open", action="store_true", help="with --live, print the URL but open no browser")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse options that do not go together, and fill in the defaults that
    depend on the input; :class:`UsageError` (exit status 2) before any work.

    An option that would be silently ignored is an error: ``--server-speed``
    and ``--session`` with ``--recording`` (the recording's own envelopes are
    replayed; no motion server runs), ``--seconds`` with ``--audio`` or
    ``--recording`` (the file says how long it is)."""
    if args.recording is not None:
        for flag, value in (("--server-speed", args.server_speed), ("--session", args.session)):
            if value is not None:
                raise UsageError(f"{flag} does not go with --recording (the recording's own animation "
                                 "is replayed; no motion server runs)")
    if args.seconds is not None and (args.recording is not None or args.audio is not None):
        raise UsageError(f"--seconds does not go with {'--recording' if args.recording else '--audio'} "
                         "(the file says how long it is)")
    if not args.live:
        for flag, value in (("--live-port", args.live_port), ("--live-wait", args.live_wait),
                            ("--no-open", args.no_open or None)):
            if value is not None:
                raise UsageError(f"{flag} goes with --live")
    else:
        from ..live.run import DEFAULT_LIVE_PORT

        args.realtime = True  # the page is fed as the clock plays
        args.live_port = DEFAULT_LIVE_PORT if args.live_port is None else args.live_port
        args.live_wait = 30.0 if args.live_wait is None else args.live_wait
    if args.seconds is None:
        args.seconds = DEFAULT_SECONDS
    if args.session is None:
        args.session = DEFAULT_SESSION
    if not args.out:
        raise UsageError("--out must name a folder")
    for flag, value in (("--audio", args.audio), ("--recording", args.recording)):
        if value == "":
            raise UsageError(f"{flag} must name a file")
    if args.video == "mp4":
        try:
            import av  # noqa: F401
        except ImportError:
            raise UsageError("--video mp4 needs PyAV (pip install av); or use --video gif") from None


def check_input(args: argparse.Namespace, duration: float) -> None:
    """The options checked against the input's length (``duration`` seconds)."""
    if args.interrupt_at is not None and args.interrupt_at >= duration:
        raise UsageError(f"--interrupt-at {args.interrupt_at:g} s is not before the end of the speech "
                         f"({duration:g} s): nothing would be interrupted")


def __getattr__(name: str):
    # sync_errors is re-exported lazily: numpy is not imported to parse arguments.
    if name == "sync_errors":
        from .report import sync_errors

        return sync_errors
    raise AttributeError(name)


def run_demo(args) -> int:
    """Run the demo with parsed ``args``; the exit status.  Every argument and
    input is checked before any work starts (:class:`UsageError`)."""
    from ...errors import AvatarKitError
    from ..face import video_suffix, write_face_video
    from ..progress import Progress
    from ..timeline import draw_timeline
    from ...audio import write_wav
    from .inputs import load_input
    from .network import Arrival, last_req, pipeline, run_network
    from .playout import live_playout, make_controller, replay
    from .report import build_report, conversation_keyframes, jsonable, print_summary, stall_spans, sync_errors

    check_arguments(args)
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise UsageError("the pictures need Pillow: pip install 'avatarkit-fast[demo]'") from None
    if args.play:
        from ...playback import check_output_device

        try:
            check_output_device()  # fail early, with the way out
        except AvatarKitError as exc:  # no device, or no PortAudio: a usage error here
            raise UsageError(str(exc)) from None
    utt = load_input(args)
    check_input(args, len(utt.pcm) / utt.sample_rate)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{out}: cannot write into it ({exc.strerror or exc})") from None

    show = not args.quiet
    timings: dict[str, float] = {}
    t_start = time.monotonic()
    events: list = []
    ctrl = make_controller(args, utt.sample_rate, events)
    live_finish = None
    if args.live:
        from ..live.run import start_for_demo

        ctrl, live_finish = start_for_demo(args, ctrl, utt.sample_rate)
    try:
        if args.realtime or args.play:
            prog = Progress("playing", enabled=None if show else False)
            log, play, info = live_playout(args, utt, ctrl, prog)
            prog.close()
            timings["network_and_playout"] = time.monotonic() - t_start
        else:
            prog = Progress("network", enabled=None if show else False)
            arrivals: list[Arrival] = []
            log = pipeline(run_network(args, utt, on_arrival=arrivals.append, progress=prog))
            log.arrivals = arrivals
            prog.close()
            timings["network"] = time.monotonic() - t_start
            t1 = time.monotonic()
            prog = Progress("playout", enabled=None if show else False)
            play, info = replay(args, utt, log, ctrl, prog)
            prog.close()
            timings["playout"] = time.monotonic() - t1
    finally:
        close = getattr(ctrl, "close", None)
        stats_snapshot = ctrl.stats
        if close is not None:
            close()
        if live_finish is not None:
            live_finish()

    req_id = utt.req_id or last_req(log.arrivals)
    keyframes, _ = conversation_keyframes(log.arrivals, req_id)
    err = sync_errors(play, keyframes, args.interpolation)

    t2 = time.monotonic()
    write_wav(out / "played.wav", play.audio, utt.sample_rate)
    import numpy as np

    np.save(out / "keyframes.npy", play.frames)
    anim_times = [a.t for a in log.arrivals if a.kind == "animation"]
    audio_times = [a.t for a in log.arrivals if a.kind == "audio"]
    title = (f"{utt.source} | {log.backend} | jitter 0..{args.jitter_ms:g} ms | {args.sync_mode}, "
             f"interpolation {args.interpolation}")
    draw_timeline(out / "timeline.png", play.audio, utt.sample_rate, play.frames[:, 9], args.fps,
                  audio_arrivals=audio_times, animation_arrivals=anim_times, stalls=stall_spans(play),
                  interrupt_at=info.get("interrupted_at"), first_frame_at=play.first_frame_at, title=title,
                  animation=play.animation, eye_lid=play.frames[:, 18])
    video = out / ("avatar" + video_suffix(args.video))
    prog = Progress("face", enabled=None if show else False)
    write_face_video(video, play.frames, fps=args.fps, size=args.size, audio=play.audio,
                     sample_rate=utt.sample_rate, progress=prog.update)
    prog.close()
    timings["pictures"] = time.monotonic() - t2
    timings["total"] = time.monotonic() - t_start

    class _Snap:
        stats = stats_snapshot

    report = build_report(args, utt, log, play, info, _Snap, keyframes, err, timings)
    report["files"] = {"audio": "played.wav", "keyframes": "keyframes.npy", "timeline": "timeline.png",
                       "face": video.name}
    (out / "report.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
    if show:
        print_summary(report, out)
    return 0
