"""Makes the project's own golden recording, ``tests/data/golden-16k.json``.

The local motion server (``avatarkit-fast serve``, in its own process on a
free loopback port) is sent one utterance of the package's speech-like audio
through the vendor's server SDK (``spatius``), in 20 ms chunks as a TTS streams
them; the envelopes the SDK hands back are written with the audio in the
layout of the vendor's recording (``avatarkit_fast.testing.load_recording``
reads both).  The audio and the keyframes are deterministic (the same seed
gives the same samples, the motion synth the same keyframes); the server's
``connection_id`` and ``req_id`` are new on each run.

    python scripts/make_golden.py                 # rewrites tests/data/golden-16k.json
    python scripts/make_golden.py --out FILE.json --seconds 7.3 --seed 11
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "data" / "golden-16k.json"
SAMPLE_RATE = 16000
CHUNK = 2 * SAMPLE_RATE // 50  # 20 ms of s16le
# 7.3 s: three envelopes in the service's batching (50, 100, then the last 32
# with end set), as the vendor's recording ends on a short one; about 440 KB.
SECONDS = 7.3
SEED = 11


def start_server() -> tuple[subprocess.Popen, str, str]:
    """``avatarkit-fast serve`` on a free loopback port; its two endpoint URLs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatarkit_fast", "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        urls = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(2))
        return proc, urls["console_endpoint_url"], urls["ingress_endpoint_url"]
    except Exception:
        proc.kill()
        raise


async def record(console: str, ingress: str, pcm: bytes, timeout: float = 60.0) -> list[bytes]:
    """Sends ``pcm`` as one request; returns the envelopes up to the one marked last."""
    import spatius

    spatius.configure_telemetry("")  # the SDK sends nothing elsewhere
    envelopes: list[bytes] = []
    errors: list[BaseException] = []
    done = asyncio.Event()

    def on_frames(data: bytes, last: bool) -> None:
        envelopes.append(bytes(data))
        if last:
            done.set()

    def on_error(err: BaseException) -> None:
        errors.append(err)
        done.set()

    session = spatius.new_avatar_session(
        avatar_id="golden", api_key="golden", app_id="golden",
        console_endpoint_url=console, ingress_endpoint_url=ingress,
        expire_at=datetime.now(timezone.utc) + timedelta(hours=1),
        transport_frames=on_frames, on_error=on_error,
    )
    await session.init()
    await session.start()
    try:
        for i in range(0, len(pcm), CHUNK):
            await session.send_audio(pcm[i : i + CHUNK], end=i + CHUNK >= len(pcm))
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await session.close()
    if errors:
        raise RuntimeError(f"the motion server reported an error: {errors[0]!r}")
    return envelopes


def make(out: Path, seconds: float = SECONDS, seed: int = SEED) -> Path:
    from avatarkit_fast import wire
    from avatarkit_fast.cli.speech import synthesize_speech
    from avatarkit_fast.testing import Recording, load_recording, save_recording

    pcm = synthesize_speech(seconds, SAMPLE_RATE, seed=seed).astype("<i2").tobytes()
    proc, console, ingress = start_server()
    try:
        envelopes = asyncio.run(record(console, ingress, pcm))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    first = wire.decode_animation(envelopes[0])
    rec = Recording(sample_rate=SAMPLE_RATE, pcm=pcm, envelopes=envelopes,
                    req_id=first.req_id, connection_id=first.connection_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_recording(out, rec)
    load_recording(out)  # what was written reads back whole
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=SECONDS, help="length of the utterance")
    ap.add_argument("--seed", type=int, default=SEED, help="seed of the speech-like audio")
    args = ap.parse_args(argv)
    if not 0.5 <= args.seconds <= 30:
        ap.error("--seconds must be between 0.5 and 30")
    path = make(args.out, args.seconds, args.seed)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
