"""What the demo measured: the sync error per frame, the report and its summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from .counters import stat, stats_dict
from .network import Arrival
from .playout import Playout

__all__ = ["conversation_keyframes", "sync_errors", "stall_spans", "build_report", "jsonable", "print_summary"]


def conversation_keyframes(arrivals: list[Arrival], req_id: Optional[str]) -> tuple[np.ndarray, list[float]]:
    """The keyframes the client received for ``req_id``, in order, and each envelope's arrival."""
    from ... import relay, wire

    rows = []
    times = []
    for a in arrivals:
        if a.kind != "animation":
            continue
        frame = relay.decode_frame(a.data)
        if req_id is not None and frame.req_id != req_id:
            continue
        for env in frame.envelopes:
            msg = wire.decode_message(env)
            if isinstance(msg, wire.AnimationMessage) and len(msg.frames):
                rows.append(np.asarray(msg.frames, np.float32))
        times.append(a.t)
    k = np.concatenate(rows) if rows else np.zeros((0, 120), np.float32)
    return k, times


def sync_errors(play: Playout, keyframes: np.ndarray, interpolation: str) -> np.ndarray:
    """Per measured video frame: |position of the keyframe shown - position the
    audio calls for|, in frames.  NaN where nothing was measured: not playing,
    the idle (no keyframe yet), a transition in or out of the idle, past the animation's end, or a frame
    whose audio stood still (a stall: the picture holds, nothing is heard)."""
    n = len(play.frames)
    err = np.full(n, np.nan)
    if play.start_sample is None or not len(keyframes):
        return err
    spf = play.sample_rate / play.fps
    first = int(play.start_sample // spf)
    diffs = np.diff(keyframes, axis=0)
    seg_len2 = np.einsum("ij,ij->i", diffs, diffs)
    pos_s = np.round(play.audio_time * play.sample_rate).astype(np.int64)
    for i in range(first, n):
        if not play.playing[i]:
            continue
        # A frame blending in or out of the idle shows no keyframe as such:
        # measured once the transition in is over (the state after the read
        # before this frame was taken is SPEAKING).
        anim = getattr(play, "animation", None)
        if anim is not None and len(anim) == n and (i == 0 or anim[i - 1] != 2):
            continue
        s = int(pos_s[i])
        if i + 1 < n and play.playing[i + 1] and 0 <= pos_s[i + 1] - s < int(spf):
            continue  # the audio waited during this frame
        want = s * play.fps / play.sample_rate
        want = s * play.fps / play.sample_rate
        if interpolation == "none":
            want = math.floor(want)
        if want > len(keyframes) - 1:
            continue
        row = play.frames[i]
        if not row.any():
            continue  # the idle frame: no keyframe shown (counted apart)
        # Exact match first (interpolation off, or a held keyframe), else the
        # nearest point on a segment between neighbouring keyframes.
        exact = np.flatnonzero(np.all(keyframes == row, axis=1))
        if len(exact):
            pos = exact[np.argmin(np.abs(exact - want))]
            err[i] = abs(pos - want)
            continue
        lo = max(0, int(want) - 60)
        hi = min(len(keyframes), int(want) + 61)
        best = (np.inf, 0.0)
        for j in range(lo, min(hi, len(keyframes) - 1)):
            d = diffs[j]
            t = 0.0 if seg_len2[j] == 0 else float(np.clip(np.dot(row - keyframes[j], d) / seg_len2[j], 0, 1))
            resid = float(np.sum((keyframes[j] + t * d - row) ** 2))
            cand = (resid, -abs(j + t - want))
            if cand < (best[0], -abs(best[1] - want)):
                best = (resid, j + t)
        err[i] = abs(best[1] - want)
    return err


def stall_spans(play: Playout) -> list[tuple[float, float]]:
    spans = []
    start = None
    for i, s in enumerate(play.stall_frames):
        if s and start is None:
            start = i
        elif not s and start is not None:
            spans.append((start / play.fps, i / play.fps))
            start = None
    if start is not None:
        spans.append((start / play.fps, len(play.stall_frames) / play.fps))
    return spans


def build_report(args, utt, log, play, info, ctrl, keyframes, err, timings) -> dict:
    stats = stats_dict(ctrl.stats)
    measured = err[~np.isnan(err)]
    audio_arr = [a.t for a in log.arrivals if a.kind == "audio"]
    anim_arr = [a.t for a in log.arrivals if a.kind == "animation"]
    # Clock time 0 is the moment the backend sent the first audio.
    latency = None if play.first_frame_at is None else play.first_frame_at * 1000.0
    mode = ("sound device" if args.play else
            "virtual clock, real time" if args.realtime else "virtual clock, as fast as possible")
    return {
        "input": {"source": utt.source, "sample_rate": utt.sample_rate, "samples": int(len(utt.pcm)),
                  "seconds": round(len(utt.pcm) / utt.sample_rate, 3)},
        "pipeline": {"mode": mode, "session": log.backend, "server_speed": args.server_speed,
                     "fps": args.fps, "sync_mode": args.sync_mode,
                     "interpolation": args.interpolation, "jitter_ms": args.jitter_ms,
                     "interrupt_at": args.interrupt_at},
        "first_keyframe_latency_ms": None if latency is None else round(latency, 1),
        "start_silence_samples": play.start_sample,
        "sync_error_frames": {
            "max": float(measured.max()) if len(measured) else None,
            "mean": float(measured.mean()) if len(measured) else None,
            "frames_measured": int(len(measured)),
            # Every video frame during which the conversation's speech was heard (it
            # played, and did not wait for keyframes): what frames_measured is out of.
            "speech_frames": int(np.sum(play.playing & ~play.stall_frames)),
            # Audio playing while no keyframe had come yet (it started after max_frame_wait).
            "frames_without_keyframe": int(np.sum(play.playing & ~play.frames.any(axis=1))),
        },
        "underrun_samples": int(stat(stats, "underrun_samples")),
        "stalls": int(stat(stats, "stalls")),
        "stale_drops": int(stat(stats, "frames_dropped_stale")),
        "interrupted_at": info.get("interrupted_at"),
        "counts": {
            "video_frames": int(len(play.frames)),
            "samples_played": int(len(play.audio)),
            "audio_messages": len(audio_arr),
            "animation_messages": len(anim_arr),
            "keyframes_received": int(len(keyframes)),
            "conversations": int(stat(stats, "conversations")),
            "interrupts": int(stat(stats, "interrupts")),
        },
        "arrivals": {"first_audio_s": audio_arr[0] if audio_arr else None,
                     "last_audio_s": audio_arr[-1] if audio_arr else None,
                     "animation_s": [round(t, 4) for t in anim_arr]},
        "controller_stats": stats,
        "relay": {**log.relay_stats, "receiver": info.get("receiver", {})},
        "server": log.server_stats,
        **({"sound_device": info["sound_device"]} if "sound_device" in info else {}),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return str(x)



def print_summary(r: dict, out: Path) -> None:
    """The report in a few lines: what was measured is said out of how many
    speech frames, and speech that played with the idle face (no keyframe had
    come: strict sync's ``max_frame_wait`` expired) is counted on its own line."""
    se = r["sync_error_frames"]
    lat = r["first_keyframe_latency_ms"]
    c = r["counts"]
    lines = [
        f"host mode, end to end: {r['input']['source']} ({r['input']['seconds']:g} s at "
        f"{r['input']['sample_rate']} Hz) via {r['pipeline']['session']}, {r['pipeline']['mode']}",
        f"  first keyframe after {lat:.0f} ms" if lat is not None else "  no keyframe was shown",
        (f"  sync error: max {se['max']:.2f}, mean {se['mean']:.3f} frames, measured over "
         f"{se['frames_measured']} of {se['speech_frames']} speech frames"
         if se["max"] is not None else f"  sync error: nothing measured (of {se['speech_frames']} speech frames)"),
        f"  speech frames without a keyframe (the idle face shown): {se['frames_without_keyframe']}"
        + (f" ({se['frames_without_keyframe'] / r['pipeline']['fps']:.2f} s)" if se["frames_without_keyframe"] else ""),
        f"  underruns {r['underrun_samples']} samples, stalls {r['stalls']}, stale keyframes dropped {r['stale_drops']}"
        + (f", interrupted at {r['interrupted_at']:.2f} s" if r.get("interrupted_at") is not None else ""),
        f"  {c['video_frames']} video frames, {c['audio_messages']} audio + {c['animation_messages']} "
        f"animation messages, {c['keyframes_received']} keyframes received, in {r['timings_s']['total']:.1f} s",
        f"  wrote {out}/: played.wav keyframes.npy report.json timeline.png {r['files']['face']}",
    ]
    print("\n".join(lines))
