"""``avatarkit-fast bench``: a quick run of the key benchmarks, as a table.

Each case is timed for the compiled module and its pure-Python twin in the
same interleaved run (``avatarkit_fast.benchmarking.measure``), beside the
physical floor where there is one (a plain copy of the same bytes).  The
figures are per call; the ratios are what to compare between machines.
"""

from __future__ import annotations

import json
import sys
from typing import Callable

import numpy as np

from .. import benchmarking
from .._compat import NO_EXTENSIONS, load_twin

__all__ = ["run_bench", "collect"]

from .._schema import FPS  # noqa: E402
RATE = 16000


def _server_like_frames(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.standard_normal((n, 120)) * 0.1).astype(np.float32)


def _tick_case(impl: str) -> Callable[[], object]:
    """A 10 ms playout tick (read 160 samples + the current keyframe) on a long
    conversation, topped up every 50 s of audio so it never runs dry."""
    from .. import wire
    from ..controller import AvatarController

    ctrl = AvatarController(RATE, FPS, _impl=impl, max_buffer_seconds=200.0)
    seconds = 50
    pcm = (np.arange(seconds * RATE) % 2000).astype("<i2").tobytes()
    frames = _server_like_frames(seconds * FPS)
    env = wire.encode_animation(frames, req_id="bench")
    audio = np.zeros(RATE // 100, np.int16)
    frame = np.zeros(120, np.float32)
    state = {"left": 0, "cid": None}

    def feed() -> None:
        cid = ctrl.yield_audio_data(pcm)
        ctrl.yield_frames_data([env], cid)
        state["left"] = seconds * 100 - 1

    feed()
    read, cur = ctrl.read_audio_into, ctrl.current_frame_into

    def tick() -> None:
        if state["left"] <= 0:
            feed()
        state["left"] -= 1
        read(audio)
        cur(frame)

    return tick


def _impls() -> list[str]:
    return ["py"] if NO_EXTENSIONS else ["c", "py"]


def collect(rounds: int | None = None) -> list[dict]:
    """Rows of {case, unit, c, py, floor} in seconds per call (None where absent)."""
    import importlib

    from .. import relay, wire

    rows: list[dict] = []
    envelope = wire.encode_animation(_server_like_frames(100), req_id="bench", connection_id="c")
    floor_buf = np.frombuffer(envelope, np.uint8)

    def add(case: str, unit: str, fns: dict[str, Callable[[], object]], floor=None, seconds=None) -> None:
        cases = dict(fns)
        if floor is not None:
            cases["floor"] = floor
        t = benchmarking.measure(cases, rounds=rounds)
        row = {"case": case, "unit": unit, **{k: t.get(k) for k in ("c", "py", "floor")}}
        if seconds is not None:  # audio seconds per call: how many times real time
            best = row.get("c") or row.get("py")
            row["realtime"] = seconds / best if best else None
        rows.append(row)

    # Decoding one real-sized envelope (100 keyframes, ~50 kB).
    mods = {tag: load_twin("wire", tag) for tag in _impls()}
    add("decode envelope (100 keyframes)", "envelope",
        {tag: (lambda m=m: m.decode_animation(envelope)) for tag, m in mods.items()},
        floor=floor_buf.copy)

    # The playout tick.
    add("playout tick (10 ms read + keyframe)", "tick", {tag: _tick_case(tag) for tag in _impls()})

    # Producer side: 20 ms of audio, one envelope.
    from ..controller import AvatarController

    chunk = bytes(2 * RATE // 50)

    def yield_case(tag: str) -> Callable[[], object]:
        ctrl = AvatarController(RATE, FPS, _impl=tag, max_buffer_seconds=600.0)
        count = {"n": 0}

        def step() -> None:
            count["n"] += 1
            if count["n"] % 20000 == 0:  # 400 s buffered: start a new conversation
                ctrl.interrupt()
            ctrl.yield_audio_data(chunk)

        return step

    add("yield_audio_data (20 ms)", "call", {tag: yield_case(tag) for tag in _impls()},
        floor=lambda: bytearray(chunk))

    # Audio in: a 20 ms float32 chunk as an array (the controller converts).
    floats = (np.sin(np.arange(RATE // 50) * 0.05) * 0.5).astype(np.float32)

    def float_case(tag: str) -> Callable[[], object]:
        ctrl = AvatarController(RATE, FPS, _impl=tag, max_buffer_seconds=600.0)
        count = {"n": 0}

        def step() -> None:
            count["n"] += 1
            if count["n"] % 20000 == 0:
                ctrl.interrupt()
            ctrl.yield_audio_data(floats)

        return step

    add("yield_audio_data (20 ms float32)", "call", {tag: float_case(tag) for tag in _impls()},
        floor=lambda: bytearray(chunk))
    rows.extend(_audio_rows(add))

    # The relay hop: one animation frame in msgpack, encode + decode.
    frame = relay.AnimationFrame("bench", (envelope,), 0)
    data = relay.encode_frame(frame)
    add("relay decode (animation frame)", "frame", {"py": lambda: relay.decode_frame(data)},
        floor=np.frombuffer(data, np.uint8).copy)

    # One video frame of the face, drawn into a reused 256 x 256 buffer.
    from ..render import FaceRenderer

    picture = np.empty((256, 256, 3), np.uint8)
    face_kf = _server_like_frames(1)[0]
    add("face render (256 x 256)", "frame",
        {tag: (lambda r=FaceRenderer(256, impl=tag): r.render_into(face_kf, picture)) for tag in _impls()},
        floor=picture.copy)
    return rows


def _audio_rows(add) -> list[dict]:
    """Streaming resampling and Ogg Opus decode (one implementation each:
    soxr and libopus, C libraries, shown in the compiled column), with the
    copy of the same bytes as the floor.  Returns no rows of its own: they
    are added through ``add``."""
    import io

    from ..audio import OggOpusDecoder, StreamResampler

    t = np.arange(24000) / 24000
    x = np.rint(8000 * np.sin(2 * np.pi * 150 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)).astype(np.int16)
    chunks = [x[i:i + 480] for i in range(0, x.size, 480)]
    rs = StreamResampler(24000, 16000)
    raw = x.tobytes()

    def resample() -> None:
        for c in chunks:
            rs.process(c)
        rs.flush()

    add("resample 24 -> 16 kHz (1 s)", "second", {"c": resample},
        floor=lambda: bytearray(raw), seconds=1.0)
    try:
        import av
    except ImportError:
        return []
    import fractions

    pcm = np.tile(x, 3)[: 3 * 24000]
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        st = out.add_stream("libopus", rate=24000, layout="mono")
        st.bit_rate = 24000
        for i in range(0, pcm.size, 480):
            f = av.AudioFrame.from_ndarray(pcm[None, i:i + 480], format="s16", layout="mono")
            f.sample_rate, f.pts, f.time_base = 24000, i, fractions.Fraction(1, 24000)
            for p in st.encode(f):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    data = buf.getvalue()
    pieces = [data[i:i + 1024] for i in range(0, len(data), 1024)]
    dec = OggOpusDecoder(16000)
    pcm_bytes = bytes(3 * RATE * 2)

    def decode() -> None:
        for piece in pieces:
            dec.feed(piece)
        dec.finish()

    add("Ogg Opus decode (3 s)", "3 s", {"c": decode},
        floor=lambda: (bytearray(data), bytearray(pcm_bytes)), seconds=3.0)
    return []


def _fmt(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e3:.2f} ms"


def run_bench(args) -> int:
    if not NO_EXTENSIONS:
        try:
            load_twin("wire", "c")
        except ImportError:
            print("note: the compiled modules are not built here; timing the pure-Python twins only",
                  file=sys.stderr)
    rows = collect(args.rounds)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = f"{'case':<38} {'compiled':>10} {'pure Python':>12} {'speed-up':>9} {'copy floor':>11} {'x floor':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        speed = f"{r['py'] / r['c']:.1f}x" if r.get("c") and r.get("py") else "-"
        best = r.get("c") or r.get("py")
        over = f"{best / r['floor']:.1f}x" if r.get("floor") and best else "-"
        print(f"{r['case']:<38} {_fmt(r.get('c')):>10} {_fmt(r.get('py')):>12} {speed:>9} "
              f"{_fmt(r.get('floor')):>11} {over:>8}")
    by = {r["case"]: r for r in rows}
    a, b = by.get("yield_audio_data (20 ms float32)"), by.get("yield_audio_data (20 ms)")
    if a and b:
        key = "c" if a.get("c") and b.get("c") else "py"
        print(f"float32 array / int16 bytes, 20 ms yield: {a[key] / b[key]:.2f}x")
    for r in rows:
        if r.get("realtime"):
            print(f"real time on one core: {r['case']} {r['realtime']:,.0f}x")
    print("per call, best of interleaved rounds (avatarkit_fast.benchmarking.measure)")
    return 0
