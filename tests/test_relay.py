"""The relay: msgpack frame format, sender, receiver, WebSocket transport."""

from __future__ import annotations

import asyncio
import itertools

import msgpack
import pytest
import websockets

from avatarkit_fast.errors import DecodeError, RelayError
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
    assert msgpack.unpackb(encode_frame(AudioChunk("r", b"\0\1", True))) == [1, 1, "r", b"\0\1", True]
    assert msgpack.unpackb(encode_frame(AnimationFrame("r", (b"e",)))) == [1, 2, "r", [b"e"]]
    assert msgpack.unpackb(encode_frame(AudioOnly("r"))) == [1, 3, "r"]
    assert msgpack.unpackb(encode_frame(Interrupt(None))) == [1, 4, None]


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
    with pytest.raises(RelayError, match=r"unsupported relay format version 2; this reader speaks version 1"):
        RelayReceiver(ctrl).feed(msgpack.packb([2, 1, "r", b"\0\0", False], use_bin_type=True))
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
    frames = [decode_frame(f) for f in out]
    assert frames == [
        AudioChunk("R", b"\1\2", False),
        AnimationFrame(recording.req_id, (recording.envelopes[0],)),
        AudioOnly("R"),
        Interrupt(None),
    ]
    assert sender.envelopes_dropped == 1 and sender.frames_sent == 4


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
    assert [decode_frame(f) for f in out] == [AudioOnly("R1")]


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
    assert frames == [AudioChunk("REQ", b"\1\2", True), Interrupt("REQ")]


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


def test_websocket_transport_on_loopback(recording):
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
                pcm = recording.pcm[: 32000]
                for i in range(0, len(pcm), 640):
                    sender.audio(recording.req_id, pcm[i : i + 640], end=i + 640 >= len(pcm))
                for env in recording.envelopes[:2]:
                    sender.transport_frames(env, False)
                await sender.flush()
            count = await asyncio.wait_for(done, 10)
        return ctrl, receiver, count

    ctrl, receiver, count = asyncio.run(scenario())
    assert count == 50 + 2
    assert bytes(ctrl.audio["conv-1"]) == recording.pcm[:32000]
    assert ctrl.envelopes["conv-1"] == recording.envelopes[:2]
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
        st.tuples(st.sampled_from([1, 2, 3, 4]), st.lists(_msgpack_values, max_size=4)).map(
            lambda kv: msgpack.packb([1, kv[0], *kv[1]], use_bin_type=True)
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
