"""A virtual-clock harness for the controller, in the manner of GStreamer's
test clock: time advances only when the script says so, one read at a time,
and every read is checked against what the script yielded.

The harness is the oracle.  It remembers, per conversation id, the PCM it
yielded and the keyframes the controller accepted, and after every read checks:

* nothing lost, nothing doubled: the samples read are the next ones of the current conversation's
  PCM, in order, and the rest of the buffer is silence;
* sample-exact sync: the frame is keyframe ``floor(s * fps / sr)`` of the accepted ones
  (the linear blend with ``interpolation="linear"``), the last accepted one
  while animation is late (``audio_independent``), the idle frame without
  keyframes;
* ``strict_sync``: no sample plays before its keyframe was accepted, unless
  the animation had ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avatarkit_fast import AvatarController, ConversationState


@dataclass
class Conv:
    cid: str
    pcm: bytearray = field(default_factory=bytearray)
    frames: list = field(default_factory=list)
    audio_only: bool = False
    anim_end: bool = False
    audio_end: bool = False
    timed_out: bool = False  # audio started (max_frame_wait) before any keyframe
    pos: int = 0

    @property
    def samples(self) -> np.ndarray:
        n = len(self.pcm) // 2
        return np.frombuffer(bytes(self.pcm[: 2 * n]), dtype="<i2")

    @property
    def keyframes(self) -> np.ndarray:
        if not self.frames:
            return np.zeros((0, 120), np.float32)
        return np.concatenate(self.frames)


class Harness:
    def __init__(self, ctrl: AvatarController, read_samples: int | None = None) -> None:
        self.ctrl = ctrl
        self.sr = ctrl.sample_rate
        self.fps = ctrl.fps
        self.read_n = read_samples or self.sr // 100
        self.convs: dict[str, Conv] = {}
        self.order: list[str] = []
        self.reads = 0
        self.paused = False
        self.silent_reads = 0
        self.stale_sent = 0
        self._buf = np.zeros(self.read_n, np.int16)
        self._frame = np.zeros(120, np.float32)
        self.idle = np.zeros(120, np.float32)

    # -- producer actions ----------------------------------------------------
    def audio(self, pcm: bytes, end: bool = False) -> str:
        cid = self.ctrl.yield_audio_data(pcm, end)
        conv = self.convs.get(cid)
        if conv is None:
            conv = self.convs[cid] = Conv(cid)
            self.order.append(cid)
            self.paused = False
        if conv.audio_end:
            raise AssertionError("a conversation took audio after its end")
        conv.pcm += pcm
        if end:
            conv.audio_end = True
            if len(conv.pcm) % 2:
                del conv.pcm[-1]  # the dangling half sample is dropped at the end
        return cid

    def frames(self, envelopes, cid: str, frames: np.ndarray | None, end: bool = False) -> bool:
        current = self.ctrl.get_current_conversation_id()
        before = self.ctrl.stats
        ok = self.ctrl.yield_frames_data(envelopes, cid)
        after = self.ctrl.stats
        conv = self.convs.get(cid)
        if cid != current or conv is None:
            assert ok is False
            n = 0 if frames is None else len(frames)
            self.stale_sent += n
            assert after.frames_dropped_stale - before.frames_dropped_stale == n
            return ok
        if not envelopes:
            assert ok is True
            conv.audio_only = True
            return ok
        if conv.audio_only:
            assert ok is False
            assert after.frames_ignored - before.frames_ignored == len(frames)
            return ok
        assert ok is True
        if not conv.frames and conv.pos > 0:
            conv.timed_out = True
        conv.frames.append(np.asarray(frames, np.float32))
        conv.anim_end = conv.anim_end or end
        assert after.frames_received - before.frames_received == len(frames)
        return ok

    def interrupt(self) -> None:
        self.ctrl.interrupt()
        self.paused = False
        assert self.ctrl.get_current_conversation_id() is None
        assert self.ctrl.state == ConversationState.IDLE

    def pause(self) -> None:
        self.ctrl.pause()
        if self.ctrl.get_current_conversation_id() is not None:
            self.paused = True
            assert self.ctrl.state == ConversationState.PAUSED

    def resume(self) -> None:
        self.ctrl.resume()
        self.paused = False

    # -- the clock -------------------------------------------------------------
    def tick(self) -> int:
        """One read of ``read_n`` samples and one frame, both checked."""
        ctrl = self.ctrl
        cid = ctrl.get_current_conversation_id()
        conv = self.convs.get(cid) if cid else None
        buf = self._buf
        buf[:] = 12345
        k = ctrl.read_audio_into(buf)
        self.reads += 1
        assert 0 <= k <= self.read_n
        assert not buf[k:].any(), "silence must follow the audio in a read"
        if k:
            assert conv is not None, "audio played outside a conversation"
            assert not self.paused, "audio played while paused"
            want = conv.samples[conv.pos : conv.pos + k]
            assert len(want) == k, "more audio played than was yielded"
            assert np.array_equal(buf[:k], want), f"wrong samples at {conv.pos} of {cid}"
            conv.pos += k
        else:
            self.silent_reads += 1
        if conv is not None and self.paused:
            assert ctrl.state == ConversationState.PAUSED
        # The read may have finished the conversation.
        now = ctrl.get_current_conversation_id()
        if conv is not None and now is None and not self.paused:
            if conv.audio_end and conv.pos == len(conv.samples):
                assert ctrl.state == ConversationState.IDLE
        self.check_frame()
        return k

    def check_frame(self) -> None:
        ctrl = self.ctrl
        ctrl.current_frame_into(self._frame)
        got = self._frame
        cid = ctrl.get_current_conversation_id()
        conv = self.convs.get(cid) if cid else None
        if conv is None or conv.audio_only or not conv.frames:
            assert np.array_equal(got, self.idle), "expected the idle frame"
            return
        kf = conv.keyframes
        s = conv.pos
        idx, rem = divmod(s * self.fps, self.sr)
        if ctrl.sync_mode == "strict_sync" and not (conv.anim_end or conv.timed_out) and s > 0:
            last_needed = (s - 1) * self.fps // self.sr
            assert last_needed < len(kf), "strict_sync played a sample before its keyframe"
        if idx >= len(kf):
            assert np.array_equal(got, kf[-1]), "late animation must hold the last keyframe"
        elif ctrl.interpolation == "linear" and rem and idx + 1 < len(kf):
            a, b = kf[idx], kf[idx + 1]
            want = a + (b - a) * np.float32(rem / self.sr)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        else:
            assert np.array_equal(got, kf[idx]), f"keyframe {idx} expected at sample {s}"

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def drain(self, max_ticks: int = 100_000) -> None:
        for _ in range(max_ticks):
            if self.ctrl.get_current_conversation_id() is None:
                return
            self.tick()
        raise AssertionError("the conversation did not end")
