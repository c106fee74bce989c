"""Fuzz ``AvatarController`` with call sequences decoded from the fuzz bytes
(format in ``controller_ops.py``): yields of random and mutated PCM and
envelopes, reads of random sizes, interrupt, pause, resume, close, clear, the frame at an earlier read
position, wrong types, transitions and idle motion of every kind (defaults
and config bit 7), and callbacks that call back into the controller (yield the next utterance,
interrupt, pause and resume, read the stats).

Expected: no crash or hang; only our errors (``AvatarKitError``) and
``TypeError`` for wrong types; after every call the state, the conversation id
and the counters are consistent (counters never go back, a refused call keeps
nothing, interrupt leaves IDLE and silence, every call after close raises, a
conversation begun by a callback is still current with all its audio after
the call during which the callback ran).
With the compiled engine built, each input also runs on the pure twin in
lockstep (``--no-lockstep`` turns that off): both give the same trace, call
for call (audio, keyframes, states, callbacks, counters).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runner import instrumented, main, save_seeds  # noqa: E402

with instrumented("avatarkit_fast"):
    import avatarkit_fast.errors as errors
    from avatarkit_fast.controller import AvatarController

import controller_ops as ops  # noqa: E402


LOCKSTEP = True


def _engine(impl):
    return lambda **kw: AvatarController(_impl=impl, **kw)


def test_one_input(data: bytes) -> None:
    first = ops.Run(AvatarController, errors, data, full_trace=LOCKSTEP)
    trace = first.run(max_ops=2000)
    if LOCKSTEP and first.ctrl.engine_kind == "c":
        twin = ops.Run(_engine("py"), errors, data).run(max_ops=2000)
        if trace != twin:
            i = next((i for i, (a, b) in enumerate(zip(trace, twin)) if a != b), min(len(trace), len(twin)))
            raise ops.Failure(f"compiled engine and twin differ at trace entry {i}:\n"
                              f"  compiled: {trace[i] if i < len(trace) else None!r}\n"
                              f"  twin:     {twin[i] if i < len(twin) else None!r}")


def _setup(args) -> None:
    global LOCKSTEP
    LOCKSTEP = not args.no_lockstep


def write_seeds(wire_seeds: dict, pcm: bytes) -> None:
    """Seeds: a real conversation, an audio-only one, an interrupted one, a
    stale one and a few random programs."""
    import random

    O = ops.OP
    u16 = lambda n: struct.pack("<H", n)  # noqa: E731
    real = pcm[: 2 * 16000]  # one second of the recording
    normal = bytes([1, O["AUDIO"]]) + u16(3200) + real[:3200] + b"\0" + bytes([O["RAMP"]]) + u16(12800) + b"\x01" + bytes(
        [O["FRAMES_STOCK"], 2, 0, 4, 0, O["TICKS"], 40, O["PAUSE"], O["TICKS"], 3, O["RESUME"], O["TICKS"], 63])
    audio_only = bytes([2, O["RAMP"]]) + u16(8000) + b"\x03" + bytes([O["FRAMES_NONE"], 0, 0, O["TICKS"], 60,
                                                                       O["FRAMES_STOCK"], 1, 3, 0, O["TICKS"], 5])
    interrupted = bytes([9, O["RAMP"]]) + u16(4000) + b"\x00" + bytes([O["FRAMES_STOCK"], 1, 3, 0, O["TICKS"], 7,
                                                                        O["INTERRUPT"], O["FRAMES_STOCK"], 1, 4, 3,
                                                                        O["READ"]]) + u16(480) + bytes([O["FRAME"]])
    stale = bytes([17, O["RAMP"]]) + u16(1600) + b"\x01" + bytes([O["RAMP"]]) + u16(1600) + b"\x00" + bytes(
        [O["FRAMES_STOCK"], 1, 3, 1, O["FRAMES_RAW"], 1]) + u16(len(wire_seeds["anim-env0-1kf"])) + wire_seeds[
        "anim-env0-1kf"] + bytes([0, O["TICKS"], 20, O["BAD_TYPE"], 2, O["CLOSE"], 0xC1, O["READ"]]) + u16(10)
    # The callbacks call back in (config bit 6; reactions: the end of a stall
    # and the first frame yield the next utterance): the case,
    # where the read that ends a stall and the audio started one.
    reentrant = bytes([1 | 64, 0x14, O["RAMP"]]) + u16(320) + b"\x00" + bytes([O["FRAMES_NONE"], 0, 0, O["READ"]]) \
        + u16(480) + bytes([O["RAMP"]]) + u16(160) + b"\x01" + bytes([O["READ"]]) + u16(480) + bytes(
        [O["QUERY"], O["FRAMES_STOCK"], 1, 3, 0, O["TICKS"], 30])
    # Presentation (config bit 7): a transition in cut by clear(), a new
    # conversation during the transition out, frames looked up behind the reads.
    presented = bytes([1 | 16 | 128, 0x16, O["RAMP"]]) + u16(8000) + b"\x01" + bytes(
        [O["FRAMES_STOCK"], 2, 3, 4, 0, O["TICKS"], 5, O["CLOSE"], 0xC2, O["TICKS"], 8, O["CLOSE"], 0xC4,
         O["RAMP"]]) + u16(4000) + b"\x01" + bytes([O["FRAMES_STOCK"], 1, 4, 0, O["TICKS"], 40,
                                                    O["CLOSE"], 0xC3]) + u16(1600) + bytes([O["TICKS"], 63])
    seeds = {"normal": normal, "presented": presented, "audio-only": audio_only, "interrupted": interrupted, "stale-and-close": stale,
             "reentrant": reentrant}
    for i in range(4):
        seeds[f"random-{i}"] = ops.random_program(random.Random(i), n_ops=25)
    save_seeds("controller", seeds)


if __name__ == "__main__":
    main(test_one_input, "controller", setup=_setup,
         add_arguments=lambda p: p.add_argument("--no-lockstep", action="store_true",
                                                help="check the compiled engine alone"))
