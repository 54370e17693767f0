"""Tests for `keras_segattn.export.export_onnx` and `export_litert`:
onnxruntime and the LiteRT interpreter against Keras, batch 1 and 3
through the same file."""

import re
import sys

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_segattn.export import export_litert
from keras_segattn.export import export_onnx
from keras_segattn.export.__main__ import main as export_main
from keras_segattn.layers import SpatialTransformer
from keras_segattn.layers import build_localization_head
from keras_segattn.models import FasterRCNN
from keras_segattn.models import build_segmentation_model

BATCHES = (1, 3)


def _randomize(model, scale):
    """Noise on the constant-initialised weights: the builders start the
    score layers at zero and the STN head at the identity, which would make
    the outputs independent of the images."""
    rng = np.random.default_rng(0)
    for weight in model.weights:
        value = np.asarray(weight)
        if "float" in str(weight.dtype) and np.ptp(value) == 0:
            weight.assign(value + rng.normal(0, scale, value.shape))
    return model


def _st_classifier():
    images = keras.Input((12, 12, 1), name="images")
    localization = keras.Sequential(
        [keras.layers.Flatten(), build_localization_head("affine")]
    )
    transformed, theta = SpatialTransformer(
        localization, 6, transform="affine", return_theta=True
    )(images)
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(transformed))
    probabilities = keras.layers.Dense(4, activation="softmax")(x)
    model = keras.Model(
        images,
        {"probabilities": probabilities, "theta": theta},
        name="st_classifier",
    )
    return _randomize(model, 0.02)


MODELS = {
    "fcn8s": lambda: _randomize(
        build_segmentation_model("fcn8s_tiny", 3, image_shape=(32, 32, 3)),
        0.3,
    ),
    # 30 -> 15 -> 8: the second pool pads with -inf (ceil mode).
    "deconvnet": lambda: _randomize(
        build_segmentation_model("deconvnet_tiny", 3, image_shape=(30, 30, 3)),
        0.3,
    ),
    "stn": _st_classifier,
}


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    return {name: build() for name, build in MODELS.items()}


def _images(model, batch, seed=0):
    shape = (batch, *model.inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _keras_outputs(model, images) -> dict:
    outputs = model(images)
    if not isinstance(outputs, dict):
        outputs = {model.output_names[0]: outputs}
    return {name: np.asarray(value) for name, value in outputs.items()}


def _check_close(got: dict, expected: dict, atol=1e-4):
    """`atol` per unit of each output's largest magnitude: float32 rounding
    grows with the values summed (the STN's theta reaches ~100 from 0-255
    pixels, where one ulp is 8e-6 and the runtimes' summation orders
    differ by a few, more on some CPUs than others)."""
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert np.all(np.isfinite(got[name])), name
        scale = max(1.0, float(np.max(np.abs(value))))
        np.testing.assert_allclose(
            got[name], value, atol=atol * scale, err_msg=name
        )
    # The comparison can fail: the outputs depend on the images.
    assert any(np.ptp(v) > 1e-3 for v in expected.values())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_matches_keras_with_dynamic_batch(models, name, tmp_path):
    model = models[name]
    path = export_onnx(model, tmp_path / "onnx")
    assert path == str(tmp_path / "onnx" / "model.onnx")
    session = onnxruntime.InferenceSession(
        path, providers=["CPUExecutionProvider"]
    )
    (onnx_input,) = session.get_inputs()
    assert onnx_input.name == "images"
    assert onnx_input.type == "tensor(float)"
    assert not isinstance(onnx_input.shape[0], int)  # dynamic batch
    assert onnx_input.shape[1:] == list(model.inputs[0].shape[1:])
    names = [output.name for output in session.get_outputs()]
    for batch in BATCHES:
        images = _images(model, batch, seed=batch)
        got = dict(
            zip(names, session.run(None, {"images": images}), strict=True)
        )
        _check_close(got, _keras_outputs(model, images))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_litert_interpreter_matches_keras_with_dynamic_batch(
    models, name, tmp_path
):
    model = models[name]
    path = export_litert(model, tmp_path)
    assert path == str(tmp_path / "model.tflite")
    interpreter = Interpreter(model_path=path)
    (details,) = interpreter.get_input_details()
    assert list(details["shape_signature"]) == [
        -1,
        *model.inputs[0].shape[1:],
    ]
    (signature,) = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner(signature)
    for batch in BATCHES:
        images = _images(model, batch, seed=batch)
        expected = _keras_outputs(model, images)
        got = runner(images=images)
        if len(expected) == 1:  # a bare tensor is the signature's output_0
            got = {next(iter(expected)): got["output_0"]}
        _check_close(got, expected, atol=1e-5)


@keras.saving.register_keras_serializable(package="keras_segattn_tests")
class LogGamma(keras.layers.Layer):
    """An op tf2onnx has no handler for (Lgamma)."""

    def call(self, x):
        return tf.math.lgamma(1.0 + tf.abs(x))


class Float64Divide(keras.layers.Layer):
    """A float64 division, which has no TFLite builtin kernel (RoIAlign's
    correctly rounded bin edges are computed this way)."""

    def call(self, x):
        divisor = tf.cast(tf.abs(x) + 1.0, "float64")
        return tf.cast(tf.cast(x, "float64") / divisor, "float32")


def _model_with(layer):
    images = keras.Input((8, 8, 1), name="images")
    x = keras.layers.Conv2D(2, 3, name="conv")(images)
    return keras.Model(images, layer(x), name="tiny")


def _lgamma_model():
    return _model_with(LogGamma(name="log_gamma"))


@pytest.mark.parametrize(
    "export, layer, op",
    [
        (export_onnx, LogGamma(name="odd_op"), "Lgamma"),
        (export_litert, Float64Divide(name="odd_op"), "RealDiv"),
    ],
    ids=["onnx", "litert"],
)
def test_unconvertible_op_names_layer_and_op(export, layer, op, tmp_path):
    pattern = (
        "Cannot export model 'tiny' to .*: layer 'odd_op' "
        f"\\({type(layer).__name__}\\) has TensorFlow op '{op}'"
    )
    with pytest.raises(ValueError, match=pattern):
        export(_model_with(layer), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_detector_whose_nms_does_not_convert_is_refused(tmp_path):
    # Pins tf2onnx 1.17: in this configuration (one level, 16 proposals x
    # 3 classes into the NMS) it cannot wire the If/While ops of
    # tf.image.non_max_suppression_padded; others convert (README). Which
    # of the two NMS fails (the proposals' or the detections') changes
    # from run to run, the other converting: either is the refusal.
    model = FasterRCNN(
        3,
        image_shape=(32, 32, 3),
        backbone_kwargs={"filters": (4, 4, 8, 8, 8), "convs_per_stage": 1},
        anchor_sizes=(8.0, 16.0),
        rpn_pre_nms_top_n_test=48,
        rpn_post_nms_top_n_test=16,
        box_head_units=16,
        max_detections=6,
    )
    pattern = (
        "layer '(detections' \\(DetectionPostprocessor|proposal_generator' "
        "\\(ProposalGenerator)\\) has TensorFlow op 'StatelessIf' "
        "\\(node '[^']*non_max_suppression_padded/"
    )
    with pytest.raises(ValueError, match=pattern):
        export_onnx(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "export, module, extra",
    [
        (export_onnx, "tf2onnx", "onnx"),
        (export_litert, "ai_edge_litert.interpreter", "litert"),
    ],
)
def test_missing_extra_names_it(export, module, extra, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    with pytest.raises(
        ImportError, match=re.escape(f"pip install 'keras-segattn[{extra}]'")
    ):
        export(_lgamma_model(), tmp_path)


def test_argument_errors(models, tmp_path):
    with pytest.raises(TypeError, match="Expected a `keras.Model`"):
        export_onnx("model.keras", tmp_path)
    with pytest.raises(
        ValueError, match=re.escape("Received: image_size=(16, 16)")
    ):
        export_onnx(models["fcn8s"], tmp_path, image_size=(16, 16))
    with pytest.raises(ValueError, match="Received: opset=0"):
        export_onnx(models["fcn8s"], tmp_path, opset=0)


def test_cli_formats(models, tmp_path, capsys):
    source = tmp_path / "stn.keras"
    models["stn"].save(source)
    for fmt, filename in (("onnx", "model.onnx"), ("litert", "model.tflite")):
        out = tmp_path / fmt
        assert (
            export_main(
                [str(source), "--format", fmt, "--output-dir", str(out)]
            )
            == 0
        )
        assert capsys.readouterr().out.strip() == str(out / filename)
        assert (out / filename).stat().st_size > 0
    with pytest.raises(SystemExit) as error:
        export_main([str(source), "--format", "tflite", "--output-dir", "x"])
    assert error.value.code == 2
    assert "argument --format: invalid choice: 'tflite'" in (
        capsys.readouterr().err
    )
    lgamma = tmp_path / "lg.keras"
    _lgamma_model().save(lgamma)
    with pytest.raises(SystemExit, match="--format onnx: Cannot export"):
        export_main(
            [
                str(lgamma),
                "--format",
                "onnx",
                "--output-dir",
                str(tmp_path / "lg"),
            ]
        )
