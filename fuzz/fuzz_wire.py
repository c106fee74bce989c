"""Fuzz the wire codec: ``decode_message`` (``--target message``) or
``decode_animation`` with its cap, ``decode_animation_into`` and
``count_keyframes`` (``--target animation``).

Every input goes through the compiled codec and its pure twin (the twin is
instrumented, so coverage guides the search through the same decision points
the compiled code takes). Expected, for any bytes: a result or a
``DecodeError``/``BufferFull`` (our hierarchy), never another exception, a crash
or a hang; both implementations agree exactly (fields, float bits, error
type); a decoded animation is a C-contiguous float32 (n, 120) array, encodes
back canonically and decodes again to the same bits; error offsets lie inside
the input; no decode's keyframe output passes ``DEFAULT_MAX_RATIO`` times its
input's bytes (inputs over it are a ``DecodeError``), and ``peek_animation``
accepts exactly what ``decode_message`` accepts, with the same header.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runner import check, instrumented, main  # noqa: E402

with instrumented("avatarkit_fast"):
    import avatarkit_fast.errors as errors
    from avatarkit_fast._compat import load_twin

    wire_py = load_twin("wire", "py")
    from avatarkit_fast._schema import DEFAULT_MAX_RATIO

    import numpy as np


def _compiled():
    from avatarkit_fast._compat import NO_EXTENSIONS

    if NO_EXTENSIONS:
        return None
    return load_twin("wire", "c")


wire_c = _compiled()
IMPLS = [m for m in (wire_c, wire_py) if m is not None]
TARGET = "message"


def _norm(result):
    """A comparable form of a decode result (float bits, not float values)."""
    out = [type(result).__name__]
    for name in ("type", "connection_id", "req_id", "end", "avatar_id", "code", "message"):
        if hasattr(result, name):
            out.append((name, getattr(result, name)))
    frames = getattr(result, "frames", None)
    if frames is not None:
        out.append(("frames", frames.shape, frames.tobytes()))
    return tuple(out)


def _outcome(fn, *args, **kw):
    try:
        return ("ok", fn(*args, **kw))
    except errors.AvatarKitError as exc:
        offset = getattr(exc, "offset", -1)
        check(isinstance(offset, int), f"{type(exc).__name__}.offset is {offset!r}")
        n = len(args[0]) if args and hasattr(args[0], "__len__") else None
        if n is not None and isinstance(exc, errors.DecodeError):
            check(-1 <= offset <= n, f"error offset {offset} outside input of {n} bytes: {exc}")
        check(bool(str(exc)), f"{type(exc).__name__} without a message")
        return ("err", type(exc))
    # anything else propagates: a bug


def _same(label, outcomes):
    kinds = [(o[0], _norm(o[1]) if o[0] == "ok" else o[1]) for o in outcomes]
    check(all(k == kinds[0] for k in kinds[1:]),
          f"{label}: implementations disagree: " + " vs ".join(repr(k)[:300] for k in kinds))


def _check_ratio(msg, data):
    """The output/input memory ratio of every decode stays within the limit."""
    out = msg.frames.shape[0] * 480
    check(out <= DEFAULT_MAX_RATIO * len(data),
          f"{msg.frames.shape[0]} keyframes ({out} bytes) from {len(data)} bytes: "
          f"past the ratio limit {DEFAULT_MAX_RATIO}")


def _check_peek(impl, data, decoded):
    peeked = _outcome(impl.peek_animation, data)
    check(peeked[0] == decoded[0], f"peek_animation {peeked} vs decode_message {decoded[0]}")
    if decoded[0] == "ok":
        msg = decoded[1]
        want = ((5, msg.req_id, msg.end, msg.frames.shape[0]) if hasattr(msg, "frames")
                else (msg.type, None, None, 0))
        check(tuple(peeked[1]) == want, f"peek_animation {peeked[1]} vs decode {want}")


def _check_frames(msg):
    f = msg.frames
    check(isinstance(f, np.ndarray), f"frames is {type(f)}")
    check(f.dtype == np.float32 and f.ndim == 2 and f.shape[1] == 120, f"frames {f.dtype} {f.shape}")
    check(f.flags.c_contiguous, "frames not C-contiguous")


def _roundtrip(impl, msg):
    enc = impl.encode_animation(msg.frames, req_id=msg.req_id, connection_id=msg.connection_id,
                                end=msg.end, avatar_id=msg.avatar_id)
    back = impl.decode_animation(enc)
    check(back.frames.tobytes() == msg.frames.tobytes(), "re-encoded frames differ")
    check((back.req_id, back.connection_id, back.end, back.avatar_id)
          == (msg.req_id, msg.connection_id, msg.end, msg.avatar_id), "re-encoded ids differ")
    return enc


def one_message(data: bytes) -> None:
    outs = [_outcome(m.decode_message, data) for m in IMPLS]
    _same("decode_message", outs)
    for m, o in zip(IMPLS, outs):
        _check_peek(m, data, o)
    kind, msg = outs[0]
    if kind == "ok" and hasattr(msg, "frames"):
        _check_frames(msg)
        _check_ratio(msg, data)
        encs = [_roundtrip(m, o[1]) for m, o in zip(IMPLS, outs)]
        check(all(e == encs[0] for e in encs), "encode_animation differs between implementations")
    # bytes-like inputs decode the same as bytes
    _same("decode_message(bytearray)", [outs[0], _outcome(IMPLS[0].decode_message, bytearray(data))])


def one_animation(data: bytes) -> None:
    outs = [_outcome(m.decode_animation, data) for m in IMPLS]
    _same("decode_animation", outs)
    kind, msg = outs[0]
    n = None
    if kind == "ok":
        _check_frames(msg)
        _check_ratio(msg, data)
        n = msg.frames.shape[0]
        encs = [_roundtrip(m, o[1]) for m, o in zip(IMPLS, outs)]
        check(all(e == encs[0] for e in encs), "encode_animation differs between implementations")
    for m in IMPLS:
        counted = _outcome(m.count_keyframes, data)
        if kind == "ok":
            check(counted[0] == "ok" and counted[1] == n,
                  f"count_keyframes {counted} vs decode_animation n={n}")
        # the cap: more frames than max_frames is a DecodeError, fewer decode the same
        capped = _outcome(m.decode_animation, data, max_frames=2)
        if kind == "ok":
            if n > 2:
                check(capped[0] == "err" and issubclass(capped[1], errors.DecodeError),
                      f"{n} frames past max_frames=2 gave {capped}")
            else:
                check(capped[0] == "ok" and capped[1].frames.tobytes() == msg.frames.tobytes(),
                      "max_frames=2 changed a small result")
        # the ratio limit: without it the same frames, or more where it refused
        free = _outcome(m.decode_animation, data, max_ratio=float("inf"))
        if kind == "ok":
            check(free[0] == "ok" and free[1].frames.tobytes() == msg.frames.tobytes(),
                  "max_ratio=inf changed a result")
        elif free[0] == "ok":
            check(free[1].frames.shape[0] * 480 > DEFAULT_MAX_RATIO * len(data),
                  "decode_animation refused, with no ratio limit accepted, under the limit")
        # decoding into a caller's buffer
        out = np.full((2, 120), 7.0, np.float32)
        into = _outcome(m.decode_animation_into, memoryview(data), out)
        if kind == "ok" and n <= 2:
            check(into[0] == "ok", f"decode_animation_into failed: {into}")
            res = into[1]
            _check_ratio(res, data)
            check(res.frames.shape == (n, 120) and res.frames.tobytes() == msg.frames.tobytes(),
                  "decode_animation_into frames differ")
            check(n == 0 or np.shares_memory(res.frames, out), "decode_animation_into did not use out")
        elif kind == "ok":
            check(into[0] == "err" and issubclass(into[1], errors.BufferFull),
                  f"{n} frames into a 2-frame buffer gave {into}")
        else:
            check(into[0] == "err", f"decode_animation_into accepted what decode_animation refused: {into}")


def test_one_input(data: bytes) -> None:
    (one_message if TARGET == "message" else one_animation)(data)


def _setup(args) -> None:
    global TARGET
    TARGET = args.target
    if wire_c is None:
        print("compiled codec not available: fuzzing the pure twin alone", file=sys.stderr)


if __name__ == "__main__":
    main(test_one_input, "wire", add_arguments=lambda p: p.add_argument(
        "--target", choices=("message", "animation"), default="message"), setup=_setup)
