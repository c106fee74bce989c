"""The relay: msgpack frame format, sender, receiver, WebSocket transport."""

from __future__ import annotations

import asyncio
import itertools

import msgpack
import pytest
import websockets

from avatarkit_fast.errors import DecodeError, EncodeError, RelayError, RelayGap
from avatarkit_fast.relay import (
    AnimationFrame,
    AudioChunk,
    AudioOnly,
    Interrupt,
    RelayReceiver,
    RelaySender,
    WebSocketSink,
    decode_frame,
    encode_frame,
    pump_websocket,
)


class FakeController:
    """The controller's conversation-id rules (new ids, stale drops, audio-only, interrupt), and a log."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.current: str | None = None
        self.ended = True
        self.ids = (f"conv-{i}" for i in itertools.count(1))
        self.audio: dict[str, bytearray] = {}
        self.envelopes: dict[str, list[bytes]] = {}
        self.stale = 0

    def yield_audio_data(self, pcm, end=False):
        if self.current is None or self.ended:
            self.current = next(self.ids)
            self.audio[self.current] = bytearray()
        self.ended = bool(end)
        self.audio[self.current] += pcm
        self.calls.append(("audio", self.current, bytes(pcm), end))
        return self.current

    def yield_frames_data(self, envelopes, conversation_id):
        self.calls.append(("frames", conversation_id, list(envelopes or [])))
        if conversation_id != self.current:
            self.stale += 1
            return False
        self.envelopes.setdefault(conversation_id, []).extend(envelopes or [])
        return True

    def get_current_conversation_id(self):
        return self.current

    def interrupt(self):
        self.calls.append(("interrupt", self.current))
        self.current = None
        self.ended = True


FRAMES = [
    AudioChunk("req-1", b"\x01\x02\x03\x04", False, 0),
    AnimationFrame("req-1", (b"\x08\x05", b"abc"), 1),
    AudioOnly("req-2", 2**32 - 1),
    AudioChunk("req-1", b"\x01\x02\x03\x04", False),
    AudioChunk("req-1", b"", True),
    AnimationFrame("req-1", (b"\x08\x05", b"abc")),
    AnimationFrame("req-1", ()),
    AudioOnly("req-2"),
    Interrupt("req-3"),
    Interrupt(None),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_round_trip(frame):
    data = encode_frame(frame)
    assert decode_frame(data) == frame
    assert decode_frame(bytearray(data)) == frame and decode_frame(memoryview(data)) == frame


def test_format_is_the_documented_array():
    # version 2: numbered per request
    assert msgpack.unpackb(encode_frame(AudioChunk("r", b"\0\1", True, 7))) == [2, 1, "r", 7, b"\0\1", True]
    assert msgpack.unpackb(encode_frame(AnimationFrame("r", (b"e",), 8))) == [2, 2, "r", 8, [b"e"]]
    assert msgpack.unpackb(encode_frame(AudioOnly("r", 9))) == [2, 3, "r", 9]
    assert msgpack.unpackb(encode_frame(Interrupt(None))) == [2, 4, None]
    assert msgpack.unpackb(encode_frame(Interrupt("r"))) == [2, 4, "r"]
    # version 1: no numbers
    assert msgpack.unpackb(encode_frame(AudioChunk("r", b"\0\1", True))) == [1, 1, "r", b"\0\1", True]
    assert msgpack.unpackb(encode_frame(AnimationFrame("r", (b"e",)))) == [1, 2, "r", [b"e"]]
    assert msgpack.unpackb(encode_frame(AudioOnly("r"))) == [1, 3, "r"]
    assert msgpack.unpackb(encode_frame(Interrupt(None), version=1)) == [1, 4, None]


def test_encode_refuses_a_seq_that_does_not_fit_the_version():
    with pytest.raises(EncodeError, match="version 1 has no seq"):
        encode_frame(AudioChunk("r", b"", False, 3), version=1)
    with pytest.raises(EncodeError, match="version 2 needs a seq"):
        encode_frame(AudioOnly("r"), version=2)
    for bad in (-1, 2**32, True, 1.0, "1"):
        with pytest.raises(EncodeError):
            encode_frame(AudioOnly("r", bad))
    with pytest.raises(EncodeError, match="version must be one of"):
        encode_frame(Interrupt(None), version=3)


MALFORMED = {
    "empty": b"",
    "not msgpack": b"\xc1",
    "truncated": encode_frame(AudioChunk("r", b"\0" * 10))[:-3],
    "trailing bytes": encode_frame(AudioOnly("r")) + b"\x00",
    "a map": msgpack.packb({"v": 1}),
    "a scalar": msgpack.packb(1),
    "too short": msgpack.packb([1]),
    "version as text": msgpack.packb(["1", 1, "r", b"", False]),
    "unknown kind": msgpack.packb([1, 9, "r"]),
    "bool kind": msgpack.packb([1, True, "r", b"", False]),
    "list kind": msgpack.packb([1, [1], "r", b"", False]),
    "float kind": msgpack.packb([1, 1.0, "r", b"", False]),
    "audio arity": msgpack.packb([1, 1, "r", b""]),
    "audio pcm as str": msgpack.packb([1, 1, "r", "pcm", False]),
    "audio end as int": msgpack.packb([1, 1, "r", b"", 1], use_bin_type=True),
    "empty req_id": msgpack.packb([1, 1, "", b"", False], use_bin_type=True),
    "req_id as bytes": msgpack.packb([1, 3, b"r"], use_bin_type=True),
    "envelopes not a list": msgpack.packb([1, 2, "r", b"x"], use_bin_type=True),
    "envelope as str": msgpack.packb([1, 2, "r", ["x"]], use_bin_type=True),
    "interrupt req_id as int": msgpack.packb([1, 4, 7]),
    "extra element": msgpack.packb([1, 3, "r", None]),
    "v2 audio without seq": msgpack.packb([2, 1, "r", b"", False], use_bin_type=True),
    "v2 seq negative": msgpack.packb([2, 3, "r", -1]),
    "v2 seq too large": msgpack.packb([2, 3, "r", 2**32]),
    "v2 seq bool": msgpack.packb([2, 3, "r", True]),
    "v2 seq float": msgpack.packb([2, 3, "r", 1.0]),
    "v2 seq nil": msgpack.packb([2, 2, "r", None, []]),
    "v2 seq as text": msgpack.packb([2, 2, "r", "0", []]),
    "v2 interrupt with seq": msgpack.packb([2, 4, "r", 0]),
    "v2 audio-only arity": msgpack.packb([2, 3, "r"]),
    "v2 extra element": msgpack.packb([2, 3, "r", 0, None]),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_frames_raise_and_leave_the_controller_untouched(name):
    ctrl = FakeController()
    receiver = RelayReceiver(ctrl)
    with pytest.raises(RelayError) as info:
        receiver.feed(MALFORMED[name])
    assert isinstance(info.value, DecodeError)  # one hierarchy
    assert "relay frame" in str(info.value)
    assert ctrl.calls == [] and receiver.stats.frames == 0


def test_unknown_version_is_refused_by_name():
    ctrl = FakeController()
    for version in (0, 3, 2**40):
        with pytest.raises(RelayError, match=rf"unsupported relay format version {version}; "
                                             r"this reader speaks versions 1 and 2"):
            RelayReceiver(ctrl).feed(msgpack.packb([version, 1, "r", 0, b"\0\0", False], use_bin_type=True))
    assert ctrl.calls == []


def test_wrong_argument_types():
    with pytest.raises(TypeError):
        decode_frame("text")
    with pytest.raises(TypeError):
        encode_frame(AudioChunk("", b""))
    with pytest.raises(TypeError):
        encode_frame("frame")


def test_receiver_maps_requests_to_conversations_and_drops_late_animation():
    ctrl = FakeController()
    rx = RelayReceiver(ctrl)
    rx.feed(encode_frame(AudioChunk("A", b"\1\1", False)))
    rx.feed(encode_frame(AudioChunk("A", b"\2\2", True)))
    rx.feed(encode_frame(AnimationFrame("A", (b"a1",))))
    assert rx.conversation_id("A") == "conv-1"
    rx.feed(encode_frame(AudioChunk("B", b"\3\3", False)))
    assert rx.conversation_id("B") == "conv-2"
    rx.feed(encode_frame(AnimationFrame("A", (b"a2-late",))))  # stale: the controller drops it
    rx.feed(encode_frame(AnimationFrame("B", (b"b1",))))
    rx.feed(encode_frame(AnimationFrame("nobody", (b"x",))))  # never had audio here
    assert ctrl.envelopes == {"conv-1": [b"a1"], "conv-2": [b"b1"]}
    assert ctrl.stale == 1 and rx.stats.dropped_animation == 1
    assert bytes(ctrl.audio["conv-1"]) == b"\1\1\2\2" and bytes(ctrl.audio["conv-2"]) == b"\3\3"
    rx.feed(encode_frame(AudioOnly("B")))
    assert ctrl.calls[-1] == ("frames", "conv-2", [])


def test_a_new_request_cuts_an_unfinished_one():
    ctrl = FakeController()
    rx = RelayReceiver(ctrl)
    rx.feed(encode_frame(AudioChunk("A", b"\1\1")))
    rx.feed(encode_frame(AudioChunk("B", b"\2\2")))  # A never sent end
    assert ("interrupt", "conv-1") in ctrl.calls
    assert rx.conversation_id("B") == "conv-2"
    rx.feed(encode_frame(AudioChunk("A", b"\x09\x09")))  # late audio of A: dropped
    assert bytes(ctrl.audio["conv-2"]) == b"\2\2" and rx.stats.dropped_audio == 1


def test_interrupt_frames():
    ctrl = FakeController()
    rx = RelayReceiver(ctrl)
    rx.feed(encode_frame(AudioChunk("A", b"\1\1")))
    rx.feed(encode_frame(Interrupt("A")))
    assert ctrl.current is None
    rx.feed(encode_frame(AudioChunk("A", b"\2\2", True)))  # in flight: dropped
    rx.feed(encode_frame(AnimationFrame("A", (b"late",))))  # goes to the dead id: stale
    assert ctrl.current is None and ctrl.stale == 1 and rx.stats.dropped_audio == 1
    # Interrupting an old request leaves the current one alone.
    rx.feed(encode_frame(AudioChunk("B", b"\3\3")))
    rx.feed(encode_frame(Interrupt("A")))
    assert ctrl.current == rx.conversation_id("B")
    # nil interrupts whatever plays.
    rx.feed(encode_frame(Interrupt(None)))
    assert ctrl.current is None
    rx.feed(encode_frame(AudioChunk("B", b"\4\4")))
    assert rx.stats.dropped_audio == 2 and rx.stats.interrupts == 3


def test_application_interrupt_on_the_controller_stops_the_request():
    ctrl = FakeController()
    rx = RelayReceiver(ctrl)
    rx.feed(encode_frame(AudioChunk("A", b"\1\1")))
    ctrl.interrupt()  # the user tapped stop
    rx.feed(encode_frame(AudioChunk("A", b"\2\2")))
    assert ctrl.current is None and rx.stats.dropped_audio == 1


def test_sender_with_a_plain_sink(recording):
    out: list[bytes] = []
    sender = RelaySender(out.append)
    sender.audio("R", memoryview(b"\1\2"), end=False)
    sender.transport_frames(recording.envelopes[0], False)  # req_id read from the envelope
    sender.transport_frames(b"\xff garbage", False)  # dropped, never raised into the SDK
    sender.audio_only("R")
    sender.interrupt()
    sender.interrupt(None)
    frames = [decode_frame(f) for f in out]
    assert frames == [
        AudioChunk("R", b"\1\2", False, 0),
        AnimationFrame(recording.req_id, (recording.envelopes[0],), 0),
        AudioOnly("R", 1),
        Interrupt("R"),  # names the request whose audio went last
        Interrupt("R"),
    ]
    assert sender.envelopes_dropped == 1 and sender.frames_sent == 5


def test_sender_numbers_each_request_and_a_refused_frame_takes_no_number():
    out: list[bytes] = []
    refuse = [False]

    def sink(frame: bytes) -> None:
        if refuse[0]:
            raise ConnectionResetError("peer gone")
        out.append(frame)

    sender = RelaySender(sink)
    sender.interrupt()  # before any audio: whatever plays
    sender.audio("A", b"\1\1")
    sender.audio("B", b"\2\2")
    sender.animation("A", [b"e"])
    refuse[0] = True
    with pytest.raises(RelayError, match="peer gone"):
        sender.audio("A", b"\3\3")
    refuse[0] = False
    sender.audio("A", b"\4\4", end=True)
    with pytest.raises(TypeError):
        sender.audio("", b"")
    assert [decode_frame(f) for f in out] == [
        Interrupt(None),
        AudioChunk("A", b"\1\1", False, 0),
        AudioChunk("B", b"\2\2", False, 0),
        AnimationFrame("A", (b"e",), 1),
        AudioChunk("A", b"\4\4", True, 2),
    ]
    assert sender.frames_sent == 5


def test_sender_in_version_1_for_an_older_reader():
    out: list[bytes] = []
    sender = RelaySender(out.append, version=1)
    sender.audio("A", b"\1\1")
    sender.animation("A", [b"e"])
    sender.interrupt()
    assert [msgpack.unpackb(f) for f in out] == [[1, 1, "A", b"\1\1", False], [1, 2, "A", [b"e"]], [1, 4, None]]
    with pytest.raises(ValueError):
        RelaySender(out.append, version=3)


def test_sender_turns_a_failed_request_into_audio_only():
    out: list[bytes] = []
    sender = RelaySender(out.append)

    class SDKError(Exception):
        def __init__(self, req_id):
            super().__init__("server error")
            self.req_id = req_id

    sender.on_error(SDKError("R1"))
    sender.on_error(SDKError(None))  # a session-wide error: nothing to say per request
    sender.on_error(ValueError("no req_id at all"))
    assert [decode_frame(f) for f in out] == [AudioOnly("R1", 0)]


def test_sender_drives_a_session_and_the_relay_together():
    class Session:  # the server SDK's two calls, as spatius has them
        def __init__(self):
            self.sent = []

        async def send_audio(self, audio, end=False):
            self.sent.append((audio, end))
            return "REQ"

        async def interrupt(self):
            return "REQ"

    async def scenario():
        out: list[bytes] = []
        sender, session = RelaySender(out.append), Session()
        assert await sender.send_audio(session, b"\1\2", end=True) == "REQ"
        assert await sender.interrupt_session(session) == "REQ"
        return session.sent, [decode_frame(f) for f in out]

    sent, frames = asyncio.run(scenario())
    assert sent == [(b"\1\2", True)]
    assert frames == [AudioChunk("REQ", b"\1\2", True, 0), Interrupt("REQ")]


def test_sender_with_an_async_sink_keeps_order():
    async def scenario():
        got: list[bytes] = []

        async def sink(frame: bytes) -> None:
            await asyncio.sleep(0.001 * (len(got) % 3))
            got.append(frame)

        sender = RelaySender(sink)
        for i in range(20):
            sender.audio("R", bytes([i, i]), end=i == 19)
        await sender.aclose()
        return got

    got = asyncio.run(scenario())
    assert [decode_frame(f).pcm for f in got] == [bytes([i, i]) for i in range(20)]


def test_sender_reports_a_failing_sink():
    async def scenario():
        async def sink(frame: bytes) -> None:
            raise ConnectionResetError("peer gone")

        sender = RelaySender(sink)
        sender.audio("R", b"\0\0")
        with pytest.raises(RelayError, match="peer gone"):
            await sender.flush()

    asyncio.run(scenario())


def test_websocket_transport_on_loopback(golden):
    async def scenario():
        ctrl = FakeController()
        receiver = RelayReceiver(ctrl)
        done = asyncio.get_running_loop().create_future()

        async def client_side(ws):  # the client app hosts the relay endpoint here
            done.set_result(await pump_websocket(ws, receiver))

        async with websockets.serve(client_side, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                sender = RelaySender(WebSocketSink(ws))
                pcm = golden.pcm[: 32000]
                for i in range(0, len(pcm), 640):
                    sender.audio(golden.req_id, pcm[i : i + 640], end=i + 640 >= len(pcm))
                for env in golden.envelopes[:2]:
                    sender.transport_frames(env, False)
                await sender.flush()
            count = await asyncio.wait_for(done, 10)
        return ctrl, receiver, count

    ctrl, receiver, count = asyncio.run(scenario())
    assert count == 50 + 2
    assert bytes(ctrl.audio["conv-1"]) == golden.pcm[:32000]
    assert ctrl.envelopes["conv-1"] == golden.envelopes[:2]
    assert receiver.stats.envelopes == 2


def test_pump_reports_bad_frames_to_on_error():
    async def scenario():
        ctrl = FakeController()
        receiver = RelayReceiver(ctrl)
        errors: list[RelayError] = []
        done = asyncio.get_running_loop().create_future()

        async def client_side(ws):
            done.set_result(await pump_websocket(ws, receiver, on_error=errors.append))

        async with websockets.serve(client_side, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.send("text")
                await ws.send(b"\xc1")
                await ws.send(encode_frame(AudioChunk("A", b"\1\1", True)))
            count = await asyncio.wait_for(done, 10)
        return ctrl, errors, count

    ctrl, errors, count = asyncio.run(scenario())
    assert count == 1 and len(errors) == 2 and bytes(ctrl.audio["conv-1"]) == b"\1\1"


class Clock:
    """A clock the test moves by hand (the receiver's gap timeout reads it)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def numbered(req_id: str, n: int, *, anim_every: int = 0) -> list[bytes]:
    """A request's frames as a version-2 sender writes them: n audio chunks
    (chunk i is bytes([i, i])), an animation frame after every anim_every."""
    out: list[bytes] = []
    sender = RelaySender(out.append)
    for i in range(n):
        sender.audio(req_id, bytes([i, i]), end=i == n - 1)
        if anim_every and i % anim_every == anim_every - 1:
            sender.animation(req_id, [f"{req_id}-kf{i}".encode()])
    return out


def receiver_with_clock(**kw):
    ctrl, clock, errors = FakeController(), Clock(), []
    return ctrl, RelayReceiver(ctrl, clock=clock, on_error=errors.append, **kw), clock, errors


def test_duplicates_within_a_live_request_apply_once():
    ctrl, rx, _, errors = receiver_with_clock()
    frames = numbered("A", 6, anim_every=2)
    for f in frames[:4]:
        rx.feed(f)
        rx.feed(f)  # the transport sent it twice
    rx.feed(frames[1])  # and once more, much later
    for f in frames[4:]:
        rx.feed(f)
    assert bytes(ctrl.audio["conv-1"]) == b"".join(bytes([i, i]) for i in range(6))
    assert ctrl.envelopes["conv-1"] == [b"A-kf1", b"A-kf3", b"A-kf5"]
    assert rx.stats.duplicates == 5 and rx.stats.reordered == 0 and rx.held == 0 and not errors


def test_reordered_frames_are_held_and_applied_in_order():
    ctrl, rx, clock, errors = receiver_with_clock()
    frames = numbered("A", 8, anim_every=2)  # 12 frames
    order = [1, 0, 3, 4, 2, 5, 9, 6, 7, 8, 11, 10]
    held_after = []
    for k in order:
        rx.feed(frames[k])
        held_after.append(rx.held)
        clock.now += 0.01
    assert held_after == [1, 0, 1, 2, 0, 0, 1, 1, 1, 0, 1, 0]
    assert bytes(ctrl.audio["conv-1"]) == b"".join(bytes([i, i]) for i in range(8))
    assert ctrl.envelopes["conv-1"] == [b"A-kf1", b"A-kf3", b"A-kf5", b"A-kf7"]
    assert rx.stats.reordered == 5 and rx.stats.duplicates == 0 and not errors
    # Animation that overtakes its request's first audio waits for it.
    ctrl2, rx2, _, _ = receiver_with_clock()
    for k in (2, 0, 1):
        rx2.feed(frames[k])
    assert ctrl2.envelopes == {"conv-1": [b"A-kf1"]} and rx2.stats.dropped_animation == 0


def test_a_gap_is_given_up_after_the_timeout_and_reported():
    ctrl, rx, clock, errors = receiver_with_clock(gap_timeout=0.2)
    frames = numbered("A", 6)
    for k in (0, 1, 3, 4):  # 2 is lost
        rx.feed(frames[k])
    assert rx.held == 2 and rx.poll() == pytest.approx(0.2)
    clock.now += 0.15
    assert rx.poll() == pytest.approx(0.05) and rx.held == 2
    clock.now += 0.05
    assert rx.poll() is None and rx.held == 0
    assert bytes(ctrl.audio["conv-1"]) == b"\0\0\1\1\3\3\4\4"
    assert len(errors) == 1 and isinstance(errors[0], RelayGap)
    assert (errors[0].req_id, errors[0].first, errors[0].count) == ("A", 2, 1)
    assert rx.stats.gaps == 1 and rx.stats.missing == 1
    rx.feed(frames[2])  # the lost frame, too late: dropped
    rx.feed(frames[5])
    assert bytes(ctrl.audio["conv-1"]) == b"\0\0\1\1\3\3\4\4\5\5"
    assert rx.stats.late == 1 and rx.stats.duplicates == 0


def test_feed_gives_up_on_an_overdue_gap_before_applying():
    ctrl, rx, clock, errors = receiver_with_clock(gap_timeout=0.2)
    frames = numbered("A", 4)
    rx.feed(frames[0])
    rx.feed(frames[2])
    clock.now += 1.0
    rx.feed(frames[3])  # no poll() in between: feed itself looks at the clock
    assert bytes(ctrl.audio["conv-1"]) == b"\0\0\2\2\3\3" and len(errors) == 1


def test_the_reorder_window_bounds_what_is_held():
    ctrl, rx, _, errors = receiver_with_clock(reorder_window=4)
    frames = numbered("A", 14)
    rx.feed(frames[0])
    for k in (2, 3, 4, 5):
        rx.feed(frames[k])
    assert rx.held == 4
    rx.feed(frames[6])  # a fifth held frame: give up on seq 1
    assert rx.held == 0 and [(e.first, e.count) for e in errors] == [(1, 1)]
    rx.feed(frames[11])  # within the window: held
    assert rx.held == 1
    rx.feed(frames[12])  # further ahead than the window: give up at once
    assert rx.held == 0 and [(e.first, e.count) for e in errors] == [(1, 1), (7, 4)]
    assert bytes(ctrl.audio["conv-1"]) == b"".join(bytes([i, i]) for i in (0, 2, 3, 4, 5, 6, 11, 12))
    assert rx.stats.missing == 5


def test_a_new_request_applies_what_is_held_for_the_one_before():
    ctrl, rx, _, errors = receiver_with_clock()
    a, b = numbered("A", 4), numbered("B", 2)
    for f in (a[0], a[1], a[3], b[0], b[1]):  # a[2] lost; a[3] carries end
        rx.feed(f)
    # A's held end applied before B began, so A ended and B did not cut it.
    assert bytes(ctrl.audio["conv-1"]) == b"\0\0\1\1\3\3" and bytes(ctrl.audio["conv-2"]) == b"\0\0\1\1"
    assert ("interrupt", "conv-1") not in ctrl.calls
    assert [(e.req_id, e.first) for e in errors] == [("A", 2)]


def test_an_interrupt_acts_at_once_and_drops_what_is_held():
    ctrl, rx, clock, errors = receiver_with_clock()
    frames = numbered("A", 5)
    rx.feed(frames[0])
    rx.feed(frames[2])
    rx.feed(frames[3])
    rx.feed(encode_frame(Interrupt("A")))
    assert ctrl.current is None and rx.held == 0 and rx.stats.dropped_audio == 2
    clock.now += 10
    rx.feed(frames[1])
    rx.feed(frames[4])
    rx.flush()
    assert bytes(ctrl.audio["conv-1"]) == b"\0\0" and not errors


def test_version_1_frames_apply_as_they_come_beside_version_2():
    ctrl, rx, _, _ = receiver_with_clock()
    rx.feed(encode_frame(AudioChunk("A", b"\1\1")))
    rx.feed(encode_frame(AudioChunk("A", b"\1\1")))  # no numbers: a copy plays again
    rx.feed(numbered("A", 1)[0][:-1] + b"\xc2")  # seq 0 of A, end=False
    assert bytes(ctrl.audio["conv-1"]) == b"\1\1\1\1\0\0" and rx.stats.duplicates == 0


def test_held_frames_whose_envelope_the_controller_refuses_are_reported():
    from avatarkit_fast.controller import AvatarController

    ctrl = AvatarController(sample_rate=16000)
    errors: list = []
    rx = RelayReceiver(ctrl, clock=Clock(), on_error=errors.append)
    out: list[bytes] = []
    sender = RelaySender(out.append)
    sender.audio("A", b"\1\1" * 320)
    sender.animation("A", [b"\xff not an envelope"])
    sender.audio("A", b"\2\2" * 320, end=True)
    rx.feed(out[2])
    rx.feed(out[1])
    rx.feed(out[0])  # applies 0, then the held 1 (refused: reported) and 2
    assert len(errors) == 1 and isinstance(errors[0], DecodeError) and not isinstance(errors[0], RelayError)
    assert rx.held == 0 and ctrl.stats.buffered_audio_ms == pytest.approx(40.0)
    # Fed in order, the same frame raises from feed, and the next one still applies.
    ctrl2 = AvatarController(sample_rate=16000)
    rx2 = RelayReceiver(ctrl2)
    rx2.feed(out[0])
    with pytest.raises(DecodeError):
        rx2.feed(out[1])
    rx2.feed(out[2])
    assert ctrl2.stats.buffered_audio_ms == pytest.approx(40.0) and rx2.stats.duplicates == 0


def test_pump_releases_a_held_frame_on_time_and_reports_the_gap():
    async def scenario():
        ctrl = FakeController()
        receiver = RelayReceiver(ctrl, gap_timeout=0.1)
        errors: list = []
        released = asyncio.get_running_loop().create_future()
        done = asyncio.get_running_loop().create_future()
        frames = numbered("A", 4)

        async def client_side(ws):
            done.set_result(await pump_websocket(ws, receiver, on_error=errors.append))

        async with websockets.serve(client_side, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                for k in (0, 1, 3):  # 2 lost; 3 is the request's end
                    await ws.send(frames[k])
                t0 = asyncio.get_running_loop().time()
                while not errors:  # no more messages: the timer must release it
                    await asyncio.sleep(0.005)
                waited = asyncio.get_running_loop().time() - t0
                released.set_result(bytes(ctrl.audio["conv-1"]))
                assert not done.done()
            await asyncio.wait_for(done, 10)
        return released.result(), errors, waited, receiver

    audio, errors, waited, receiver = asyncio.run(scenario())
    assert audio == b"\0\0\1\1\3\3"
    assert [type(e) for e in errors] == [RelayGap] and errors[0].first == 2
    assert 0.05 <= waited < 2.0
    assert receiver.on_error is None  # the pump's on_error was lent for its run only


def test_receiver_arguments_are_checked():
    for kw in ({"remember": 0}, {"reorder_window": 0}, {"gap_timeout": -1}, {"gap_timeout": float("nan")}):
        with pytest.raises(ValueError):
            RelayReceiver(FakeController(), **kw)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        _msgpack_values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
        # Version 1 and anything after it: the paths past the version check.
        st.lists(_msgpack_values, max_size=5).map(lambda v: msgpack.packb([1, *v], use_bin_type=True)),
        st.tuples(st.sampled_from([1, 2]), st.sampled_from([1, 2, 3, 4]), st.lists(_msgpack_values, max_size=4)).map(
            lambda vkv: msgpack.packb([vkv[0], vkv[1], *vkv[2]], use_bin_type=True)
        ),
        # Version 2 with a seq in range and plausible elements after it.
        st.tuples(st.sampled_from([1, 2, 3]), st.text(min_size=1, max_size=3), st.integers(0, 2**32 - 1),
                  st.lists(st.binary(max_size=4) | st.booleans() | st.lists(st.binary(max_size=4), max_size=2),
                           max_size=2)).map(
            lambda f: msgpack.packb([2, f[0], f[1], f[2], *f[3]], use_bin_type=True)
        ),
    )
)
def test_any_bytes_decode_to_a_frame_or_a_relay_error(data):
    ctrl = FakeController()
    try:
        frame = decode_frame(data)
    except RelayError:
        with pytest.raises(RelayError):
            RelayReceiver(ctrl).feed(data)
        assert ctrl.calls == []
        return
    assert encode_frame(frame) == data or decode_frame(encode_frame(frame)) == frame


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_duplication_reordering_and_loss_applies_each_frame_at_most_once_in_order(data):
    """A version-2 stream through a transport that duplicates, displaces and
    loses frames: what applies is always the sent stream with some frames left
    out, in order, each once; with nothing lost and nothing displaced past the
    window, it is the whole stream."""
    n = data.draw(st.integers(1, 40), label="frames")
    frames = numbered("A", n)
    copies = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n), label="copies")
    shift = data.draw(st.lists(st.floats(0, 6), min_size=n * 3, max_size=n * 3), label="displacement")
    sent = [k for k in range(n) for _ in range(copies[k])]
    order = sorted(range(len(sent)), key=lambda i: i + shift[i])
    window = data.draw(st.integers(1, 8), label="window")
    ctrl, rx, clock, errors = receiver_with_clock(reorder_window=window)
    for i in order:
        rx.feed(frames[sent[i]])
        assert rx.held <= window
        clock.now += data.draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]), label="wait")
    rx.flush()
    got = bytes(ctrl.audio.get("conv-1", b""))
    applied = [got[i] for i in range(0, len(got), 2)]
    assert applied == sorted(set(applied)), "out of order or twice"
    delivered = {k for k in range(n) if copies[k]}
    assert set(applied) <= delivered
    assert rx.held == 0
    assert rx.stats.missing == sum(e.count for e in errors) and rx.stats.gaps == len(errors)
    assert rx.stats.missing <= n - len(delivered) + rx.stats.late
    if len(delivered) == n and clock.now == 100.0 and max(shift[: len(sent)], default=0) < window:
        assert applied == list(range(n)) and not errors


# -- audio formats over the relay ---------------------------------------------------


def test_sender_takes_arrays_as_samples_and_refuses_other_audio():
    import numpy as np

    out: list[bytes] = []
    sender = RelaySender(out.append)
    sender.audio("R", np.array([0.5, -1.0, 2.0], np.float32))
    sender.audio("R", np.array([1, -2], np.int16).reshape(-1, 1), end=True)
    frames = [decode_frame(f) for f in out]
    assert [f.pcm for f in frames] == [
        np.array([16384, -32768, 32767], "<i2").tobytes(),
        np.array([1, -2], "<i2").tobytes(),
    ]
    with pytest.raises(TypeError, match="int32 samples are not accepted"):
        sender.audio("R", np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="downmix to mono"):
        sender.audio("R", np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="input_format must be one of"):
        RelaySender(out.append, input_format="mp3")
    opus = RelaySender(out.append, input_format="ogg_opus")
    with pytest.raises(TypeError, match="Ogg Opus audio must be a bytes-like object"):
        opus.audio("R", 3)
    assert len(out) == 2 and sender.frames_sent == 2


@pytest.mark.parametrize("fmt", ["pcm_s16le", "ogg_opus"])
def test_relay_bytes_per_second_of_pcm_and_ogg_opus(golden, fmt):
    """The same speech over a real WebSocket relay into a real controller, as
    PCM and as Ogg Opus (24 kbit/s): what each costs, and both play whole."""
    import numpy as np

    from avatarkit_fast import AvatarController

    pytest.importorskip("av")
    from test_audio_opus import encode

    pcm = np.frombuffer(golden.pcm, "<i2")
    seconds = pcm.size / 16000
    data = golden.pcm if fmt == "pcm_s16le" else encode(pcm, 16000)

    async def scenario():
        ctrl = AvatarController(sample_rate=16000, input_format=fmt)
        receiver = RelayReceiver(ctrl)
        done = asyncio.get_running_loop().create_future()

        async def client_side(ws):
            done.set_result(await pump_websocket(ws, receiver))

        async with websockets.serve(client_side, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                sender = RelaySender(WebSocketSink(ws), input_format=fmt)
                step = 640 if fmt == "pcm_s16le" else 400  # 20 ms of PCM; Opus as it comes
                for i in range(0, len(data), step):
                    sender.audio(golden.req_id, data[i : i + step], end=i + step >= len(data))
                await sender.flush()
            await asyncio.wait_for(done, 10)
        return ctrl, sender

    ctrl, sender = asyncio.run(scenario())
    assert ctrl.stats.samples_received == pcm.size  # exact to the sample either way
    per_second = sender.bytes_sent / seconds
    print(f"\nrelay {fmt}: {per_second:,.0f} bytes/s over the wire for {seconds:.1f} s of speech")
    if fmt == "pcm_s16le":
        assert 32000 <= per_second < 36000  # 16 kHz s16le and the frames around it
    else:
        assert per_second < 32000 / 6  # about a tenth of the PCM
