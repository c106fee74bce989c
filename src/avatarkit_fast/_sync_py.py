# cython: binding=False, always_allow_keywords=False
"""The audio-clock synchronisation engine: conversation state machine, sample
counting and keyframe pick.

Plain integer state, written once: this file is the pure-Python engine and,
compiled against ``_sync_c.pxd`` (``_sync_c.py`` is a link to this file), the
compiled one.  The twins cannot drift.

The clock is the count of conversation samples handed to the consumer
(``played``).  After ``s`` samples the current keyframe is
``floor(s * fps / sample_rate)``; nothing here reads wall time.

Rules where the product description leaves room (documented in the README):

* A conversation is PLAYING from its first audio on; until its first
  animation arrives (or it is audio-only, or ``max_wait_samples`` of reads have
  passed) reads return silence and consume no audio.  Start, stop and pause
  take effect at read boundaries; the end of the audio and a ``strict_sync``
  stall can fall inside a read (audio, then silence).
* ``strict_sync`` lets sample ``s`` play only once keyframe
  ``floor(s * fps / sample_rate)`` is there.  It waits only for an animation
  that has begun and not ended: before the first keyframe ``max_wait_samples``
  governs, and once the animation's ``end`` envelope arrived the last keyframe
  holds for any audio past it.
* A stall is a read that wanted conversation audio and got silence before the
  audio's end (audio starvation in either mode, or a ``strict_sync`` wait).

Threading: the compiled engine runs each method holding the GIL, so each call
is atomic; the pure-Python engine relies on its caller (the controller) to
serialise calls.

Events: a call that changes state queues its events and, once that state is
settled (the conversation that ended is stopped, the one begun has its
audio), delivers them to ``notify(kind, arg)`` one at a time, in the order of
the changes.  ``notify`` may call back into the engine: the events of such a
nested call (or of a call on another thread while ``notify`` runs without the
GIL) are queued behind the ones not yet delivered and delivered by the loop
already running, so none is lost, none overtakes another, and the stack does
not grow with each event.

An engine made without ``__init__`` (``SyncEngine.__new__(SyncEngine)``) is
not open: every call raises :class:`ClosedError` saying so.
"""

from __future__ import annotations

from .errors import BufferFull, ClosedError

__all__ = [
    "SyncEngine",
    "IDLE",
    "PLAYING",
    "PAUSED",
    "EV_STATE",
    "EV_STALL",
    "EV_FIRST_FRAME",
    "EV_ANIMATION",
    "ANIM_IDLE",
    "ANIM_TRANSITION_IN",
    "ANIM_SPEAKING",
    "ANIM_TRANSITION_OUT",
]

IDLE = 0
PLAYING = 1
PAUSED = 2

EV_STATE = 1  # arg: new state (int)
EV_STALL = 2  # arg: True when a stall begins, False when it ends
EV_FIRST_FRAME = 3  # arg: the conversation id; its first keyframe is current
EV_ANIMATION = 4  # arg: the new animation state (ANIM_*)

# What the picture shows (the animation state), apart from the audio.
ANIM_IDLE = 0
ANIM_TRANSITION_IN = 1
ANIM_SPEAKING = 2
ANIM_TRANSITION_OUT = 3

_NOT_INITIALISED = "SyncEngine used before __init__: it is not open"


def _as_bool(value):
    if isinstance(value, int) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"end must be a bool, got {type(value).__name__}")


class SyncEngine:
    # Methods declared in _sync_c.pxd carry no annotations: Cython would read
    # ``int`` as "Python int object" and clash with the C types there.
    """Drives one :class:`PcmRing` and one :class:`KeyframeStore` (either
    implementation) from an audio clock made of the samples read."""

    def __init__(
        self,
        pcm,
        frames,
        sample_rate: int,
        fps: int,
        strict_sync: bool,
        linear: bool,
        max_wait_samples: int,
        notify,
        fallback=None,
        convert=None,
        transition_in_samples=0,
        transition_out_samples=0,
        animation_events=False,
    ) -> None:
        if pcm is None or frames is None:
            raise TypeError("a SyncEngine needs a PcmRing and a KeyframeStore, got None")
        if sample_rate <= 0 or fps <= 0:
            raise ValueError("sample_rate and fps must be positive")
        if max_wait_samples < 0:
            raise ValueError("max_wait_samples must be >= 0")
        if transition_in_samples < 0 or transition_out_samples < 0:
            raise ValueError("transition lengths must be >= 0 samples")
        self._events = []
        self._draining = False
        self._pcm = pcm
        self._kf = frames
        self.sample_rate = sample_rate
        self.fps = fps
        self.strict_sync = strict_sync
        self.linear = linear
        self.max_wait_samples = max_wait_samples
        self._notify = notify
        self._fallback = fallback
        # The controller's input conversion (a Pcm16Input: ``convert(data)``
        # and a ``samples_clipped`` counter) for audio that is not bytes.
        self._convert = convert
        self.conversation_id = None
        self.state = IDLE
        self.closed = False
        self._open = False  # until the end of __init__
        self._reset()  # the per-conversation fields
        self.conversation = 0
        # counters (never reset)
        self.samples_received = 0
        self.samples_played = 0
        self.frames_received = 0
        self.frames_dropped_stale = 0
        self.frames_ignored = 0
        self.underrun_samples = 0
        self.stalls = 0
        self.conversations = 0
        self.interrupts = 0
        self.server_errors = 0
        # presentation: the idle clock, the transitions
        self.ticks = 0
        self.transition_in_samples = transition_in_samples
        self.transition_out_samples = transition_out_samples
        self.anim_state = ANIM_IDLE
        self._anim_events = bool(animation_events)  # EV_ANIMATION queued only if asked
        self._in_from = 0
        self._end_at = -transition_out_samples  # the idle is reached
        self._open = True

    # -- producer side -------------------------------------------------

    def check_open(self):
        if not self._open:
            self._raise_not_open()

    def _check_made(self):
        # The queries that stay readable after close() need the parts that
        # __init__ gives (a partial __init__ may have given some).
        if self._pcm is None or self._kf is None or self.sample_rate <= 0 or not (self._open or self.closed):
            self._raise_not_open()
        return 0

    def _raise_not_open(self):
        if self.closed:
            raise ClosedError("the controller is closed")
        raise ClosedError(_NOT_INITIALISED)

    def accepting(self):
        """True while audio continues the current conversation (it has not
        been ended); otherwise the next audio starts a new one."""
        return self.active and not self.audio_ended and self._open

    def begin(self, conversation_id=None, data=None, end=False) -> None:
        """Start a new conversation, with ``data`` (PCM bytes, see
        :meth:`push_audio`) as its first audio if given; an active one is cut
        off (an interrupt).  The events are delivered once the audio is in."""
        self.check_open()
        was_stalled = self.stalled
        old_state = self.state
        old_anim = self.anim_state
        if self.active:
            self.interrupts += 1
            old_anim = self._begin_out()
        self._reset()
        self.active = True
        self.conversation_id = conversation_id
        self.conversation += 1
        self.conversations += 1
        self.state = PLAYING
        # A conversation cut off by a new one ends as on interrupt(): its
        # stall (if any) ends, the state passes through IDLE, then PLAYING.
        if was_stalled:
            self._emit(EV_STALL, False)
        if old_state != IDLE:
            self._emit(EV_STATE, IDLE)
        self._anim_changed(old_anim)
        self._emit(EV_STATE, PLAYING)
        try:
            if data is not None:  # (the controller checked it: it fits)
                self.push_audio(data, end)
        finally:
            self._deliver()  # the start happened: it is told even if the data was refused

    def yield_audio(self, pcm, end=False):
        """The controller's ``yield_audio_data``: continue the current
        conversation in one call and return its id, or hand the call to the
        fallback given at construction, which begins a new conversation.
        Audio that is not ``bytes`` or ``bytearray`` is first converted by
        the ``convert`` object given at construction, when one was (bytes stay
        on this path, unchanged)."""
        if end is not True and end is not False:
            end = _as_bool(end)
        if type(pcm) is not bytes and type(pcm) is not bytearray and self._convert is not None:
            return self._yield_converted(pcm, end)
        if self.push_audio(pcm, end) >= 0:
            return self.conversation_id
        return self._fallback(pcm, end)

    def _yield_converted(self, data, end):
        # Arrays (and other buffers) through the controller's conversion; the
        # clip count moves on only if the yield succeeds (a call succeeds
        # whole or changes nothing).
        conv = self._convert
        clipped = conv.samples_clipped
        try:
            pcm = conv.convert(data)
            if self.push_audio(pcm, end) >= 0:
                return self.conversation_id
            return self._fallback(pcm, end)
        except BaseException:
            conv.samples_clipped = clipped
            raise

    def push_audio(self, data, end):
        """Buffer PCM bytes of the current conversation; returns whole samples
        stored, or -1 (storing nothing) when no conversation takes audio (none
        begun, or its end was given): then :meth:`begin` one.  ``end`` marks the
        conversation's last audio (a dangling half sample is then dropped)."""
        if not self._open:
            self._raise_not_open()
        if not self.active or self.audio_ended:
            return -1
        n = self._pcm.write(data)
        self.samples_received += n
        if end:
            self._pcm.drop_carry()
            self.audio_ended = True
        return n

    def reserve_frames(self, n: int) -> None:
        """Room for ``n`` more pending keyframes; played ones may be dropped."""
        self.check_open()
        # A second of keyframes behind the audio position stays held where
        # the cap allows: the frame heard through a sound card's latency
        # (frame_at_into) is older than the current one.
        back = self.played - self.sample_rate
        try:
            self._kf.reserve(n, (back if back > 0 else 0) * self.fps // self.sample_rate)
        except BufferFull:
            self._kf.reserve(n, self.played * self.fps // self.sample_rate)

    def commit_frames(self, epoch, end):
        """Publish the pending keyframes decoded under ``epoch``; returns how
        many (0 if the conversation changed meanwhile)."""
        self.check_open()
        if epoch != self._kf.epoch or not self.active or self.audio_only:
            self._kf.rollback()
            return 0
        n = self._kf.commit(epoch)
        self.frames_received += n
        if end:
            self.anim_ended = True
        return n

    def add_frames(self, frames, end: bool = False) -> int:
        """Append keyframes given as an array ((k, 120) float32-convertible)
        rather than decoded from envelopes; returns how many were kept."""
        self.check_open()
        epoch = self._kf.epoch
        self.reserve_frames(len(frames))
        self._kf.stage(frames)
        return self.commit_frames(epoch, end)

    def set_audio_only(self) -> None:
        """The current conversation has no animation: its audio plays whole
        with the idle frame, and later animation for it is ignored."""
        self.check_open()
        if self.active and not self.audio_only:
            self._anim_changed(self._begin_out())
            self.audio_only = True
            if self._events:
                self._deliver()

    def drop_stale(self, frames: int) -> None:
        self.frames_dropped_stale += frames

    def ignore_frames(self, frames: int) -> None:
        self.frames_ignored += frames

    def count_server_error(self) -> None:
        self.server_errors += 1

    def interrupt(self) -> bool:
        """Stop the current conversation at once; True if one was active."""
        self.check_open()
        if not self.active:
            return False
        self.interrupts += 1
        self._stop(True)
        self._deliver()
        return True

    def clear(self) -> bool:
        """Drop everything buffered (audio and keyframes of the conversation
        in progress, its end included) and return to the idle, through the
        transition out; True if a conversation was in progress.  As
        :meth:`interrupt`, counted as one; with none in progress, nothing."""
        return self.interrupt()

    def pause(self) -> None:
        self.check_open()
        if self.active and not self.paused:
            self.paused = True
            self.state = PAUSED
            self._emit(EV_STATE, PAUSED)
            self._deliver()

    def resume(self) -> None:
        self.check_open()
        if self.active and self.paused:
            self.paused = False
            self.state = PLAYING
            self._emit(EV_STATE, PLAYING)
            self._deliver()

    def close(self) -> None:
        """Drop everything; every later call raises ClosedError.  Events
        queued and not yet delivered (by a callback that closes) are dropped."""
        if self.closed:
            return
        if not self._open:  # never (wholly) initialised: nothing to drop
            self.closed = True
            return
        self._stop(False)
        self.closed = True
        self._open = False
        del self._events[:]

    # -- consumer side -------------------------------------------------

    def read_audio_into(self, buf):
        """Fill ``buf`` (int16) with the next samples, silence where there is
        no conversation audio to play; returns the conversation samples in it."""
        if not self._open:
            self._raise_not_open()
        if not self.active or self.paused:
            self._pcm.read_into(buf, 0)
            self.ticks += self._pcm.last_request
            if self.anim_state == ANIM_TRANSITION_OUT:
                self._check_out()
                if self._events:
                    self._deliver()
            return 0
        if not self.started:
            if (
                self._kf.total > 0
                or self.audio_only
                or self.waited >= self.max_wait_samples
                or (self.audio_ended and self._pcm.available == 0)
            ):
                self.started = True
            else:
                self._pcm.read_into(buf, 0)
                self.waited += self._pcm.last_request
                self.ticks += self._pcm.last_request
                if self.anim_state == ANIM_TRANSITION_OUT:
                    self._check_out()
                    if self._events:
                        self._deliver()
                return 0
        limit = 1 << 62  # no limit
        if self.strict_sync and not self.audio_only and not self.anim_ended:
            total = self._kf.total
            if total > 0:
                # sample s may play once keyframe floor(s * fps / sr) is there:
                # s < ceil(total * sr / fps)
                limit = (total * self.sample_rate + self.fps - 1) // self.fps - self.played
        k = self._pcm.read_into(buf, limit)
        n = self._pcm.last_request
        self.ticks += n
        self.played += k
        self.samples_played += k
        unstall = False
        stall = False
        finished = False
        if k > 0 and self.stalled:
            self.stalled = False
            unstall = True
        if self.audio_ended and self._pcm.available == 0:
            finished = True
        elif k < n:
            self.underrun_samples += n - k
            if not self.stalled:
                self.stalled = True
                self.stalls += 1
                stall = True
        first = False
        if not self._first_sent and self._kf.total > 0 and not self.audio_only:
            self._first_sent = True
            first = True
        if first:
            self._emit(EV_FIRST_FRAME, self.conversation_id)
            # the transition in counts the samples read from this read on
            self._in_from = self.played - k
            self._set_anim(ANIM_TRANSITION_IN if self.transition_in_samples > 0 else ANIM_SPEAKING)
        if self.anim_state == ANIM_TRANSITION_IN:
            if self.played - self._in_from >= self.transition_in_samples:
                self._set_anim(ANIM_SPEAKING)
        elif self.anim_state == ANIM_TRANSITION_OUT:
            self._check_out()
        if unstall:
            self._emit(EV_STALL, False)
        if stall:
            self._emit(EV_STALL, True)
        if finished:
            self._stop(True)
        if self._events:  # (no work on a tick without events)
            self._deliver()
        return k

    def current_frame_into(self, buf):
        """Write the frame for the current audio position into ``buf``
        (float32, 120).  Speaking: keyframe ``floor(played * fps /
        sample_rate)``, blended with the next at the fractional part when
        ``linear``; the last keyframe while animation is late.  Otherwise the
        idle (the looped idle table at the reads' position, silence included),
        the transitions blending between the two (see :meth:`frame_at_into`)."""
        if not self._open:
            self._raise_not_open()
        if self.anim_state != ANIM_SPEAKING:
            self._compose(buf, 0, False)
            return
        total = self._kf.total
        pos = self.played * self.fps
        idx = pos // self.sample_rate
        if idx >= total:
            self._kf.copy_into(buf, total - 1)
            return
        rem = pos - idx * self.sample_rate
        if self.linear and rem != 0 and idx + 1 < total:
            # (1.0 * rem): a true division in the compiled engine too
            self._kf.blend_into(buf, idx, 1.0 * rem / self.sample_rate)
        else:
            self._kf.copy_into(buf, idx)

    def frame_at_into(self, buf, back):
        """The frame :meth:`current_frame_into` gave ``back`` samples of reads
        ago (``back >= 0``): what a listener hears now through an output
        latency of ``back`` samples.  The idle and the transition out go back
        ``back`` reads (not before the transition out began: its first pose,
        the last frame of the conversation, holds); the conversation's
        keyframe and transition in go back ``back`` samples of its audio (not
        before its start: the pose it began from holds).  Exact while the
        audio flowed over those reads; over a stall or a pause inside them the
        keyframe is that much later."""
        if not self._open:
            self._raise_not_open()
        if back < 0:
            raise ValueError(f"back must be >= 0 samples, got {back}")
        self._compose(buf, back, False)

    def frame_at_read_into(self, buf, position):
        """:meth:`frame_at_into` at the absolute read position ``position``
        (samples read since construction, silence included, as
        :attr:`ticks`): one call, so a read on another thread cannot slip
        between the position and the frame."""
        if not self._open:
            self._raise_not_open()
        back = self.ticks - position
        self._compose(buf, back if back > 0 else 0, False)

    # -- presentation internals --------------------------------------------

    def _compose(self, buf, back, snap):
        # The picture, a pure function of the counters: the background (the
        # snapshot blending to the idle over the transition out, by reads)
        # under the keyframe stream (blending in over the transition in, by
        # conversation samples).  snap: into the snapshot instead of buf.
        sr = self.sample_rate
        ticks = self.ticks - back
        if ticks < 0:
            ticks = 0
        ipos = ticks * self.fps
        iidx = ipos // sr
        it = 0.0
        if self.linear:
            it = 1.0 * (ipos - iidx * sr) / sr
        w_out = 1.0
        tout = self.transition_out_samples
        if tout > 0:
            since = ticks - self._end_at
            if since < tout:
                w_out = _smooth(1.0 * (since if since > 0 else 0) / tout)
        w_in = 0.0
        idx = -1
        t = 0.0
        if self.active and not self.audio_only and self._kf.total > 0:
            p = self.played - back
            if p < 0:
                p = 0
            tin = self.transition_in_samples
            if tin == 0:
                w_in = 1.0
            elif self._first_sent:
                since = p - self._in_from
                if since >= tin:
                    w_in = 1.0
                elif since > 0:
                    w_in = _smooth(1.0 * since / tin)
            if w_in > 0:
                pos = p * self.fps
                idx = pos // sr
                if self.linear:
                    t = 1.0 * (pos - idx * sr) / sr
        if snap:
            self._kf.snapshot(idx, t, iidx, it, w_out, w_in)
        else:
            self._kf.compose_into(buf, idx, t, iidx, it, w_out, w_in)

    def _begin_out(self):
        # The conversation stops showing: when its keyframes were showing, the
        # frame shown now becomes the snapshot the transition out starts from.
        # Returns the animation state before (the caller emits the change
        # after the conversation's own events).
        old = self.anim_state
        if old == ANIM_TRANSITION_IN or old == ANIM_SPEAKING or (
            self.transition_in_samples == 0 and not self.audio_only and self._kf.total > 0
        ):
            self._compose(None, 0, True)
            self._end_at = self.ticks
            self.anim_state = ANIM_TRANSITION_OUT if self.transition_out_samples > 0 else ANIM_IDLE
        return old

    def _anim_changed(self, old):
        if self.anim_state != old and self._anim_events:
            self._emit(EV_ANIMATION, self.anim_state)

    def _check_out(self):
        if self.ticks - self._end_at >= self.transition_out_samples:
            self._set_anim(ANIM_IDLE)

    def _set_anim(self, state):
        if state != self.anim_state:
            self.anim_state = state
            if self._anim_events:
                self._emit(EV_ANIMATION, state)

    # -- queries --------------------------------------------------------

    def frame_index(self) -> int:
        """Index of the keyframe the audio position calls for."""
        self._check_made()
        return self.played * self.fps // self.sample_rate

    def audio_time(self) -> float:
        """Seconds of the current conversation played so far."""
        self.check_open()
        return 1.0 * self.played / self.sample_rate  # (1.0 *): true division when compiled

    def buffered_frames(self):
        """Keyframes held from the current one on (not yet passed by the audio)."""
        if not self.active:
            return 0
        b = self._kf.total - self.played * self.fps // self.sample_rate
        return b if b > 0 else 0

    def stats(self) -> dict:
        """The counters (readable after close, not before ``__init__``)."""
        self._check_made()
        return {
            "state": self.state,
            "buffered_audio_ms": self._pcm.available * 1000.0 / self.sample_rate,
            "buffered_frames": self.buffered_frames(),
            "samples_received": self.samples_received,
            "samples_played": self.samples_played,
            "frames_received": self.frames_received,
            "frames_dropped_stale": self.frames_dropped_stale,
            "frames_ignored": self.frames_ignored,
            "underrun_samples": self.underrun_samples,
            "stalls": self.stalls,
            "conversations": self.conversations,
            "interrupts": self.interrupts,
            "server_errors": self.server_errors,
        }

    # -- internals -------------------------------------------------------

    def _reset(self):
        self._pcm.clear()
        self._kf.clear()
        self.active = False
        self.audio_ended = False
        self.audio_only = False
        self.anim_ended = False
        self.started = False
        self.paused = False
        self.stalled = False
        self._first_sent = False
        self.played = 0
        self.waited = 0

    def _stop(self, notify):
        was_stalled = self.stalled
        old_state = self.state
        old_anim = self.anim_state
        if notify and self.active:
            old_anim = self._begin_out()
        self._reset()
        self.state = IDLE
        if notify:
            if was_stalled:
                self._emit(EV_STALL, False)
            if old_state != IDLE:
                self._emit(EV_STATE, IDLE)
            self._anim_changed(old_anim)

    def _emit(self, kind, arg):
        # Queued only: delivered by _deliver once the call's state is settled.
        if self._notify is not None:
            self._events.append((kind, arg))

    def _deliver(self):
        """Hand the queued events to ``notify`` in order.  A call made from
        ``notify`` (or from another thread meanwhile) only queues: the loop
        already running delivers its events after the ones before them."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._events:
                kind, arg = self._events.pop(0)
                self._notify(kind, arg)
        finally:
            self._draining = False


def _not_open_by_default():
    # A pure engine made without __init__ behaves as the compiled one, whose
    # fields the type zeroes: not open, no parts, no counts.  (The compiled
    # type refuses new class attributes: nothing to do there.)
    defaults = {"_open": False, "closed": False, "active": False, "audio_ended": False,
                "_pcm": None, "_kf": None, "sample_rate": 0, "frames_dropped_stale": 0,
                "frames_ignored": 0, "server_errors": 0, "_convert": None, "anim_state": 0}
    try:
        for name, value in defaults.items():
            setattr(SyncEngine, name, value)
    except (AttributeError, TypeError):
        pass


def _smooth(x):
    """Smoothstep: 0 at 0, 1 at 1, first derivative 0 at both ends."""
    return x * x * (3.0 - 2.0 * x)


_not_open_by_default()
