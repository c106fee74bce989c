"""Shared driver of the fuzz harnesses in this folder.

Each harness defines ``test_one_input(data: bytes)`` and calls :func:`main`.
With ``atheris`` installed (the ``fuzz`` extra) the run is coverage-guided by
libFuzzer; coverage comes from the instrumented Python code (the harness, the
pure twins the harness runs beside the compiled modules, and the Python
façades). Without ``atheris`` a small built-in mutator runs the same harness
over the same seed corpus, so the harness can run anywhere.

Command line (both engines)::

    python fuzz/fuzz_wire.py --target message --seconds 60 [--artifacts DIR]
    python fuzz/fuzz_wire.py --target message CRASH_FILE...   # replay inputs

The built-in engine ends with one line ``FUZZ-STATS {json}``; libFuzzer prints
its own final stats (``-print_final_stats=1``), read by
:func:`parse_libfuzzer_stats`.
Any failure leaves its input in the artifacts folder (``crash-*``) and exits
non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable

try:  # the coverage-guided engine is optional
    if os.environ.get("AVATARKIT_FUZZ_ENGINE", "") == "builtin":
        raise ImportError("built-in engine requested")
    import atheris
except ImportError:  # pragma: no cover - depends on the environment
    atheris = None

HERE = Path(__file__).resolve().parent
CORPUS_ROOT = HERE / "corpus"

# Per-input time limit: an input that takes longer is reported as a hang.
HANG_SECONDS = 10


def instrumented(*packages: str):
    """Context manager: imports inside it are coverage-instrumented (atheris only)."""
    if atheris is None:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=list(packages))


class FuzzFailure(AssertionError):
    """An invariant of the code under test does not hold for an input."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise FuzzFailure(message)


def save_seeds(corpus_name: str, seeds: dict[str, bytes]) -> None:
    """Write named seed inputs into ``corpus/<corpus_name>/``."""
    out = CORPUS_ROOT / corpus_name
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (out / name).write_bytes(data)
    print(f"{corpus_name}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


def _seed_files(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.iterdir() if p.is_file()) if corpus.is_dir() else []


# --------------------------------------------------------------------------
# built-in engine: random mutations of the seed corpus, no coverage feedback


_INTERESTING = [
    b"\x00", b"\x01", b"\x7f", b"\x80", b"\xff",
    b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f",
]


def _mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5, 8))):
        op = rng.randrange(9)
        n = len(buf)
        if op == 0 and n:  # flip a bit
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # set a byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 2:  # insert random bytes
            i = rng.randrange(n + 1)
            buf[i:i] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3 and n:  # delete a span
            i = rng.randrange(n)
            del buf[i : i + rng.randrange(1, 17)]
        elif op == 4 and n:  # truncate
            del buf[rng.randrange(n) :]
        elif op == 5 and pool:  # splice with another input
            other = rng.choice(pool)
            if other:
                i, j = rng.randrange(n + 1), rng.randrange(len(other))
                buf = buf[:i] + other[j : j + rng.randrange(1, 64)] + buf[i:]
        elif op == 6:  # an interesting varint / float
            i = rng.randrange(n + 1)
            tok = rng.choice(_INTERESTING)
            buf[i : i + len(tok) * rng.randrange(2)] = tok
        elif op == 7 and n > 1:  # duplicate a span
            i = rng.randrange(n)
            span = buf[i : i + rng.randrange(1, 128)]
            j = rng.randrange(n + 1)
            buf[j:j] = span
        elif op == 8 and n:  # small arithmetic on a byte
            i = rng.randrange(n)
            buf[i] = (buf[i] + rng.choice((-2, -1, 1, 2))) & 0xFF
    return bytes(buf)


def _run_builtin(target: Callable[[bytes], None], seeds: list[bytes], seconds: float,
                 artifacts: Path, seed: int) -> dict:
    rng = random.Random(seed)
    pool = list(seeds) or [b""]
    execs = 0
    t0 = time.monotonic()
    deadline = t0 + seconds

    def one(data: bytes) -> None:
        nonlocal execs
        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        try:
            target(data)
        except BaseException:
            faulthandler.cancel_dump_traceback_later()
            path = _save_crash(artifacts, data)
            traceback.print_exc()
            print(f"==FUZZ FAILURE== input saved to {path}", file=sys.stderr, flush=True)
            raise SystemExit(1)
        faulthandler.cancel_dump_traceback_later()
        execs += 1

    for data in pool:
        one(data)
    while time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(pool), pool)
        one(data)
        # keep a few mutants to go deeper than one step from a seed
        if len(pool) < 512 and rng.random() < 0.01:
            pool.append(data)
    return {"engine": "builtin", "execs": execs, "seconds": round(time.monotonic() - t0, 1)}


def _save_crash(artifacts: Path, data: bytes) -> Path:
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / f"crash-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------
# atheris engine


def _run_atheris(target: Callable[[bytes], None], corpus: Path, seconds: float,
                 artifacts: Path, extra: list[str]) -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="akf-fuzz-corpus-"))
    args = [
        sys.argv[0],
        f"-max_total_time={int(seconds)}",
        f"-timeout={HANG_SECONDS}",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}{os.sep}",
        *extra,
        str(work),  # new inputs go here, the committed seeds stay untouched
        str(corpus),
    ]
    atheris.Setup(args, target)
    atheris.Fuzz()


def parse_libfuzzer_stats(text: str) -> dict:
    """Executions and coverage from libFuzzer's output (``-print_final_stats=1``)."""
    out: dict = {}
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", text)
    if m:
        out["execs"] = int(m.group(1))
    lines = re.findall(r"#(\d+)\s+(?:DONE|NEW|REDUCE|pulse|INITED)\s+(?:cov: (\d+) )?ft: (\d+) corp: (\d+)/", text)
    if lines:
        last = lines[-1]
        out.setdefault("execs", int(last[0]))
        if last[1]:
            out["cov"] = int(last[1])
        out["ft"] = int(last[2])
        out["corpus"] = int(last[3])
    m = re.search(r"stat::peak_rss_mb:\s*(\d+)", text)
    if m:
        out["peak_rss_mb"] = int(m.group(1))
    return out


# --------------------------------------------------------------------------


def main(target: Callable[[bytes], None], corpus_name: str, *, argv: Iterable[str] | None = None,
         setup: Callable[[argparse.Namespace], None] | None = None,
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="time budget of the run")
    p.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"),
                   help="where failing inputs are written")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in engine")
    p.add_argument("--engine", choices=("auto", "builtin"), default="auto")
    p.add_argument("inputs", nargs="*", type=Path, help="replay these inputs and exit")
    if add_arguments:
        add_arguments(p)
    args, extra = p.parse_known_args(list(argv) if argv is not None else sys.argv[1:])
    if setup:
        setup(args)
    corpus = CORPUS_ROOT / corpus_name
    if args.inputs:
        for path in args.inputs:
            target(path.read_bytes())
            print(f"ok {path}")
        return
    if atheris is not None and args.engine == "auto":
        _run_atheris(target, corpus, args.seconds, args.artifacts, extra)
        return
    seeds = [p.read_bytes() for p in _seed_files(corpus)]
    stats = _run_builtin(target, seeds, args.seconds, args.artifacts, args.seed)
    print("FUZZ-STATS " + json.dumps(stats), flush=True)
