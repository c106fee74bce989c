"""``avatarkit-fast inspect FILE``: what is in a recording or an envelope file.

Accepted: a recording JSON (``sample_rate``, ``audio_base64``,
``animation_messages_base64``, ...), a JSON list of base64 envelopes, a binary
file holding one serialized envelope, a ``keyframes.npy`` (n, 120), a WAV file,
or a demo ``report.json``.  Anything else is a :class:`UsageError` that names
the file, says what it is not, and keeps the codec's detail after it; a bad
message of a recording or a list is named by its index
(``FILE: animation message 2: not base64``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .._schema import FLAME_LAYOUT, KEYFRAME_FLOATS
from . import UsageError
from .inputfiles import NOT_ANY_INPUT, b64, decode_envelope, parse_recording, read_bytes

__all__ = ["inspect_file", "run_inspect"]



def _ranges(frames: np.ndarray) -> dict[str, list[float]]:
    out = {}
    i = 0
    for name, size in FLAME_LAYOUT:
        block = frames[:, i:i + size]
        i += size
        out[name] = [round(float(block.min()), 6), round(float(block.max()), 6)] if len(block) else []
    return out


def _envelopes_summary(envelopes: list[bytes], where: str, fps: int = 25) -> dict[str, Any]:
    """The summary of ``envelopes``; ``where % i`` names message ``i`` in an error."""
    from .. import wire

    messages = []
    frames = []
    req_ids, conn_ids, avatar_ids = set(), set(), set()
    for i, env in enumerate(envelopes):
        msg = decode_envelope(env, where % i)
        kind = type(msg).__name__
        entry: dict[str, Any] = {"index": i, "bytes": len(env), "type": int(msg.type), "kind": kind}
        if isinstance(msg, wire.AnimationMessage):
            entry.update(keyframes=len(msg.frames), end=bool(msg.end), req_id=msg.req_id)
            frames.append(np.asarray(msg.frames))
            req_ids.add(msg.req_id)
            conn_ids.add(msg.connection_id)
            avatar_ids.add(msg.avatar_id)
        elif isinstance(msg, wire.ServerErrorMessage):
            entry.update(code=msg.code, message=msg.message, req_id=msg.req_id)
        messages.append(entry)
    all_frames = np.concatenate(frames) if frames else np.zeros((0, KEYFRAME_FLOATS), np.float32)
    return {
        "messages": len(messages),
        "per_message": messages,
        "keyframes": int(len(all_frames)),
        "animation_seconds": round(len(all_frames) / fps, 3),
        "req_ids": sorted(r for r in req_ids if r),
        "connection_ids": sorted(c for c in conn_ids if c),
        "avatar_ids": sorted(a for a in avatar_ids if a),
        "ends_with_end": bool(messages and messages[-1].get("end")),
        "ranges": _ranges(all_frames),
    }


def inspect_file(path: str | Path) -> dict[str, Any]:
    """A JSON-able summary of ``path``; raises :class:`UsageError` when unreadable."""
    p = Path(path)
    data = read_bytes(p)
    if data[:6] == b"\x93NUMPY":
        try:
            frames = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"{p}: not a readable keyframes .npy ({exc})") from None
        if frames.ndim != 2 or frames.shape[1] != KEYFRAME_FLOATS or frames.dtype.kind not in "fiu":
            raise UsageError(f"{p}: not keyframes: expected numbers of shape (n, 120), found "
                             f"{frames.dtype} of shape {frames.shape}")
        moving = np.abs(np.diff(frames, axis=0)).sum(axis=1) > 0 if len(frames) > 1 else np.zeros(0, bool)
        return {"file": str(p), "kind": "keyframes", "frames": int(len(frames)),
                "seconds_at_25fps": round(len(frames) / 25, 3),
                "changes": int(moving.sum()), "ranges": _ranges(frames.astype(np.float32))}
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        from ..audio import AudioFileError, read_audio_file

        try:
            pcm, found = read_audio_file(p, target_rate=None)
        except AudioFileError as exc:  # its message names the file
            raise UsageError(str(exc)) from None
        rate = found.rate
        return {"file": str(p), "kind": "wav", "sample_rate": rate, "samples": int(len(pcm)),
                "seconds": round(len(pcm) / rate, 3),
                "peak": int(np.max(np.abs(pcm.astype(np.int32)))) if len(pcm) else 0}
    stripped = data.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"{p}: {NOT_ANY_INPUT} (JSON that does not parse: {exc})") from None
        if isinstance(doc, list):
            envs = [b64(v, f"{p}: item {i}") for i, v in enumerate(doc)]
            return {"file": str(p), "kind": "envelope list", **_envelopes_summary(envs, f"{p}: item %d")}
        if isinstance(doc, dict) and "animation_messages_base64" in doc:
            rec = parse_recording(doc, p)
            summary = _envelopes_summary(rec.envelopes, f"{p}: animation message %d")
            audio_s = len(rec.pcm) / 2 / rec.sample_rate
            return {
                "file": str(p), "kind": "recording",
                "sample_rate": rec.sample_rate, "audio_format": doc.get("audio_format"),
                "audio_bytes": len(rec.pcm), "audio_seconds": round(audio_s, 3),
                "connection_id": doc.get("connection_id"), "req_id": doc.get("req_id"),
                **summary,
                "animation_minus_audio_seconds": round(summary["animation_seconds"] - audio_s, 3),
            }
        if isinstance(doc, dict) and "sync_error_frames" in doc:
            return {"file": str(p), "kind": "demo report", **doc}
        raise UsageError(f"{p}: {NOT_ANY_INPUT} (JSON, but not one of those layouts)")
    if not data:
        raise UsageError(f"{p}: {NOT_ANY_INPUT} (the file is empty)")
    from .. import wire
    from ..errors import DecodeError

    try:
        wire.peek_animation(data)  # validates as a full decode does, copies nothing
    except DecodeError as exc:
        raise UsageError(f"{p}: {NOT_ANY_INPUT} ({exc})") from None
    return {"file": str(p), "kind": "envelope", **_envelopes_summary([data], f"{p}: message %d")}


def _print_summary(s: dict[str, Any]) -> None:
    skip = {"per_message", "ranges"}
    for key, value in s.items():
        if key not in skip:
            print(f"{key:>30}: {value}")
    if s.get("per_message"):
        print("  messages:")
        for m in s["per_message"]:
            rest = ", ".join(f"{k}={v}" for k, v in m.items() if k not in ("index",))
            print(f"    #{m['index']}: {rest}")
    if s.get("ranges"):
        print("  value ranges (min, max):")
        for name, r in s["ranges"].items():
            if r:
                print(f"    {name:>12}: {r[0]:+.4f} .. {r[1]:+.4f}")


def run_inspect(args) -> int:
    summary = inspect_file(args.file)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0
