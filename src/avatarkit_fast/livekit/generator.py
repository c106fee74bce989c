"""AvatarKitVideoGenerator: a LiveKit ``VideoGenerator`` over an AvatarSession.

The agent's speech goes up through the session (which yields it to its
controller); the controller plays it against the animation that comes back.
Per video frame the generator reads one frame's worth of audio from the
controller, draws the keyframe the controller holds for it, and yields the
picture and then exactly the conversation samples of that frame: silence is
never yielded as speech, so the :class:`~livekit.agents.voice.avatar.AvatarRunner`'s
playback position (the sum of the audio it was given) is the speech played.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator, Optional

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, AvatarOptions, VideoGenerator

from .._schema import KEYFRAME_FLOATS
from ..audio import StreamResampler
from ..errors import AvatarKitError
from ._render import Renderer, as_renderer

__all__ = ["AvatarKitVideoGenerator"]

logger = logging.getLogger("avatarkit_fast.livekit")



def _controller_of(session: Any) -> Any:
    controller = getattr(session, "controller", None)
    if controller is None:
        raise TypeError(f"{type(session).__name__} is not an AvatarSession (it has no controller)")
    return controller


def _mono_int16(frame: rtc.AudioFrame) -> np.ndarray:
    samples = np.frombuffer(frame.data, dtype=np.int16)
    channels = frame.num_channels
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return samples


class AvatarKitVideoGenerator(VideoGenerator):
    """A LiveKit ``VideoGenerator`` over a started ``AvatarSession``.

    - :meth:`push_audio` sends the agent's audio up through the session,
      resampled to the session's rate; ``AudioSegmentEnd`` ends the utterance.
      The next segment's audio waits (back-pressure on the runner's reader)
      until the one playing has played to its end or been cleared, because a
      new utterance would cut the playing one off.
    - Iteration yields, every ``1/fps`` seconds on its own clock, the rendered
      ``rtc.VideoFrame`` and then that frame's conversation samples as one
      ``rtc.AudioFrame`` at ``audio_sample_rate`` (none when the frame holds no
      speech: idle frames between utterances are video alone), and
      ``AudioSegmentEnd`` once an utterance has played to its end (never after
      a clear).  The schedule runs ``audio_lead`` seconds ahead of real time,
      which is the audio the synchronizer holds: enough that its source never
      runs dry between two frames, little enough that an interrupt is heard at
      once and video and audio reach the track together.
    - :meth:`clear_buffer` stops the controller at once, empties the
      synchronizer's video queue (:meth:`use_synchronizer`), interrupts the
      request on the motion server, and returns once no frame of the old
      utterance is on its way to the runner.  The speech already handed to
      the audio source (at most ``audio_lead`` and one frame) plays out, so
      that the ``playback_position`` the runner reports (the audio it was
      given) is exactly the speech that reached the track; with
      ``clear_audio_queue=True`` that audio is dropped too (the last speech
      comes a few milliseconds sooner, and the reported position then counts
      up to that much audio that was never heard).

    If the session cannot send (it failed or closed), the audio still plays,
    without animation, so every segment still ends and the agent never waits
    for a ``playback_finished`` that cannot come.
    """

    def __init__(
        self,
        session: Any,
        *,
        renderer: Any = None,
        width: int = 256,
        height: int = 256,
        audio_sample_rate: Optional[int] = None,
        audio_lead: float = 0.02,
        clear_audio_queue: bool = False,
    ) -> None:
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 4096:
                raise ValueError(f"{name} must be an int in 16..4096, got {value!r}")
        if not 0.0 <= audio_lead <= 0.5:
            raise ValueError(f"audio_lead must be in 0..0.5 seconds, got {audio_lead!r}")
        self._session = session
        self._controller = _controller_of(session)
        self.sample_rate = int(self._controller.sample_rate)
        self.fps = int(self._controller.fps)
        if self.sample_rate % self.fps:
            raise ValueError(f"{self.sample_rate} Hz is not a whole number of samples per frame at {self.fps} fps")
        self.audio_sample_rate = int(audio_sample_rate or self.sample_rate)
        self.width = width
        self.height = height
        self.audio_lead = float(audio_lead)
        self.clear_audio_queue = bool(clear_audio_queue)
        self._renderer: Renderer = as_renderer(renderer, width, height)
        self._samples_per_frame = self.sample_rate // self.fps
        self._pcm = np.zeros(self._samples_per_frame, np.int16)
        self._keyframe = np.zeros(KEYFRAME_FLOATS, np.float32)
        self._rgb = np.zeros((height, width, 3), np.uint8)
        self._rgba = np.full((height, width, 4), 255, np.uint8)
        self._last_keyframe: Optional[np.ndarray] = None
        self._last_picture = b""
        self._in_resampler: Optional[StreamResampler] = None
        self._out_resampler = StreamResampler(self.sample_rate, self.audio_sample_rate)
        self._av_sync: Optional[rtc.AVSynchronizer] = None
        # The utterance in progress: its conversation id, whether its end was sent.
        self._segment: Optional[str] = None
        self._segment_sent_end = False
        self._segment_open = False  # audio of the utterance has been pushed
        self._empty_end = False  # a segment without audio ended: yield its end
        self._idle = asyncio.Event()
        self._idle.set()
        # Bumped by clear_buffer: anything read or pushed before it is stale.
        self._epoch = 0
        self._resumed = asyncio.Event()  # the iterator came back from a yield
        self._resumed.set()
        self._closed = False
        self.frames = 0
        self.speech_samples = 0
        self.segments_ended = 0
        self.clears = 0

    # -- wiring -----------------------------------------------------------------

    def use_synchronizer(self, av_sync: rtc.AVSynchronizer) -> None:
        """The runner's synchronizer (``runner.av_sync``), whose queue
        :meth:`clear_buffer` empties."""
        self._av_sync = av_sync

    def avatar_options(self, audio_channels: int = 1) -> AvatarOptions:
        """The ``AvatarOptions`` for a runner over this generator."""
        return AvatarOptions(
            video_width=self.width,
            video_height=self.height,
            video_fps=float(self.fps),
            audio_sample_rate=self.audio_sample_rate,
            audio_channels=audio_channels,
        )

    # -- audio in -----------------------------------------------------------------

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        """Send one frame of the agent's audio up (or end the utterance)."""
        epoch = self._epoch
        if isinstance(frame, AudioSegmentEnd):
            if not self._segment_open:
                self._empty_end = True
                return
            tail = self._in_resampler.flush() if self._in_resampler is not None else np.empty(0, np.int16)
            await self._send(tail, True, epoch)
            return
        if not isinstance(frame, rtc.AudioFrame):
            raise TypeError(f"push_audio takes an rtc.AudioFrame or AudioSegmentEnd, got {type(frame).__name__}")
        if not self._segment_open:
            # A new utterance: wait for the one playing to finish (or be cleared).
            await self._idle.wait()
            if epoch != self._epoch:
                return
            self._idle.clear()
            self._segment_open = True
            self._segment = None
            self._segment_sent_end = False
        resampler = self._in_resampler
        if resampler is None or resampler.in_rate != frame.sample_rate:
            if resampler is not None:
                tail = resampler.flush()
                if tail.size:
                    await self._send(tail, False, epoch)
            resampler = self._in_resampler = StreamResampler(frame.sample_rate, self.sample_rate)
        pcm = resampler.process(_mono_int16(frame))
        if pcm.size:
            await self._send(pcm, False, epoch)

    async def _send(self, pcm: np.ndarray, end: bool, epoch: int) -> None:
        if epoch != self._epoch:
            return  # cleared while this frame was on its way
        data = pcm.astype("<i2", copy=False).tobytes()
        try:
            conversation = await self._session.send(data, end)
        except AvatarKitError as exc:
            # No motion server: the speech plays without animation.
            logger.warning("avatar session cannot send (%s): playing the audio without animation", exc)
            if epoch != self._epoch:
                return
            conversation = self._controller.yield_audio_data(data, end)
            self._controller.yield_frames_data([], conversation)
        if epoch != self._epoch:
            return
        self._segment = conversation
        if end:
            self._segment_sent_end = True

    # -- clear ----------------------------------------------------------------------

    async def clear_buffer(self) -> None:
        """Stop the utterance now: controller, synchronizer queue, motion server."""
        self._epoch += 1
        self.clears += 1
        self._controller.interrupt()
        av_sync = self._av_sync
        if av_sync is not None:
            if self.clear_audio_queue:
                await av_sync.clear_queue()
            else:
                # AVSynchronizer.clear_queue() also drops the audio source's
                # queue; here only its pictures go (the runner has counted that
                # audio as played, so it must be).
                queue = getattr(av_sync, "_video_queue", None)
                while queue is not None and not queue.empty():
                    queue.get_nowait()
                    queue.task_done()
        self._out_resampler.reset()
        if self._in_resampler is not None:
            self._in_resampler.reset()
        self._segment = None
        self._segment_open = False
        self._segment_sent_end = False
        self._empty_end = False
        self._idle.set()
        try:
            await self._session.interrupt()
        except AvatarKitError as exc:
            logger.warning("avatar session could not interrupt on the server: %s", exc)
        # A frame read before the clear may be with the runner: wait until it
        # has come back for the next one, so the position it reports is final.
        if not self._resumed.is_set():
            await self._resumed.wait()

    # -- frames out --------------------------------------------------------------------

    def _picture(self) -> bytes:
        keyframe = self._keyframe
        last = self._last_keyframe
        if last is None or not np.array_equal(last, keyframe):
            self._renderer.render_into(keyframe, self._rgb)
            self._rgba[:, :, :3] = self._rgb
            self._last_picture = self._rgba.tobytes()
            self._last_keyframe = keyframe.copy()
        return self._last_picture

    def _audio_frame(self, samples: np.ndarray) -> rtc.AudioFrame:
        return rtc.AudioFrame(samples.astype("<i2", copy=False).tobytes(), self.audio_sample_rate, 1, samples.size)

    def produce_frame(self) -> tuple[rtc.VideoFrame, Optional[rtc.AudioFrame]]:
        """One frame's work, unpaced: read a frame of audio from the
        controller, draw its keyframe, and return the picture and that frame's
        conversation samples at ``audio_sample_rate`` (None when it holds no
        speech).  The iterator calls it once per frame; benchmarks call it
        directly."""
        controller = self._controller
        n = controller.read_audio_into(self._pcm)
        controller.current_frame_into(self._keyframe)
        video = rtc.VideoFrame(self.width, self.height, rtc.VideoBufferType.RGBA, self._picture())
        self.frames += 1
        audio = None
        if n:
            out = self._out_resampler.process(self._pcm[:n])
            if out.size:
                audio = self._audio_frame(out)
        return video, audio

    def _video_hold(self, interval: float) -> float:
        """Seconds the runner's synchronizer would hold a picture pushed now
        (its queue and its frame-rate schedule; 0 without one)."""
        av_sync = self._av_sync
        if av_sync is None:
            return 0.0
        queue = getattr(av_sync, "_video_queue", None)
        if queue is not None and not queue.empty():
            return interval * queue.qsize()
        pacer = getattr(av_sync, "_fps_controller", None)
        next_time = getattr(pacer, "_next_frame_time", None)
        if next_time is None:
            return 0.0
        return min(max(0.0, next_time - time.perf_counter()), 2 * interval)

    def _segment_over(self) -> bool:
        return (
            self._segment is not None
            and self._segment_sent_end
            and self._controller.get_current_conversation_id() != self._segment
        )

    async def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:  # type: ignore[override]
        interval = 1.0 / self.fps
        deadline = time.monotonic()
        while not self._closed:
            delay = deadline - self.audio_lead - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > interval:
                # Late by more than a frame (the runner was busy, e.g. publishing):
                # a new schedule from now, not a burst to catch up, which would
                # sit in the synchronizer's video queue and put the pictures
                # behind the sound for good.  The controller's clock is the audio
                # read, so nothing of the speech is skipped.
                deadline = time.monotonic()
            deadline += interval
            hold = self._video_hold(interval)
            if hold > 0.002:
                # The synchronizer paces pictures on its own schedule; one it
                # would hold now means that schedule is ahead of this one, and
                # every picture would wait behind the sound.  Waiting for it
                # once puts the two schedules in step (the audio is read per
                # tick, so nothing of the speech is skipped).
                await asyncio.sleep(hold)
                deadline = time.monotonic() + self.audio_lead + interval
            epoch = self._epoch
            video, yield_audio = self.produce_frame()
            self._resumed.clear()
            yield video
            self._resumed.set()
            if epoch != self._epoch:
                continue  # cleared while the picture was with the runner
            if yield_audio is not None:
                self.speech_samples += yield_audio.samples_per_channel
                self._resumed.clear()
                yield yield_audio
                self._resumed.set()
                if epoch != self._epoch:
                    continue
            if self._segment_over():
                tail = self._out_resampler.flush()
                if tail.size:
                    self.speech_samples += tail.size
                    self._resumed.clear()
                    yield self._audio_frame(tail)
                    self._resumed.set()
                    if epoch != self._epoch:
                        continue
                self._end_segment()
                yield AudioSegmentEnd()
            elif self._empty_end:
                self._empty_end = False
                yield AudioSegmentEnd()

    def _end_segment(self) -> None:
        self._segment = None
        self._segment_open = False
        self._segment_sent_end = False
        self.segments_ended += 1
        self._idle.set()

    async def aclose(self) -> None:
        """Stop iterating (the iterator ends at its next frame)."""
        self._closed = True
        self._idle.set()
