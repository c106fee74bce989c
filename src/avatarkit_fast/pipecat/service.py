"""AvatarKitVideoService: the host-mode avatar as a Pipecat frame processor.

Placed after the TTS, before the output transport::

    Pipeline([..., tts, AvatarKitVideoService(...), transport.output(), ...])

It sends the TTS speech to the motion server and yields it to an
:class:`~avatarkit_fast.AvatarController` (an
:class:`~avatarkit_fast.session.AvatarSession` does both); a playout task,
paced to real time, pushes for every video frame the conversation's audio of
that frame and the image of the keyframe that goes with it.  Audio and
animation are matched by the controller's sample clock, never by wall time:
the image of a frame is the keyframe at the frame's first sample, and it is
queued with the audio (``sync_with_audio``) just before that frame's audio,
so the transport shows it as that audio begins; at the far end of a WebRTC
transport face and voice arrive together (measured: within 40 ms).

Choices where Pipecat leaves it open:

* One TTS response (``TTSAudioRawFrame``\\s up to a ``TTSStoppedFrame``) is one
  motion-server request and one controller conversation.  A response whose
  audio arrives while the previous one still plays (a TTS runs faster than
  real time) waits, here, until the previous one has played: a new
  conversation would otherwise cut the one in progress.
* ``TTSStoppedFrame`` is held until the last sample of its response has been
  pushed, so the transport's ``BotStoppedSpeakingFrame`` comes after the last
  sample, not before; other frames pass through at once.
* ``InterruptionFrame`` stops the controller at once (nothing buffered plays
  after it), then the motion server's generation; queued responses and held
  ``TTSStoppedFrame``\\s are dropped, as Pipecat drops queued frames on an
  interruption.  The frame is forwarded.
* ``EndFrame`` lets what is queued play out (at most its length plus
  ``end_grace`` seconds), then closes; ``CancelFrame`` closes at once.
* If the motion server cannot be reached at start, the error is pushed
  (``push_error``) and the TTS audio passes through unchanged: the bot goes
  on speaking without a face.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from .._schema import KEYFRAME_FLOATS, SAMPLE_RATES
from ..audio import StreamResampler
from ..controller import AvatarController
from ..errors import AvatarKitError
from ..session import AvatarSession, fetch_session_token
from .render import FaceRendererAdapter, Renderer

__all__ = ["AvatarKitVideoService"]

logger = logging.getLogger("avatarkit_fast.pipecat")


@dataclass
class _Response:
    """One TTS response waiting for the one before it to finish playing."""

    chunks: list = field(default_factory=list)
    ended: bool = False
    stop: Optional[TTSStoppedFrame] = None


class AvatarKitVideoService(FrameProcessor):
    """The avatar of one bot, rendered on this host, after the TTS.

    ``api_key`` fetches a session token from ``console_endpoint_url``; the
    motion server is at ``ingress_endpoint_url``.  ``renderer``: any object with
    ``render_into(keyframe, rgb_out)`` (a ``(height, width, 3)`` uint8 array);
    None draws the package's face (:class:`avatarkit_fast.render.FaceRenderer`).  ``sample_rate``: the conversation's rate (the audio pushed
    downstream and sent to the motion server); None takes the pipeline's
    output rate.  TTS audio at another rate is resampled to it.  ``fps``: video
    frames per second (the animation's 25).  ``sync_mode``: the controller's
    (``"audio_independent"``: audio never waits for animation).
    ``controller_options``: more keywords for the :class:`AvatarController`
    (``transition_in``, ``transition_out``, ``idle``, ``seed``, ...; by default
    the controller's own: blends in and out, a breathing idle).
    """

    def __init__(
        self,
        *,
        api_key: str,
        app_id: str,
        avatar_id: str,
        console_endpoint_url: str,
        ingress_endpoint_url: str,
        renderer: Optional[Renderer] = None,
        width: int = 256,
        height: int = 256,
        sample_rate: Optional[int] = None,
        fps: int = 25,
        sync_mode: str = "audio_independent",
        end_grace: float = 2.0,
        controller_options: Optional[dict] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not api_key or not app_id or not avatar_id:
            raise ValueError("api_key, app_id and avatar_id are required")
        if sample_rate is not None and sample_rate not in SAMPLE_RATES:
            raise ValueError(f"unsupported sample_rate {sample_rate}: expected one of {SAMPLE_RATES}")
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 4096:
                raise ValueError(f"{name} must be an int in 16..4096, got {value!r}")
        if renderer is not None and not callable(getattr(renderer, "render_into", None)):
            raise TypeError("renderer must have a render_into(keyframe, rgb_out) method")
        self._api_key = api_key
        self._app_id = app_id
        self._avatar_id = avatar_id
        self._console = console_endpoint_url
        self._ingress = ingress_endpoint_url
        self._renderer = renderer
        self._controller_options = dict(controller_options or {})
        self.width, self.height = width, height
        self._rate_wanted = sample_rate
        self.fps = fps
        self._sync_mode = sync_mode
        self._end_grace = float(end_grace)

        self.sample_rate: Optional[int] = None  # the conversation's, once started
        self.controller: Optional[AvatarController] = None
        self.session: Optional[AvatarSession] = None
        self._playout: Optional[asyncio.Task] = None
        self._resampler: Optional[StreamResampler] = None
        self._live: Optional[_Response] = None  # the response the controller plays
        self._queue: deque[_Response] = deque()  # responses waiting for it
        self._epoch = 0  # bumped by every interrupt: a tick of an older epoch pushes nothing
        self._send_lock = asyncio.Lock()  # one request's chunks reach the server in order
        self._idle = asyncio.Event()
        self._idle.set()
        self.frames_pushed = 0

    # -- frames ------------------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame):
            # Silence first, synchronously: no playout tick can read speech of before the
            # interrupt once the controller is stopped, and a tick begun before it pushes
            # nothing (the epoch).  Then the frame goes on at once, for the transport drops
            # its queued audio when the frame reaches it; then the motion server.
            self._silence()
            await self.push_frame(frame, direction)
            await super().process_frame(frame, direction)
            await self._interrupt()
            return
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self._start()
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._close()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._play_out()
            await self._close()
            await self.push_frame(frame, direction)
        elif direction is FrameDirection.DOWNSTREAM and self.session is not None:
            if isinstance(frame, TTSAudioRawFrame):
                await self._speech(frame)
            elif isinstance(frame, TTSStoppedFrame):
                await self._stopped(frame)
            else:
                await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._close()

    # -- start and close ---------------------------------------------------------------

    async def _start(self) -> None:
        rate = self._rate_wanted or self.processor_setup.audio_out_sample_rate
        if rate not in SAMPLE_RATES:
            await self.push_error(error_msg=f"avatar: unsupported output sample rate {rate} Hz")
            return
        self.sample_rate = rate
        controller = AvatarController(
            sample_rate=rate, fps=self.fps, sync_mode=self._sync_mode, on_error=self._on_error,
            **self._controller_options,
        )
        try:
            token = await fetch_session_token(self._console, self._api_key)
            session = AvatarSession(
                controller, self._ingress, app_id=self._app_id, session_token=token,
                avatar_id=self._avatar_id, sample_rate=rate, on_error=self._on_error,
            )
            await session.start()
        except (AvatarKitError, OSError, ValueError) as exc:
            controller.close()
            await self.push_error(error_msg=f"avatar: cannot open the motion session: {exc}", exception=exc)
            return
        if self._renderer is None:
            self._renderer = FaceRendererAdapter(self.width, self.height)
        self.controller, self.session = controller, session
        self._playout = self.create_task(self._playout_loop(), name=f"{self}::playout")

    async def _close(self) -> None:
        session, controller, playout = self.session, self.controller, self._playout
        self.session = self.controller = self._playout = None
        self._live = None
        self._queue.clear()
        self._idle.set()
        if playout is not None:
            await self.cancel_task(playout)
        if session is not None:
            try:
                await session.interrupt()
                await session.close()
            except AvatarKitError as exc:
                logger.warning("avatar: closing the motion session: %s", exc)
        if controller is not None:
            controller.close()

    async def _play_out(self) -> None:
        """Wait until every queued response has played (bounded by its length)."""
        controller = self.controller
        if controller is None or self._idle.is_set():
            return
        queued = sum(len(c) for r in self._queue for c in r.chunks) // 2 / controller.sample_rate
        limit = queued + controller.stats["buffered_audio_ms"] / 1000.0 + self._end_grace
        try:
            await asyncio.wait_for(self._idle.wait(), limit)
        except asyncio.TimeoutError:
            logger.warning("avatar: EndFrame: the queued speech did not finish playing in %.1f s", limit)

    # -- speech in ---------------------------------------------------------------------

    def _convert(self, frame: TTSAudioRawFrame) -> bytes:
        pcm = frame.audio
        if frame.num_channels == 2:  # TTS output is mono in practice; fold stereo down
            stereo = np.frombuffer(pcm, dtype="<i2").reshape(-1, 2).astype(np.int32)
            pcm = (stereo.sum(axis=1) // 2).astype("<i2").tobytes()
        resampler = self._resampler
        if resampler is None or resampler.in_rate != frame.sample_rate:
            resampler = self._resampler = StreamResampler(frame.sample_rate, self.sample_rate)
        return resampler.process(pcm).tobytes()

    def _tail(self) -> bytes:
        if self._resampler is None:
            return b""
        return self._resampler.flush().tobytes()

    async def _speech(self, frame: TTSAudioRawFrame) -> None:
        pcm = self._convert(frame)
        if self._live is None:
            self._live = _Response()
            self._idle.clear()
        if not self._live.ended and not self._queue:
            if pcm:
                await self._send(pcm)
            return
        if not self._queue or self._queue[-1].ended:
            self._queue.append(_Response())
        self._queue[-1].chunks.append(pcm)

    async def _stopped(self, frame: TTSStoppedFrame) -> None:
        tail = self._tail()
        live = self._live
        if live is not None and not live.ended and not self._queue:
            live.ended, live.stop = True, frame
            await self._send(tail, end=True)
        elif self._queue and not self._queue[-1].ended:
            last = self._queue[-1]
            last.chunks.append(tail)
            last.ended, last.stop = True, frame
        elif live is None and not self._queue:
            await self.push_frame(frame)  # no speech of it here: nothing to wait for
        else:
            self._queue.append(_Response([tail], True, frame))

    async def _next_response(self) -> None:
        """The live response has played: release its stop frame, begin the next."""
        while True:
            live, self._live = self._live, None
            if live is not None and live.stop is not None:
                await self.push_frame(live.stop)
            if not self._queue:
                self._idle.set()
                return
            nxt = self._queue.popleft()
            pcm = b"".join(nxt.chunks)
            if not pcm and nxt.ended:
                self._live = nxt
                continue  # a response without audio: its stop goes out at once
            self._live = nxt
            await self._send(pcm, end=nxt.ended)
            return

    async def _send(self, pcm: bytes, end: bool = False) -> None:
        session = self.session
        if session is None:
            return
        async with self._send_lock:
            try:
                await session.send(pcm, end)
            except AvatarKitError as exc:
                await self.push_error(error_msg=f"avatar: sending speech: {exc}", exception=exc)

    # -- interrupt ---------------------------------------------------------------------

    def _silence(self) -> None:
        """Stop the controller and drop what waits to play; no await in here."""
        self._epoch += 1
        if self.controller is not None:
            self.controller.interrupt()
        self._live = None
        self._queue.clear()
        self._idle.set()
        if self._resampler is not None:
            self._resampler.reset()

    async def _interrupt(self) -> None:
        self._silence()  # again: a frame processed meanwhile may have begun speech
        session = self.session
        if session is not None:
            try:
                await session.interrupt()  # the controller at once, then the server
            except AvatarKitError as exc:
                logger.warning("avatar: interrupting the motion server: %s", exc)

    # -- playout -----------------------------------------------------------------------

    async def _playout_loop(self) -> None:
        controller, renderer = self.controller, self._renderer
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        n = self.sample_rate // self.fps
        pcm = np.zeros(n, dtype=np.int16)
        keyframe = np.zeros(KEYFRAME_FLOATS, dtype=np.float32)
        last_keyframe = np.full(KEYFRAME_FLOATS, np.nan, dtype=np.float32)
        rgb = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        image = b""
        start, tick = loop.time(), 0
        while True:
            epoch = self._epoch
            # The keyframe at the frame's first sample, then the frame's samples.
            controller.current_frame_into(keyframe)
            got = controller.read_audio_into(pcm)
            if not np.array_equal(keyframe, last_keyframe):
                renderer.render_into(keyframe, rgb)
                image = rgb.tobytes()
                last_keyframe[:] = keyframe
            if epoch == self._epoch:  # no interrupt came while this frame was read
                # The image goes just before its frame's audio: the transport shows it once
                # the audio queued before it has been taken by the outgoing track, that is
                # as its frame's audio begins; pushed after it, the face lagged the voice by
                # a frame at the far end.
                picture = OutputImageRawFrame(image=image, size=(self.width, self.height), format="RGB")
                picture.sync_with_audio = True
                await self.push_frame(picture)
                if got:
                    await self.push_frame(
                        TTSAudioRawFrame(audio=pcm.tobytes(), sample_rate=self.sample_rate, num_channels=1)
                    )
                self.frames_pushed += 1
                live = self._live
                if live is not None and live.ended and controller.get_current_conversation_id() is None:
                    await self._next_response()
            tick += 1
            delay = start + tick * period - loop.time()
            if delay < -3 * period:  # the loop stalled: start the pace again from now
                start, tick, delay = loop.time(), 0, 0.0
            await asyncio.sleep(max(0.0, delay))

    def _on_error(self, error: AvatarKitError) -> None:
        logger.warning("avatar: %s", error)
