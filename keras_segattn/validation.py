"""Shared argument checks for every package: ops, layers, models, data, export.

The one home of the package's argument validation, in the role of
torchvision's `ops/_utils.py`: ops and layers check their Python arguments
and static shapes here, and so do the models, the `data/` loaders and the
`export/` functions, raising `ValueError` (or `TypeError`) that names the
argument, the expectation and what was received. Only static shapes and
Python values are read (`check_roi_box_values` excepted, see its
docstring), so the checks run while a functional graph is built and add
nothing to the compiled computation. The module also holds the `Tensor`
alias and `shape_list`, which the ops share.

It imports only keras, NumPy and the standard library, never another module
of the package, so `data/` can use it without importing models or layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

Tensor = Any  # a backend tensor, KerasTensor or NumPy array


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


def shape_list(x) -> list:
    """Each dimension of tensor `x`: a static int, or a scalar tensor if not.

    For reshapes that must stay static where the shape is known (XLA) and
    still work with an unknown batch or spatial size.
    """
    dynamic = ops.shape(x)
    return [
        static if static is not None else dynamic[axis]
        for axis, static in enumerate(x.shape)
    ]


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


def _check_dtype_kind(dtype, name: str, kind: str, expected: str) -> None:
    """Raises `TypeError` unless the dtype's name contains `kind`."""
    dtype_name = str(getattr(dtype, "name", dtype))
    if kind not in dtype_name:
        raise TypeError(
            f"Invalid dtype for argument `{name}`. Expected {expected}. "
            f"Received: {name}.dtype={dtype_name}."
        )


def check_floating(dtype, name: str) -> None:
    """Raises `TypeError` unless `dtype` is a floating dtype."""
    _check_dtype_kind(dtype, name, "float", "a floating dtype")


def check_integer(dtype, name: str) -> None:
    """Raises `TypeError` unless `dtype` is an integer dtype."""
    _check_dtype_kind(dtype, name, "int", "an integer dtype")


def _is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_int(
    value, name: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Returns `int(value)` or raises `ValueError` unless `value` is an
    integer (Python or NumPy, not a bool) in [minimum, maximum].

    Either bound may be None (unbounded on that side).
    """
    if (
        not _is_int(value)
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


def check_bool(value, name: str) -> bool:
    """Returns `bool(value)` or raises `TypeError` unless a Python or NumPy
    bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"Invalid type for argument `{name}`. Expected a bool. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    return bool(value)


def check_positive_int(value, name: str) -> int:
    """Returns `int(value)` or raises `ValueError` unless an integer > 0."""
    if not _is_int(value) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly "
            f"positive integer. Received: {name}={value!r}."
        )
    return int(value)


def check_non_negative_int(value, name: str) -> int:
    """Returns `int(value)` or raises `ValueError` unless an integer >= 0."""
    return check_int(value, name, minimum=0)


def check_optional_int(value, name: str) -> int | None:
    """Returns None for None, else `check_int(value, name)`."""
    return None if value is None else check_int(value, name)


def check_version(version, name: str = "version") -> int:
    """Returns an export version or raises `ValueError` unless an int >= 1.

    TF Serving loads `export_dir/<version>/` and only numbers its versions
    from 1.
    """
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or (version < 1)
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly "
            f"positive integer (TF Serving's version directory). "
            f"Received: {name}={version!r}."
        )
    return version


def check_num_classes(num_classes) -> int:
    """Returns `num_classes` or raises `ValueError` unless an int >= 1."""
    return check_int(num_classes, "num_classes", minimum=1)


def check_void_label(value, name: str = "void_label") -> int | None:
    """Returns `value` or raises `ValueError` unless None or an int label."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int)
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected None or an "
            f"integer label. Received: {name}={value!r}."
        )
    return value


def check_data_dir(data_dir, expected: str):
    """Returns `data_dir` or raises `ValueError` when it is None: the
    loaders have no default folder, and `expected` says what the folder
    holds and where to get it."""
    if data_dir is None:
        raise ValueError(
            f"Invalid value for argument `data_dir`. Expected {expected}. "
            "Received: data_dir=None."
        )
    return data_dir


def check_one_of(value, allowed: Sequence, name: str):
    """Returns `value` or raises `ValueError` unless it is in `allowed`."""
    if value not in allowed:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected one of "
            f"{list(allowed)}. Received: {name}={value!r}."
        )
    return value


def check_split(split, allowed: Sequence[str]) -> str:
    """Returns `split` or raises `ValueError` unless it is in `allowed`
    (`check_one_of` for a data loader's `split` argument)."""
    return check_one_of(split, allowed, "split")


# Absolute formats of `keras.utils.bounding_boxes.convert_format`; the
# relative ones need the image size, which the layers do not see.
BOUNDING_BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw")


def check_bounding_box_format(value) -> str:
    """Returns the lower-cased absolute format or raises `ValueError`."""
    if isinstance(value, str) and value.lower().startswith("rel_"):
        raise ValueError(
            "Invalid value for argument `bounding_box_format`. Relative "
            "formats need the image size; convert the boxes to absolute "
            "pixels first (keras.utils.bounding_boxes.convert_format with "
            f"height and width). Expected one of {list(BOUNDING_BOX_FORMATS)}"
            f". Received: bounding_box_format={value!r}."
        )
    value = value.lower() if isinstance(value, str) else value
    return check_one_of(value, BOUNDING_BOX_FORMATS, "bounding_box_format")


def _standardize_pair(
    value, name: str, minimum: int, expected: str
) -> tuple[int, int]:
    """An int or a pair (tuple or list) -> a pair of ints >= `minimum`."""
    received = value
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum
            for v in value
        )
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected {expected}. "
            f"Received: {name}={received!r}."
        )
    return (int(value[0]), int(value[1]))


def standardize_size(value, name: str) -> tuple[int, int]:
    """Normalises an int or a pair to a `(height, width)` tuple of ints > 0.

    Accepts lists too, since JSON configs turn tuples into lists.
    """
    return _standardize_pair(
        value,
        name,
        minimum=1,
        expected="a strictly positive int or a pair of them (height, width)",
    )


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


def standardize_offset(value, name: str) -> tuple[int, int]:
    """Normalises an int or a pair to a `(y, x)` tuple of ints >= 0.

    Like `standardize_size` but zero is allowed (a crop offset). Accepts
    lists too, since JSON configs turn tuples into lists.
    """
    return _standardize_pair(
        value,
        name,
        minimum=0,
        expected="a non-negative int or a pair of them (y, x)",
    )


def check_roi_boxes(boxes, name: str = "boxes") -> bool:
    """Checks the static shape of RoI boxes; returns True for the flat form.

    The batched form is [B, N, 4] of (x1, y1, x2, y2); the flat form is
    [K, 5] of (batch index, x1, y1, x2, y2), torchvision's `Tensor[K, 5]`
    (torchvision/ops/_utils.py, `check_roi_boxes_shape`).

    Raises:
        ValueError: if the rank is unknown or not 2 or 3, or the last
            dimension is not 5 (rank 2) or 4 (rank 3).
    """
    shape = static_shape(boxes)
    expected = (
        "Expected batched boxes [B, N, 4] of (x1, y1, x2, y2) or the flat "
        "form [K, 5] of (batch index, x1, y1, x2, y2)."
    )
    if shape is None or len(shape) not in (2, 3):
        raise ValueError(
            f"Invalid rank for argument `{name}`. {expected} "
            f"Received: {name}.shape={shape}."
        )
    last = 5 if len(shape) == 2 else 4
    if shape[-1] != last:
        raise ValueError(
            f"Invalid shape for argument `{name}`. {expected} "
            f"Received: {name}.shape={shape}."
        )
    return len(shape) == 2


def check_roi_batch_sizes(
    features, boxes, features_name: str = "features", boxes_name: str = "boxes"
) -> None:
    """Checks that batched [B, N, 4] boxes and features agree on a known B."""
    f_shape, b_shape = static_shape(features), static_shape(boxes)
    if f_shape is None or b_shape is None or len(b_shape) != 3:
        return
    if f_shape[0] is not None and b_shape[0] is not None:
        if f_shape[0] != b_shape[0]:
            raise ValueError(
                f"Mismatched batch sizes: `{features_name}` and "
                f"`{boxes_name}` must have the same batch size B. Received: "
                f"{features_name}.shape={f_shape} and "
                f"{boxes_name}.shape={b_shape}."
            )


def check_positive_float(value, name: str) -> float:
    """Returns `float(value)` or raises `ValueError` unless finite and > 0."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        value_f = float(value)
        ok = value_f > 0 and value_f != float("inf")
    if not ok:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite, "
            f"strictly positive number. Received: {name}={value!r}."
        )
    return value_f


def check_positive_floats(values, name: str) -> tuple[float, ...]:
    """Returns `values` as a tuple of floats, or raises `ValueError` unless
    it is a non-empty sequence of finite, strictly positive numbers."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a non-empty "
            f"sequence of positive numbers. Received: {name}={values!r}."
        )
    if not values:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected at least one "
            f"number. Received: {name}={values!r}."
        )
    return tuple(check_positive_float(value, name) for value in values)


def check_non_negative_float(value, name: str) -> float:
    """Returns `float(value)` or raises `ValueError` unless finite and >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 <= value < float("inf")
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite number "
            f">= 0. Received: {name}={value!r}."
        )
    return float(value)


def check_fraction(value, name: str) -> float:
    """Returns `float(value)` or raises `ValueError` unless in [0, 1]
    (an IoU threshold, a score threshold, a positive fraction)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a number in "
            f"[0, 1]. Received: {name}={value!r}."
        )
    return float(value)


def check_rate(value, name: str = "dropout") -> float:
    """Returns `float(value)` or raises `ValueError` unless in [0, 1)
    (a dropout rate, an overlap or held-out fraction that cannot be 1)."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0.0 <= value < 1.0
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a float in "
            f"[0, 1). Received: {name}={value!r}."
        )
    return float(value)


def check_sampling_ratio(value, name: str = "sampling_ratio") -> int:
    """Returns the RoIAlign sampling ratio or raises a `ValueError`.

    torchvision's `sampling_ratio <= 0` ("adaptive") gives each RoI a
    data-dependent number of sample points, which static-shape XLA
    programs cannot express, so only fixed positive ratios are accepted.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly "
            "positive integer: adaptive sampling (torchvision's "
            "sampling_ratio <= 0) has a data-dependent number of sample "
            "points that XLA cannot compile; pass a fixed ratio such as 2. "
            f"Received: {name}={value!r}."
        )
    return int(value)


def check_roi_box_values(
    boxes, name: str = "boxes", num_images: int | None = None
) -> None:
    """Eagerly checks RoI box *values* (the `validate=True` option of ops).

    Unlike the other checks here this one reads values, so it needs
    concrete boxes (NumPy arrays or eager tensors) and cannot run inside a
    `tf.function`, an XLA program or a functional model. Padding rows (all
    four coordinates -1) are skipped.

    Raises:
        ValueError: if `boxes` is symbolic, a coordinate is NaN or
            infinite, x2 < x1 or y2 < y1, or (flat form) a batch index is
            not an integer in [0, num_images).
    """
    try:
        values = np.asarray(boxes, dtype="float64")
    except (TypeError, ValueError, NotImplementedError, AttributeError):
        values = None
    if values is None or values.dtype == object:
        raise ValueError(
            f"`validate=True` reads the values of `{name}`, so it needs "
            "concrete boxes (NumPy arrays or eager tensors), not symbolic "
            "ones: XLA cannot raise errors from values. Validate the data "
            "eagerly, or pass validate=False inside compiled functions. "
            f"Received: {name} of type {type(boxes).__name__}."
        )
    flat = check_roi_boxes(values, name)
    coords = values[:, 1:] if flat else values.reshape(-1, 4)
    rows = np.arange(len(values)) if flat else None
    padding = np.all(coords == -1.0, axis=-1)

    def where(i: int) -> str:
        if flat:
            return f"{name}[{int(rows[i])}]"
        b, n = np.unravel_index(i, values.shape[:2])
        return f"{name}[{int(b)}, {int(n)}]"

    def reject_first(bad, expected: str, received) -> None:
        """Raises for the first box (not padding) flagged in `bad`."""
        bad = ~padding & bad
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected {expected}. "
                f"Received: {where(i)}={received[i].tolist()}."
            )

    reject_first(
        ~np.all(np.isfinite(coords), axis=-1), "finite coordinates", coords
    )
    reject_first(
        (coords[:, 2] < coords[:, 0]) | (coords[:, 3] < coords[:, 1]),
        "x1 <= x2 and y1 <= y2 (or all four coordinates -1 for padding)",
        coords,
    )
    if flat:
        index = values[:, 0]
        reject_first(
            ~np.isfinite(index)
            | (index != np.floor(index))
            | (index < 0)
            | ((index >= num_images) if num_images is not None else False),
            f"the batch index (column 0) to be an integer in [0, {num_images})",
            values,
        )
