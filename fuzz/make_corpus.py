"""Writes the seed corpora under ``fuzz/corpus/`` from the real recording.

Seeds are kept small: real keyframes cut out of the recorded envelopes (one to
three per envelope, bytes as the server sent them), re-wrapped, plus the other
envelope types and encoding variants a valid peer may send. Run it again only
to regenerate the committed seeds::

    python fuzz/make_corpus.py [path/to/recording-16k.json]
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pb  # noqa: E402

from avatarkit_fast.testing import Recording, load_recording  # noqa: E402

DEFAULT_RECORDING = HERE.parents[1] / "shared" / "fixtures" / "avatarkit" / "recording-16k.json"


def load(path: Path) -> Recording:
    """The recording (the seeds cut keyframes out of its six envelopes)."""
    rec = load_recording(path)
    if len(rec.envelopes) < 6:
        raise SystemExit(f"{path}: {len(rec.envelopes)} envelopes; the seeds are cut from six")
    return rec


def unpacked(flame: bytes) -> bytes:
    """The same Flame with every float as its own fixed32 field (unpacked)."""
    out = bytearray()
    for f, wt, v in pb.fields(flame):
        assert wt == 2
        for i in range(0, len(v), 4):
            out += pb.f_fixed32(f, v[i : i + 4])
    return bytes(out)


def wire_seeds(rec: Recording) -> dict[str, bytes]:
    conn, req, envs = rec.connection_id, rec.req_id, rec.envelopes
    kfs = [pb.keyframe_messages(e) for e in envs]
    seeds: dict[str, bytes] = {}
    sra0 = pb.field(envs[0], 6)
    # real envelope shape, fewer keyframes
    seeds["anim-env0-1kf"] = pb.animation_envelope(kfs[0][:1], req_id=req, connection_id=conn)
    seeds["anim-env2-3kf"] = pb.animation_envelope(kfs[2][40:43], req_id=req, connection_id=conn)
    seeds["anim-env5-2kf-end"] = pb.animation_envelope(kfs[5][-2:], req_id=req, connection_id=conn, end=True)
    seeds["anim-avatar-id"] = pb.animation_envelope(kfs[3][:1], req_id=req, connection_id=conn, avatar_id="av-1")
    seeds["anim-no-keyframes"] = pb.animation_envelope([], req_id=req, connection_id=conn)
    # proto3 variants a valid encoder may produce
    seeds["anim-unpacked"] = pb.animation_envelope([unpacked(kfs[1][7])], req_id=req, connection_id=conn)
    mixed = pb.fields(kfs[4][9])
    half = b"".join(pb.f_bytes(f, v) if f % 2 else b"".join(pb.f_fixed32(f, v[i:i + 4]) for i in range(0, len(v), 4))
                    for f, _, v in mixed)
    seeds["anim-mixed-packing"] = pb.animation_envelope([half], req_id=req, connection_id=conn)
    absent = b"".join(pb.f_bytes(f, v) for f, _, v in pb.fields(kfs[1][0]) if f in (4, 7))
    seeds["anim-absent-fields"] = pb.animation_envelope([absent], req_id=req)
    sra = (pb.f_bytes(99, b"x") + pb.f_varint(3, 1) + pb.f_bytes(4, pb.f_bytes(1, kfs[0][1]) + pb.f_varint(2, 7))
           + pb.f_fixed64(98, b"\0" * 8) + pb.f_bytes(2, req) + pb.f_fixed32(97, b"\0" * 4) + pb.f_bytes(1, conn))
    seeds["anim-reordered-unknown"] = pb.f_bytes(6, sra) + pb.f_varint(15, 3) + pb.f_varint(1, 5)
    seeds["anim-merged-fields"] = (pb.f_varint(1, 5) + pb.f_bytes(6, pb.f_bytes(2, "old") + pb.f_bytes(4, pb.f_bytes(1, kfs[2][0])))
                                   + pb.f_bytes(6, pb.f_bytes(2, req) + pb.f_bytes(4, pb.f_bytes(1, kfs[2][1]))))
    seeds["anim-real-head-truncated"] = envs[0][:160]
    # empty keyframes (2 bytes each, 480 decoded): around the output/input ratio limit
    seeds["anim-empty-keyframes-over-ratio"] = pb.animation_envelope([b""] * 64, req_id=req)
    seeds["anim-empty-keyframes-padded"] = pb.animation_envelope([b""] * 4, req_id=req) + pb.f_bytes(15, bytes(230))
    assert pb.field(sra0, 2) == req.encode()
    # the other envelope types
    seeds["error"] = pb.error_envelope(4003, "concurrency limit", req_id=req, connection_id=conn)
    seeds["confirm-session"] = pb.f_varint(1, 2) + pb.f_bytes(3, pb.f_bytes(1, conn))
    seeds["configure-session"] = pb.f_varint(1, 1) + pb.f_bytes(2, pb.f_varint(1, 16000) + pb.f_varint(2, 0) + pb.f_varint(3, 0)
                                                                 + pb.f_bytes(8, pb.f_bytes(1, "k") + pb.f_bytes(2, "v")))
    seeds["audio-input"] = pb.f_varint(1, 3) + pb.f_bytes(4, pb.f_bytes(1, req) + pb.f_varint(2, 1) + pb.f_bytes(3, b"\x01\x00" * 8))
    seeds["interrupt"] = pb.f_varint(1, 7) + pb.f_bytes(8, pb.f_bytes(1, req))
    seeds["empty"] = b""
    return seeds


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else DEFAULT_RECORDING
    rec = load(path)
    out = HERE / "corpus" / "wire"
    out.mkdir(parents=True, exist_ok=True)
    seeds = wire_seeds(rec)
    for name, data in seeds.items():
        (out / name).write_bytes(data)
    total = sum(map(len, seeds.values()))
    print(f"wire: {len(seeds)} seeds, {total} bytes")
    # the controller and relay corpora are built by their harnesses' seed writers
    for mod in ("fuzz_controller", "fuzz_relay"):
        try:
            m = __import__(mod)
        except ImportError as exc:  # the module under test is not there yet
            print(f"{mod}: skipped ({exc})")
            continue
        m.write_seeds(seeds, rec.pcm)


if __name__ == "__main__":
    main(sys.argv[1:])
