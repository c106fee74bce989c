"""Shared fixtures: the ``impl`` switch between compiled modules and their
pure-Python twins; the vendor's real recording from the shared fixtures folder
(``recording``: the conformance target of the wire codec and the sync checks)
and the project's own golden recording in ``tests/data/`` (``golden``: the
end-to-end, replay and benchmark runs, there in every checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatarkit_fast._compat import NO_EXTENSIONS, load_twin
from avatarkit_fast.testing import Recording, load_recording

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
RECORDING_PATH = SHARED_DIR / "fixtures" / "avatarkit" / "recording-16k.json"
# Made by scripts/make_golden.py: the local motion server's answer to 7.3 s of
# the package's speech-like audio, in the vendor recording's layout.
GOLDEN_PATH = REPO_ROOT / "tests" / "data" / "golden-16k.json"

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


@pytest.fixture(scope="session")
def recording() -> Recording:
    """The vendor's real recording (20.3 s, six envelopes, 507 keyframes)."""
    if not RECORDING_PATH.is_file():
        pytest.skip(
            f"the vendor recording is absent ({RECORDING_PATH.parent} not found beside "
            "the repository): this conformance check needs it"
        )
    return load_recording(RECORDING_PATH)


@pytest.fixture(scope="session")
def golden() -> Recording:
    """The project's own recording (7.3 s, three envelopes, 182 keyframes), in
    every checkout: never skipped."""
    return load_recording(GOLDEN_PATH)


#: A controller without presentation (no transitions, the still idle frame):
#: for tests of the sync itself, which compare frames with the keyframes.
PLAIN = {"transition_in": 0, "transition_out": 0, "idle": None}
