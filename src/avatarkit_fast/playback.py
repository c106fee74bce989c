"""Playout drivers: what pulls audio and keyframes out of a controller.

- :class:`VirtualClock` drives a controller headless at the video rate, paced
  to real time or as fast as possible, yielding one :class:`Tick` (audio chunk,
  keyframe, time) per video frame: what a server-side renderer or an RTC
  video/audio source needs.
- :class:`SoundDevicePlayer` plays through a sound card (PortAudio via the
  optional ``sounddevice`` package, extra ``[audio]``).  Its callback calls
  ``read_audio_into`` and never raises or blocks: an exception is stashed,
  reported from another thread, and the stream keeps playing silence.

Both talk to the controller only through the :class:`Playout` protocol.

What is shown with what is heard:

- :class:`VirtualClock` pairs each tick's keyframe with the audio chunk that
  plays during that video frame: a renderer or an RTC source that sends the
  two together (an RTC track's video frame and audio frame of one timestamp)
  is in sync by construction; the receiving side's jitter buffer keeps them
  paired, so nothing here corrects for a latency.
- :class:`SoundDevicePlayer` reads audio ahead of the speaker by the device's
  output latency.  Its :meth:`~SoundDevicePlayer.current_frame_into` gives the
  keyframe of the sample leaving the speaker now, from PortAudio's DAC time of
  each block, extrapolated between callbacks on the monotonic clock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator, NamedTuple, Optional, Protocol

import numpy as np

from .audio import StreamResampler
from .audio.resample import MAX_RATE, MIN_RATE
from .errors import AudioDeviceError

__all__ = [
    "AudioDeviceError",
    "OutputResampler",
    "FrameRateInfo",
    "Playout",
    "SoundDevicePlayer",
    "Tick",
    "VirtualClock",
    "check_output_device",
]

logger = logging.getLogger(__name__)


class Playout(Protocol):
    """The playout side of an ``AvatarController``."""

    def read_audio_into(self, buf: Any) -> Any: ...

    def current_frame_into(self, buf: Any) -> Any: ...

    def get_audio_time(self) -> float: ...


class Tick(NamedTuple):
    """One video frame of playout.

    ``audio`` is the int16 chunk that plays during this frame, ``frame`` the
    float32 (120,) keyframe shown at its start, ``time`` the clock time in
    seconds (``index / fps``).  ``audio`` and ``frame`` are views of buffers the
    clock reuses: copy them to keep them past the next tick.
    """

    index: int
    time: float
    audio: np.ndarray
    frame: np.ndarray


def _output_rate(rate: Any, default: int) -> int:
    if rate is None:
        return default
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
        raise TypeError(f"output_sample_rate must be an int (Hz), got {type(rate).__name__}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"output_sample_rate must be in {MIN_RATE}..{MAX_RATE} Hz, got {rate}")
    return int(rate)
class FrameRateInfo(NamedTuple):
    """How a render loop keeps up, over the last ``window`` seconds.

    ``render_fps``: calls of ``current_frame_into`` per second;
    ``interval_p95_ms`` / ``interval_p99_ms``: the 95th / 99th percentile of
    the interval between them (ms; 0 with fewer than two calls);
    ``underflows``: device underflows reported to the audio callback so far;
    ``callbacks``: audio callbacks so far; ``latency``: the output latency
    (seconds) the heard position accounts for."""

    render_fps: float
    interval_p95_ms: float
    interval_p99_ms: float
    underflows: int
    callbacks: int
    latency: float
    window: float


def _controller_rate(controller: Any, sample_rate: Optional[int]) -> int:
    """The rate the controller's audio is read at: the controller's own.
    ``sample_rate`` is for a playout object without a ``sample_rate``
    attribute; given for one that has it, it must be the same (nothing here
    resamples: a different rate would play the audio too fast or too slow),
    else ValueError naming both."""
    own = getattr(controller, "sample_rate", None)
    if sample_rate is None:
        sample_rate = own
    if sample_rate is None:
        raise TypeError("sample_rate is needed: the controller has no sample_rate attribute")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise TypeError(f"sample_rate must be an int, got {type(sample_rate).__name__}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if own is not None and int(own) != int(sample_rate):
        raise ValueError(
            f"sample_rate {int(sample_rate)} Hz differs from the controller's {int(own)} Hz: "
            "the audio is not resampled, so the rates must agree"
        )
    return int(sample_rate)


class OutputResampler:
    """The audio of a playout object at another rate, streaming: reads
    ``in_rate`` samples from ``controller`` (so its clock, and the keyframe it
    shows, still count its own samples) and hands out ``out_rate`` samples
    (:class:`~avatarkit_fast.audio.StreamResampler`, soxr HQ).

    soxr works in blocks: its output runs up to about 60 ms behind its input
    (measured: 36 ms for 16 -> 48 kHz, 58 ms for 16 -> 44.1 kHz, whatever the
    chunk size).  So that every read finds its samples, the stream begins
    with :attr:`latency` seconds of silence (``LEAD_SECONDS``); from then on
    every sample read comes out, in order, that much later than the keyframe
    of its samples (delay the picture by :attr:`latency` for lip sync, as for
    a device's output latency).  A read that still finds too few is filled
    with silence and counted in :attr:`underruns`.  One thread at a time.
    """

    LEAD_SECONDS = 0.07

    def __init__(self, controller: Playout, in_rate: int, out_rate: int) -> None:
        self._ctrl = controller
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._rs = StreamResampler(self.in_rate, self.out_rate)
        self._lead = int(round(self.LEAD_SECONDS * self.out_rate))
        self._fifo = np.zeros(self._lead, np.int16)  # resampled samples not yet handed out
        self._scratch = np.zeros(0, np.int16)
        self._owed = 0  # input samples owed, times out_rate (read_into)
        self.underruns = 0

    @property
    def latency(self) -> float:
        """Seconds the audio handed out lags the controller's reads."""
        return self._lead / self.out_rate

    def _pull(self, n_in: int) -> None:
        if self._scratch.size < n_in:
            self._scratch = np.zeros(n_in, np.int16)
        chunk = self._scratch[:n_in]
        self._ctrl.read_audio_into(chunk)
        self.push(chunk)

    def push(self, chunk: np.ndarray) -> None:
        """Resample ``chunk`` (samples already read from the controller)."""
        y = self._rs.process(chunk)
        if y.size:
            self._fifo = np.concatenate((self._fifo, y)) if self._fifo.size else y.copy()

    def pop_into(self, out: np.ndarray) -> None:
        """Fill ``out`` with the next resampled samples (silence past them)."""
        k = min(out.size, self._fifo.size)
        out[:k] = self._fifo[:k]
        if k < out.size:
            out[k:] = 0
            self.underruns += 1
        self._fifo = self._fifo[k:]

    def read_into(self, out: np.ndarray) -> None:
        """Fill ``out`` (int16, ``out_rate``) with the next samples, reading
        from the controller what they take (``out.size * in_rate / out_rate``
        samples, rounded so that none is lost or read twice)."""
        self._owed += out.size * self.in_rate
        n_in = self._owed // self.out_rate
        self._owed -= n_in * self.out_rate
        if n_in:
            self._pull(n_in)
        self.pop_into(out)


class VirtualClock:
    """Drives ``controller`` at ``fps`` video frames a second.

    Each :meth:`step` takes the keyframe for the current audio position, then
    reads the audio that plays during the frame (``sample_rate / fps`` samples,
    spread exactly when that is not a whole number).  With ``realtime=True``
    steps are paced to the monotonic clock (a late step is not skipped; the
    clock catches up and counts it in :attr:`late_steps`); otherwise they run as
    fast as the caller iterates.  Iterating yields ticks until :meth:`stop` or
    ``duration`` seconds of clock time.

    ``sample_rate`` is the controller's (for a playout object without a
    ``sample_rate`` attribute, give it); a different one is a ValueError: to
    hand out audio at another rate, give ``output_sample_rate`` (8000..96000
    Hz, e.g. 48000 for an RTC stack): each tick's audio is then
    ``output_sample_rate / fps`` samples, resampled streaming from what the
    controller read (:class:`OutputResampler`; the keyframe is still the one
    for the controller's samples, and :attr:`samples` counts those).
    """

    def __init__(
        self,
        controller: Playout,
        fps: int = 25,
        *,
        sample_rate: Optional[int] = None,
        realtime: bool = False,
        duration: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
        output_sample_rate: Optional[int] = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self._ctrl = controller
        self.fps = int(fps)
        self.sample_rate = _controller_rate(controller, sample_rate)
        self.output_sample_rate = _output_rate(output_sample_rate, self.sample_rate)
        self._out: Optional[OutputResampler] = None
        if self.output_sample_rate != self.sample_rate:
            self._out = OutputResampler(controller, self.sample_rate, self.output_sample_rate)
            self._out_audio = np.zeros(-(-self.output_sample_rate // self.fps), dtype=np.int16)
        self.realtime = bool(realtime)
        self.duration = duration
        self._clock = clock
        self._sleep = sleep
        self._index = 0
        self._samples = 0
        self._stopped = False
        self._t0: Optional[float] = None
        self.late_steps = 0
        chunk_max = -(-self.sample_rate // self.fps)
        self._audio = np.zeros(chunk_max, dtype=np.int16)
        self._frame = np.zeros(120, dtype=np.float32)

    @property
    def output_latency(self) -> float:
        """Seconds the audio handed out lags the keyframe of its samples
        (0.0 at the controller's rate; see :class:`OutputResampler`)."""
        return 0.0 if self._out is None else self._out.latency

    @property
    def index(self) -> int:
        """Number of video frames stepped so far."""
        return self._index

    @property
    def time(self) -> float:
        """Clock time in seconds: frames stepped / fps."""
        return self._index / self.fps

    @property
    def samples(self) -> int:
        """Audio samples read so far."""
        return self._samples

    def chunk_size(self, index: int) -> int:
        """Samples read at frame ``index`` (exact over any run of frames)."""
        sr, fps = self.sample_rate, self.fps
        return (index + 1) * sr // fps - index * sr // fps

    def _due_in(self) -> float:
        """Seconds until the next step is due (paced clocks; counts late steps)."""
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        wait = self._t0 + self._index / self.fps - now
        if wait < -1.0 / self.fps:
            self.late_steps += 1
        return wait

    def _advance(self) -> Tick:
        i = self._index
        n = self.chunk_size(i)
        audio = self._audio[:n]
        self._ctrl.current_frame_into(self._frame)
        self._ctrl.read_audio_into(audio)
        self._index = i + 1
        self._samples += n
        if self._out is not None:
            osr = self.output_sample_rate
            m = (i + 1) * osr // self.fps - i * osr // self.fps
            self._out.push(audio)
            audio = self._out_audio[:m]
            self._out.pop_into(audio)
        return Tick(i, i / self.fps, audio, self._frame)

    def step(self) -> Tick:
        """Advance one video frame (sleeping until its time when paced)."""
        if self.realtime:
            wait = self._due_in()
            if wait > 0:
                self._sleep(wait)
        return self._advance()

    async def astep(self) -> Tick:
        """:meth:`step` for an asyncio program: a paced clock awaits its time
        instead of blocking the event loop (the network keeps running)."""
        import asyncio

        wait = self._due_in() if self.realtime else 0.0
        await asyncio.sleep(wait if wait > 0 else 0)
        return self._advance()

    def stop(self) -> None:
        """End iteration after the current tick."""
        self._stopped = True

    def _more(self) -> bool:
        if self._stopped:
            return False
        return self.duration is None or self._index < round(self.duration * self.fps)

    def __iter__(self) -> Iterator[Tick]:
        while self._more():
            yield self.step()

    async def __aiter__(self):
        """``async for tick in clock``: as iteration, awaiting each step's time."""
        while self._more():
            yield await self.astep()


def check_output_device(device: Any = None) -> str:
    """The name of the output device that :class:`SoundDevicePlayer` would use.

    Raises :class:`~avatarkit_fast.errors.AudioDeviceError`, saying what to do
    instead, when there is none."""
    sd = SoundDevicePlayer._import_sounddevice()
    try:
        info = sd.query_devices(device, kind="output")
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioDeviceError(_no_device(exc)) from None
    return str(info.get("name", "")) if isinstance(info, dict) else str(info)


def _no_device(exc: BaseException) -> str:
    return (f"no sound output device ({exc}); write to files instead: avatarkit-fast demo --out DIR, "
            "or drive the controller with avatarkit_fast.playback.VirtualClock")


class SoundDevicePlayer:
    """Plays a controller's audio through a PortAudio output stream.

    ``start()`` opens the device (default output unless ``device`` is given)
    and starts the stream; ``stop()`` or leaving the ``with`` block closes it.
    The callback fills each block with ``read_audio_into`` and nothing else.
    An exception from it is stashed (see :attr:`errors`), passed to
    ``on_error`` (or logged) from a reporter thread, and that block plays as
    silence.  Device underflows are counted in :attr:`underflows`.

    The stream opens at the controller's ``sample_rate`` when the device takes
    it, else at the device's default rate (or at ``output_sample_rate`` when
    given), resampling streaming on the way out (:class:`OutputResampler`):
    the keyframe is still the controller's, for the samples it played.
    :attr:`device_sample_rate` says which rate was opened, and so does a log
    line at ``start()``.  (``sample_rate`` is the controller's: a different
    one is a ValueError.)  Resampling in the callback allocates small numpy
    arrays (soxr's output); at the controller's rate nothing is allocated.

    Raises :class:`~avatarkit_fast.errors.AudioDeviceError` when PortAudio or an
    output device is missing; write to files instead (``avatarkit-fast demo
    --out DIR``) or drive the controller with :class:`VirtualClock`.
    """

    MAX_STASHED = 16

    def __init__(
        self,
        controller: Playout,
        *,
        sample_rate: Optional[int] = None,
        device: Any = None,
        blocksize: int = 0,
        latency: Any = "low",
        on_error: Optional[Callable[[BaseException], Any]] = None,
        output_sample_rate: Optional[int] = None,
        on_frame_rate_info: Optional[Callable[[FrameRateInfo], Any]] = None,
        frame_rate_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ctrl = controller
        self.sample_rate = _controller_rate(controller, sample_rate)
        self._output_rate = None if output_sample_rate is None else _output_rate(output_sample_rate, 0)
        self._device_rate: Optional[int] = None
        self._resampler: Optional[OutputResampler] = None
        self._device = device
        self._blocksize = int(blocksize)
        self._latency = latency
        self._on_error = on_error
        self._stream: Any = None
        self._reports: "queue.SimpleQueue[Optional[BaseException]]" = queue.SimpleQueue()
        self._reporter: Optional[threading.Thread] = None
        self.errors: list[BaseException] = []
        self.error_count = 0
        self.callbacks = 0
        self.frames_played = 0
        self.underflows = 0
        # The heard position: samples of reads = _offset + rate * clock(), the
        # offset estimated at each callback from its DAC time (smoothed, see
        # _callback); a render call never goes back (_last_pos).
        if not (frame_rate_interval > 0):
            raise ValueError(f"frame_rate_interval must be > 0 seconds, got {frame_rate_interval!r}")
        self._clock = clock
        self._samples_read = getattr(controller, "samples_read", None) is not None
        self._read = 0  # samples read by the callback (without samples_read)
        self._offset: Optional[float] = None
        self._lag = 0.0  # the last DAC latency seen, seconds
        self._last_pos = 0.0
        self._frame_at = getattr(controller, "frame_at_into", None)
        self._frame_at_read = getattr(controller, "frame_at_read_into", None)
        self._on_fri = on_frame_rate_info
        self._fri_interval = float(frame_rate_interval)
        self._renders = np.zeros(2048, dtype=np.float64)  # render call times (a ring)
        self._n_renders = 0
        self._fri_next: Optional[float] = None

    # -- the real-time part ------------------------------------------------------
    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        # Runs on PortAudio's thread: no locks, no I/O, no allocation beyond a view,
        # and never lets an exception escape into the C callback.
        try:
            self.callbacks += 1
            if status and getattr(status, "output_underflow", False):
                self.underflows += 1
            now = self._clock()
            r0 = self._ctrl.samples_read if self._samples_read else self._read
            resampler = self._resampler
            if resampler is None:
                self._ctrl.read_audio_into(outdata.reshape(-1))
                self._read += frames
            else:
                # The controller's samples this block took (without samples_read:
                # the block's span at the controller's rate).
                resampler.read_into(outdata.reshape(-1))
                self._read += int(round(frames * self.sample_rate / resampler.out_rate))
            self.frames_played += frames
            self._observe(r0, now, time_info)
        except BaseException as exc:  # noqa: BLE001 - a C callback must not raise
            try:
                outdata.fill(0)
            except BaseException:  # noqa: BLE001
                pass
            self.error_count += 1
            if len(self.errors) < self.MAX_STASHED:
                self.errors.append(exc)
                self._reports.put(exc)

    def _observe(self, r0: int, now: float, time_info: Any) -> None:
        # Sample r0 (this block's first) leaves the DAC at outputBufferDacTime
        # on the stream clock, which reads currentTime now: it plays
        # (dac - cur) from now.  So at monotonic time t the speaker plays
        # read position r0 + (t - now - (dac - cur)) * rate.
        dac = float(getattr(time_info, "outputBufferDacTime", 0.0) or 0.0)
        cur = float(getattr(time_info, "currentTime", 0.0) or 0.0)
        lag = dac - cur
        if not (0.0 <= lag < 5.0):  # no usable DAC time: the stream's latency
            lag = self.latency
        if self._resampler is not None:  # the resampler's lead comes on top
            lag += self._resampler.latency
        self._lag = lag
        rate = self.sample_rate
        est = r0 - (now + lag) * rate
        off = self._offset
        # Smoothed: DAC times jitter by a fraction of a millisecond from one
        # callback to the next; the position moves by an eighth of each
        # difference.  A jump past 20 ms (a restart, a stall of the device)
        # is taken at once.
        if off is None or abs(est - off) > 0.02 * rate:
            self._offset = est
        else:
            self._offset = off + (est - off) * 0.125

    def presentation_samples(self) -> float:
        """The read position (samples, fractional) of the sample leaving the
        speaker now; 0 before the first callback.  It rises steadily with the
        monotonic clock between callbacks and never goes back."""
        off = self._offset
        if off is None:
            return 0.0
        pos = off + self._clock() * self.sample_rate
        last = self._last_pos
        if pos < last:
            pos = last
        self._last_pos = pos
        return pos

    def presentation_time(self) -> float:
        """:meth:`presentation_samples` in seconds (of reads since the
        controller was made)."""
        return self.presentation_samples() / self.sample_rate

    def current_frame_into(self, buf: Any) -> None:
        """Write the keyframe of the sample leaving the speaker now into
        ``buf`` (float32, 120): the controller's frame (transitions, idle and
        ``interpolation="linear"`` blending included) at the heard position,
        the output latency and the time since the last callback accounted
        for.  Before the first callback, the controller's current frame.
        Also counts the call for :meth:`frame_rate_info`."""
        now = self._clock()
        i = self._n_renders
        self._renders[i % len(self._renders)] = now
        self._n_renders = i + 1
        ctrl = self._ctrl
        if self._offset is None or (self._frame_at is None and self._frame_at_read is None):
            ctrl.current_frame_into(buf)
        elif self._frame_at_read is not None and self._samples_read:
            self._frame_at_read(buf, int(self.presentation_samples()))
        else:
            back = self._read - int(self.presentation_samples())
            self._frame_at(buf, back if back > 0 else 0)
        if self._on_fri is not None:
            if self._fri_next is None:
                self._fri_next = now + self._fri_interval
            elif now >= self._fri_next:
                self._fri_next = now + self._fri_interval
                try:
                    self._on_fri(self.frame_rate_info())
                except Exception:  # noqa: BLE001 - a user callback must not stop rendering
                    logger.exception("on_frame_rate_info callback raised")

    def current_frame(self) -> np.ndarray:
        """:meth:`current_frame_into` into a new float32 (120,) array."""
        buf = np.empty(120, dtype=np.float32)
        self.current_frame_into(buf)
        return buf

    def frame_rate_info(self, window: Optional[float] = None) -> FrameRateInfo:
        """Render calls per second and the p95 / p99 interval between calls
        of :meth:`current_frame_into` over the last ``window`` seconds (default
        ``frame_rate_interval``; at most the last 2048 calls), and the
        callback underflows so far."""
        win = self._fri_interval if window is None else float(window)
        n = min(self._n_renders, len(self._renders))
        i = self._n_renders
        times = np.roll(self._renders, -(i % len(self._renders)))[-n:] if n else self._renders[:0]
        if n:
            times = times[times >= times[-1] - win]
        gaps = np.diff(times) * 1000.0
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        p95, p99 = (np.percentile(gaps, [95, 99]) if len(gaps) else (0.0, 0.0))
        return FrameRateInfo(float(fps), float(p95), float(p99), int(self.underflows), int(self.callbacks),
                             float(self._lag), win)

    # -- control -------------------------------------------------------------
    @staticmethod
    def _import_sounddevice():
        try:
            import sounddevice
        except ImportError:
            raise AudioDeviceError(
                "sound output needs the 'sounddevice' package (pip install 'avatarkit-fast[audio]'); "
                "without a sound device, write to files instead: avatarkit-fast demo --out DIR"
            ) from None
        except OSError as exc:
            raise AudioDeviceError(
                f"the PortAudio library is not installed ({exc}); on Debian/Ubuntu: "
                "apt-get install libportaudio2. Without a sound device, write to files instead: "
                "avatarkit-fast demo --out DIR"
            ) from None
        return sounddevice

    def start(self) -> "SoundDevicePlayer":
        """Open the output device and start playing."""
        if self._stream is not None:
            return self
        sd = self._import_sounddevice()
        try:
            info = sd.query_devices(self._device, kind="output")
            rate = self._choose_rate(sd, info)
            self._resampler = (
                None if rate == self.sample_rate else OutputResampler(self._ctrl, self.sample_rate, rate)
            )
            stream = sd.OutputStream(
                samplerate=rate,
                channels=1,
                dtype="int16",
                device=self._device,
                blocksize=self._blocksize,
                latency=self._latency,
                callback=self._callback,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(_no_device(exc)) from None
        self._device_rate = rate
        if rate == self.sample_rate:
            logger.info("playback: %s opened at the controller's %d Hz", info.get("name", "device"), rate)
        else:
            logger.info(
                "playback: %s opened at %d Hz; resampling from the controller's %d Hz",
                info.get("name", "device"), rate, self.sample_rate,
            )
        self._reporter = threading.Thread(target=self._report_loop, name="avatarkit-playback-errors", daemon=True)
        self._reporter.start()
        stream.start()
        self._stream = stream
        return self

    def stop(self) -> None:
        """Stop and close the stream; reported errors are flushed first."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()
        if self._reporter is not None:
            self._reports.put(None)
            self._reporter.join(timeout=5.0)
            self._reporter = None
        else:
            self._drain_reports()

    close = stop

    def _choose_rate(self, sd: Any, info: Any) -> int:
        """``output_sample_rate`` if given, else the controller's rate when
        the device takes it, else the device's default rate."""
        if self._output_rate is not None:
            return self._output_rate
        try:
            sd.check_output_settings(device=self._device, samplerate=self.sample_rate, channels=1, dtype="int16")
            return self.sample_rate
        except (sd.PortAudioError, ValueError):
            rate = int(round(float(info["default_samplerate"])))
            return _output_rate(rate, 0)

    @property
    def device_sample_rate(self) -> Optional[int]:
        """The rate the stream was opened at (None before :meth:`start`): the
        controller's, or the device's when it would not take that one."""
        return self._device_rate

    @property
    def resampling_latency(self) -> float:
        """Seconds the resampling adds to :attr:`latency` (0.0 when the
        device plays the controller's rate)."""
        return 0.0 if self._resampler is None else self._resampler.latency

    @property
    def resampling(self) -> bool:
        """True when the stream plays at another rate than the controller's."""
        return self._resampler is not None

    @property
    def active(self) -> bool:
        return self._stream is not None and bool(self._stream.active)

    @property
    def latency(self) -> float:
        """The device's output latency in seconds (0 when not started).

        The keyframe for what the listener hears now is the controller's
        current frame this much earlier in audio time."""
        return float(self._stream.latency) if self._stream is not None else 0.0

    def __enter__(self) -> "SoundDevicePlayer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _drain_reports(self) -> None:
        while True:
            try:
                exc = self._reports.get_nowait()
            except queue.Empty:
                return
            if exc is not None:
                self._report(exc)

    def _report_loop(self) -> None:
        while True:
            exc = self._reports.get()
            if exc is None:
                return
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        if self._on_error is not None:
            try:
                self._on_error(exc)
                return
            except Exception:  # noqa: BLE001 - a user callback must not stop reporting
                logger.exception("on_error callback raised")
        logger.error("audio callback raised; playing silence and going on", exc_info=exc)
