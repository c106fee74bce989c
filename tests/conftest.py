"""Shared fixtures: the ``impl`` switch between compiled modules and their
pure-Python twins, and the real recording from the shared fixtures folder."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from avatarkit_fast._compat import NO_EXTENSIONS, load_twin

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
RECORDING_PATH = SHARED_DIR / "fixtures" / "avatarkit" / "recording-16k.json"

IMPL_TAGS = ["py"] if NO_EXTENSIONS else ["c", "py"]


class Impl:
    """One implementation: ``impl.wire`` is ``avatarkit_fast._wire_c`` or
    ``avatarkit_fast._wire_py``, and likewise for every twin module."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return load_twin(name, self.tag)  # the package's own choice, forced
        except ModuleNotFoundError as exc:
            if exc.name != f"avatarkit_fast._{name}_{self.tag}":
                raise
            # hasattr() probes (hypothesis, mock) expect AttributeError
            raise AttributeError(name) from exc

    def __repr__(self) -> str:
        return f"Impl({self.tag!r})"


@pytest.fixture(params=IMPL_TAGS, scope="session")
def impl(request) -> Impl:
    return Impl(request.param)


class Recording:
    """The real host-mode recording: audio PCM bytes and six envelopes."""

    def __init__(self, path: Path) -> None:
        doc = json.loads(path.read_text())
        self.sample_rate: int = doc["sample_rate"]
        self.audio_format: str = doc["audio_format"]
        self.pcm: bytes = base64.b64decode(doc["audio_base64"])
        self.connection_id: str = doc["connection_id"]
        self.req_id: str = doc["req_id"]
        self.envelopes: list[bytes] = [
            base64.b64decode(m) for m in doc["animation_messages_base64"]
        ]


@pytest.fixture(scope="session")
def recording() -> Recording:
    if not RECORDING_PATH.is_file():
        pytest.skip(
            f"the shared fixtures folder is absent ({RECORDING_PATH.parent} not found "
            "beside the repository): the real recording cannot be read"
        )
    return Recording(RECORDING_PATH)
