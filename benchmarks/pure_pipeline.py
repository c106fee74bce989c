"""The peer baseline: host-mode playout as a Python developer would write it
with ``collections.deque``, ``numpy`` and ``protobuf``, without this package's
buffers.  Same job as the controller's hot path (audio chunks in, animation
envelopes in, 10 ms reads and the keyframe for the audio position out), same
sample-exact pick, none of the controller's checks or state machine."""

from __future__ import annotations

from collections import deque

import numpy as np

from avatarkit_fast.testing.protoref import decode_frames


class PurePipeline:
    def __init__(self, sample_rate: int = 16000, fps: int = 25) -> None:
        self.sample_rate = sample_rate
        self.fps = fps
        self.audio: deque = deque()
        self.offset = 0  # samples already read from audio[0]
        self.frames: list = []  # one float32 (120,) array per keyframe
        self.played = 0
        self.idle = np.zeros(120, np.float32)

    def yield_audio_data(self, pcm, end: bool = False) -> None:
        self.audio.append(np.frombuffer(pcm, dtype="<i2"))

    def yield_frames_data(self, envelopes) -> None:
        for env in envelopes:
            _, frames = decode_frames(env)
            self.frames.extend(frames)

    def new_conversation(self) -> None:
        self.audio.clear()
        self.offset = 0
        self.frames = []
        self.played = 0

    def read_audio_into(self, buf: np.ndarray) -> int:
        n = len(buf)
        i = 0
        while i < n and self.audio:
            head = self.audio[0]
            take = min(n - i, len(head) - self.offset)
            buf[i : i + take] = head[self.offset : self.offset + take]
            i += take
            self.offset += take
            if self.offset == len(head):
                self.audio.popleft()
                self.offset = 0
        if i < n:
            buf[i:] = 0
        self.played += i
        return i

    def current_frame_into(self, buf: np.ndarray) -> None:
        if not self.frames:
            buf[:] = self.idle
            return
        idx = self.played * self.fps // self.sample_rate
        buf[:] = self.frames[min(idx, len(self.frames) - 1)]
