"""Every compiled class is safe in any state Python can reach: made with
``cls.__new__(cls)`` (no ``__init__``) or after an ``__init__`` that raised,
each method raises a clear error or does nothing harmful.  Each case runs in
its own interpreter: a crash there is a signal (a negative exit status), not
a failed assertion.  The pure engine behaves the same (same errors)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from avatarkit_fast._compat import NO_EXTENSIONS

compiled_only = pytest.mark.skipif(NO_EXTENSIONS, reason="the compiled modules are not in use")

PRELUDE = """
import numpy as np
from avatarkit_fast._ring_{tag} import KeyframeStore, PcmRing
from avatarkit_fast._sync_{tag} import SyncEngine
from avatarkit_fast._group_{tag} import Batch
from avatarkit_fast.errors import ClosedError
audio = np.zeros(160, dtype=np.int16)
frame = np.zeros(120, dtype=np.float32)

def outcome(call):
    try:
        result = call()
    except Exception as exc:
        print(type(exc).__name__ + ": " + str(exc))
    else:
        print("ok " + repr(result))
"""

BLANK = "e = SyncEngine.__new__(SyncEngine)\n"
# __init__ that raised part-way: the ring was given, the store was not.
PARTIAL = """
e = SyncEngine.__new__(SyncEngine)
try:
    e.__init__(PcmRing(100), "not a store", 16000, 25, False, False, 0, None)
except (TypeError, AttributeError):  # (the pure engine finds out when it uses it)
    pass
"""

NOT_INIT = "ClosedError: SyncEngine used before __init__: it is not open"

ENGINE_CALLS = {
    "read_audio_into": ("e.read_audio_into(audio)", NOT_INIT),
    "current_frame_into": ("e.current_frame_into(frame)", NOT_INIT),
    "begin": ("e.begin('x', b'\\0\\0')", NOT_INIT),
    "push_audio": ("e.push_audio(b'\\0\\0', False)", NOT_INIT),
    "yield_audio": ("e.yield_audio(b'\\0\\0', False)", NOT_INIT),
    "reserve_frames": ("e.reserve_frames(3)", NOT_INIT),
    "commit_frames": ("e.commit_frames(0, False)", NOT_INIT),
    "add_frames": ("e.add_frames(np.zeros((1, 120), np.float32))", NOT_INIT),
    "set_audio_only": ("e.set_audio_only()", NOT_INIT),
    "interrupt": ("e.interrupt()", NOT_INIT),
    "pause": ("e.pause()", NOT_INIT),
    "resume": ("e.resume()", NOT_INIT),
    "audio_time": ("e.audio_time()", NOT_INIT),
    "frame_index": ("e.frame_index()", NOT_INIT),
    "stats": ("e.stats()", NOT_INIT),
    "accepting": ("e.accepting()", "ok False"),
    "buffered_frames": ("e.buffered_frames()", "ok 0"),
    "counters": ("(e.drop_stale(1), e.ignore_frames(1), e.count_server_error(), e.frames_dropped_stale)",
                 "ok (None, None, None, 1)"),
    "close then read": ("(e.close(), e.closed, e.read_audio_into(audio))",
                        "ClosedError: the controller is closed"),
    "batch": ("Batch([e])", "ClosedError: a SyncEngine used before __init__ cannot be batched"),
}


def _run(code: str, tag: str = "c") -> list:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE.replace("{tag}", tag) + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, f"exit status {proc.returncode} (a signal if negative): {proc.stderr[-2000:]}"
    return proc.stdout.splitlines()


@pytest.mark.parametrize("state", ["blank", "partial"])
def test_sync_engine_before_init(impl, state):
    setup = BLANK if state == "blank" else PARTIAL
    calls = dict(ENGINE_CALLS)
    if impl.tag == "py":  # the pure batch takes controllers, not engines
        del calls["batch"]
    code = setup + "".join(f"outcome(lambda: {call})\n" for call, _ in calls.values())
    got = _run(code, impl.tag)
    assert got == [want for _, want in calls.values()]


@compiled_only
def test_group_batch_of_an_uninitialised_engine_is_refused():
    """Once SIGFPE (a zero sample rate) in the batch's prefetch."""
    got = _run(BLANK + """
outcome(lambda: Batch([e]).tick([audio], [frame]))
ok = SyncEngine(PcmRing(100), KeyframeStore(10), 16000, 25, False, False, 0, None)
outcome(lambda: Batch([ok, e]))
outcome(lambda: Batch([ok]).tick([audio], [frame]))
""")
    assert got == ["ClosedError: a SyncEngine used before __init__ cannot be batched"] * 2 + ["ok None"]


def test_engine_init_refuses_missing_parts(impl):
    got = _run(tag=impl.tag, code="""
outcome(lambda: SyncEngine(None, KeyframeStore(10), 16000, 25, False, False, 0, None))
outcome(lambda: SyncEngine(PcmRing(10), None, 16000, 25, False, False, 0, None))
""")
    assert got == ["TypeError: a SyncEngine needs a PcmRing and a KeyframeStore, got None"] * 2


@compiled_only
def test_rings_and_batch_cannot_be_made_without_their_arguments():
    """Their ``__cinit__`` takes the size (the targets): ``__new__`` alone
    is a TypeError, and with it the object is whole."""
    got = _run("""
for cls in (PcmRing, KeyframeStore, Batch):
    outcome(lambda: cls.__new__(cls))
r = PcmRing.__new__(PcmRing, 100)
outcome(lambda: (r.write(b"\\1\\0\\2\\0"), r.read_into(audio, 1 << 40), int(audio[1])))
k = KeyframeStore.__new__(KeyframeStore, 10)
outcome(lambda: (k.idle_into(frame), k.total))
b = Batch.__new__(Batch, [])
outcome(lambda: (len(b), b.tick([], [])))
""")
    assert [line.split(":")[0] for line in got[:3]] == ["TypeError"] * 3
    assert got[3:] == ["ok (2, 2, 2)", "ok (None, 0)", "ok (0, None)"]


@compiled_only
def test_wire_helper_classes_are_safe_without_init():
    got = _run("""
from avatarkit_fast import _wire_c
outcome(lambda: _wire_c._Input.__new__(_wire_c._Input))
s = _wire_c._Scan.__new__(_wire_c._Scan)
outcome(lambda: [n for n in dir(s) if not n.startswith("__")])
""")
    assert got[0].startswith("TypeError")
    assert got[1] == "ok []"
