"""Property-based tests of the box ops: encode_boxes / decode_boxes and
batched_nms.

Properties: box coding keeps the [..., 4] shape, is finite (values and
gradients) for finite boxes, degenerate and padding boxes included,
decode inverts encode for boxes of positive size, a NaN coordinate only
reaches its own box, eager equals XLA, integers are refused. batched_nms
returns [B, max_output_size] int32 indices and bool kept slots, the kept
slots first; it keeps exactly torchvision's boxes (NumPy reference), never
a non-finite or invalid box, works with N = 0 and B = 0, and eager equals
XLA.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_segattn import ops
from tests.ops.detection_references import np_batched_nms
from tests.property import helpers as h

WEIGHTS = st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])


@st.composite
def _boxes(draw, shape, bound=1e4, special=False, positive=False):
    """[*shape, 4] (x1, y1, x2, y2): ordinary, degenerate, padding and
    (with `special`) non-finite boxes; only ordinary with `positive`."""
    count = int(np.prod(shape))
    kinds = ["box", "box", "degenerate", "padding"]
    kinds += ["non_finite"] if special else []
    rows = []
    for _ in range(count):
        kind = "box" if positive else draw(st.sampled_from(kinds))
        if kind == "padding":
            rows.append([-1.0] * 4)
            continue
        x1, y1 = draw(h.finite(bound)), draw(h.finite(bound))
        lo, hi = (-5.0, 0.0) if kind == "degenerate" else (0.5, 100.0)
        row = [
            x1,
            y1,
            x1 + draw(st.floats(lo, hi, width=32)),
            y1 + draw(st.floats(lo, hi, width=32)),
        ]
        if kind == "non_finite":
            row[draw(st.integers(0, 3))] = draw(h.non_finite())
        rows.append(row)
    return np.asarray(rows, "float64").reshape(*shape, 4)


@given(
    shape=st.sampled_from([(0,), (1,), (2, 3)]),
    weights=WEIGHTS,
    dtype=st.sampled_from(["float32", "float64", "float16"]),
    data=st.data(),
)
def test_box_coding(shape, weights, dtype, data):
    bound = 1e3 if dtype == "float16" else 1e4
    boxes = data.draw(_boxes(shape, bound, special=True))
    # Anchors and RoIs have a positive size (degenerate ones give deltas
    # near 1e11 and gradients that overflow; see the docstrings).
    anchors = data.draw(_boxes(shape, bound, positive=True))
    boxes_t, anchors_t = h.tensor(boxes, dtype), h.tensor(anchors, dtype)

    def round_trip(b, a):
        deltas = ops.encode_boxes(b, a, weights)
        return deltas, ops.decode_boxes(deltas, a, weights)

    key = ("box_coding", weights)
    # Eager and XLA round differently where coordinates cancel: allow
    # 1e-6 of the largest input (a few float32 ulps of it).
    inputs = np.concatenate([boxes, anchors])
    finite_inputs = np.abs(np.where(np.isfinite(inputs), inputs, 0.0))
    deltas, decoded = h.assert_eager_equals_xla(
        round_trip,
        (boxes_t, anchors_t),
        key,
        "float32",
        scale=max(1.0, float(finite_inputs.max(initial=0.0)) * 0.1),
    )
    assert deltas.shape == decoded.shape == boxes.shape
    boxes = h.numpy(boxes_t).astype("float64")  # after the dtype cast
    anchors = h.numpy(anchors_t).astype("float64")
    finite = np.isfinite(boxes).all(-1)
    h.assert_all_finite(deltas[finite], decoded[finite])
    assert not np.isfinite(deltas[~finite]).all(-1).any()
    grads = h.gradients(round_trip, (boxes_t, anchors_t), (0, 1))
    if finite.all():
        h.assert_all_finite(*grads)
    # decode(encode(b)) == b where sizes are positive and inside the clamp.
    positive = (boxes[..., 2:] > boxes[..., :2]).all(-1) & (
        anchors[..., 2:] > anchors[..., :2]
    ).all(-1)
    size = np.maximum(
        np.abs(boxes).max(-1, initial=0.0), np.abs(anchors).max(-1, initial=0)
    )
    ok = positive & finite
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            ok[..., None], boxes[..., 2:] - boxes[..., :2], 1.0
        ) / (anchors[..., 2:] - anchors[..., :2])
    ok &= (np.abs(np.log(ratio)) < 4.0).all(-1)  # inside the clamp
    atol = float(np.max(size[ok], initial=1.0)) * 1e-5
    np.testing.assert_allclose(decoded[ok], boxes[ok], atol=atol)


@given(dtype=h.integer_dtypes, argument=st.sampled_from(["boxes", "anchors"]))
def test_box_coding_refuses_integers(dtype, argument):
    args = {"boxes": np.zeros((2, 4), "f4"), "anchors": np.ones((2, 4), "f4")}
    args[argument] = args[argument].astype(dtype)
    with pytest.raises(TypeError, match=f"{argument}.dtype={dtype}"):
        ops.encode_boxes(args["boxes"], args["anchors"])
    with pytest.raises(TypeError, match=f"anchors.dtype={dtype}"):
        ops.decode_boxes(np.zeros((2, 4), "f4"), args["anchors"].astype(dtype))


@given(
    batch=st.sampled_from([0, 1, 2]),
    num=st.sampled_from([0, 1, 4, 7]),
    max_output_size=st.sampled_from([1, 5]),
    iou_threshold=st.sampled_from([0.0, 0.5, 1.0]),
    categories=st.booleans(),
    data=st.data(),
)
def test_batched_nms(
    batch, num, max_output_size, iou_threshold, categories, data
):
    # Coordinates on a coarse grid (exact IoUs away from ties with the
    # threshold) and distinct scores, so the reference is unambiguous.
    boxes = data.draw(_boxes((batch, num), bound=20.0, special=True))
    boxes = np.where(np.isfinite(boxes), np.round(boxes), boxes)
    scores = np.array(
        [data.draw(st.permutations(range(num))) for _ in range(batch)],
        "float64",
    ).reshape(batch, num) / max(num, 1)
    if num and batch and data.draw(st.booleans()):
        scores[0, 0] = data.draw(h.non_finite())
    idxs = data.draw(h.array((batch, num), st.sampled_from([0.0, 1.0, 2.0])))
    idxs = idxs.astype("int32") if categories else None
    valid = data.draw(h.array((batch, num), st.booleans())).astype(bool)

    def fn(b, s, v, *i):
        return ops.batched_nms(
            b, s, max_output_size, iou_threshold, i[0] if i else None, v
        )

    args = (boxes.astype("f4"), scores.astype("f4"), valid)
    args += (idxs,) if categories else ()
    key = ("nms", max_output_size, iou_threshold, categories)
    indices, kept = h.assert_eager_equals_xla(fn, args, key, "float32")
    assert indices.shape == kept.shape == (batch, max_output_size)
    assert indices.dtype == np.int32 and kept.dtype == bool
    usable = valid & np.isfinite(boxes).all(-1) & np.isfinite(scores)
    for b in range(batch):
        count = int(kept[b].sum())
        assert kept[b, :count].all()  # the kept slots come first
        np.testing.assert_array_equal(indices[b, count:], 0)
        members = np.flatnonzero(usable[b])
        expected = np_batched_nms(
            [boxes[b, i] for i in members],
            [scores[b, i] for i in members],
            [0 if idxs is None else idxs[b, i] for i in members],
            iou_threshold,
        )
        expected = [int(members[k]) for k in expected][:max_output_size]
        assert indices[b, :count].tolist() == expected


@given(dtype=h.integer_dtypes)
def test_batched_nms_refuses_integers(dtype):
    with pytest.raises(TypeError, match=f"scores.dtype={dtype}"):
        ops.batched_nms(
            np.zeros((1, 2, 4), "f4"), np.zeros((1, 2), dtype), 1, 0.5
        )
