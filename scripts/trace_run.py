"""Runs seeded random ``AvatarController`` call sequences and prints their
traces' digests (or one full trace), for the differential test: the same
seeds under the compiled engine and under ``AVATARKIT_NO_EXTENSIONS=1`` must
give the same digests.

    python scripts/trace_run.py --seeds 0:200 --ops 300          # digests, JSON
    python scripts/trace_run.py --seeds 17:18 --ops 300 --full   # one trace
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))

import controller_ops as ops  # noqa: E402


def loaded_modules() -> dict:
    """Where each engine module came from (compiled library or source)."""
    import avatarkit_fast

    out = {}
    for name, mod in sorted(sys.modules.items()):
        if name.startswith("avatarkit_fast._") and (name.endswith("_c") or name.endswith("_py")):
            out[name] = Path(getattr(mod, "__file__", "") or "").suffix
    out["package"] = str(Path(avatarkit_fast.__file__).parent)
    return out


def program(seed: int, n_ops: int) -> bytes:
    return ops.random_program(random.Random(seed), n_ops=n_ops)


def trace_of(seed: int, n_ops: int) -> list:
    import avatarkit_fast.errors as errors
    from avatarkit_fast.controller import AvatarController

    return ops.Run(AvatarController, errors, program(seed, n_ops)).run()


def digest(trace: list) -> str:
    return hashlib.sha256(repr(trace).encode()).hexdigest()[:16]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0:100", help="START:STOP")
    p.add_argument("--ops", type=int, default=300)
    p.add_argument("--full", action="store_true", help="print the full traces (repr, one entry a line)")
    args = p.parse_args(argv)
    start, stop = map(int, args.seeds.split(":"))
    result = {"digests": {}, "failures": {}}
    for seed in range(start, stop):
        try:
            trace = trace_of(seed, args.ops)
        except ops.Failure as exc:  # an invariant broke: report it, keep comparing the rest
            result["failures"][seed] = str(exc)
            continue
        if args.full:
            for entry in trace:
                print(repr(entry))
        result["digests"][seed] = digest(trace)
    result["modules"] = loaded_modules()
    if not args.full:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
