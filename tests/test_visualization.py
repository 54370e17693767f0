"""Tests for `keras_segattn.visualization`: pixels and artists, headless."""

import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle

from keras_segattn import visualization

RED = [200, 0, 0]
BLUE = [0, 0, 255]


def _images(batch=2, size=8, value=100):
    return np.full((batch, size, size, 3), value, "uint8")


def _masks(batch=2, size=8):
    masks = np.zeros((batch, size, size), "int32")
    masks[:, 2:5, 3:6] = 1
    return masks


def _render(figure) -> np.ndarray:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


def test_overlay_blends_class_colours_and_keeps_ignored_pixels():
    masks = _masks()
    masks[0, 0, 0] = 7  # void
    out = visualization.overlay_segmentation(
        _images(), masks, 2, colors=[RED, BLUE], alpha=0.25, ignore_index=7
    )
    assert out.dtype == np.uint8 and out.shape == (2, 8, 8, 3)
    # class 1: 0.75 * 100 + 0.25 * (0, 0, 255) = (75, 75, 138.75)
    np.testing.assert_array_equal(out[1, 3, 4], [75, 75, 138])
    # class 0: 0.75 * 100 + 0.25 * (200, 0, 0) = (125, 75, 75)
    np.testing.assert_array_equal(out[0, 7, 7], [125, 75, 75])
    np.testing.assert_array_equal(out[0, 0, 0], [100, 100, 100])


def test_overlay_of_one_grayscale_float_image():
    image = np.full((6, 6), 0.5, "float32")  # [0, 1] range
    mask = np.zeros((6, 6), "int64")
    out = visualization.overlay_segmentation(
        image, mask, 1, colors=[[0, 0, 0]], alpha=1.0
    )
    assert out.shape == (6, 6, 3)
    np.testing.assert_array_equal(out, 0)
    half = visualization.overlay_segmentation(
        image, mask, 1, colors=[[0, 0, 0]], alpha=0.0
    )
    np.testing.assert_array_equal(half, 128)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(masks=np.zeros((2, 8, 7), "int32")), ValueError, "masks.shape"),
        (dict(masks=np.zeros((2, 8, 8), "float32")), TypeError, "masks.dtype"),
        (dict(masks=np.full((2, 8, 8), 2)), ValueError, "labels in [0, 2)"),
        (dict(colors=[RED]), ValueError, "colors.shape=(1, 3)"),
        (dict(alpha=1.5), ValueError, "alpha=1.5"),
        (dict(num_classes=0), ValueError, "num_classes=0"),
        (dict(images=np.zeros((2, 8, 8, 2))), ValueError, "images.shape"),
    ],
)
def test_overlay_rejects_bad_arguments(kwargs, error, match):
    arguments = dict(images=_images(), masks=_masks(), num_classes=2)
    arguments.update(kwargs)
    with pytest.raises(error, match=re.escape(match)):
        visualization.overlay_segmentation(**arguments)


def test_plot_segmentation_panels_and_legend():
    images, masks = _images(), _masks()
    predictions = np.zeros_like(masks)
    figure = visualization.plot_segmentation(
        images,
        masks,
        ["background", "pet"],
        predictions=predictions,
        colors=[RED, BLUE],
        alpha=1.0,
    )
    assert len(figure.axes) == 6
    titles = [axis.get_title() for axis in figure.axes[:3]]
    assert titles == ["image", "ground truth", "prediction"]
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["background", "pet"]
    truth = figure.axes[1].images[0].get_array()
    np.testing.assert_array_equal(truth[3, 4], BLUE)
    np.testing.assert_array_equal(truth[0, 0], RED)
    prediction = figure.axes[2].images[0].get_array()
    np.testing.assert_array_equal(prediction[3, 4], RED)
    assert _render(figure).shape[-1] == 4


def test_plot_segmentation_of_a_prediction_alone():
    figure = visualization.plot_segmentation(
        _images(batch=1), None, ["a", "b"], predictions=_masks(batch=1)
    )
    assert [axis.get_title() for axis in figure.axes] == ["image", "prediction"]
    with pytest.raises(ValueError, match="at least one"):
        visualization.plot_segmentation(_images(), None, ["a", "b"])


def test_plot_segmentation_checks_class_names():
    with pytest.raises(ValueError, match="class_names"):
        visualization.plot_segmentation(_images(), _masks(), [])
    with pytest.raises(ValueError, match=re.escape("labels in [0, 1)")):
        visualization.plot_segmentation(_images(), _masks(), ["only"])
    with pytest.raises(TypeError, match="class_names"):
        visualization.plot_segmentation(_images(), _masks(), "ab")


def _detections():
    boxes = np.array([[[1, 2, 5, 6], [0, 0, 3, 3], [4, 4, 7, 7]]] * 2, float)
    masks = np.zeros((2, 3, 8, 8))
    masks[:, 0, 1:5, 2:6] = 0.9
    return {
        "detection_boxes": boxes,
        "detection_classes": np.array([[1, 2, 0]] * 2),
        "detection_scores": np.array([[0.9, 0.4, 0.8]] * 2),
        "num_detections": np.array([3, 1]),
        "detection_masks": masks,
    }


def _ground_truth():
    return {
        "boxes": np.array([[[1, 2, 5, 6], [0, 0, 0, 0]]] * 2, float),
        "classes": np.array([[1, -1]] * 2),
    }


def _box_patches(axis):
    return [p for p in axis.patches if isinstance(p, Rectangle)]


def test_plot_detections_rows_count_boxes_labels_and_masks():
    figure = visualization.plot_detections(
        _images(),
        _detections(),
        ground_truth=_ground_truth(),
        class_names=["zero", "one", "two"],
        score_threshold=0.5,
        alpha=1.0,
    )
    ground, first, second = figure.axes[0], figure.axes[2], figure.axes[3]
    assert ground.get_title() == "ground truth"
    assert first.get_title() == "detections"
    # ground truth: the padded box is left out
    assert len(_box_patches(ground)) == 1
    # image 0: scores 0.9 and 0.8 pass 0.5, 0.4 does not
    assert len(_box_patches(first)) == 2
    assert [t.get_text() for t in first.texts] == ["one 0.90", "zero 0.80"]
    # image 1: num_detections=1
    assert len(_box_patches(second)) == 1
    (x, y), width = _box_patches(first)[0].get_xy(), _box_patches(first)[0]
    assert (x, y, width.get_width(), width.get_height()) == (2, 1, 4, 4)
    # the mask of detection 0 (class 1) is painted in class 1's colour
    pixels = first.images[0].get_array()
    colour = visualization.class_colors(10)[1]
    np.testing.assert_array_equal(pixels[2, 3], colour)
    np.testing.assert_array_equal(pixels[7, 7], [100, 100, 100])


def test_plot_detections_overlay_colours_and_cap():
    figure = visualization.plot_detections(
        _images(batch=2),
        _detections(),
        ground_truth=_ground_truth(),
        layout="overlay",
        score_threshold=0.0,
        max_detections=2,
        titles=["a", "b"],
        box_format="xyxy",
    )
    assert len(figure.axes) == 2
    patches = _box_patches(figure.axes[0])
    assert len(patches) == 1 + 2  # ground truth + first two detections
    colours = [tuple(p.get_edgecolor()[:3]) for p in patches]
    assert colours == [(0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (1.0, 0.0, 0.0)]
    assert patches[1].get_xy() == (1, 2)  # xyxy: x1 first
    assert figure.axes[1].get_title() == "b"


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda d: d.pop("detection_classes"), ValueError, "missing"),
        (
            lambda d: d.update(detection_scores=np.ones((2, 2))),
            ValueError,
            "detections['detection_scores']",
        ),
        (
            lambda d: d.update(detection_masks=np.ones((2, 3, 4, 4))),
            ValueError,
            "full-image masks",
        ),
        (
            lambda d: d.update(detection_boxes=np.ones((2, 3, 5))),
            ValueError,
            "detections['detection_boxes']",
        ),
        (
            lambda d: d.update(num_detections=np.ones(3)),
            ValueError,
            "num_detections",
        ),
    ],
)
def test_plot_detections_rejects_bad_detections(change, error, match):
    detections = _detections()
    change(detections)
    with pytest.raises(error, match=re.escape(match)):
        visualization.plot_detections(_images(), detections)


def test_plot_detections_rejects_bad_options():
    with pytest.raises(ValueError, match="at least one"):
        visualization.plot_detections(_images())
    with pytest.raises(ValueError, match=re.escape("layout='grid'")):
        visualization.plot_detections(_images(), _detections(), layout="grid")
    with pytest.raises(ValueError, match="titles"):
        visualization.plot_detections(_images(), _detections(), titles=["a"])
    with pytest.raises(TypeError, match="ground_truth"):
        visualization.plot_detections(_images(), ground_truth=[1, 2])


def test_plot_attention_maps_places_alpha_over_the_image():
    attention = np.random.default_rng(0).random((2, 3, 4))
    figure = visualization.plot_attention_maps(
        _images(), attention, words=[["a", "b", "<end>"], ["c"]]
    )
    axes = np.asarray(figure.axes).reshape(2, 4)
    assert [a.get_title() for a in axes[0]] == ["input", "a", "b", "<end>"]
    assert [a.get_title() for a in axes[1]] == ["input", "c", "", ""]
    overlay = axes[0, 2].images[1]
    np.testing.assert_allclose(
        overlay.get_array(), attention[0, 1].reshape(2, 2)
    )
    assert overlay.get_extent() == [-0.5, 7.5, 7.5, -0.5]
    assert len(axes[1, 2].images) == 0


def test_plot_attention_maps_rejects_bad_shapes():
    with pytest.raises(ValueError, match="square number"):
        visualization.plot_attention_maps(_images(), np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match="one row per image"):
        visualization.plot_attention_maps(_images(), np.ones((3, 3, 4)))
    with pytest.raises(ValueError, match="at most T=3"):
        visualization.plot_attention_maps(
            _images(), np.ones((2, 3, 4)), words=[["a"] * 4, ["b"]]
        )


def test_plot_attention_locations_outlines_the_attended_cell():
    # 2x4 grid over 8x8 images: cells of 4 rows x 2 columns of pixels.
    locations = np.array([[5, 0, -1], [3, -1, -1]])
    figure = visualization.plot_attention_locations(
        _images(), locations, (2, 4), words=[["a", "b"], ["c"]]
    )
    axes = np.asarray(figure.axes).reshape(2, 3)
    assert [a.get_title() for a in axes[0]] == ["input", "a", "b"]
    assert [a.get_title() for a in axes[1]] == ["input", "c", ""]
    (outline,) = axes[0, 1].patches  # location 5: row 1, column 1
    assert isinstance(outline, Rectangle)
    assert outline.get_xy() == (1.5, 3.5)
    assert (outline.get_width(), outline.get_height()) == (2.0, 4.0)
    veil = axes[0, 1].images[1].get_array()
    expected = np.full((2, 4), 0.6)
    expected[1, 1] = 0.0
    np.testing.assert_allclose(veil[..., 3], expected)
    assert axes[1, 1].patches[0].get_xy() == (5.5, -0.5)  # row 0, column 3
    assert len(axes[1, 2].images) == 0
    # Rendered: the attended cell keeps its pixels, the rest is dimmed.
    figure = visualization.plot_attention_locations(
        _images(1, value=200), [[0]], 2, dim=1.0
    )
    pixels = _render(figure)
    panel = figure.axes[1]

    def pixel(x, y):  # data coordinates -> the RGB there
        column, row = panel.transData.transform((x, y))
        return pixels[pixels.shape[0] - int(row), int(column), :3]

    np.testing.assert_allclose(pixel(1.5, 1.5), [200] * 3, atol=2)
    np.testing.assert_allclose(pixel(5.5, 5.5), [0] * 3, atol=2)
    np.testing.assert_allclose(pixel(5.5, 1.5), [0] * 3, atol=2)
    # Default titles: one panel per step with a location.
    figure = visualization.plot_attention_locations(
        _images(), locations, (2, 4)
    )
    titles = [a.get_title() for a in figure.axes]
    assert titles == ["input", "t=0", "t=1", "input", "t=0", ""]


def test_plot_attention_locations_rejects_bad_input():
    with pytest.raises(ValueError, match=re.escape("in [0, 8)")):
        visualization.plot_attention_locations(_images(), [[8], [0]], (2, 4))
    with pytest.raises(ValueError, match="one row per image"):
        visualization.plot_attention_locations(_images(), [[1]], (2, 4))
    with pytest.raises(TypeError, match="locations.dtype=float"):
        visualization.plot_attention_locations(_images(), [[1.0], [2.0]], 2)
    with pytest.raises(ValueError, match="rank for argument `locations`"):
        visualization.plot_attention_locations(_images(), [1, 2], 2)
    with pytest.raises(ValueError, match="`grid_shape`"):
        visualization.plot_attention_locations(_images(), [[1], [2]], 0)
    with pytest.raises(ValueError, match="at most T=1"):
        visualization.plot_attention_locations(
            _images(), [[1], [2]], 2, words=[["a", "b"], ["c"]]
        )


def test_affine_sampling_outline():
    identity = visualization.affine_sampling_outline([1, 0, 0, 0, 1, 0], (4, 6))
    np.testing.assert_allclose(
        identity,
        [[-0.5, -0.5], [5.5, -0.5], [5.5, 3.5], [-0.5, 3.5], [-0.5, -0.5]],
    )
    # half scale, shifted right by a quarter of the width
    zoom = visualization.affine_sampling_outline(
        [[0.5, 0, 0.5], [0, 0.5, 0]], (8, 8)
    )
    np.testing.assert_allclose(zoom[0], [3.5, 1.5])
    np.testing.assert_allclose(zoom[2], [7.5, 5.5])
    with pytest.raises(ValueError, match=re.escape("theta.shape=(4,)")):
        visualization.affine_sampling_outline(np.ones(4), (8, 8))


def test_plot_sampling_grids_outlines_and_outputs():
    thetas = np.array([[[1, 0, 0, 0, 1, 0], [0.5, 0, 0, 0, 0.5, 0]]] * 2)
    outputs = [np.zeros((2, 4, 4, 1), "uint8")] * 2
    figure = visualization.plot_sampling_grids(
        _images(), thetas, transformed=outputs, titles=["7", "3"]
    )
    axes = np.asarray(figure.axes).reshape(3, 2)
    assert len(axes[0, 0].lines) == 2
    np.testing.assert_allclose(axes[0, 0].lines[1].get_xydata()[0], [1.5, 1.5])
    assert axes[0, 1].get_title() == "3"
    assert [axes[k, 0].get_title() for k in (1, 2)] == [
        "transformer 0",
        "transformer 1",
    ]
    with pytest.raises(ValueError, match="thetas"):
        visualization.plot_sampling_grids(_images(), np.ones((3, 6)))
    with pytest.raises(ValueError, match="colors"):
        visualization.plot_sampling_grids(_images(), thetas, colors=["red"])


def test_plot_sampling_grids_without_thetas():
    figure = visualization.plot_sampling_grids(
        _images(), transformed=np.zeros((2, 4, 4, 1))
    )
    assert len(figure.axes) == 4
    assert figure.axes[2].get_title() == "transformed"
    assert not figure.axes[0].lines


def test_plot_canvas_sequence_with_glimpses():
    canvases = np.random.default_rng(1).random((2, 3, 8, 8))
    glimpses = np.tile([1.0, 2.0, 5.0, 7.0], (2, 3, 1))
    figure = visualization.plot_canvas_sequence(
        canvases, glimpses=glimpses, row_labels=["x", "y"], title="t"
    )
    assert len(figure.axes) == 6
    np.testing.assert_allclose(
        figure.axes[4].images[0].get_array(), canvases[1, 1, ..., None][..., 0]
    )
    patch = _box_patches(figure.axes[4])[0]
    assert (patch.get_xy(), patch.get_width(), patch.get_height()) == (
        (2.0, 1.0),
        5.0,
        4.0,
    )
    with pytest.raises(ValueError, match="glimpses"):
        visualization.plot_canvas_sequence(
            canvases, glimpses=np.ones((2, 2, 4))
        )


def test_plot_alignment_values_and_tokens():
    weights = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
    figure = visualization.plot_alignment(
        weights, ["yo", "tengo", "hambre"], ["i'm", "hungry"]
    )
    axis = figure.axes[0]
    np.testing.assert_allclose(axis.images[0].get_array(), weights)
    assert axis.images[0].get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in axis.get_xticklabels()] == [
        "yo",
        "tengo",
        "hambre",
    ]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["i'm", "hungry"]
    # The rendered cells: 0.9 light grey, 0.0 black, 0.5 mid grey.
    pixels = _render(figure)[..., :3].astype(int)
    height = pixels.shape[0]

    def cell(row, column):
        x, y = axis.transData.transform((column, row))
        return pixels[int(round(height - y)), int(round(x))]

    np.testing.assert_allclose(cell(0, 0), [230] * 3, atol=2)
    np.testing.assert_array_equal(cell(0, 2), [0, 0, 0])
    np.testing.assert_allclose(cell(1, 2), [128] * 3, atol=2)


def test_plot_alignment_panels_and_errors():
    figure = visualization.plot_alignment(
        [np.eye(2), np.eye(3)], xlabel="u", ylabel="t"
    )
    assert len(figure.axes) == 2
    assert figure.axes[1].get_xlabel() == "u"
    window = visualization.plot_alignment(3 * np.eye(2), value_range=None)
    assert window.axes[0].images[0].get_clim() == (0.0, 3.0)
    with pytest.raises(ValueError, match="Expected 3 tokens"):
        visualization.plot_alignment(np.eye(3), ["a", "b"])
    with pytest.raises(ValueError, match="one list of tokens per matrix"):
        visualization.plot_alignment([np.eye(2)] * 2, [["a", "b"]])
    with pytest.raises(ValueError, match="rank"):
        visualization.plot_alignment(np.ones(3))


def test_plot_detections_on_images_of_different_sizes():
    images = [np.zeros((6, 9, 3), "uint8"), np.zeros((10, 4, 3), "uint8")]
    masks = [np.ones((1, 6, 9)), np.ones((1, 10, 4))]
    detections = {
        "detection_boxes": [[[0, 0, 3, 3]], [[1, 1, 9, 3]]],
        "detection_classes": [[0], [1]],
        "detection_masks": masks,
    }
    figure = visualization.plot_detections(images, detections, alpha=1.0)
    assert figure.axes[1].images[0].get_array().shape[:2] == (10, 4)
    assert len(_box_patches(figure.axes[1])) == 1
    detections["detection_masks"] = [masks[0], masks[0]]
    with pytest.raises(ValueError, match="for image 1"):
        visualization.plot_detections(images, detections)


def test_plot_class_maps_rows_columns_and_values():
    images = [np.zeros((8, 8, 1), "uint8"), np.zeros((12, 12, 1), "uint8")]
    maps = [np.random.default_rng(2).random((3, 3, 4)), np.ones((5, 5, 4))]
    figure = visualization.plot_class_maps(
        images, maps, class_names=["a", "b", "c", "bg"], row_titles=["1", "2"]
    )
    axes = np.asarray(figure.axes).reshape(2, 5)
    assert [a.get_title() for a in axes[0]] == ["1", "a", "b", "c", "bg"]
    assert axes[1, 0].get_title() == "2"
    np.testing.assert_allclose(
        axes[0, 2].images[0].get_array(), maps[0][..., 1]
    )
    assert axes[0, 2].images[0].get_clim() == (0.0, 1.0)
    with pytest.raises(ValueError, match="one name per class"):
        visualization.plot_class_maps(images, maps, class_names=["a"])
    with pytest.raises(ValueError, match="same number of classes"):
        visualization.plot_class_maps(images, [maps[0], np.ones((5, 5, 3))])
    with pytest.raises(ValueError, match="one map per image"):
        visualization.plot_class_maps(images, maps[:1])


def test_text_activations_colour_each_character_and_wrap_lines():
    text = 'say "hi"\nabcdefg'
    activations = np.linspace(-1, 1, len(text))
    figure = visualization.plot_text_activations(
        text,
        np.stack([activations, -activations]),
        labels=["cell 3", "cell 9"],
        line_width=5,
    )
    axes = [axis for axis in figure.axes if axis.images]
    assert [axis.get_title(loc="left") for axis in axes] == ["cell 3", "cell 9"]
    # Rows: 'say "' | 'hi"\n' | 'abcde' | 'fg'; empty places are masked.
    colours = axes[0].images[0].get_array()
    assert colours.shape == (4, 5)
    np.testing.assert_allclose(colours[0], activations[:5])
    np.testing.assert_allclose(colours[1, :4], activations[5:9])
    np.testing.assert_allclose(colours[3, :2], activations[14:])
    assert colours.mask[1, 4] and colours.mask[3, 2:].all()
    np.testing.assert_allclose(
        axes[1].images[0].get_array()[0], -activations[:5]
    )
    glyphs = [t.get_text() for t in axes[0].texts]
    assert glyphs == list('say"hi"') + ["↵"] + list("abcdefg")
    assert axes[0].images[0].get_clim() == (-1.0, 1.0)
    _render(figure)


def test_text_activations_bad_arguments():
    with pytest.raises(ValueError, match=re.escape("Received: text=''")):
        visualization.plot_text_activations("", np.zeros(0))
    with pytest.raises(ValueError, match=re.escape("activations.shape=(2, 4)")):
        visualization.plot_text_activations("abc", np.zeros((2, 4)))
    with pytest.raises(ValueError, match="Expected one label per row"):
        visualization.plot_text_activations("abc", np.zeros(3), labels=[1, 2])
    with pytest.raises(ValueError, match=re.escape("value_range=(1.0, 1.0)")):
        visualization.plot_text_activations(
            "abc", np.zeros(3), value_range=(1.0, 1.0)
        )
    with pytest.raises(ValueError, match=re.escape("Received: line_width=0")):
        visualization.plot_text_activations("abc", np.zeros(3), line_width=0)
