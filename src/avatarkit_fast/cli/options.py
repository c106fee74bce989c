"""Bounded option types for the command line's parsers.

Every number an option takes is checked while the arguments are parsed, before
any work starts: a value that is not a number, not finite, or outside the
option's bounds is one line and exit status 2 (argparse's ``error``).
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["bounded_float", "bounded_int"]


def _bounded(kind: type, lo: float, hi: float, unit: str) -> Callable[[str], float]:
    def parse(text: str):
        value = kind(text)  # ValueError: argparse says "invalid float/int value: 'x'"
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {_num(lo)} and {_num(hi)}{unit}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def bounded_float(lo: float, hi: float, unit: str = "") -> Callable[[str], float]:
    """An argparse ``type``: a finite float in ``[lo, hi]`` (``unit`` is named in the error)."""
    return _bounded(float, lo, hi, unit)


def bounded_int(lo: int, hi: int, unit: str = "") -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``[lo, hi]``."""
    return _bounded(int, lo, hi, unit)
