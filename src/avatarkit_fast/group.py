"""Batched playout: the 10 ms tick of many sessions on one thread in one call.

A server-side renderer or RTC worker serving many avatars ticks each of its
controllers every 10 ms.  At thousands of sessions that loop is bound by
memory latency: every session's engine and buffers are cold by the time the
loop comes back to it.  :class:`SessionGroup` runs the whole round in one call
(in C over the compiled engines, prefetching the sessions ahead) with exactly
the effects of calling ``read_audio_into`` then ``current_frame_into`` on each
controller in turn: the same samples and frames, callbacks, counters and state
changes.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ._compat import load_twin
from .controller import KEYFRAME_FLOATS, AvatarController

__all__ = ["SessionGroup"]

_INT16 = np.dtype(np.int16)
_FLOAT32 = np.dtype(np.float32)


def _rows(arr: Any, dtype: np.dtype, n: int, width: Any, what: str) -> list:
    a = np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
    if a.dtype != dtype or not a.dtype.isnative:
        raise TypeError(f"{what} must be a {dtype} array, got {a.dtype}")
    if a.ndim != 2 or a.shape[0] != n or (width is not None and a.shape[1] != width):
        want = f"({n}, {width if width is not None else 'samples'})"
        raise ValueError(f"{what} must have shape {want}, got {a.shape}")
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise TypeError(f"{what} must be a writable C-contiguous array")
    return list(a)  # one view per row, made once while the same array comes back


class SessionGroup:
    """Many controllers (one engine kind, one sample rate and fps) ticked
    together: :meth:`tick` is ``read_audio_into(audio[i])`` then
    ``current_frame_into(frames[i])`` for each session ``i`` in order.

    The group holds the controllers; it adds no state of its own.  Each row
    of the arrays last passed to :meth:`tick` stays exported to its session
    (as with the per-session calls) until other arrays are passed.
    """

    def __init__(self, controllers: Iterable[AvatarController]) -> None:
        ctrls = tuple(controllers)
        for c in ctrls:
            if not isinstance(c, AvatarController):
                raise TypeError(f"expected AvatarController, got {type(c).__name__}")
        kinds = {(c.engine_kind, c.sample_rate, c.fps) for c in ctrls}
        if len(kinds) > 1:
            raise ValueError(
                "the controllers of a group share one engine kind, sample rate and fps; got "
                + ", ".join(f"{i} {r} Hz {f} fps" for i, r, f in sorted(kinds))
            )
        self._controllers = ctrls
        impl, self.sample_rate, self.fps = kinds.pop() if kinds else ("py", None, None)
        self._impl = impl
        batch = load_twin("group", impl).Batch
        # The compiled batch calls the engines' C methods (what the compiled
        # controller's playout methods are bound to); the pure one goes
        # through the controllers, whose locks serialise the pure engine.
        self._batch = batch([c.playout_engine() for c in ctrls] if impl == "c" else ctrls)
        self._audio: Any = None
        self._frames: Any = None
        self._audio_rows: list = []
        self._frame_rows: list = []

    @property
    def controllers(self) -> tuple:
        return self._controllers

    def __len__(self) -> int:
        return len(self._controllers)

    def tick(self, audio: Any, frames: Any) -> None:
        """One playout step of every session: row ``i`` of ``audio`` (int16
        ``(n, samples)``) gets session ``i``'s next samples, row ``i`` of
        ``frames`` (float32 ``(n, 120)``) its keyframe.  Raises as the first
        failing session does (ClosedError after its ``close()``), the sessions
        before it having ticked, as a loop over the sessions would."""
        if audio is not self._audio:
            rows = _rows(audio, _INT16, len(self._controllers), None, "audio")
            self._audio, self._audio_rows = audio, rows
        if frames is not self._frames:
            rows = _rows(frames, _FLOAT32, len(self._controllers), KEYFRAME_FLOATS, "frames")
            self._frames, self._frame_rows = frames, rows
        self._batch.tick(self._audio_rows, self._frame_rows)

    def __repr__(self) -> str:
        return f"<SessionGroup {len(self._controllers)} sessions impl={self._impl}>"
