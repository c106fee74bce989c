"""The avatar as its own participant (the worker's job, run_avatar): an agent's
AgentSession speaks through the real DataStreamAudioOutput, the avatar takes it
with the real DataStreamAudioReceiver, and its published tracks are read back.
The two participants are the stand-in pair of tests/livekit_standin.py
(byte streams, data packets and RPCs between two participants in one process)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("livekit.agents", reason="the livekit extra is not installed")
pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")

from livekit.agents import Agent, AgentSession  # noqa: E402
from livekit.agents.voice.avatar import DataStreamAudioOutput  # noqa: E402

from avatarkit_fast.livekit import AvatarLoad, AvatarWorkerConfig, run_avatar  # noqa: E402
from avatarkit_fast.server import MotionServer  # noqa: E402
from livekit_standin import RoomPair  # noqa: E402
from test_livekit import RATE, frames_of, speech, speech_arrivals  # noqa: E402


def test_the_worker_plays_the_agents_speech_and_reports_each_segment_once():
    async def main():
        async with MotionServer() as server:
            pair = RoomPair("agent", "avatar")
            config = AvatarWorkerConfig(
                api_key="key", app_id="app", avatar_id="avatar",
                console_endpoint_url=server.console_endpoint_url,
                ingress_endpoint_url=server.ingress_endpoint_url, width=64, height=64, capacity=2)
            load = AvatarLoad(config.capacity)
            stop = asyncio.Event()
            avatar = asyncio.create_task(run_avatar(pair.b, config, sender_identity="agent", load=load, stop=stop))
            agent_session = AgentSession()
            output = DataStreamAudioOutput(pair.a, destination_identity="avatar", sample_rate=RATE)
            agent_session.output.audio = output
            await agent_session.start(Agent(instructions="a worker test"))
            finished = []
            output.on("playback_finished", lambda ev: finished.append(ev))
            await asyncio.sleep(0.2)
            assert load.sessions == 1 and 0.5 <= load() <= 1.0

            first = speech(1.0, seed=21)
            handle = agent_session.say("one", audio=frames_of(first))
            await asyncio.wait_for(handle.wait_for_playout(), 15)
            long = speech(3.0, seed=22)
            handle = agent_session.say("two", audio=frames_of(long))
            while "avatar_audio" not in pair.b.readers or speech_arrivals(
                    pair.b.readers["avatar_audio"])[0].size < first.size + RATE // 2:
                await asyncio.sleep(0.01)
            t_interrupt = time.monotonic()
            handle.interrupt()
            await asyncio.wait_for(handle.wait_for_playout(), 15)
            await asyncio.sleep(0.3)

            got, arrival = speech_arrivals(pair.b.readers["avatar_audio"])
            assert np.array_equal(got[:first.size], first)
            played = got[first.size:]
            assert 0 < played.size < long.size and np.array_equal(played, long[:played.size])
            assert float(arrival[-1] - t_interrupt) <= 0.060  # the RPC hop included
            assert [ev.interrupted for ev in finished] == [False, True]
            assert abs(finished[0].playback_position - first.size / RATE) < 1e-9
            assert abs(finished[1].playback_position - played.size / RATE) < 1e-9
            stop.set()
            generator = await asyncio.wait_for(avatar, 10)
            assert generator.segments_ended == 1 and generator.clears == 1
            assert load.sessions == 0
            await agent_session.aclose()
            await pair.b.aclose()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_the_worker_command_checks_its_options_in_one_line(capsys, monkeypatch):
    from avatarkit_fast.cli import main

    for env in ("AVATARKIT_API_KEY", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(env, raising=False)
    assert main(["livekit-worker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--api-key" in err
    full = ["livekit-worker", "--api-key", "k", "--app-id", "a", "--avatar-id", "v",
            "--console", "http://127.0.0.1:1", "--ingress", "nowhere", "--livekit-url", "ws://127.0.0.1:1",
            "--livekit-api-key", "k", "--livekit-api-secret", "s"]
    assert main(full) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--ingress" in err
    with pytest.raises(SystemExit) as exit_:
        main(full[:1] + ["--capacity", "0"])
    assert exit_.value.code == 2


def test_build_server_is_an_agent_server_whose_load_is_sessions_over_capacity():
    from livekit.agents import AgentServer

    from avatarkit_fast.livekit import build_server

    config = AvatarWorkerConfig(api_key="k", app_id="a", avatar_id="v",
                                console_endpoint_url="http://127.0.0.1:1",
                                ingress_endpoint_url="http://127.0.0.1:1", capacity=4)
    server = build_server(config, ws_url="ws://127.0.0.1:1", api_key="k", api_secret="s")
    assert isinstance(server, AgentServer)
    load = server.load_fnc
    assert isinstance(load, AvatarLoad)
    load.sessions = 3
    assert 0.75 <= load(server) <= 1.0
    load.sessions = 0
    t = time.process_time()
    while time.process_time() - t < 0.2:  # busy: this process's CPU shows in the load
        pass
    assert load(server) > 0.2 / (load.cpu_count * 2)
