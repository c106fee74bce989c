"""A byte-coded sequence of ``AvatarController`` calls, run with invariant
checks and recorded as a trace.

One interpreter serves the controller fuzz harness (the bytes come from the
fuzzer), the differential test (seeded random bytes, run against the compiled
engine and against its twin, traces compared) and the replay of failing
inputs. The format, so seeds can be written by hand:

``byte 0``: configuration: bits 0-2 sample rate (index into SAMPLE_RATES),
bit 3 ``strict_sync``, bit 4 ``linear`` interpolation, bit 5 a short
``max_frame_wait`` (0.1 s), bit 6 callbacks that call back in (then
``byte 1`` says how, see REACTIONS), bit 7 a presentation byte (next after
those): bits 0-1 ``transition_in`` (0, 0.05, 0.2, 1.0 s), bits 2-3
``transition_out`` (0, 0.1, 0.8, 2.0 s), bits 4-5 ``idle`` ("breathing",
None, a looped array of 3 keyframes, "breathing"), bits 6-7 ``seed``; with
it ``on_animation_state`` is recorded too.  Without bit 7 the controller's
defaults (transitions, breathing idle).  Then operations, each one opcode byte
(mod 16) and its arguments (``u16`` is little-endian); a truncated operation
ends the sequence.

Callbacks that call back in: ``byte 1`` holds four 2-bit fields, one per
event (bits 0-1 ``on_conversation_state(IDLE)``, 2-3
``on_playback_stall(False)``, 4-5 ``on_first_frame``, 6-7
``on_conversation_state(PLAYING)`` and ``on_playback_stall(True)``), each an
index into that event's REACTIONS row: what the callback does before it
returns (yield the next utterance, interrupt, pause/resume, read the stats).
At most MAX_REACTIONS reactions per outer call, so a chain of them ends.
After every call the model checks that a conversation begun by a callback
during it is still current with all its audio buffered: the engine must not
wipe what a callback did (no conversation lost).

====  =============  ========================================================
 op   name           arguments
====  =============  ========================================================
 0    AUDIO          u16 n (mod 8193) then n raw PCM bytes, flags (bit 0 end)
 1    RAMP           u16 samples (mod 16001), flags (bit 0 end, bit 1 odd
                     byte split across two calls)
 2    FRAMES_STOCK   count (mod 4), that many stock indexes, cid selector
 3    FRAMES_RAW     count (mod 3), each u16 n + n bytes, cid selector
 4    FRAMES_NONE    flags (bit 0: ``None`` else ``[]``), cid selector
 5    READ           u16 n (mod 4801): ``read_audio(n)``
 6    READ_INTO      u16 n (mod 4801): ``read_audio_into`` an int16 buffer
 7    FRAME          ``current_frame()``
 8    FRAME_INTO     ``current_frame_into`` a float32 (120,) buffer
 9    INTERRUPT
10    PAUSE
11    RESUME
12    QUERY          audio time, conversation id, state, stats
13    BAD_TYPE       selector: a call with an argument of the wrong type
14    CLOSE          only when the next byte is 0xC1; 0xC2 ``clear()``; 0xC3
                     then u16 back: ``frame_at_into`` (back mod 9601);
                     0xC4 the animation state and samples read; else QUERY
15    TICKS          count (mod 64) of 10 ms ticks (read 10 ms + frame)
====  =============  ========================================================

cid selector: 0 the current id, 1 the previous id, 2 an unknown id, 3 the
last id ``yield_audio_data`` returned.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pb  # noqa: E402

from avatarkit_fast._schema import SAMPLE_RATES  # noqa: E402
OPS = ("AUDIO", "RAMP", "FRAMES_STOCK", "FRAMES_RAW", "FRAMES_NONE", "READ", "READ_INTO", "FRAME",
       "FRAME_INTO", "INTERRUPT", "PAUSE", "RESUME", "QUERY", "BAD_TYPE", "CLOSE", "TICKS")
OP = {name: i for i, name in enumerate(OPS)}

STAT_NAMES = ("buffered_audio_ms", "buffered_frames", "frames_received", "frames_dropped_stale",
              "underrun_samples", "stalls", "conversations", "interrupts")
CUMULATIVE = ("frames_received", "frames_dropped_stale", "underrun_samples", "stalls",
              "conversations", "interrupts")


# Per event, the four things its callback may do (see the module docstring).
REACTIONS = {
    "idle": ("none", "next", "next_end", "stats"),
    "unstall": ("none", "next", "next_end", "interrupt"),
    "first_frame": ("none", "next", "pause_resume", "stats"),
    "other": ("none", "more", "pause", "interrupt"),
}
MAX_REACTIONS = 4


class Failure(AssertionError):
    """An invariant of the controller does not hold."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise Failure(msg)


def synthetic_frames(n: int, start: int = 0) -> np.ndarray:
    """Keyframes that say which they are: ``translation[0]`` is index + 1."""
    f = np.zeros((n, 120), np.float32)
    idx = np.arange(start, start + n, dtype=np.float32)
    f[:, 0] = idx + 1
    f[:, 9] = np.sin(idx / 3.0) * 0.2  # jaw
    f[:, 20:120] = (np.cos(idx[:, None] / 5.0 + np.arange(100)[None, :]) * 0.1).astype(np.float32)
    return f


def envelope_of(frames: np.ndarray, *, req_id: str = "req", end: bool = False) -> bytes:
    return pb.animation_envelope([pb.flame(row) for row in frames.tolist()], req_id=req_id, end=end)


def _stock() -> list[bytes]:
    wire_corpus = Path(__file__).resolve().parent / "corpus" / "wire"
    real = [(wire_corpus / n).read_bytes() for n in ("anim-env0-1kf", "anim-env2-3kf", "anim-env5-2kf-end")
            if (wire_corpus / n).is_file()]
    return real + [
        envelope_of(synthetic_frames(25)),
        envelope_of(synthetic_frames(50)),
        envelope_of(synthetic_frames(7), end=True),
        pb.error_envelope(4003, "concurrency limit"),
        pb.f_varint(1, 2) + pb.f_bytes(3, pb.f_bytes(1, "conn")),  # a confirm-session envelope
        b"\x08\x05\x32\x05\x22\x03\x0a\x01",  # truncated animation
    ]


STOCK = _stock()


def ramp_pcm(start: int, samples: int) -> bytes:
    """PCM whose every sample is non-zero and says where it is (1..32767 cycling)."""
    v = (np.arange(start, start + samples, dtype=np.int64) % 32767 + 1).astype("<i2")
    return v.tobytes()


def _stats_dict(stats: Any) -> dict:
    if isinstance(stats, dict):
        d = dict(stats)
    elif hasattr(stats, "_asdict"):
        d = stats._asdict()
    elif hasattr(stats, "__dataclass_fields__"):
        d = {k: getattr(stats, k) for k in stats.__dataclass_fields__}
    elif hasattr(stats, "__dict__"):
        d = dict(vars(stats))
    else:
        d = {k: getattr(stats, k) for k in dir(stats) if not k.startswith("_") and not callable(getattr(stats, k))}
    return d


def _state_name(state: Any) -> str:
    return getattr(state, "name", str(state))


class Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise EOFError
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise EOFError
        self.pos += 2
        return struct.unpack_from("<H", self.data, self.pos - 2)[0]

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise EOFError
        self.pos += n
        return self.data[self.pos - n : self.pos]


class Run:
    """Runs one byte-coded sequence against a controller class, checking
    invariants after every call; ``trace`` holds what both engines must agree on."""

    def __init__(self, controller_cls: Callable[..., Any], errors: Any, data: bytes, *,
                 check_invariants: bool = True, full_trace: bool = True) -> None:
        self.cls = controller_cls
        self.errors = errors
        self.cur = Cursor(data)
        self.check = check_invariants
        self.full = full_trace
        self.trace: list = []
        self.callbacks: list = []
        self.cids: list[str] = []
        self.ramp = 0
        self.closed = False
        self.prev_stats: dict | None = None
        self.reactions: dict[str, str] | None = None
        self._budget = 0
        self._begun: tuple | None = None  # (cid, samples) begun by a callback in this call
        self._began_any = False

    # ids differ in spelling between runs; the trace says which one, by order of first use
    def _cid(self, cid: Any) -> Any:
        if cid is None or not isinstance(cid, str):
            return cid
        if cid not in self.cids:
            self.cids.append(cid)
        return f"cid#{self.cids.index(cid)}"

    def _norm_arg(self, a: Any) -> Any:
        if isinstance(a, BaseException):
            return (type(a).__name__, getattr(a, "code", None))
        if isinstance(a, str):
            return self._cid(a) if a in self.cids else a
        if hasattr(a, "name") and hasattr(a, "value"):
            return a.name
        if isinstance(a, np.ndarray):
            return zlib.crc32(a.tobytes())
        if isinstance(a, (int, float, bool)) or a is None:
            return a
        if isinstance(a, (tuple, list)):
            return tuple(self._norm_arg(x) for x in a)
        return type(a).__name__

    def _callback(self, name: str) -> Callable[..., None]:
        def cb(*args, **kw):
            self.callbacks.append((name, tuple(self._norm_arg(a) for a in args),
                                   tuple(sorted((k, self._norm_arg(v)) for k, v in kw.items()))))
            if self.reactions is not None:
                self._react(name, args)
        return cb

    def _event(self, name: str, args: tuple) -> str:
        if name == "state":
            return "idle" if _state_name(args[0]) == "IDLE" else "other"
        if name == "stall":
            return "other" if args[0] else "unstall"
        return "first_frame" if name == "first_frame" else ""

    def _react(self, name: str, args: tuple) -> None:
        """A callback calling back into the controller, as an application
        reacting to the event would; recorded in the trace."""
        event = self._event(name, args)
        what = self.reactions.get(event, "none") if event else "none"
        if what == "none" or self._budget <= 0 or self.closed:
            return
        self._budget -= 1
        ctrl = self.ctrl
        try:
            if what in ("next", "next_end", "more"):
                before = ctrl.get_current_conversation_id()
                n = self.sample_rate // 20  # 50 ms
                cid = ctrl.yield_audio_data(ramp_pcm(self.ramp, n), end=what == "next_end")
                self.ramp += n
                _check(isinstance(cid, str) and cid, f"yield_audio_data from a callback returned {cid!r}")
                if cid != before:
                    self._begun = (cid, n)
                    self._began_any = True
                elif self._begun is not None and self._begun[0] == cid:
                    self._begun = (cid, self._begun[1] + n)
                out: Any = self._cid(cid)
            elif what == "interrupt":
                ctrl.interrupt()
                self._begun = None
                out = (_state_name(ctrl.state), ctrl.get_current_conversation_id())
            elif what == "pause":
                ctrl.pause()
                out = _state_name(ctrl.state)
            elif what == "pause_resume":
                ctrl.pause()
                ctrl.resume()
                out = _state_name(ctrl.state)
            else:  # stats
                snap = _stats_dict(ctrl.stats)
                out = (_state_name(snap["state"]), self._cid(ctrl.get_current_conversation_id()),
                       snap["conversations"])
        except self.errors.AvatarKitError as exc:
            out = ("err", type(exc).__name__)
        self.callbacks.append(("reaction", what, self._norm_arg(out)))

    def _check_begun(self) -> None:
        """A conversation a callback began during the call just made is
        current, with every sample it yielded still buffered."""
        if self._begun is None or self.closed:
            return
        cid, n = self._begun
        self._begun = None
        now = self.ctrl.get_current_conversation_id()
        _check(now == cid, f"the conversation a callback began ({self._cid(cid)}) was lost: "
                           f"current is {self._cid(now)!r}")
        got = _stats_dict(self.ctrl.stats)["buffered_audio_ms"]
        _check(abs(got - n * 1000.0 / self.sample_rate) < 1e-6,
               f"the conversation a callback began has {got} ms buffered, not its {n} samples")

    def make(self) -> Any:
        cfg = self.cur.u8() if self.cur.data else 0
        self.sample_rate = SAMPLE_RATES[(cfg & 7) % len(SAMPLE_RATES)]
        kw = dict(sample_rate=self.sample_rate, fps=25,
                  sync_mode="strict_sync" if cfg & 8 else "audio_independent",
                  interpolation="linear" if cfg & 16 else "none",
                  on_conversation_state=self._callback("state"), on_error=self._callback("error"),
                  on_first_frame=self._callback("first_frame"), on_playback_stall=self._callback("stall"))
        if cfg & 32:
            kw["max_frame_wait"] = 0.1
        if cfg & 64:
            r = self.cur.u8() if self.cur.pos < len(self.cur.data) else 0
            self.reactions = {event: REACTIONS[event][(r >> (2 * i)) & 3]
                              for i, event in enumerate(("idle", "unstall", "first_frame", "other"))}
        pres = 0
        if cfg & 128:
            pres = self.cur.u8() if self.cur.pos < len(self.cur.data) else 0
            kw["transition_in"] = (0.0, 0.05, 0.2, 1.0)[pres & 3]
            kw["transition_out"] = (0.0, 0.1, 0.8, 2.0)[(pres >> 2) & 3]
            kw["idle"] = ("breathing", None, synthetic_frames(3, 40) * 0.5, "breathing")[(pres >> 4) & 3]
            kw["seed"] = pres >> 6
            kw["on_animation_state"] = self._callback("animation")
        self.ctrl = self.cls(**kw)
        self.trace.append(("config", cfg, pres, tuple(sorted((self.reactions or {}).items()))))
        return self.ctrl

    # ------------------------------------------------------------------

    def _pick_cid(self, sel: int) -> Any:
        cur = self.ctrl.get_current_conversation_id() if not self.closed else None
        sel %= 4
        if sel == 0:
            return cur if cur is not None else (self.cids[-1] if self.cids else "none-yet")
        if sel == 1:
            return self.cids[-2] if len(self.cids) > 1 else "no-previous"
        if sel == 2:
            return "not-a-conversation"
        return self.cids[-1] if self.cids else "none-yet"

    def _stats(self) -> dict:
        return _stats_dict(self.ctrl.stats)

    def _call(self, fn: Callable[[], Any], *, wrong_type: bool = False) -> tuple:
        """Calls fn; returns ("ok", value) or ("err", exception).  Checks
        that what the callbacks did during the call stands."""
        self._budget = MAX_REACTIONS
        self._begun = None
        try:
            res = ("ok", fn())
            if self.check:
                self._check_begun()
            return res
        except self.errors.AvatarKitError as exc:
            return ("err", exc)
        except TypeError as exc:
            if wrong_type:
                return ("err", exc)
            raise
        except ValueError as exc:
            if wrong_type:
                return ("err", exc)
            raise

    def step(self) -> bool:
        """One operation; False when the input is used up."""
        try:
            opcode = self.cur.u8() % 16
            return self._op(opcode)
        except EOFError:
            return False

    def _after(self, name: str, res: tuple, extra: Any = None) -> None:
        kind, val = res
        if kind == "err":
            entry = (name, "err", type(val).__name__)
        else:
            entry = (name, "ok", self._norm_arg(val) if extra is None else extra)
        if self.closed:
            self.trace.append(entry)
            return
        snap = None
        if self.full or self.check:
            state = _state_name(self.ctrl.state)
            cid = self.ctrl.get_current_conversation_id()
            stats = self._stats()
            t = self.ctrl.get_audio_time()
            snap = (state, self._cid(cid), tuple(sorted((k, v) for k, v in stats.items()
                                                        if isinstance(v, (int, float)))), t)
            if self.check:
                self._invariants(name, res, state, cid, stats)
        self.trace.append(entry + ((snap,) if self.full else ()))
        if self.callbacks:
            self.trace.append(("callbacks", tuple(self.callbacks)))
            self.callbacks.clear()

    def _invariants(self, name: str, res: tuple, state: str, cid: Any, stats: dict) -> None:
        _check(state in ("IDLE", "PLAYING", "PAUSED"), f"state {state!r}")
        _check(cid is None or (isinstance(cid, str) and cid), f"conversation id {cid!r}")
        for k in STAT_NAMES:
            _check(k in stats, f"stats lacks {k}")
            _check(stats[k] >= 0, f"stats.{k} = {stats[k]} < 0")
        if self.prev_stats is not None:
            for k in CUMULATIVE:
                _check(stats[k] >= self.prev_stats[k], f"stats.{k} went back: {self.prev_stats[k]} -> {stats[k]}")
        if res[0] == "err" and self.prev_stats is not None and name.startswith("FRAMES"):
            _check(stats["buffered_frames"] == self.prev_stats["buffered_frames"],
                   f"{name} raised {type(res[1]).__name__} but buffered_frames changed "
                   f"{self.prev_stats['buffered_frames']} -> {stats['buffered_frames']}")
        if res[0] == "err" and self.prev_stats is not None and name in ("AUDIO", "RAMP", "BAD_TYPE"):
            _check(stats["buffered_audio_ms"] == self.prev_stats["buffered_audio_ms"],
                   f"{name} raised {type(res[1]).__name__} but buffered audio changed")
        if name == "INTERRUPT" and not self._began_any:
            _check(state == "IDLE" and cid is None, f"after interrupt: state {state}, id {cid!r}")
        self.prev_stats = stats

    def _read_ok(self, out: Any, n: int) -> None:
        _check(isinstance(out, np.ndarray) and out.dtype == np.int16 and out.shape == (n,),
               f"read_audio({n}) gave {getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')}")

    def _op(self, opcode: int) -> bool:
        c = self.cur
        ctrl = self.ctrl
        name = OPS[opcode]
        if name == "CLOSE":
            name = {0xC1: "CLOSE", 0xC2: "CLEAR", 0xC3: "FRAME_AT", 0xC4: "ANIM"}.get(c.u8(), "QUERY")
        if self.closed and name == "CLOSE":
            # close() may be called again (documented as a no-op); nothing else may
            res = self._call(self.ctrl.close)
            self._after(name, res)
            return True
        if self.closed and name in ("CLEAR", "FRAME_AT", "ANIM"):
            back = c.u16() % 9601 if name == "FRAME_AT" else 0
            if name == "ANIM":  # stays readable after close
                self.trace.append(("ANIM", "closed", self.ctrl.animation_state.name))
                return True
            res = self._call(lambda: ctrl.clear() if name == "CLEAR"
                             else ctrl.frame_at_into(np.empty(120, np.float32), back))
            _check(res[0] == "err" and isinstance(res[1], self.errors.AvatarKitError),
                   f"{name} after close gave {res}")
            self._after(name, res)
            return True
        if self.closed and name not in ("QUERY",):
            # after close every other call raises an AvatarKitError
            res = self._call(lambda: self._closed_call(name))
            _check(res[0] == "err" and isinstance(res[1], self.errors.AvatarKitError),
                   f"{name} after close gave {res}")
            self._after(name, res)
            return True
        if name == "AUDIO":
            n = c.u16() % 8193
            pcm = c.take(n)
            end = bool(c.u8() & 1)
            res = self._call(lambda: ctrl.yield_audio_data(pcm, end=end))
            self._yielded(res)
            self._after(name, res, self._cid(res[1]) if res[0] == "ok" else None)
        elif name == "RAMP":
            n = c.u16() % 16001
            flags = c.u8()
            pcm = ramp_pcm(self.ramp, n)
            self.ramp += n
            end = bool(flags & 1)
            if flags & 2 and len(pcm) > 1:
                cut = (len(pcm) // 2) | 1
                r1 = self._call(lambda: ctrl.yield_audio_data(pcm[:cut], end=False))
                self._yielded(r1)
                self._after(name + "1", r1, self._cid(r1[1]) if r1[0] == "ok" else None)
                pcm = pcm[cut:]
            res = self._call(lambda: ctrl.yield_audio_data(memoryview(pcm), end=end))
            self._yielded(res)
            self._after(name, res, self._cid(res[1]) if res[0] == "ok" else None)
        elif name == "FRAMES_STOCK":
            k = c.u8() % 4
            envs = [STOCK[c.u8() % len(STOCK)] for _ in range(k)]
            cid = self._pick_cid(c.u8())
            res = self._call(lambda: ctrl.yield_frames_data(envs, cid))
            self._after(name, res)
        elif name == "FRAMES_RAW":
            k = c.u8() % 3
            envs = [c.take(c.u16() % 4097) for _ in range(k)]
            cid = self._pick_cid(c.u8())
            res = self._call(lambda: ctrl.yield_frames_data(envs, cid))
            self._after(name, res)
        elif name == "FRAMES_NONE":
            arg = None if c.u8() & 1 else []
            cid = self._pick_cid(c.u8())
            res = self._call(lambda: ctrl.yield_frames_data(arg, cid))
            self._after(name, res)
        elif name in ("READ", "READ_INTO"):
            n = c.u16() % 4801
            if name == "READ":
                res = self._call(lambda: ctrl.read_audio(n))
                if res[0] == "ok":
                    self._read_ok(res[1], n)
            else:
                buf = np.full(n, -7, np.int16)
                res = self._call(lambda: ctrl.read_audio_into(buf))
                if res[0] == "ok":
                    res = ("ok", buf)
            self._after(name, res)
        elif name in ("FRAME", "FRAME_INTO"):
            res = self._frame(name)
            self._after(name, res)
        elif name == "INTERRUPT":
            self._began_any = False
            res = self._call(ctrl.interrupt)
            self._after(name, res)
            if self.check and res[0] == "ok" and not self._began_any:
                out = ctrl.read_audio(160)
                _check(not out.any(), "audio after interrupt")
                self.trace.append(("post-interrupt-read", zlib.crc32(out.tobytes())))
        elif name == "CLEAR":
            self._began_any = False
            res = self._call(ctrl.clear)
            self._after(name, res)
            if self.check and res[0] == "ok" and not self._began_any:
                st = self._stats()
                _check(ctrl.get_current_conversation_id() is None and st["buffered_audio_ms"] == 0
                       and st["buffered_frames"] == 0, "clear() left something buffered")
        elif name == "FRAME_AT":
            back = c.u16() % 9601
            buf = np.full(120, np.nan, np.float32)
            res = self._call(lambda: ctrl.frame_at_into(buf, back))
            if res[0] == "ok":
                _check(np.isfinite(buf).all(), "frame_at_into left a non-finite value")
                res = ("ok", buf)
            self._after(name, res)
        elif name == "ANIM":
            self._after(name, ("ok", (ctrl.animation_state.name, ctrl.samples_read)))
        elif name == "PAUSE":
            self._after(name, self._call(ctrl.pause))
        elif name == "RESUME":
            self._after(name, self._call(ctrl.resume))
        elif name == "QUERY":
            if self.closed:
                self.trace.append(("QUERY", "closed"))
                return True
            self._after(name, ("ok", None))
        elif name == "BAD_TYPE":
            sel = c.u8() % 5
            calls = (
                lambda: ctrl.yield_audio_data(12345),
                lambda: ctrl.yield_audio_data("text is not PCM"),
                lambda: ctrl.yield_frames_data([12345], self._pick_cid(0)),
                lambda: ctrl.read_audio("ten"),
                lambda: ctrl.current_frame_into(np.zeros(120, np.float64)),
            )
            res = self._call(calls[sel], wrong_type=True)
            _check(res[0] == "err", f"BAD_TYPE {sel} was accepted: {res}")
            if sel < 4:
                _check(isinstance(res[1], TypeError), f"BAD_TYPE {sel} raised {type(res[1]).__name__}, not TypeError")
            self._after(name, res)
        elif name == "CLOSE":
            res = self._call(ctrl.close)
            self.closed = True
            self._after(name, res)
        elif name == "TICKS":
            k = c.u8() % 64
            n = self.sample_rate // 100
            buf = np.empty(n, np.int16)
            fbuf = np.empty(120, np.float32)
            crc = 0
            res = ("ok", None)
            for _ in range(k):
                res = self._call(lambda: ctrl.read_audio_into(buf))
                if res[0] != "ok":
                    break
                res = self._call(lambda: ctrl.current_frame_into(fbuf))
                if res[0] != "ok":
                    break
                crc = zlib.crc32(fbuf.tobytes(), zlib.crc32(buf.tobytes(), crc))
            self._after(name, res, crc)
        return True

    def _yielded(self, res: tuple) -> None:
        if res[0] == "ok":
            cid = res[1]
            _check(isinstance(cid, str) and cid, f"yield_audio_data returned {cid!r}")
            self._cid(cid)

    def _frame(self, name: str) -> tuple:
        if name == "FRAME":
            res = self._call(self.ctrl.current_frame)
            if res[0] == "ok":
                f = res[1]
                _check(isinstance(f, np.ndarray) and f.dtype == np.float32 and f.shape == (120,),
                       f"current_frame gave {getattr(f, 'dtype', type(f))} {getattr(f, 'shape', '')}")
                res = ("ok", np.array(f))  # a copy: the engine may reuse its buffer
            return res
        buf = np.full(120, np.nan, np.float32)
        res = self._call(lambda: self.ctrl.current_frame_into(buf))
        return ("ok", buf) if res[0] == "ok" else res

    def _closed_call(self, name: str) -> Any:
        ctrl = self.ctrl
        return {
            "AUDIO": lambda: ctrl.yield_audio_data(b"\x01\x00"),
            "RAMP": lambda: ctrl.yield_audio_data(b"\x01\x00", end=True),
            "FRAMES_STOCK": lambda: ctrl.yield_frames_data([STOCK[0]], "x"),
            "FRAMES_RAW": lambda: ctrl.yield_frames_data([], "x"),
            "FRAMES_NONE": lambda: ctrl.yield_frames_data(None, "x"),
            "READ": lambda: ctrl.read_audio(10),
            "READ_INTO": lambda: ctrl.read_audio_into(np.empty(10, np.int16)),
            "FRAME": ctrl.current_frame,
            "FRAME_INTO": lambda: ctrl.current_frame_into(np.empty(120, np.float32)),
            "INTERRUPT": ctrl.interrupt,
            "PAUSE": ctrl.pause,
            "RESUME": ctrl.resume,
            "BAD_TYPE": lambda: ctrl.yield_audio_data(b""),
            "CLOSE": ctrl.close,
            "TICKS": lambda: ctrl.read_audio(160),
        }[name]()

    def run(self, max_ops: int = 10_000) -> list:
        self.make()
        for _ in range(max_ops):
            if not self.step():
                break
        return self.trace


def random_program(rng, n_ops: int = 200) -> bytes:
    """A plausible random call sequence in the byte format above (weighted so
    conversations start, play, stall, end and get interrupted)."""
    out = bytearray([rng.randrange(256)])
    if out[0] & 64:
        out.append(rng.randrange(256))
    if out[0] & 128:
        out.append(rng.randrange(256))
    weights = {"AUDIO": 2, "RAMP": 14, "FRAMES_STOCK": 12, "FRAMES_RAW": 2, "FRAMES_NONE": 3, "READ": 8,
               "READ_INTO": 8, "FRAME": 4, "FRAME_INTO": 4, "INTERRUPT": 3, "PAUSE": 2, "RESUME": 3,
               "QUERY": 2, "BAD_TYPE": 1, "CLOSE": 3, "TICKS": 20}
    names = list(weights)
    w = [weights[n] for n in names]
    for _ in range(n_ops):
        name = rng.choices(names, w)[0]
        out.append(OP[name])
        if name == "AUDIO":
            n = rng.choice((0, 1, 2, 3, 320, 321, 3200))
            out += struct.pack("<H", n) + rng.randbytes(n) + bytes([rng.randrange(4)])
        elif name == "RAMP":
            out += struct.pack("<H", rng.choice((160, 320, 321, 800, 1600, 4000, 16000))) + bytes([rng.randrange(4) if rng.random() < 0.7 else 0])
        elif name == "FRAMES_STOCK":
            k = rng.randrange(1, 4)
            out += bytes([k] + [rng.randrange(len(STOCK)) for _ in range(k)] + [rng.choice((0, 0, 0, 0, 1, 2, 3))])
        elif name == "FRAMES_RAW":
            env = bytearray(rng.choice(STOCK[:3] or [b""]))
            for _ in range(rng.randrange(3)):
                if env:
                    env[rng.randrange(len(env))] = rng.randrange(256)
            out += bytes([1]) + struct.pack("<H", len(env)) + bytes(env) + bytes([0])
        elif name == "FRAMES_NONE":
            out += bytes([rng.randrange(2), rng.choice((0, 0, 1, 3))])
        elif name in ("READ", "READ_INTO"):
            out += struct.pack("<H", rng.choice((0, 1, 80, 160, 441, 480, 1024, 4800)))
        elif name == "BAD_TYPE":
            out.append(rng.randrange(5))
        elif name == "TICKS":
            out.append(rng.randrange(1, 64))
        elif name == "CLOSE":  # the presentation calls, never a close
            sub = rng.choice((0xC2, 0xC3, 0xC3, 0xC4))
            out.append(sub)
            if sub == 0xC3:
                out += struct.pack("<H", rng.choice((0, 1, 160, 800, 1600, 4000, 9600)))
    return bytes(out)
