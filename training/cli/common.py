"""Argument types shared by the verbs: bad numbers become one clear argparse error."""
from __future__ import annotations

import argparse


def int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
