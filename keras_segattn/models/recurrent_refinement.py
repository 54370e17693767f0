"""Recurrent convolutional scene labelling (Pinheiro and Collobert, 2014)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_segattn import validation
from keras_segattn.models.backbones import check_image_shape
from keras_segattn.validation import check_num_classes

FINAL_OUTPUT = "mask_probs"


def step_output_name(step: int, steps: int) -> str:
    """Output name of refinement step `step` (1-based) of `steps`:
    `"step_{step}"`, and `"mask_probs"` for the last one."""
    return FINAL_OUTPUT if step == steps else f"step_{step}"


def check_steps(steps) -> int:
    """Returns `steps` or raises `ValueError` unless an int >= 1."""
    return validation.check_int(steps, "steps", minimum=1)


def build_refinement_network(
    channels: int,
    num_classes: int,
    filters: Sequence[int] = (16, 32, 32),
    dilation_rates: Sequence[int] | None = None,
    dtype=None,
    name: str = "refinement_network",
) -> keras.Model:
    """The shared per-step network of `build_recurrent_refinement_segmenter`.

    A stack of 3x3 Conv-ReLU layers (`conv{i}`) that keep the resolution,
    with dilations 1, 2, 4, ... by default so the context grows without
    pooling, and a 1x1 convolution `logits` to `num_classes`.

    Args:
        channels: int > 0. Input channels (image channels + num_classes).
        num_classes: int >= 1.
        filters: ints > 0, one per convolution.
        dilation_rates: ints > 0, one per convolution; None for
            `2 ** i`.
        dtype: dtype or dtype policy of every layer.
        name: model name.

    Returns:
        A functional `keras.Model` [B, H, W, channels] -> logits
        [B, H, W, num_classes], for any H and W.
    """
    channels = validation.check_positive_int(channels, "channels")
    num_classes = check_num_classes(num_classes)
    if not isinstance(filters, (tuple, list)) or not filters:
        raise ValueError(
            "Invalid value for argument `filters`. Expected a non-empty "
            f"sequence of ints > 0. Received: filters={filters!r}."
        )
    filters = tuple(
        validation.check_positive_int(f, "filters") for f in filters
    )
    if dilation_rates is None:
        dilation_rates = tuple(2**i for i in range(len(filters)))
    if not isinstance(dilation_rates, (tuple, list)) or len(
        dilation_rates
    ) != len(filters):
        raise ValueError(
            "Invalid value for argument `dilation_rates`. Expected one int "
            f"> 0 per convolution ({len(filters)}). Received: "
            f"dilation_rates={dilation_rates!r}."
        )
    dilation_rates = tuple(
        validation.check_positive_int(d, "dilation_rates")
        for d in dilation_rates
    )
    inputs = keras.Input((None, None, channels), name="inputs")
    x = inputs
    for i, (width, rate) in enumerate(
        zip(filters, dilation_rates, strict=True), start=1
    ):
        x = keras.layers.Conv2D(
            width,
            3,
            padding="same",
            dilation_rate=rate,
            activation="relu",
            kernel_initializer="he_normal",
            name=f"conv{i}",
            dtype=dtype,
        )(x)
    logits = keras.layers.Conv2D(num_classes, 1, name="logits", dtype=dtype)(x)
    return keras.Model(inputs, logits, name=name)


def build_recurrent_refinement_segmenter(
    num_classes: int,
    image_shape: Sequence[int | None] = (None, None, 3),
    steps: int = 3,
    filters: Sequence[int] = (16, 32, 32),
    dilation_rates: Sequence[int] | None = None,
    per_step_outputs: bool = True,
    dtype=None,
    name: str = "recurrent_refinement_segmenter",
) -> keras.Model:
    """Builds a recurrent refinement segmenter (rCNN).

    Pinheiro and Collobert (2014): one network `refinement_network`
    (`build_refinement_network`, the same weights at every step) takes the
    image concatenated with the previous step's class probabilities and
    predicts new ones; it runs `steps` times, so each step can correct the
    last with growing context. The first step sees uniform probabilities
    1 / num_classes (`initial_prediction`, a fixed 1x1 convolution of the
    image: zero kernel, constant bias). The steps form a static unrolled
    graph (a Python loop over `steps`), so it compiles under XLA.

    Outputs (each a float32 softmax [B, H, W, num_classes]) are named
    `step_1`, ..., `step_{steps-1}` and `mask_probs` for the last step
    (`step_output_name`). With `per_step_outputs=True` the model returns
    the dict of all of them, for a loss on every step, e.g.
    `model.compile(loss={name: loss for name in model.output_names})`;
    Keras sums the per-output losses, each a global-batch mean, which is
    correct under `tf.distribute`. Gradients flow through the fed-back
    predictions (the unrolled steps are trained jointly). With False, or
    through `recurrent_refinement_inference_model`, only `mask_probs` is
    returned: the form `export_for_serving` takes.

    Args:
        num_classes: int >= 1.
        image_shape: (H, W, C); H and W may be None.
        steps: int >= 1. Number of applications of the shared network.
        filters: widths of the shared network's convolutions.
        dilation_rates: their dilations (None: 1, 2, 4, ...).
        per_step_outputs: bool. Return every step's probabilities (a dict)
            or only the final `mask_probs`.
        dtype: dtype or dtype policy of every layer (the probabilities are
            float32).
        name: model name.

    Returns:
        A functional `keras.Model` taking `"images"` float [B, H, W, C] in
        0..255 and returning the dict of step probabilities, or
        `"mask_probs"` float32 [B, H, W, num_classes].

    Raises:
        ValueError: on `num_classes < 1`, `steps < 1`, a bad `image_shape`,
            `filters` or `dilation_rates`.

    Reference:
        - [Pinheiro and Collobert, "Recurrent Convolutional Neural Networks
          for Scene Labeling", ICML 2014](
          https://proceedings.mlr.press/v32/pinheiro14.html)
    """
    num_classes = check_num_classes(num_classes)
    steps = check_steps(steps)
    image_shape = check_image_shape(image_shape)
    network = build_refinement_network(
        image_shape[-1] + num_classes,
        num_classes,
        filters=filters,
        dilation_rates=dilation_rates,
        dtype=dtype,
    )
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Rescaling(
        1.0 / 255.0, name="preprocess_rescaling", dtype=dtype
    )(images)
    probs = keras.layers.Conv2D(
        num_classes,
        1,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(1.0 / num_classes),
        trainable=False,
        name="initial_prediction",
        dtype=dtype,
    )(x)
    outputs = {}
    for step in range(1, steps + 1):
        inputs = keras.layers.Concatenate(
            name=f"step_{step}_inputs", dtype=dtype
        )([x, probs])
        logits = network(inputs)
        output_name = step_output_name(step, steps)
        probs = keras.layers.Softmax(dtype="float32", name=output_name)(logits)
        outputs[output_name] = probs
    if not per_step_outputs:
        return keras.Model(images, outputs[FINAL_OUTPUT], name=name)
    return keras.Model(images, outputs, name=name)


def recurrent_refinement_inference_model(model: keras.Model) -> keras.Model:
    """The single-output (`mask_probs`) view of a refinement segmenter.

    Shares every layer and weight with `model`; this is the model to give
    `export_for_serving` (the segmentation serving contract reads one
    probability output).

    Raises:
        ValueError: if `model` has no `mask_probs` layer.
    """
    names = [layer.name for layer in model.layers]
    if FINAL_OUTPUT not in names:
        raise ValueError(
            "Invalid value for argument `model`. Expected a model built by "
            "`build_recurrent_refinement_segmenter` (with a 'mask_probs' "
            f"layer). Received: a model with layers {names[-5:]}."
        )
    return keras.Model(
        model.inputs[0],
        model.get_layer(FINAL_OUTPUT).output,
        name=f"{model.name}_inference",
    )
