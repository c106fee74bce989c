"""Shared fixtures for the benchmarks: the real recording, read from the
shared fixtures folder beside the repository (as in ``tests/conftest.py``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

RECORDING_PATH = (
    Path(__file__).resolve().parents[1].parent
    / "shared" / "fixtures" / "avatarkit" / "recording-16k.json"
)  # fmt: skip


class Recording:
    """The real host-mode recording: audio PCM bytes and six envelopes."""

    def __init__(self, path: Path) -> None:
        doc = json.loads(path.read_text())
        self.sample_rate: int = doc["sample_rate"]
        self.pcm: bytes = base64.b64decode(doc["audio_base64"])
        self.connection_id: str = doc["connection_id"]
        self.req_id: str = doc["req_id"]
        self.envelopes: list[bytes] = [
            base64.b64decode(m) for m in doc["animation_messages_base64"]
        ]


@pytest.fixture(scope="session")
def recording() -> Recording:
    if not RECORDING_PATH.is_file():
        pytest.skip(f"the real recording is absent ({RECORDING_PATH} not found)")
    return Recording(RECORDING_PATH)
