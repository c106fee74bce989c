"""Playout: the controller pulled on a virtual clock (or the sound card), every
video frame and sample recorded; replayed over logged arrivals, or live.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..progress import Progress
from .counters import is_playing, stat, stats_dict
from .inputs import Utterance
from .network import Arrival, Live, NetworkLog, last_req, pipeline, run_network

__all__ = ["Playout", "Recorder", "make_controller", "replay", "live_playout"]

TAIL_FRAMES = 5  # idle frames after the end, so the picture shows the mouth close


@dataclass
class Playout:
    """What the clock saw, one entry per video frame."""

    frames: np.ndarray
    audio: np.ndarray
    audio_time: np.ndarray  # conversation seconds played at each frame's start
    playing: np.ndarray  # bool: a conversation was playing at the frame's start
    stall_frames: np.ndarray  # bool: audio waited or ran dry during the frame
    fps: int
    sample_rate: int
    start_sample: Optional[int] = None  # first played sample of the conversation
    first_frame_at: Optional[float] = None
    animation: Optional[np.ndarray] = None  # the AnimationState value after each frame's read


class Recorder:
    """Pulls from the controller on a VirtualClock and keeps everything."""

    def __init__(self, ctrl, fps: int, sample_rate: int, cap_frames: int) -> None:
        self.ctrl = ctrl
        self.fps = fps
        self.sample_rate = sample_rate
        self.frames = np.zeros((cap_frames, 120), np.float32)
        spf = -(-sample_rate // fps)
        self.audio = np.zeros(cap_frames * spf, np.int16)
        self.audio_time = np.zeros(cap_frames, np.float64)
        self.playing = np.zeros(cap_frames, bool)
        self.stall = np.zeros(cap_frames, bool)
        self.animation = np.zeros(cap_frames, np.int8)
        self.n = 0
        self.samples = 0
        self.start_sample: Optional[int] = None
        self.first_frame: Optional[int] = None
        self.cap = cap_frames
        self._conv_key: Any = None
        self._base = 0

    def _conversation_samples(self, st) -> int:
        """Samples of the current conversation played, from the controller's counters.

        ``samples_played`` counts every conversation's samples (never silence);
        its value when a conversation began (or was interrupted) is the base.
        """
        key = (stat(st, "conversations"), stat(st, "interrupts"))
        if key != self._conv_key:
            self._conv_key = key
            self._base = stat(st, "samples_played")
        return int(stat(st, "samples_played")) - int(self._base)

    def tick(self, clock) -> None:
        ctrl = self.ctrl
        i = clock.index
        if i >= self.cap:
            clock.stop()
            return
        # Taken with the frame, at the frame's start (before its audio is read).
        st = ctrl.stats
        played0 = self._conversation_samples(st)
        playing = is_playing(ctrl)
        under0, stalls0 = stat(st, "underrun_samples"), stat(st, "stalls")
        interrupts0 = stat(st, "interrupts")
        tick = clock.step()
        n = len(tick.audio)
        self.frames[i] = tick.frame
        self.audio[self.samples:self.samples + n] = tick.audio
        self.audio_time[i] = played0 / self.sample_rate
        st = ctrl.stats
        anim = int(getattr(ctrl, "animation_state", 0))
        self.animation[i] = anim
        # Fed live from another thread, the controller may have been interrupted
        # between the snapshot and the frame: such a frame is not measured.
        # A conversation waiting for its first animation shows the idle: measured
        # from the first keyframe shown on (the transition in: state 1 or 2).
        showing = anim in (1, 2)
        self.playing[i] = (playing and (played0 > 0 or showing)
                           and stat(st, "interrupts") == interrupts0)
        if self.playing[i] and self.first_frame is None and showing:
            self.first_frame = i
        self.stall[i] = (stat(st, "underrun_samples") > under0) or (stat(st, "stalls") > stalls0)
        if self.start_sample is None and stat(st, "interrupts") == interrupts0:
            played = self._conversation_samples(st)
            if played > 0:
                self.start_sample = self.samples + n - played
        self.samples += n
        self.n = i + 1

    def result(self) -> Playout:
        n = self.n
        first = None if self.first_frame is None else self.first_frame / self.fps
        return Playout(self.frames[:n].copy(), self.audio[:self.samples].copy(), self.audio_time[:n].copy(),
                       self.playing[:n].copy(), self.stall[:n].copy(), self.fps, self.sample_rate,
                       self.start_sample, first, self.animation[:n].copy())


def make_controller(args, sample_rate: int, events: list):
    from ...controller import AvatarController

    def on_state(state, *rest):
        events.append(("state", time.monotonic(), getattr(state, "name", str(state))))

    def on_stall(stalled, *rest):
        events.append(("stall", time.monotonic(), bool(stalled)))

    def on_error(*exc):
        events.append(("error", time.monotonic(), repr(exc)))

    return AvatarController(
        sample_rate=sample_rate, fps=args.fps, sync_mode=args.sync_mode,
        interpolation=args.interpolation, on_conversation_state=on_state,
        on_playback_stall=on_stall, on_error=on_error,
        idle=None if getattr(args, "idle", "none") == "none" else "breathing",
        transition_in=getattr(args, "transition_in", 0.0), transition_out=getattr(args, "transition_out", 0.0),
    )


def done_playing(ctrl, network_done: bool) -> bool:
    return network_done and not is_playing(ctrl) and stat(ctrl.stats, "buffered_audio_ms") <= 0



def replay(args, utt: Utterance, log: NetworkLog, ctrl, progress: Optional[Progress]) -> tuple[Playout, dict]:
    """The virtual clock, as fast as possible, over the logged arrivals."""
    from ... import relay
    from ...playback import VirtualClock

    duration = len(utt.pcm) / utt.sample_rate
    cap = int((duration + 15.0 + (log.arrivals[-1].t if log.arrivals else 0)) * args.fps) + TAIL_FRAMES
    rec = Recorder(ctrl, args.fps, utt.sample_rate, cap)
    clock = VirtualClock(ctrl, fps=args.fps, sample_rate=utt.sample_rate)
    receiver = relay.RelayReceiver(ctrl, clock=lambda: clock.time)  # gap timeouts in replay time too
    arrivals = log.arrivals
    k = 0
    interrupt_at = args.interrupt_at
    interrupted_at = None
    tail = 0
    expected = int((duration + (arrivals[-1].t if arrivals else 0)) * args.fps) + TAIL_FRAMES
    while clock.index < cap:
        t = clock.time
        while k < len(arrivals) and arrivals[k].t <= t:
            receiver.feed(arrivals[k].data)
            k += 1
        receiver.poll()
        if interrupt_at is not None and interrupted_at is None and t >= interrupt_at:
            # The backend's interrupt reaches the client now: the relay frame, as it would arrive.
            req = utt.req_id or last_req(arrivals)
            receiver.feed(relay.encode_frame(relay.Interrupt(req)))
            interrupted_at = t
        rec.tick(clock)
        if progress is not None:
            progress.update(clock.index, expected)
        if done_playing(ctrl, k >= len(arrivals)) and rec.start_sample is not None or \
                (interrupted_at is not None and k >= len(arrivals) and not is_playing(ctrl)):
            tail += 1
            if tail > TAIL_FRAMES:
                break
    info = {"interrupted_at": interrupted_at, "receiver": stats_dict(receiver.stats)}
    return rec.result(), info



def live_playout(args, utt: Utterance, ctrl, progress: Optional[Progress]) -> tuple[NetworkLog, Playout, dict]:
    """Feed the controller on arrival; pull on a paced clock (or the sound card) in a thread."""
    from ... import relay
    from ...playback import SoundDevicePlayer, VirtualClock

    receiver = relay.RelayReceiver(ctrl)
    duration = len(utt.pcm) / utt.sample_rate
    cap = int((duration + 30.0) * args.fps) + TAIL_FRAMES
    rec = Recorder(ctrl, args.fps, utt.sample_rate, cap)
    state: dict = {"network_done": False, "interrupted_at": None, "error": None}
    player_box: dict = {}
    start_evt = threading.Event()

    def on_arrival(a: Arrival) -> None:
        log_box.arrivals.append(a)
        frame = receiver.feed(a.data)
        if a.kind == "interrupt" or (a.kind == "audio" and frame.end):
            state["network_done"] = True  # nothing more of this utterance will come

    def playout(live: Live) -> None:
        try:
            start_evt.wait()
            if args.play:
                tap = _PlayTap(ctrl, cap * (-(-utt.sample_rate // args.fps)))
                player = SoundDevicePlayer(tap, sample_rate=utt.sample_rate)
                player_box["player"] = player
                player.start()
                source = _FrameSampler(ctrl)
            else:
                source = ctrl
            clock = VirtualClock(source, fps=args.fps, sample_rate=utt.sample_rate, realtime=True)
            tail = 0
            while clock.index < cap and not state.get("closed"):
                if args.interrupt_at is not None and state["interrupted_at"] is None \
                        and clock.time >= args.interrupt_at:
                    state["interrupted_at"] = clock.time
                    live.request_interrupt()
                rec.tick(clock)
                if progress is not None:
                    progress.update(clock.index, int(duration * args.fps))
                if done_playing(ctrl, state["network_done"]) and (
                        rec.start_sample is not None or state["interrupted_at"] is not None):
                    tail += 1
                    if tail > TAIL_FRAMES:
                        break
            if args.play:
                player.stop()
                rec.audio[:tap.n] = tap.buf[:tap.n]
                rec.samples = tap.n
                rec.start_sample = tap.start_sample
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            state["error"] = exc
        finally:
            live.finished()

    log_box = NetworkLog()

    async def main() -> NetworkLog:
        live = Live(asyncio.get_running_loop())
        thread = threading.Thread(target=playout, args=(live,), name="avatarkit-demo-playout", daemon=True)
        thread.start()
        try:
            log = await run_network(args, utt, on_arrival=on_arrival, on_start=lambda t0: start_evt.set(),
                                     live=live)
        finally:
            start_evt.set()
            state["network_done"] = True
            state["closed"] = True
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        log.arrivals = log_box.arrivals
        return log

    log = pipeline(main())
    if state["error"] is not None:
        raise state["error"]
    player = player_box.get("player")
    info = {"interrupted_at": state["interrupted_at"], "receiver": stats_dict(receiver.stats)}
    if player is not None:
        info["sound_device"] = {"callbacks": player.callbacks, "underflows": player.underflows,
                                "errors": [repr(e) for e in player.errors]}
    return log, rec.result(), info


class _PlayTap:
    """The sound card's source: the controller, with a copy of what it played."""

    def __init__(self, ctrl, cap_samples: int) -> None:
        self.ctrl = ctrl
        self.sample_rate = ctrl.sample_rate if hasattr(ctrl, "sample_rate") else None
        self.buf = np.zeros(cap_samples, np.int16)
        self.n = 0

    start_sample: Optional[int] = None

    def read_audio_into(self, buf) -> None:
        self.ctrl.read_audio_into(buf)
        m = min(len(buf), len(self.buf) - self.n)
        self.buf[self.n:self.n + m] = buf[:m]
        self.n += m
        if self.start_sample is None:
            played = self.ctrl.stats["samples_played"]
            if played > 0:
                self.start_sample = self.n - played

    def current_frame_into(self, buf) -> None:
        self.ctrl.current_frame_into(buf)

    def get_audio_time(self) -> float:
        return self.ctrl.get_audio_time()


class _FrameSampler:
    """With the sound card pulling audio, the video clock only samples keyframes."""

    def __init__(self, ctrl) -> None:
        self.ctrl = ctrl
        self.sample_rate = getattr(ctrl, "sample_rate", None)

    def read_audio_into(self, buf) -> None:
        buf[:] = 0

    def current_frame_into(self, buf) -> None:
        self.ctrl.current_frame_into(buf)

    def get_audio_time(self) -> float:
        return self.ctrl.get_audio_time()
