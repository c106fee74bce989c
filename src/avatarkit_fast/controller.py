"""Host-mode controller: the AvatarKit client SDKs' host-mode API in Python.

The network side hands in speech audio (:meth:`AvatarController.yield_audio_data`)
and the server's animation envelopes (:meth:`~AvatarController.yield_frames_data`);
the playout side (an audio device callback, a video or RTC pump) pulls audio with
:meth:`~AvatarController.read_audio_into` and the matching keyframe with
:meth:`~AvatarController.current_frame_into`.  The keyframe shown is a function of
the audio samples read, never of wall time.

This module is a thin façade over :mod:`avatarkit_fast.ring` (the PCM ring and the
keyframe store) and :mod:`avatarkit_fast.sync` (the engine); animation envelopes
are decoded by :mod:`avatarkit_fast.wire` straight into the keyframe store.

Choices where the product description is silent:

* The conversation id is a fresh id per conversation, in the service's form
  (:func:`avatarkit_fast._ids.new_id`: the UTC second and 12 random characters).
  :meth:`~AvatarController.get_current_conversation_id` returns it while the
  conversation is in progress (waiting for animation, playing or paused) and None
  once it has played to its end, after :meth:`~AvatarController.interrupt` and
  after :meth:`~AvatarController.close`.
* ``yield_frames_data`` returns True when the envelopes were taken for the current
  conversation (or ``[]``/None put it in audio-only mode), False when they were
  dropped (stale id, audio-only conversation).  Server error envelopes go to
  ``on_error`` in either case.  Envelopes of other types (not 4 or 5) are skipped.
* ``on_error`` receives an :class:`~avatarkit_fast.errors.AvatarKitError`:
  :class:`~avatarkit_fast.errors.ServerError` for a server error envelope, an
  ``AvatarKitError`` whose ``__cause__`` is the original exception when a user
  callback raised.  Callbacks run on the thread whose call caused the event (the
  consumer thread for end, stall and first frame): keep them short.
* Callbacks run once the call that caused them has settled its state (the
  conversation that ended is stopped, the new one holds its first audio), so
  a callback may call back into the controller (yield the next utterance,
  interrupt, pause, read the stats) and what it does stands.  Events come one
  at a time in the order of the changes: those caused by a call made from a
  callback, or by another thread while a callback runs, are delivered after
  the callback returns, by the call already delivering (so possibly on its
  thread), never nested and never lost.
* ``on_first_frame(conversation_id)`` fires once per conversation, at the first
  read at which a keyframe of it is current.
* ``pause()`` with no conversation in progress does nothing; a new conversation
  starts unpaused.  Every call after ``close()`` raises
  :class:`~avatarkit_fast.errors.ClosedError`, except ``close()`` itself (a no-op,
  as for files) and ``get_current_conversation_id()`` (None); the ``state``,
  ``closed`` and ``stats`` properties stay readable.
* What the picture shows (``on_animation_state``, :class:`AnimationState`):
  the idle between conversations (``idle="breathing"``, the default, a seeded
  procedural loop; ``idle=None`` the static ``idle_frame``; or the caller's
  keyframes looped), a blend in over ``transition_in`` seconds of the
  conversation's audio from its first keyframe on, the keyframe stream, and
  a blend out over ``transition_out`` seconds of reads (silence included)
  from the last frame shown back to the idle.  Smoothstep weights; every
  float of the keyframe blends linearly (poses as axis-angle vectors: at
  the small angles between an idle and a speaking pose this is the rotation
  path to within a fraction of a degree, and it keeps the two engines
  bit-identical).  The idle advances with every sample read, silence and
  pauses included, so a conversation starts from wherever the idle is and
  returns to where it has gone meanwhile.  An audio-only conversation shows
  the idle (its state stays ``IDLE``).  See docs/controller.md, "What a
  viewer sees at each moment".
* The last buffers passed to ``read_audio_into`` / ``current_frame_into`` stay
  exported (compiled engine) until other buffers are passed or ``close()``: the
  per-tick cost is then a pointer compare.  Such a buffer cannot be resized
  meanwhile.
"""

from __future__ import annotations

import enum
import logging
import math
import operator
import threading
from typing import Any, Callable, Optional

import numpy as np

from . import ring, sync, wire
from ._schema import KEYFRAME_FLOATS, SAMPLE_RATES
from ._ids import new_id
from ._report import report
from .audio import OggOpusDecoder, Pcm16Input, StreamResampler, volume_gain
from .audio.resample import MAX_RATE, MIN_RATE
from .errors import AvatarKitError, BufferFull, ClosedError, DecodeError, ServerError

__all__ = [
    "AvatarController",
    "ConversationState",
    "AnimationState",
    "ControllerStats",
    "SAMPLE_RATES",
    "SYNC_MODES",
    "INTERPOLATIONS",
    "INPUT_FORMATS",
]

logger = logging.getLogger(__name__)

SYNC_MODES = ("audio_independent", "strict_sync")
INPUT_FORMATS = ("pcm_s16le", "ogg_opus")
INTERPOLATIONS = ("none", "linear")

# Event kinds of the sync engine (same values in both twins).
_EV_STATE = 1
_EV_STALL = 2
_EV_FIRST_FRAME = 3
_EV_ANIMATION = 4


class ConversationState(enum.IntEnum):
    """Where the controller is: no conversation, one in progress, or paused."""

    IDLE = 0
    PLAYING = 1
    PAUSED = 2


class AnimationState(enum.IntEnum):
    """What the picture shows: the idle, the blend into a conversation's
    keyframes, the keyframes, the blend back to the idle."""

    IDLE = 0
    TRANSITION_IN = 1
    SPEAKING = 2
    TRANSITION_OUT = 3


class ControllerStats(dict):
    """A snapshot of the controller's counters; keys are also attributes.

    - ``buffered_audio_ms``: audio buffered and not yet read, in milliseconds.
    - ``buffered_frames``: keyframes held from the current one on.
    - ``frames_received``: keyframes taken for their (current) conversation.
    - ``frames_dropped_stale``: keyframes dropped for a stale conversation id.
    - ``frames_ignored``: keyframes dropped because their conversation is audio-only.
    - ``underrun_samples``: silence samples read inside a playing conversation
      before its audio ended (audio starvation, ``strict_sync`` waits).
    - ``stalls``: how many times such silence began.
    - ``conversations``: conversations started; ``interrupts``: conversations cut
      short (``interrupt()``, or a new conversation while one was in progress).
    - ``samples_received`` / ``samples_played``: whole PCM samples yielded / read
      as conversation audio (at ``sample_rate``, after resampling or decoding);
      ``server_errors``: server error envelopes seen.
    - ``samples_clipped``: input samples limited to int16 on the way in (float
      samples outside [-1, 1] or NaN; resampler overshoot of full-scale input).
    - ``state``: the :class:`ConversationState` at the snapshot.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _modules(impl: Optional[str]):
    """(tag, ring module, sync module) of one implementation, chosen as
    :func:`avatarkit_fast._compat.load_twin` chooses."""
    if impl is not None and impl not in ("c", "py"):
        raise ValueError(f"_impl must be 'c', 'py' or None, got {impl!r}")
    sync_mod = sync.module(impl)
    tag = "c" if sync_mod.__name__.endswith("_c") else "py"
    return tag, ring.module(tag), sync_mod


def _at_envelope(index: int, exc: DecodeError) -> DecodeError:
    """``exc`` again, naming the envelope of the list it came from."""
    err = DecodeError(f"envelope {index}: {exc}", exc.offset)
    err.envelope_index = index
    return err


def _check_callback(name: str, cb: Any) -> Any:
    if cb is not None and not callable(cb):
        raise TypeError(f"{name} must be callable or None, got {type(cb).__name__}")
    return cb


def _check_input_rate(rate: Any) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
        raise TypeError(f"input_sample_rate must be an int (Hz), got {type(rate).__name__}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"input_sample_rate must be in {MIN_RATE}..{MAX_RATE} Hz, got {rate}")


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, (bool, int, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


class AvatarController:
    """Host-mode playout of one avatar: speech audio and animation in, audio
    samples and the matching FLAME keyframe out.

    ``sample_rate``: one of 8000, 16000, 22050, 24000, 32000, 44100, 48000 (Hz) of
    the s16le mono PCM given and read.  ``fps``: keyframes per second of the
    animation (25 for AvatarKit).  ``sync_mode``: ``"audio_independent"`` (audio
    never waits for animation) or ``"strict_sync"`` (audio waits for the keyframe
    it needs).  ``interpolation``: ``"none"`` or ``"linear"``.
    ``max_frame_wait``: seconds of reads a conversation waits for its first
    animation before its audio starts anyway.  ``max_buffer_seconds``: cap of the
    buffered audio (and of the unplayed keyframes); past it ``BufferFull``.
    ``idle_frame``: the 120 floats shown outside a playing animation (zeros).
    ``input_sample_rate`` (8000..96000 Hz; default ``sample_rate``): the rate
    of the PCM yielded, resampled streaming (soxr) to ``sample_rate`` when it
    differs.  ``input_format``: ``"pcm_s16le"`` (bytes or arrays, see
    :meth:`yield_audio_data`) or ``"ogg_opus"`` (Ogg Opus bytes, decoded
    streaming to ``sample_rate``; needs the ``opus`` extra).  The sync rule
    stays ``floor(s * fps / sample_rate)`` on the samples played.
    ``idle_frame``: the 120 floats of the neutral pose (zeros), the idle's
    base.  ``transition_in`` / ``transition_out``: seconds of the blend from
    the pose showing into a conversation's keyframes (counted in its audio
    samples read from its first keyframe on) and from the last frame shown
    back to the idle (counted in samples read, silence included); 0 cuts.
    ``idle``: ``"breathing"`` (a procedural loop, see
    :mod:`avatarkit_fast.idle`, seeded by ``seed``), None (``idle_frame``
    still) or ``(k, 120)`` keyframes played in a loop at ``fps``.
    ``on_animation_state(AnimationState)``: the picture's state changes.

    Thread safety: one producer thread (``yield_*``) and one consumer thread
    (``read_audio*``, ``current_frame*``) may call at once; ``interrupt``, ``pause``,
    ``resume`` and ``close`` from any thread.

    ``_impl`` (``"c"`` or ``"py"``; default: compiled unless
    ``AVATARKIT_NO_EXTENSIONS``) picks the engine, so that tests and benchmarks
    can run the same behaviour on both.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        fps: int = 25,
        sync_mode: str = "audio_independent",
        interpolation: str = "none",
        on_conversation_state: Optional[Callable[[ConversationState], Any]] = None,
        on_error: Optional[Callable[[AvatarKitError], Any]] = None,
        on_first_frame: Optional[Callable[[str], Any]] = None,
        on_playback_stall: Optional[Callable[[bool], Any]] = None,
        *,
        max_frame_wait: float = 1.0,
        max_buffer_seconds: float = 300.0,
        idle_frame: Any = None,
        _impl: Optional[str] = None,
        input_sample_rate: Optional[int] = None,
        input_format: str = "pcm_s16le",
        transition_in: float = 0.2,
        transition_out: float = 0.8,
        idle: Any = "breathing",
        seed: int = 0,
        on_animation_state: Optional[Callable[["AnimationState"], Any]] = None,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
            raise TypeError(f"sample_rate must be an int, got {type(sample_rate).__name__}")
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"unsupported sample_rate {sample_rate}: expected one of {SAMPLE_RATES}")
        if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)):
            raise TypeError(f"fps must be an int, got {type(fps).__name__}")
        if not 1 <= fps <= 1000:
            raise ValueError(f"fps must be in 1..1000, got {fps}")
        if not isinstance(sync_mode, str) or not isinstance(interpolation, str):
            raise TypeError("sync_mode and interpolation must be str")
        if sync_mode not in SYNC_MODES:
            raise ValueError(f"sync_mode must be one of {SYNC_MODES}, got {sync_mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        for name, value in (("max_frame_wait", max_frame_wait), ("max_buffer_seconds", max_buffer_seconds),
                            ("transition_in", transition_in), ("transition_out", transition_out)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not (max_frame_wait >= 0 and math.isfinite(max_frame_wait)):
            raise ValueError(f"max_frame_wait must be a finite number >= 0, got {max_frame_wait}")
        if not (max_buffer_seconds > 0 and math.isfinite(max_buffer_seconds)):
            raise ValueError(f"max_buffer_seconds must be a finite number > 0, got {max_buffer_seconds}")
        for name, value in (("transition_in", transition_in), ("transition_out", transition_out)):
            if not (0 <= value <= 60):
                raise ValueError(f"{name} must be in 0..60 seconds, got {value}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        idle_table = self._idle_table(idle, idle_frame, int(seed), int(fps))

        if input_sample_rate is not None:
            _check_input_rate(input_sample_rate)
        if not isinstance(input_format, str):
            raise TypeError(f"input_format must be a str, got {type(input_format).__name__}")
        if input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
        if input_format == "ogg_opus" and input_sample_rate is not None:
            raise ValueError(
                "input_sample_rate is for PCM: an Ogg Opus stream carries its own rate "
                "(decoded at 48 kHz and resampled to sample_rate)"
            )

        self._on_state = _check_callback("on_conversation_state", on_conversation_state)
        self._on_error = _check_callback("on_error", on_error)
        self._on_first_frame = _check_callback("on_first_frame", on_first_frame)
        self._on_stall = _check_callback("on_playback_stall", on_playback_stall)
        self._on_animation = _check_callback("on_animation_state", on_animation_state)

        self.sample_rate = int(sample_rate)
        self.fps = int(fps)
        self.sync_mode = sync_mode
        self.interpolation = interpolation
        self.max_frame_wait = float(max_frame_wait)
        self.max_buffer_seconds = float(max_buffer_seconds)
        self.transition_in = float(transition_in)
        self.transition_out = float(transition_out)
        self.idle = "breathing" if isinstance(idle, str) else ("frame" if idle is None else "frames")
        self.seed = int(seed)

        # What turns the audio given into s16le PCM at sample_rate: the
        # conversion of arrays (in the engine's yield), and a streaming stage
        # (resampler or Ogg Opus decoder) whose state belongs to the conversation.
        self._input = Pcm16Input("pcm")
        tag, ring_mod, sync_mod = _modules(_impl)
        self._impl = tag
        self._pcm = ring_mod.PcmRing(max(1, int(round(max_buffer_seconds * sample_rate))))
        # Unplayed keyframes for the same span, plus the current and next one.
        self._frames = ring_mod.KeyframeStore(int(math.ceil(max_buffer_seconds * fps)) + 2)
        if idle_frame is not None:
            self._frames.set_idle(idle_frame)
        self._frames.set_idle_table(idle_table)
        self._engine = sync_mod.SyncEngine(
            self._pcm,
            self._frames,
            self.sample_rate,
            self.fps,
            sync_mode == "strict_sync",
            interpolation == "linear",
            int(round(max_frame_wait * sample_rate)),
            self._notify,
            self._yield_new,
            self._input,
            int(round(transition_in * sample_rate)),
            int(round(transition_out * sample_rate)),
            on_animation_state is not None,
        )
        self.input_format = input_format
        self.input_sample_rate = self.sample_rate if input_sample_rate is None else int(input_sample_rate)
        self._volume = 1.0
        self._stage: Any = None
        if input_format == "ogg_opus":
            self._stage = OggOpusDecoder(self.sample_rate)
        elif self.input_sample_rate != self.sample_rate:
            self._stage = StreamResampler(self.input_sample_rate, self.sample_rate)
        # Serialises the producer side (and, with the pure-Python engine, every
        # call).  Reentrant: callbacks run under it and may call back in.
        self._lock = threading.RLock()
        self._in_on_error = False
        if tag == "c":
            # The compiled engine runs each call holding the GIL, atomically:
            # the playout methods and the yield of audio into a conversation in
            # progress need no lock, so bind them straight through (the tick is
            # then two C calls and nothing else; a new conversation falls back
            # to _yield_new).
            self.read_audio_into = self._engine.read_audio_into  # type: ignore[method-assign]
            self.current_frame_into = self._engine.current_frame_into  # type: ignore[method-assign]
            self.frame_at_into = self._engine.frame_at_into  # type: ignore[method-assign]
            self.frame_at_read_into = self._engine.frame_at_read_into  # type: ignore[method-assign]
            if self._stage is None:
                # bytes stay two C calls; arrays are converted in the engine too
                self.yield_audio_data = self._engine.yield_audio  # type: ignore[method-assign]

    @staticmethod
    def _idle_table(idle: Any, idle_frame: Any, seed: int, fps: int) -> np.ndarray:
        base = None
        if idle_frame is not None:
            base = np.asarray(idle_frame, dtype=np.float32).reshape(-1)
            if base.shape != (KEYFRAME_FLOATS,):
                raise ValueError(f"idle frame must hold {KEYFRAME_FLOATS} floats, got {base.size}")
        if isinstance(idle, str):
            if idle != "breathing":
                raise ValueError(f"idle must be 'breathing', None or (k, 120) keyframes, got {idle!r}")
            from .idle import breathing

            return breathing(seed, fps, base)
        if idle is None:
            return (base if base is not None else np.zeros(KEYFRAME_FLOATS, np.float32)).reshape(1, -1)
        try:
            arr = np.asarray(idle, dtype=np.float32)
        except (TypeError, ValueError):
            raise TypeError(f"idle must be 'breathing', None or (k, 120) keyframes, got {type(idle).__name__}") from None
        if arr.ndim != 2 or arr.shape[1] != KEYFRAME_FLOATS or arr.shape[0] < 1:
            raise ValueError(f"idle keyframes must have shape (k >= 1, {KEYFRAME_FLOATS}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("idle keyframes must be finite")
        return arr

    # -- producer side ---------------------------------------------------------

    def yield_audio_data(self, pcm: Any, end: bool = False) -> str:
        """Buffer audio for the current conversation; returns its id.

        ``pcm``: with ``input_format="pcm_s16le"``, raw s16le mono bytes (any
        bytes-like, any length: a half sample is carried), or a numpy array of
        samples: ``int16``, or ``float32`` / ``float64`` in [-1, 1] (scaled by
        32768, rounded to nearest, limited, the limited samples counted in
        ``stats.samples_clipped``), of shape ``(n,)`` or ``(n, 1)``; at
        ``input_sample_rate``, resampled streaming to ``sample_rate`` (the
        filter state kept from call to call, its tail flushed at
        ``end=True``).  With ``input_format="ogg_opus"``: the next bytes of an
        Ogg Opus stream, in chunks of any size, decoded streaming; the
        conversation is exactly what the stream decodes to, and ``end=True``
        must end the stream (its end-of-stream page).

        The first call, and the first call after one with ``end=True``, starts
        a new conversation (cutting off one still in progress).  Raises
        TypeError / ValueError for audio that is not taken (naming its dtype or
        shape), DecodeError for a malformed Ogg Opus stream, BufferFull past
        the cap: in each case nothing of the call is kept and nothing buffered
        is lost.
        """
        if end.__class__ is not bool:
            end = _as_bool(end, "end")
        if self._stage is not None:
            return self._yield_staged(pcm, end)
        with self._lock:
            return self._engine.yield_audio(pcm, end)

    def _yield_staged(self, data: Any, end: bool) -> str:
        # Audio that is not plain s16le bytes at sample_rate: converted, then
        # yielded as bytes; the clip count and the stage's state move on only
        # when the yield succeeded (a call succeeds whole or changes nothing).
        inp = self._input
        with self._lock:
            engine = self._engine
            engine.check_open()
            clipped = inp.samples_clipped
            stage = self._stage
            try:
                pcm = self._through_stage(stage, data, end)
                if engine.push_audio(pcm, end) >= 0:
                    return engine.conversation_id
                return self._yield_new(pcm, end)
            except BaseException:
                inp.samples_clipped = clipped
                raise

    def _through_stage(self, stage: Any, data: Any, end: bool) -> Any:
        """``data`` through the streaming stage, as s16le bytes at
        sample_rate; BufferFull before the stage moves on when its output
        could pass the cap."""
        engine = self._engine
        fresh = not engine.accepting()
        room = self._pcm.max_samples - (0 if fresh else self._pcm.available)
        if fresh:
            stage.reset()  # a new conversation: nothing of the last one's stream
        if isinstance(stage, OggOpusDecoder):
            try:
                memoryview(data)
            except TypeError:
                raise TypeError(
                    f"Ogg Opus audio must be a bytes-like object, got {type(data).__name__}"
                ) from None
            out = stage.feed(data, last=end, room=room)
            return out.tobytes()
        pcm = self._input.convert(data)
        nbytes = memoryview(pcm).nbytes
        most = stage.most_out((nbytes + 1) // 2)
        if most > room:
            raise BufferFull(
                f"PCM buffer full: {nbytes // 2} samples at {stage.in_rate} Hz resample to up "
                f"to {most} samples, {room} fit"
            )
        out = stage.process(pcm)
        if end:
            tail = stage.flush()
            if tail.size:
                out = np.concatenate((out, tail)) if out.size else tail
        return out.tobytes()

    def _yield_new(self, pcm: Any, end: bool) -> str:
        engine = self._engine
        with self._lock:
            if engine.push_audio(pcm, end) >= 0:  # another thread began one
                return engine.conversation_id
            try:
                nbytes = memoryview(pcm).nbytes
            except TypeError:
                raise TypeError(
                    f"pcm must be a bytes-like object, got {type(pcm).__name__}"
                ) from None
            if nbytes // 2 > self._pcm.max_samples:
                raise BufferFull(
                    f"{nbytes // 2} samples exceed the audio cap of {self._pcm.max_samples}"
                )
            cid = new_id()
            # One engine call: the events of the start are delivered with its
            # audio already in, so a callback sees (and may act on) both.
            engine.begin(cid, pcm, end)
            return cid

    def yield_frames_data(self, envelopes: Any, conversation_id: Optional[str]) -> bool:
        """Take the server's serialized envelopes for ``conversation_id``.

        Animation for the current conversation is decoded straight into the
        keyframe store; ``[]`` or None puts it in audio-only mode.  Envelopes for
        another id are dropped and counted.  A malformed envelope raises
        DecodeError (``envelope N: ...``, with ``envelope_index`` N, its index
        in ``envelopes``) and nothing of the call is kept, nor is anything when
        an envelope's keyframes would pass the wire decoders' output/input
        limit (``max_ratio``, default 8 times its bytes); server error
        envelopes go to ``on_error``.  Returns True if taken, False if dropped.
        """
        self._engine.check_open()
        if envelopes is None:
            envs: Any = ()
        elif isinstance(envelopes, (list, tuple)):
            envs = envelopes
        else:
            raise TypeError(
                f"envelopes must be a list of bytes-like envelopes or None, got {type(envelopes).__name__}"
            )
        for env in envs:
            if not isinstance(env, (bytes, bytearray, memoryview)):
                raise TypeError(f"an envelope must be bytes-like, got {type(env).__name__}")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise TypeError(f"conversation_id must be a str, got {type(conversation_id).__name__}")
        engine = self._engine
        errors: list[AvatarKitError] = []
        with self._lock:
            current = engine.conversation_id if engine.active else None
            if conversation_id is None or conversation_id != current:
                drop = "stale"
            elif not envs:
                engine.set_audio_only()
                return True
            elif engine.audio_only:
                drop = "ignored"
            else:
                drop = ""
                epoch = self._frames.epoch
        if drop:
            n = sum(self._count(env, errors) for env in envs)
            with self._lock:
                if drop == "stale":
                    engine.drop_stale(n)
                else:
                    engine.ignore_frames(n)
            self._report_all(errors)
            return False
        # Every header first (validated, the output/input ratio limit of the
        # wire decoders included, so what the call adds to the store is bounded
        # by DEFAULT_MAX_RATIO times its bytes), then room for all the
        # keyframes at once, then one decode of each envelope into the store.
        heads = [self._peek(i, env) for i, env in enumerate(envs)]
        total = sum(h.n_keyframes for h in heads if h.type == 5)
        end = False
        try:
            if total > self._frames.free_rows().shape[0]:
                with self._lock:
                    engine.reserve_frames(total)
            for i, (env, head) in enumerate(zip(envs, heads)):
                if head.type == 4:
                    errors.append(self._server_error(wire.decode_message(env)))
                elif head.type == 5:
                    self._decode_one(i, env)
                    end = end or bool(head.end)
        except BaseException:
            with self._lock:
                self._frames.rollback()
            raise
        with self._lock:
            pending = self._frames.pending
            taken = engine.commit_frames(epoch, end)
            if taken == 0 and pending:
                # The conversation changed while we decoded: these are stale now.
                engine.drop_stale(pending)
                taken = -1
        self._report_all(errors)
        return taken >= 0

    @staticmethod
    def _peek(index: int, env: Any) -> Any:
        try:
            return wire.peek_animation(env)
        except DecodeError as exc:
            raise _at_envelope(index, exc) from exc

    def _decode_one(self, index: int, env: Any) -> None:
        frames = self._frames
        try:
            msg = wire.decode_animation_into(env, frames.free_rows())
        except DecodeError as exc:  # pragma: no cover - the peek accepted it
            raise _at_envelope(index, exc) from exc
        with self._lock:
            frames.add_pending(len(msg.frames))

    def _count(self, env: Any, errors: list) -> int:
        try:
            head = wire.peek_animation(env)
        except DecodeError:
            return 0
        if head.type == 4:
            errors.append(self._server_error(wire.decode_message(env)))
        return head.n_keyframes

    def _server_error(self, msg: Any) -> ServerError:
        with self._lock:
            self._engine.count_server_error()
        err = ServerError(f"motion server error {msg.code}: {msg.message}", msg.code)
        err.server_message = msg.message  # type: ignore[attr-defined]
        err.req_id = msg.req_id  # type: ignore[attr-defined]
        return err

    def get_current_conversation_id(self) -> Optional[str]:
        """The id of the conversation in progress, or None."""
        engine = self._engine
        return engine.conversation_id if engine.active else None

    def interrupt(self) -> None:
        """Stop at once: buffers cleared, reads return silence, state IDLE, late
        animation for the old conversation dropped."""
        with self._lock:
            self._engine.interrupt()
            if self._stage is not None:
                self._stage.reset()

    def clear(self) -> None:
        """Drop everything buffered (the audio and keyframes of the
        conversation in progress, and anything still arriving for it) and
        return to the idle through the transition out, as the Web SDK's
        ``clear``.  The controller holds one conversation at a time, so this
        is :meth:`interrupt` (counted as one); with nothing in progress it
        does nothing."""
        with self._lock:
            self._engine.clear()

    def pause(self) -> None:
        """Reads return silence and the clock stands until :meth:`resume`."""
        with self._lock:
            self._engine.pause()

    def resume(self) -> None:
        """Continue from the same sample."""
        with self._lock:
            self._engine.resume()

    def close(self) -> None:
        """Drop everything and release the caller's buffers; every later call
        raises ClosedError.  A second ``close()`` does nothing, as for files."""
        with self._lock:
            self._engine.close()
            self._pcm.release_buffers()
            self._frames.release_buffers()

    def __enter__(self) -> "AvatarController":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._engine.closed:
            self.close()

    # -- consumer side -----------------------------------------------------------

    def read_audio_into(self, buf: Any) -> int:
        """Fill ``buf`` (a writable C-contiguous int16 buffer) with the next
        samples, silence where no conversation audio is due; returns how many
        samples of conversation audio it holds (at the start of ``buf``)."""
        with self._lock:
            return self._engine.read_audio_into(buf)

    def current_frame_into(self, buf: Any) -> None:
        """Write the keyframe for the current audio position into ``buf`` (a
        writable C-contiguous float32 buffer of 120 items)."""
        with self._lock:
            self._engine.current_frame_into(buf)

    def frame_at_into(self, buf: Any, back: int) -> None:
        """Write the frame :meth:`current_frame_into` gave ``back`` samples of
        reads ago (``back >= 0``): the frame of the sample a listener hears
        through an output latency of ``back`` samples (transitions and idle
        included).  Clamped at conversation boundaries: before a
        conversation's start the pose it started from, before a transition
        out began the frame it began from (the conversation's last)."""
        back = operator.index(back)  # (an int, as the compiled engine's C argument)
        with self._lock:
            self._engine.frame_at_into(buf, back)

    def frame_at_read_into(self, buf: Any, position: int) -> None:
        """:meth:`frame_at_into` at the absolute read position ``position``
        (as :attr:`samples_read` counts), in one call: for a render thread
        while another thread reads the audio."""
        position = operator.index(position)
        with self._lock:
            self._engine.frame_at_read_into(buf, position)

    def read_audio(self, n: int) -> np.ndarray:
        """The next ``n`` samples as a new int16 array (see :meth:`read_audio_into`)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        buf = np.empty(int(n), dtype=np.int16)
        self.read_audio_into(buf)
        return buf

    def current_frame(self) -> np.ndarray:
        """The keyframe for the current audio position, a new float32 (120,) array."""
        buf = np.empty(KEYFRAME_FLOATS, dtype=np.float32)
        self.current_frame_into(buf)
        return buf

    def get_audio_time(self) -> float:
        """Seconds of the current conversation played (0.0 outside one)."""
        return self._engine.audio_time()

    # -- state -----------------------------------------------------------------

    def set_volume(self, volume: float) -> None:
        """Playout volume in [0.0, 1.0] (1.0: as given), applied to the
        samples read from now on, in the read itself (no allocation): each
        sample ``x`` becomes ``(x * g + 16384) >> 15`` with
        ``g = round(volume * 32768)``, as :func:`avatarkit_fast.audio.apply_volume_into`.
        It changes neither the samples consumed nor the keyframe shown.
        Raises TypeError for a non-number, ValueError outside [0, 1]."""
        gain = volume_gain(volume)
        with self._lock:
            self._engine.check_open()
            self._pcm.set_gain(gain)
            self._volume = float(volume)

    def get_volume(self) -> float:
        """The playout volume set by :meth:`set_volume` (1.0 at first)."""
        return self._volume

    @property
    def state(self) -> ConversationState:
        return ConversationState(self._engine.state)

    @property
    def animation_state(self) -> AnimationState:
        """What the picture shows now (see :class:`AnimationState`)."""
        return AnimationState(self._engine.anim_state)

    @property
    def samples_read(self) -> int:
        """Samples read since construction, silence included (the idle's clock)."""
        return int(self._engine.ticks)

    @property
    def closed(self) -> bool:
        return bool(self._engine.closed)

    @property
    def engine_kind(self) -> str:
        """``"c"`` (the compiled engine) or ``"py"`` (its pure-Python twin)."""
        return self._impl

    def playout_engine(self) -> Any:
        """The sync engine this controller's playout calls go to (a
        ``_sync_c.SyncEngine`` when :attr:`engine_kind` is ``"c"``), for
        :class:`~avatarkit_fast.group.SessionGroup` to tick many controllers
        in one C loop.  Its ``read_audio_into`` and ``current_frame_into``
        are this controller's; call nothing else on it."""
        return self._engine

    @property
    def stats(self) -> ControllerStats:
        """A snapshot of the counters (see :class:`ControllerStats`)."""
        with self._lock:
            snap = ControllerStats(self._engine.stats())
            clipped = self._input.samples_clipped
            if self._stage is not None:
                clipped += self._stage.samples_clipped
            snap["samples_clipped"] = clipped
        snap["state"] = ConversationState(snap["state"])
        return snap

    def __repr__(self) -> str:
        return (
            f"<AvatarController {self.sample_rate} Hz {self.fps} fps {self.sync_mode} "
            f"{self.interpolation} {self.state.name} impl={self._impl}>"
        )

    # -- events ------------------------------------------------------------------

    def _notify(self, kind: int, arg: Any) -> None:
        # Called by the engine, possibly from the consumer thread inside a read:
        # never lets an exception escape into the engine.
        if kind == _EV_STATE:
            cb, args, name = self._on_state, (ConversationState(arg),), "on_conversation_state"
        elif kind == _EV_STALL:
            cb, args, name = self._on_stall, (bool(arg),), "on_playback_stall"
        elif kind == _EV_ANIMATION:
            cb, args, name = self._on_animation, (AnimationState(arg),), "on_animation_state"
        elif kind == _EV_FIRST_FRAME:
            # arg: the id of the conversation whose frame it was (delivery
            # comes after the read, which may have ended that conversation)
            cb, args, name = self._on_first_frame, (arg,), "on_first_frame"
        else:  # pragma: no cover
            return
        if cb is None:
            return
        try:
            cb(*args)
        except Exception as exc:
            err = AvatarKitError(f"{name} callback raised {type(exc).__name__}: {exc}")
            err.__cause__ = exc
            self._report(err)

    def _report_all(self, errors: list) -> None:
        for err in errors:
            self._report(err)

    def _report(self, err: AvatarKitError) -> None:
        # The guard: an error raised while on_error runs is logged, not re-reported.
        cb = None if self._in_on_error else self._on_error
        self._in_on_error = True
        try:
            report(cb, err, logger, level=logging.ERROR)
        finally:
            self._in_on_error = False
