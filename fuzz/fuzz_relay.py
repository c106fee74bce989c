"""Fuzz the relay's reading end: ``decode_frame`` and ``RelayReceiver.feed``
into a real ``AvatarController``.

The input is a sequence of records ``u16 length (little-endian) + frame
bytes``; each record is one relay frame (a WebSocket message). Expected: every
frame either applies or raises an error of our hierarchy; a frame refused with
``RelayError`` leaves the controller and the receiver's counters exactly as
they were; a decoded frame encodes back to a frame that decodes the same;
between frames the controller is consistent (state, id, counters never going
back, silence after an interrupt).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runner import check, instrumented, main, save_seeds  # noqa: E402

with instrumented("avatarkit_fast", "msgpack"):
    import avatarkit_fast.errors as errors
    from avatarkit_fast import relay

import controller_ops as ops  # noqa: E402

try:
    from avatarkit_fast.controller import AvatarController
except ImportError:  # the relay can be fuzzed before the controller exists
    AvatarController = None


class RecordingController:
    """Stands in for the controller where there is none: records the calls."""

    def __init__(self, **_: object) -> None:
        self.calls: list = []
        self._cid = None
        self._n = 0
        self.state = "IDLE"
        self.stats = {k: 0 for k in ops.STAT_NAMES}

    def yield_audio_data(self, pcm, end=False):
        if self._cid is None:
            self._n += 1
            self._cid = f"c{self._n}"
        self.calls.append(("audio", self._cid, len(pcm), end))
        cid = self._cid
        if end:
            self._cid = None
        return cid

    def yield_frames_data(self, envelopes, cid):
        self.calls.append(("frames", cid, len(envelopes or ())))
        return True

    def get_current_conversation_id(self):
        return self._cid

    def interrupt(self):
        self.calls.append(("interrupt",))
        self._cid = None

    def read_audio(self, n):
        return np.zeros(n, np.int16)


def _snapshot(ctrl, receiver) -> tuple:
    stats = ops._stats_dict(ctrl.stats)
    return (ops._state_name(ctrl.state), ctrl.get_current_conversation_id(),
            tuple(sorted((k, v) for k, v in stats.items() if isinstance(v, (int, float)))),
            len(getattr(ctrl, "calls", ())), repr(receiver.stats))


def records(data: bytes):
    pos = 0
    while pos + 2 <= len(data):
        (n,) = struct.unpack_from("<H", data, pos)
        pos += 2
        yield data[pos : pos + n]
        pos += n


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_input(data: bytes) -> None:
    ctrl = (AvatarController or RecordingController)(sample_rate=16000)
    clock = Clock()
    reported: list = []
    receiver = relay.RelayReceiver(ctrl, remember=4, reorder_window=8, gap_timeout=0.05,
                                   on_error=reported.append, clock=clock)
    prev_cum = None
    for frame_bytes in records(data):
        clock.now += 0.01
        try:
            frame = relay.decode_frame(frame_bytes)
        except errors.RelayError:
            frame = None
        if frame is not None:
            again = relay.decode_frame(relay.encode_frame(frame))
            check(again == frame, f"re-encoded frame differs: {frame!r} -> {again!r}")
        before = _snapshot(ctrl, receiver)
        try:
            receiver.feed(frame_bytes)
        except errors.RelayError:
            check(frame is None, "feed refused a frame that decode_frame accepted")
            check(_snapshot(ctrl, receiver) == before, "a refused frame changed the controller or the receiver")
        except errors.AvatarKitError:
            # a well-formed frame whose content the controller refuses (a malformed envelope)
            check(frame is not None, "decode_frame refused what feed accepted")
        else:
            check(frame is not None, "feed accepted a frame that decode_frame refused")
        if isinstance(frame, relay.Interrupt) and AvatarController is not None:
            cid = ctrl.get_current_conversation_id()
            if frame.req_id is None:
                check(cid is None, "an interrupt of whatever plays left a conversation")
        stats = ops._stats_dict(ctrl.stats)
        cum = {k: stats[k] for k in ops.CUMULATIVE}
        if prev_cum is not None:
            for k in ops.CUMULATIVE:
                check(cum[k] >= prev_cum[k], f"stats.{k} went back")
        prev_cum = cum
        check(receiver.held <= receiver.reorder_window, f"{receiver.held} frames held, window 8")
        receiver.poll()
        ctrl.read_audio(160)
    receiver.flush()
    check(receiver.held == 0, "frames still held after flush")
    st = receiver.stats
    gaps = [e for e in reported if isinstance(e, errors.RelayGap)]
    check(all(isinstance(e, errors.AvatarKitError) for e in reported), "a report outside our hierarchy")
    check(len(gaps) == st.gaps and sum(e.count for e in gaps) == st.missing, "gaps reported != counted")


def write_seeds(wire_seeds: dict, pcm: bytes) -> None:
    enc = relay.encode_frame
    env1 = wire_seeds["anim-env0-1kf"]
    env2 = wire_seeds["anim-env5-2kf-end"]
    chunk = pcm[16000:16640]  # 20 ms of the recording

    def rec(*frames: bytes) -> bytes:
        return b"".join(struct.pack("<H", len(f)) + f for f in frames)

    def numbered(*steps) -> list[bytes]:
        out: list[bytes] = []
        sender = relay.RelaySender(out.append)
        for step in steps:
            getattr(sender, step[0])(*step[1:])
        return out

    v2 = numbered(("audio", "r1", chunk), ("audio", "r1", chunk), ("animation", "r1", [env1]),
                  ("audio", "r1", chunk), ("audio", "r1", chunk[:320], True), ("animation", "r1", [env2]))
    v2b = numbered(("audio", "r2", chunk), ("audio", "r2", chunk, True), ("audio_only", "r2"))
    seeds = {
        "v2-in-order": rec(*v2),
        "v2-duplicated": rec(*[f for f in v2 for _ in (0, 1)], v2[1]),
        "v2-reordered": rec(v2[1], v2[0], v2[3], v2[2], v2[5], v2[4]),
        "v2-lost-then-late": rec(v2[0], v2[2], v2[3], *([v2b[0]] * 6), v2[1], v2[4]),
        "v2-next-request-releases": rec(v2[0], v2[2], v2[4], *v2b),
        "v2-interrupt-held": rec(v2[0], v2[3], relay.encode_frame(relay.Interrupt("r1")), v2[1], v2[2]),
        "one-request": rec(enc(relay.AudioChunk("r1", chunk)), enc(relay.AnimationFrame("r1", (env1,))),
                           enc(relay.AudioChunk("r1", chunk[:321], True)), enc(relay.AnimationFrame("r1", (env2,)))),
        "audio-only": rec(enc(relay.AudioChunk("r1", chunk, True)), enc(relay.AudioOnly("r1"))),
        "interrupt-then-late": rec(enc(relay.AudioChunk("r1", chunk)), enc(relay.Interrupt("r1")),
                                   enc(relay.AnimationFrame("r1", (env1,))), enc(relay.AudioChunk("r1", chunk))),
        "two-requests": rec(enc(relay.AudioChunk("a", chunk)), enc(relay.AudioChunk("b", chunk)),
                            enc(relay.AnimationFrame("a", (env1,))), enc(relay.Interrupt(None))),
        "bad-frames": rec(b"\x95\x02\x01\xa1r\xc4\x00\xc2", b"\x93\x01\x09\xa1r", b"\xc1", b"",
                          enc(relay.AnimationFrame("r", (b"\x08\x05\x32\x01",)))),
    }
    save_seeds("relay", seeds)


if __name__ == "__main__":
    main(test_one_input, "relay")
