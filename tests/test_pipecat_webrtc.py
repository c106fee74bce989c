"""AvatarKitVideoService in a Pipecat pipeline that ends in a real WebRTC
transport: ``[source, AvatarKitVideoService, SmallWebRTCTransport.output()]``
with the local motion server, received by a plain aiortc peer in this process
(ICE on 127.0.0.1 only, SDP exchanged in process).  Measured at the peer:
Opus audio and VP8 video arrive, each speech burst's first keyframe and its
audio onset arrive together, nothing loud arrives after an interruption later
than 40 ms beyond the path's own latency (measured in the same run), and
BotStoppedSpeakingFrame follows the last sample written."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="the Pipecat service needs pipecat-ai (extra [pipecat])")
aiortc = pytest.importorskip("aiortc", reason="WebRTC needs aiortc")
pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")

from pipecat.frames.frames import (  # noqa: E402
    BotStoppedSpeakingFrame,
    EndFrame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.transports.base_transport import TransportParams  # noqa: E402
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection  # noqa: E402
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from avatarkit_fast.pipecat import AvatarKitVideoService  # noqa: E402
from avatarkit_fast.server import MotionServer  # noqa: E402

from webrtc_loopback import candidate_hosts, loopback_ice  # noqa: E402

RATE = 24000  # the conversation's rate (Pipecat's default output rate)
W, H = 64, 64
LOUD = 1000  # RMS (int16) above which a received audio frame counts as speech


def speech(seconds: float, seed: int = 0) -> bytes:
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()


def tts(pcm: bytes, ms: int = 40) -> list[TTSAudioRawFrame]:
    step = RATE * 2 * ms // 1000
    return [TTSAudioRawFrame(audio=pcm[i:i + step], sample_rate=RATE, num_channels=1)
            for i in range(0, len(pcm), step)]


class Marks:
    """Paints a keyframe white when it is animation, black when it is the idle
    pose (all zeros), so the peer can tell from the pixels which one came."""

    def render_into(self, keyframe, rgb_out) -> None:
        rgb_out[...] = 255 if np.any(keyframe) else 0


class Recorder(FrameProcessor):
    """After the output transport: the time of every BotStoppedSpeakingFrame."""

    def __init__(self) -> None:
        super().__init__()
        self.bot_stopped: list[float] = []

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStoppedSpeakingFrame):
            self.bot_stopped.append(time.monotonic())
        await self.push_frame(frame, direction)


class Peer:
    """A plain aiortc peer: receives one audio and one video track and records
    (arrival time, level) of every frame."""

    def __init__(self) -> None:
        self.pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        self.audio: list[tuple[float, float]] = []  # (arrival, RMS)
        self.video: list[tuple[float, float]] = []  # (arrival, mean pixel)
        self.codecs: dict[str, str] = {}
        self.unmatched = 0  # decoded frames whose packets were not seen (must stay 0)
        self.tasks: list[asyncio.Task] = []
        self.pc.on("track", self._on_track)
        # When each frame's packets reached this peer, by RTP timestamp: the decoded
        # audio comes out of aiortc's jitter buffer 4 packets (80 ms) later, which is
        # this receiver's choice, not the sender's doing.
        self.packet_arrival: dict[tuple[str, int], float] = {}
        for t in self.pc.getTransceivers():
            self._hook(t.receiver, t.kind)

    def _hook(self, receiver, kind: str) -> None:
        handle = receiver._handle_rtp_packet

        async def hooked(packet, arrival_time_ms):
            self.packet_arrival[(kind, packet.timestamp)] = time.monotonic()  # the last packet of a frame wins
            return await handle(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = hooked
        # Decoded frames keep their RTP timestamp as pts (aiortc rebases it to 0).
        receiver._RTCRtpReceiver__timestamp_mapper.map = lambda timestamp: timestamp

    def _on_track(self, track) -> None:
        self.tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                now = self.packet_arrival.get((track.kind, frame.pts))
                if now is None:
                    self.unmatched += 1
                    continue
                if track.kind == "audio":
                    x = frame.to_ndarray().astype(np.float64)
                    self.audio.append((now, float(np.sqrt(np.mean(x * x)))))
                else:
                    self.video.append((now, float(frame.to_ndarray(format="rgb24").mean())))
        except Exception:  # MediaStreamError: the track ended
            return

    def codec_names(self) -> set[str]:
        names = set()
        for t in self.pc.getTransceivers():
            codecs = getattr(t.receiver, "_RTCRtpReceiver__codecs", None) or {}
            names |= {c.mimeType for c in codecs.values()}
        return names


def onsets(series: list[tuple[float, float]], threshold: float, quiet: float) -> list[float]:
    """Arrival times at which ``series`` rises above ``threshold`` after at
    least ``quiet`` seconds at or below it."""
    out, last_loud = [], -1e9
    for t, level in series:
        if level > threshold:
            if t - last_loud > quiet:
                out.append(t)
            last_loud = t
    return out


async def run_pipeline(script) -> dict:
    """Run ``[source, service, transport.output(), recorder]`` to a peer;
    ``script(push, ctx)`` drives it.  Returns what was measured."""
    async with MotionServer() as server:
        peer = Peer()
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        conn = SmallWebRTCConnection(ice_servers=[])
        await conn.initialize(sdp=peer.pc.localDescription.sdp, type=peer.pc.localDescription.type)
        answer = conn.get_answer()
        await peer.pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        assert candidate_hosts(peer.pc.localDescription.sdp) == {"127.0.0.1"}
        assert candidate_hosts(answer["sdp"]) == {"127.0.0.1"}

        transport = SmallWebRTCTransport(conn, TransportParams(
            audio_out_enabled=True, audio_out_sample_rate=RATE, audio_out_10ms_chunks=1,
            video_out_enabled=True, video_out_width=W, video_out_height=H, video_out_framerate=25,
        ))
        output = transport.output()
        writes: list[tuple[float, bool]] = []  # (time written, holds speech)
        write_audio = output.write_audio_frame

        async def record_write(frame):
            ok = await write_audio(frame)
            writes.append((time.monotonic(), bool(np.any(np.frombuffer(frame.audio, "<i2")))))
            return ok

        output.write_audio_frame = record_write
        svc = AvatarKitVideoService(
            api_key="key", app_id="app", avatar_id="avatar",
            console_endpoint_url=server.console_endpoint_url,
            ingress_endpoint_url=server.ingress_endpoint_url,
            renderer=Marks(), width=W, height=H,
            # The onsets are measured on the first keyframe's picture: a blend
            # in (and a breathing idle between bursts) would smear them.
            controller_options={"transition_in": 0, "transition_out": 0, "idle": None},
        )
        recorder = Recorder()
        worker = PipelineWorker(Pipeline([svc, output, recorder]),
                                params=PipelineParams(audio_out_sample_rate=RATE),
                                cancel_on_idle_timeout=False)
        started = asyncio.Event()

        @worker.event_handler("on_pipeline_started")
        async def _started(worker, frame):
            started.set()

        async def push(*frames):
            for f in frames:
                await worker.queue_frame(f)

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        run = asyncio.ensure_future(runner.run())
        ctx: dict = {"peer": peer, "recorder": recorder, "writes": writes, "svc": svc}
        try:
            await asyncio.wait_for(started.wait(), 10)
            await conn.connect()
            for _ in range(400):  # the connection is up and media flows (VP8 can take seconds to start under load)
                if peer.audio and peer.video:
                    break
                await asyncio.sleep(0.05)
            assert peer.audio and peer.video, f"no media reached the peer ({peer.unmatched} frames unmatched, " \
                f"{sum(k == 'video' for k, _ in peer.packet_arrival)} video packets)"
            await script(push, ctx)
            await push(EndFrame())
            await asyncio.wait_for(run, 20)
        finally:
            if not run.done():
                run.cancel()
            await conn.disconnect()
            await peer.pc.close()
            for t in peer.tasks:
                t.cancel()
        ctx["codecs"] = peer.codec_names()
        return ctx


def test_bursts_arrive_in_sync_and_the_bot_stops_after_the_last_sample(monkeypatch):
    loopback_ice(monkeypatch)
    bursts = [speech(0.8, 1), speech(0.6, 2), speech(0.7, 3)]

    async def script(push, ctx):
        ctx["sent_stop"] = []
        for pcm in bursts:
            await push(TTSStartedFrame(), *tts(pcm), TTSStoppedFrame())
            await asyncio.sleep(len(pcm) / 2 / RATE + 0.8)  # play, then a quiet stretch

    ctx = asyncio.run(run_pipeline(script))
    peer, recorder, writes = ctx["peer"], ctx["recorder"], ctx["writes"]
    assert "audio/opus" in ctx["codecs"] and "video/VP8" in ctx["codecs"], ctx["codecs"]
    audio_on = onsets(peer.audio, LOUD, 0.3)
    video_on = onsets(peer.video, 128, 0.3)
    assert len(audio_on) == len(bursts) == len(video_on), (audio_on, video_on)
    skews = [v - a for a, v in zip(audio_on, video_on)]
    print("video - audio onset at the peer (ms):", [round(s * 1000, 1) for s in skews])
    assert all(abs(s) <= 0.040 for s in skews), skews
    # BotStoppedSpeakingFrame: once per burst, after its last sample was written, within 200 ms.
    assert len(recorder.bot_stopped) == len(bursts)
    speech_writes = [t for t, loud in writes if loud]
    for stopped in recorder.bot_stopped:
        last = max(t for t in speech_writes if t <= stopped)
        assert not [t for t in speech_writes if stopped < t < stopped + 0.3], "speech written after the stop"
        assert 0 <= stopped - last <= 0.200, stopped - last
    print("BotStoppedSpeaking after the last sample written (ms):",
          [round((s - max(t for t in speech_writes if t <= s)) * 1000, 1) for s in recorder.bot_stopped])


def test_nothing_loud_arrives_after_an_interruption_and_ten_in_a_row_do_not_wedge(monkeypatch):
    loopback_ice(monkeypatch)

    async def script(push, ctx):
        ctx["cuts"] = []
        await push(TTSStartedFrame(), *tts(speech(3.0, 4)), TTSStoppedFrame())
        await asyncio.sleep(1.0)
        ctx["cuts"].append(time.monotonic())
        await push(InterruptionFrame())
        await asyncio.sleep(0.6)
        for i in range(10):  # ten barge-ins in a row, each mid-speech
            await push(TTSStartedFrame(), *tts(speech(1.0, 10 + i)), TTSStoppedFrame())
            await asyncio.sleep(0.15)
            await push(InterruptionFrame())
        ctx["cuts"].append(time.monotonic())
        await asyncio.sleep(0.6)
        ctx["final"] = time.monotonic()
        await push(TTSStartedFrame(), *tts(speech(0.5, 99)), TTSStoppedFrame())
        await asyncio.sleep(1.2)

    ctx = asyncio.run(run_pipeline(script))
    peer, recorder = ctx["peer"], ctx["recorder"]
    first_cut, last_cut, final = ctx["cuts"][0], ctx["cuts"][1], ctx["final"]
    loud = [t for t, level in peer.audio if level > LOUD]
    assert [t for t in loud if t < first_cut], "the speech never arrived"
    # The path's own latency, the same for every sample, measured in this run: from the
    # transport handing the first loud audio to the track, to its packet at the peer
    # (aiortc's Opus encoder and sender; it is not stale audio).
    first_write = min(t for t, speech_ in ctx["writes"] if speech_)
    path = max(0.0, min(t for t in loud if t >= first_write) - first_write)
    late = [t - first_cut for t in loud if first_cut < t < first_cut + 0.6]
    tail = max(late, default=0.0)
    print(f"loud audio after the interruption (ms): {tail * 1000:.1f} at the peer, "
          f"of which the path's own latency {path * 1000:.1f}")
    assert tail - path <= 0.040, (late, path)
    # Ten interrupts in a row, each 150 ms into speech: the service keeps nothing of them
    # (the tail is the transport's own: its 10 ms chunk, Opus's 20 ms packet, the hops).
    late = [t - last_cut for t in loud if last_cut < t < final]
    print(f"loud audio after the last of ten interruptions (ms): {max(late, default=0.0) * 1000:.1f}")
    assert max(late, default=0.0) - path <= 0.080, (late, path)
    # Not wedged: the utterance after the ten interrupts plays, and the bot stops after it.
    assert [t for t in loud if t > final], "nothing played after ten interrupts"
    assert recorder.bot_stopped and recorder.bot_stopped[-1] > final
    assert ctx["svc"].controller is None  # EndFrame closed everything
