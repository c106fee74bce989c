"""The receiving end of the relay: :class:`RelayReceiver` applies frames to a
controller, in each request's sequence order, each once, with a bounded
reorder window and gap reports (:class:`~avatarkit_fast.errors.RelayGap`)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .._report import report
from ..errors import AvatarKitError, RelayGap
from .frames import (
    AnimationFrame,
    AudioChunk,
    Interrupt,
    RelayFrame,
    SequencedFrame,
    decode_frame,
)

__all__ = ["Controller", "ReceiverStats", "RelayReceiver"]

logger = logging.getLogger("avatarkit_fast.relay")


class Controller(Protocol):
    """What the receiver needs of an :class:`~avatarkit_fast.AvatarController`."""

    def yield_audio_data(self, pcm: Any, end: bool = False) -> str: ...

    def yield_frames_data(self, envelopes: Any, conversation_id: str) -> bool: ...

    def get_current_conversation_id(self) -> str | None: ...

    def interrupt(self) -> None: ...


@dataclass
class ReceiverStats:
    frames: int = 0  # frames that decoded (applied, held or dropped)
    audio_bytes: int = 0
    envelopes: int = 0
    dropped_audio: int = 0  # audio of an interrupted, superseded or ended request
    dropped_animation: int = 0  # animation for a req_id this receiver never saw audio of
    interrupts: int = 0
    duplicates: int = 0  # version-2 frames whose seq had come already: dropped
    reordered: int = 0  # version-2 frames that came early, were held, then applied in order
    late: int = 0  # version-2 frames that came after their gap was given up on: dropped
    gaps: int = 0  # gaps given up on, each reported as RelayGap
    missing: int = 0  # frames those gaps skipped


class _Sequence:
    """A request's version-2 numbering on the receiving side."""

    __slots__ = ("next", "held", "skipped")

    def __init__(self) -> None:
        self.next = 0  # the seq that applies next
        self.held: dict[int, SequencedFrame] = {}  # came early: waits for the frames before it
        self.skipped: deque[tuple[int, int]] = deque(maxlen=16)  # gaps given up on: [start, stop)

    def was_skipped(self, seq: int) -> bool:
        return any(a <= seq < b for a, b in self.skipped)


class RelayReceiver:
    """Feeds relay frames into a controller.

    Keeps the map from the server's req_id to the controller's conversation id:
    audio of a new req_id opens a new conversation (interrupting an unfinished
    one), animation goes to its own request's conversation, so the controller
    drops animation of an earlier request as stale.  Audio of a request that was
    interrupted (here or by the application on the controller) is dropped, so
    nothing of it plays again.  A malformed frame raises RelayError before the
    controller or the receiver is touched.

    Version-2 frames are applied in their request's ``seq`` order, each once: a
    seq that came already is dropped (``stats.duplicates``); one that comes
    early is held until the frames before it arrive, then applied in order
    (``stats.reordered``).  A gap is waited for at most ``gap_timeout`` seconds
    (on ``clock``, checked by :meth:`poll` and by every :meth:`feed`) and at
    most ``reorder_window`` frames (held, over all requests, or ahead of the
    gap); then the receiver gives up on it: it reports
    :class:`~avatarkit_fast.errors.RelayGap` to ``on_error`` (or logs it),
    applies what it holds in order, and drops the missing frames if they come
    later (``stats.late``).  Before a new request's first audio applies, the
    frames held for earlier requests are applied (they were sent before it).
    Version-1 frames carry no numbers and apply as they come.

    Errors of a frame applied when it is fed (a malformed envelope the
    controller refuses) are raised by :meth:`feed`; errors of held frames
    applied later go to ``on_error``.  ``remember`` bounds how many requests
    are remembered (their conversation ids, ends, interrupts and numbering).
    Call ``feed``, ``poll`` and ``flush`` from one thread (or one event loop,
    as :func:`pump_websocket` does); the controller may be read from others.
    """

    def __init__(
        self,
        controller: Controller,
        *,
        remember: int = 256,
        reorder_window: int = 64,
        gap_timeout: float = 0.2,
        on_error: Callable[[AvatarKitError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(remember, int) or remember < 1:
            raise ValueError(f"remember must be a positive int, got {remember!r}")
        if not isinstance(reorder_window, int) or reorder_window < 1:
            raise ValueError(f"reorder_window must be a positive int, got {reorder_window!r}")
        if not gap_timeout >= 0:
            raise ValueError(f"gap_timeout must be >= 0 seconds, got {gap_timeout!r}")
        self.controller = controller
        self.stats = ReceiverStats()
        self.on_error = on_error
        self.reorder_window = reorder_window
        self.gap_timeout = float(gap_timeout)
        self._clock = clock
        self._remember = remember
        self._conversations: OrderedDict[str, str] = OrderedDict()  # req_id -> conversation id
        self._ended: set[str] = set()
        self._dead: OrderedDict[str, None] = OrderedDict()
        self._current: str | None = None  # req_id whose audio came last
        self._sequences: OrderedDict[str, _Sequence] = OrderedDict()
        self._held = 0
        self._deadline: float | None = None

    def conversation_id(self, req_id: str) -> str | None:
        """The controller's conversation id for a server req_id, if known."""
        return self._conversations.get(req_id)

    @property
    def held(self) -> int:
        """Frames that came early and wait for the frames before them."""
        return self._held

    def feed(self, data: bytes | bytearray | memoryview) -> RelayFrame:
        """Decode one frame and apply it to the controller (or hold or drop it,
        see the class); returns the frame."""
        frame = decode_frame(data)
        self.stats.frames += 1
        if self._held and self._clock() >= self._deadline:
            self._give_up()
        if isinstance(frame, Interrupt):
            self._interrupt(frame.req_id)
        elif frame.seq is None:
            self._apply(frame)
        else:
            self._sequenced(frame)
        return frame

    def poll(self) -> float | None:
        """Give up on gaps whose wait is over; returns the seconds until the
        next one is due, or None when nothing is held.  Never raises."""
        if self._held and self._clock() >= self._deadline:
            self._give_up()
        if not self._held:
            return None
        return max(0.0, self._deadline - self._clock())

    def flush(self) -> None:
        """Give up on every gap now and apply what is held (the stream ended:
        nothing more will come).  Never raises."""
        if self._held:
            self._give_up()

    # -- version-2 numbering

    def _sequence(self, req_id: str) -> _Sequence:
        seqs = self._sequences
        state = seqs.get(req_id)
        if state is None:
            state = seqs[req_id] = _Sequence()
            while len(seqs) > self._remember:
                old = next(iter(seqs.values()))
                if old.held:
                    self._release(old)
                seqs.popitem(last=False)
        return state

    def _sequenced(self, frame: SequencedFrame) -> None:
        req_id = frame.req_id
        if req_id in self._dead:
            self._apply(frame)  # counted and dropped there
            return
        state = self._sequence(req_id)
        seq = frame.seq
        if seq < state.next or seq in state.held:
            if state.was_skipped(seq):
                self.stats.late += 1
            else:
                self.stats.duplicates += 1
            return
        if seq > state.next:
            state.held[seq] = frame
            self._held += 1
            if self._held == 1:
                self._deadline = self._clock() + self.gap_timeout
            if seq - state.next > self.reorder_window or self._held > self.reorder_window:
                self._give_up()
            return
        state.next += 1
        try:
            self._apply(frame)
        finally:
            self._drain(state)

    def _take(self, state: _Sequence, seq: int) -> SequencedFrame:
        frame = state.held.pop(seq)
        self._held -= 1
        if not self._held:
            self._deadline = None
        return frame

    def _drain(self, state: _Sequence) -> None:
        """Apply the held frames that follow on from ``state.next``."""
        while state.next in state.held:
            frame = self._take(state, state.next)
            state.next += 1
            self.stats.reordered += 1
            self._apply_later(frame)

    def _release(self, state: _Sequence, req_id: str | None = None) -> None:
        """Give up on the gaps of one request: apply all it holds, in order."""
        while state.held:
            seq = min(state.held)
            if seq > state.next:
                req_id = req_id or state.held[seq].req_id
                count = seq - state.next
                state.skipped.append((state.next, seq))
                self.stats.gaps += 1
                self.stats.missing += count
                self._report(RelayGap(
                    f"relay gap: {count} frame(s) of request {req_id!r} from seq {state.next} "
                    f"never came; going on from seq {seq}",
                    req_id, state.next, count,
                ))
                state.next = seq
            self._drain(state)

    def _give_up(self, keep: str | None = None) -> None:
        """Give up on the gaps of every request but ``keep``, oldest request first."""
        for req_id, state in list(self._sequences.items()):
            if state.held and req_id != keep:
                self._release(state, req_id)

    def _drop_held(self, req_id: str) -> None:
        state = self._sequences.get(req_id)
        if state is None or not state.held:
            return
        for seq in sorted(state.held):
            frame = self._take(state, seq)
            if isinstance(frame, AudioChunk):
                self.stats.dropped_audio += 1

    def _report(self, error: AvatarKitError) -> None:
        report(self.on_error, error, logger, "relay")

    def _apply_later(self, frame: SequencedFrame) -> None:
        try:
            self._apply(frame)
        except AvatarKitError as exc:
            self._report(exc)

    # -- applying frames

    def _apply(self, frame: SequencedFrame) -> None:
        if isinstance(frame, AudioChunk):
            self._audio(frame)
            return
        cid = self._conversations.get(frame.req_id)
        if cid is None:
            self.stats.dropped_animation += 1
        elif isinstance(frame, AnimationFrame):
            self.stats.envelopes += len(frame.envelopes)
            self.controller.yield_frames_data(list(frame.envelopes), cid)
        else:
            self.controller.yield_frames_data([], cid)

    def _kill(self, req_id: str) -> None:
        self._dead[req_id] = None
        while len(self._dead) > self._remember:
            self._dead.popitem(last=False)
        self._drop_held(req_id)

    def _audio(self, frame: AudioChunk) -> None:
        ctrl = self.controller
        req_id = frame.req_id
        if req_id in self._dead:
            self.stats.dropped_audio += 1
            return
        cid = self._conversations.get(req_id)
        if cid is not None:
            if req_id in self._ended or ctrl.get_current_conversation_id() != cid:
                # Ended already, or interrupted/superseded on the controller.
                self._kill(req_id)
                self.stats.dropped_audio += 1
                return
        else:
            # Frames held for earlier requests were sent before this one began.
            if self._held:
                self._give_up(keep=req_id)
            current = self._current
            current_cid = None if current is None else self._conversations.get(current)
            if (
                current_cid is not None
                and current not in self._ended
                and ctrl.get_current_conversation_id() == current_cid
            ):
                # The previous request never sent end: cut it, or its
                # conversation would swallow this request's audio.
                ctrl.interrupt()
                self._kill(current)
        new_cid = ctrl.yield_audio_data(frame.pcm, end=frame.end)
        if cid is None:
            self._conversations[req_id] = new_cid
            while len(self._conversations) > self._remember:
                old, _ = self._conversations.popitem(last=False)
                self._ended.discard(old)
            self._current = req_id
        self.stats.audio_bytes += len(frame.pcm)
        if frame.end:
            self._ended.add(req_id)

    def _interrupt(self, req_id: str | None) -> None:
        self.stats.interrupts += 1
        ctrl = self.controller
        if req_id is None:
            if self._current is not None:
                self._kill(self._current)
            ctrl.interrupt()
            return
        # Kill it even if unknown here: audio of it that comes later is dropped.
        self._kill(req_id)
        cid = self._conversations.get(req_id)
        if cid is not None and ctrl.get_current_conversation_id() == cid:
            ctrl.interrupt()
