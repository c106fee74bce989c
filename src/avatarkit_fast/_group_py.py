"""Reference implementation of the batched playout tick (see ``group.py``).

``_group_c.pyx`` is the compiled twin: any change here lands there in the same
commit, with the same behaviour.
"""

from __future__ import annotations

__all__ = ["Batch"]


class Batch:
    """The sessions of a group (controllers, whose methods serialise the
    pure-Python engine's calls), ticked in one call."""

    def __init__(self, targets) -> None:
        self._targets = tuple(targets)

    def __len__(self) -> int:
        return len(self._targets)

    def tick(self, audio_rows: list, frame_rows: list) -> None:
        """Each target's 10 ms tick in order: ``read_audio_into`` of its audio
        row, then ``current_frame_into`` of its frame row; the same calls, in
        the same order, as a loop over the sessions.  An exception from a
        session propagates at once (the sessions before it have ticked)."""
        n = len(self._targets)
        if len(audio_rows) != n or len(frame_rows) != n:
            raise ValueError(f"{n} sessions, {len(audio_rows)} audio rows, {len(frame_rows)} frame rows")
        for i, target in enumerate(self._targets):
            target.read_audio_into(audio_rows[i])
            target.current_frame_into(frame_rows[i])
