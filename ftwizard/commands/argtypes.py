"""Argument types for numbers with a meaningful range.

argparse calls these while parsing, so an out-of-range value is a usage error (exit 2, a
JSON object under --json) naming the option, before any work starts. Standard library only.
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type) -> float | int:
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def positive_int(text: str) -> int:
    v = _number(text, int)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {v}")
    return v


def nonneg_int(text: str) -> int:
    v = _number(text, int)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def positive_float(text: str) -> float:
    v = _number(text, float)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {v:g}")
    return v


def nonneg_float(text: str) -> float:
    v = _number(text, float)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v:g}")
    return v


def unit_fraction(text: str) -> float:
    """A share in (0, 1], such as an assumed utilisation."""
    v = _number(text, float)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (0 excluded), got {v:g}")
    return v


def port(text: str) -> int:
    v = _number(text, int)
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1-65535, got {v}")
    return v
