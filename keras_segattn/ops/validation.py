"""Shared static input checks for ops and layers.

Plays the role of torchvision's `ops/_utils.py`: every op and layer validates
its Python arguments and static shapes here, raising `ValueError` (or
`TypeError`) that names the argument, the expectation and what was received.
Only static shapes and Python values are read, so the checks run while a
functional graph is built and add nothing to the compiled computation.
"""

from __future__ import annotations

from collections.abc import Sequence


def _shape_tuple(shape) -> tuple:
    if hasattr(shape, "as_list"):  # tf.TensorShape
        shape = shape.as_list() if shape.rank is not None else None
    if shape is None:
        return None
    return tuple(None if d is None else int(d) for d in shape)


def static_shape(x) -> tuple:
    """Returns the static shape of a tensor, KerasTensor or shape as a tuple."""
    shape = getattr(x, "shape", x)
    return _shape_tuple(shape)


def check_rank(x, expected_ranks, name: str) -> tuple:
    """Checks the rank of `x` (a tensor or a shape); returns the shape tuple.

    Args:
        x: tensor, KerasTensor or shape tuple.
        expected_ranks: int or tuple of ints.
        name: argument name used in the error message.

    Raises:
        ValueError: if the static rank is known and not one of
            `expected_ranks`.
    """
    if isinstance(expected_ranks, int):
        expected_ranks = (expected_ranks,)
    shape = static_shape(x)
    if shape is not None and len(shape) not in expected_ranks:
        wanted = " or ".join(str(r) for r in expected_ranks)
        raise ValueError(
            f"Invalid rank for argument `{name}`. Expected rank {wanted}. "
            f"Received: {name}.shape={shape} (rank {len(shape)})."
        )
    return shape


def check_static_dims(x, dims: dict, name: str) -> tuple:
    """Checks that the axes in `dims` ({axis: size}) have the given sizes."""
    shape = static_shape(x)
    for axis, size in dims.items():
        actual = shape[axis]
        if actual is not None and actual != size:
            raise ValueError(
                f"Invalid shape for argument `{name}`. Expected dimension "
                f"{axis} to be {size}. Received: {name}.shape={shape}."
            )
    return shape


def check_divisible(
    x, axes: Sequence[int], divisor: Sequence[int], name: str
) -> tuple:
    """Checks that each known static size of `axes` divides by `divisor`."""
    shape = static_shape(x)
    for axis, d in zip(axes, divisor, strict=True):
        actual = shape[axis]
        if actual is not None and actual % d:
            raise ValueError(
                f"Invalid shape for argument `{name}`. Expected spatial size "
                f"divisible by pool size {tuple(divisor)}. Received: "
                f"{name}.shape={shape}. Pad or crop the input first."
            )
    return shape


def check_floating(dtype, name: str) -> None:
    """Raises `TypeError` unless `dtype` is a floating dtype."""
    dtype_name = str(getattr(dtype, "name", dtype))
    if "float" not in dtype_name:
        raise TypeError(
            f"Invalid dtype for argument `{name}`. Expected a floating dtype. "
            f"Received: {name}.dtype={dtype_name}."
        )


def check_integer(dtype, name: str) -> None:
    """Raises `TypeError` unless `dtype` is an integer dtype."""
    dtype_name = str(getattr(dtype, "name", dtype))
    if "int" not in dtype_name:
        raise TypeError(
            f"Invalid dtype for argument `{name}`. Expected an integer dtype. "
            f"Received: {name}.dtype={dtype_name}."
        )


def check_positive_int(value, name: str) -> int:
    """Returns `int(value)` or raises `ValueError` unless it is > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly "
            f"positive integer. Received: {name}={value!r}."
        )
    return int(value)


def check_one_of(value, allowed: Sequence, name: str):
    """Returns `value` or raises `ValueError` unless it is in `allowed`."""
    if value not in allowed:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected one of "
            f"{list(allowed)}. Received: {name}={value!r}."
        )
    return value


def standardize_size(value, name: str) -> tuple[int, int]:
    """Normalises an int or a pair to a `(height, width)` tuple of ints > 0.

    Accepts lists too, since JSON configs turn tuples into lists.
    """
    received = value
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0
            for v in value
        )
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly "
            f"positive int or a pair of them (height, width). "
            f"Received: {name}={received!r}."
        )
    return (int(value[0]), int(value[1]))


def check_same_static_shape(x, y, x_name: str, y_name: str) -> tuple:
    """Checks that the known static dims of `x` and `y` agree.

    Unknown dims (None) on either side are not compared. Returns the shape
    tuple of `x`.

    Raises:
        ValueError: if the ranks differ or a pair of known dims differs.
    """
    x_shape, y_shape = static_shape(x), static_shape(y)
    if x_shape is None or y_shape is None:
        return x_shape
    if len(x_shape) != len(y_shape) or any(
        a is not None and b is not None and a != b
        for a, b in zip(x_shape, y_shape, strict=False)
    ):
        raise ValueError(
            f"Invalid shape for argument `{y_name}`. Expected the same shape "
            f"as `{x_name}`. Received: {x_name}.shape={x_shape} and "
            f"{y_name}.shape={y_shape}."
        )
    return x_shape
