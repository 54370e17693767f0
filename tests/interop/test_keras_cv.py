"""Interop with keras-cv (the optional `keras-cv` extra; skipped without it).

The package never imports keras-cv; these tests check that its outputs can
be handed to keras-cv's box utilities as they are.
"""

import numpy as np
import pytest

from keras_segattn.layers import _roi_common

keras_cv = pytest.importorskip("keras_cv")


@pytest.mark.parametrize("source", ["yxyx", "xywh", "center_xywh"])
def test_box_formats_agree_with_keras_cv(source):
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(0, 64, (2, 5, 2, 2)), axis=2)
    xyxy = corners.transpose(0, 1, 3, 2).reshape(2, 5, 4)  # x1, y1, x2, y2
    xyxy = xyxy[..., [0, 2, 1, 3]].astype("float32")
    boxes = keras_cv.bounding_box.convert_format(
        xyxy, source="xyxy", target=source
    )
    ours = _roi_common.to_xyxy(np.asarray(boxes), source)
    np.testing.assert_allclose(np.asarray(ours), xyxy, atol=1e-4)
