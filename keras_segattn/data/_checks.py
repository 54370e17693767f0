"""Argument checks shared by the data loaders.

`data/` imports nothing from the rest of the package (see STYLE.md), so
it keeps these few checks of its own, worded like `ops.validation`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_int(
    value, name: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Returns `int(value)` or raises `ValueError` unless `value` is an
    integer (not a bool) in [minimum, maximum]."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(
        value, bool
    )
    if (
        not is_int
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        if minimum is not None and maximum is not None:
            expected = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            expected = f"an integer >= {minimum}"
        elif maximum is not None:
            expected = f"an integer <= {maximum}"
        else:
            expected = "an integer"
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected {expected}. "
            f"Received: {name}={value!r}."
        )
    return int(value)


def check_positive_int(value, name: str) -> int:
    return check_int(value, name, minimum=1)


def check_non_negative_int(value, name: str) -> int:
    return check_int(value, name, minimum=0)


def check_optional_int(value, name: str) -> int | None:
    return None if value is None else check_int(value, name)


def check_split(split, allowed: Sequence[str]) -> str:
    """Returns `split` or raises `ValueError` unless it is in `allowed`."""
    if split not in allowed:
        raise ValueError(
            "Invalid value for argument `split`. Expected one of "
            f"{list(allowed)}. Received: split={split!r}."
        )
    return split
