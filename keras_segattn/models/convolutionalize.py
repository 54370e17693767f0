"""Classifier -> fully convolutional model, as in Overfeat and FCN.

Sermanet et al., "OverFeat: Integrated Recognition, Localization and
Detection using Convolutional Networks" (ICLR 2014), sec. 3.5, and Long et
al., "Fully Convolutional Networks for Semantic Segmentation" (2015), sec.
3.1: the fully connected layers of a classifier are convolutions whose
kernels cover their whole input, so the same weights slide over a larger
image and give one classification per window position, sharing the
convolutional features of overlapping windows.
"""

from __future__ import annotations

import keras
import numpy as np

# Layers copied as they are (by config, then the weights): they act on each
# position, or on the spatial axes the same way at any input size.
_SPATIAL_LAYERS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.ZeroPadding2D,
    keras.layers.SpatialDropout2D,
)
# Element-wise or channel-wise layers, valid after `Flatten` too.
_POINTWISE_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.Softmax,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.Rescaling,
)
# Layers that act on single elements: they commute with Flatten.
_ELEMENTWISE_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.Rescaling,
)
_GLOBAL_POOLING = {
    keras.layers.GlobalAveragePooling2D: keras.layers.AveragePooling2D,
    keras.layers.GlobalMaxPooling2D: keras.layers.MaxPooling2D,
}


def _layer_chain(model) -> list:
    """The layers of a single-path model in call order, nested models
    expanded; raises `ValueError` on branches."""
    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
        chained = True
    elif isinstance(model, keras.Model) and hasattr(model, "_operations"):
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(
                "Invalid value for argument `model`. Expected a model with "
                f"one input and one output. Received: model {model.name!r} "
                f"with {len(model.inputs)} inputs and {len(model.outputs)} "
                "outputs."
            )
        layers = [
            layer
            for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer)
        ]
        chained = False
    else:
        raise TypeError(
            "Invalid type for argument `model`. Expected a keras.Sequential "
            "or functional keras.Model. Received: "
            f"{type(model).__name__}."
        )
    if not chained:
        # Each layer must consume exactly the previous layer's output.
        previous = model.inputs[0]
        for layer in layers:
            nodes = layer._inbound_nodes
            inputs = keras.tree.flatten(layer.input) if nodes else []
            if len(nodes) != 1 or len(inputs) != 1 or inputs[0] is not previous:
                raise ValueError(
                    f"Layer {layer.name!r} ({type(layer).__name__}) of model "
                    f"{model.name!r} is not on a single path: convolutionalize "
                    "needs a Sequential or single-path functional model."
                )
            previous = layer.output
    chain = []
    for layer in layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            chain.extend(_layer_chain(layer))
        else:
            chain.append(layer)
    return chain


def _input_shape(model) -> tuple:
    shape = getattr(model, "input_shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(
            "Invalid value for argument `model`. Expected a built model on "
            f"images [B, H, W, C]. Received: input_shape={shape}."
        )
    return tuple(shape)


def _clone(layer, config_updates=None):
    config = layer.get_config()
    config.update(config_updates or {})
    return layer.__class__.from_config(config)


def _unsupported(layer, why: str) -> ValueError:
    return ValueError(
        f"Cannot convolutionalize layer {layer.name!r} "
        f"({type(layer).__name__}): {why}"
    )


def _check_channels_last(layer) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _unsupported(layer, "only data_format='channels_last' is.")


def _fix_channel_axis(layer, config_key: str):
    """Copies `layer` with its axis config (1 or -1 on the flat vector)
    set to the channel axis -1 of the 4D map."""
    axis = layer.get_config()[config_key]
    axes = axis if isinstance(axis, list | tuple) else [axis]
    if list(axes) not in ([1], [-1]):
        raise _unsupported(
            layer, f"{config_key}={axis} is not the feature axis."
        )
    value = [-1] if isinstance(axis, list | tuple) else -1
    return _clone(layer, {config_key: value})


def convolutionalize(
    model: keras.Model,
    input_shape: tuple | None = None,
    name: str | None = None,
) -> keras.Model:
    """The fully convolutional equivalent of an image classifier.

    Overfeat (Sermanet et al., 2014, sec. 3.5): the classifier's first
    `Dense` after `Flatten` becomes a `Conv2D(units, kernel_size=(h, w))`
    over the (h, w) map that was flattened, with the Dense kernel reshaped
    to (h, w, c, units) (`Flatten` is row-major over (h, w, c),
    channels_last); every later `Dense` becomes a 1x1 `Conv2D`;
    `GlobalAveragePooling2D` (`GlobalMaxPooling2D`) becomes an average
    (max) pooling over the training-size (h, w) window with stride 1.
    Convolutions, pooling, activations, `Softmax`, normalisation,
    `Dropout` and `Rescaling` layers are copied by config with their
    weights (nothing is retrained); channel-axis layers act on the last
    axis of the output map.

    On an input of the training size the converted model returns the
    original outputs as [B, 1, 1, K]. On a larger input, output position
    (i, j) is the original model applied to the window at
    (i * stride, j * stride) of the training size, where stride is the
    product of the strides of the layers (`sliding_window_geometry`); this
    is exact for "valid" padding and pooling windows that tile the map,
    and holds away from the border only for "same" padding.

    Args:
        model: a built `keras.Sequential` or single-path functional model
            on images [B, H, W, C] (nested single-path models are
            expanded), ending in `Flatten`/`GlobalAveragePooling2D` +
            `Dense` layers, or fully convolutional already.
        input_shape: (height, width, channels) of the new input; default
            (None, None, C).
        name: name of the new model (default `<model.name>_convolutional`).

    Returns:
        A functional `keras.Model` mapping [B, H', W', C] to
        [B, h', w', K] maps, with layer names kept.

    Raises:
        ValueError: naming the layer, for a layer with no convolutional
            equivalent (e.g. `Reshape`, recurrent layers, a `Dense` before
            any `Flatten`, normalisation between `Flatten` and the first
            `Dense`), channels_first layers, or a branching model.
        TypeError: if `model` is not a Sequential or functional model.
    """
    train_shape = _input_shape(model)
    chain = _layer_chain(model)
    if input_shape is None:
        input_shape = (None, None, train_shape[-1])
    inputs = keras.Input(tuple(input_shape), name="images")
    x = inputs
    # Static shape of the current tensor in the *original* model, at the
    # training size: tracks what Flatten sees.
    shape = train_shape
    flattened = None  # (h, w, c) while Flatten waits for its Dense
    dense_seen = False  # after the first Dense (or a global pooling)
    for layer in chain:
        weights = layer.get_weights()
        out_shape = layer.compute_output_shape(shape)
        if isinstance(layer, keras.layers.Flatten):
            if flattened is not None or dense_seen:
                raise _unsupported(layer, "the model is already flat.")
            if len(shape) != 4:
                raise _unsupported(layer, f"its input {shape} is not 4D.")
            if None in shape[1:]:
                raise _unsupported(
                    layer, f"its input {shape} has no static size."
                )
            flattened = tuple(shape[1:])
            shape = out_shape
            continue
        if isinstance(layer, tuple(_GLOBAL_POOLING)):
            _check_channels_last(layer)
            if flattened is not None or dense_seen or len(shape) != 4:
                raise _unsupported(layer, "its input is not an image map.")
            if layer.get_config().get("keepdims"):
                raise _unsupported(layer, "keepdims=True is not supported.")
            if None in shape[1:3]:
                raise _unsupported(layer, "the training size is not static.")
            pooling = _GLOBAL_POOLING[type(layer)]
            new = pooling(
                pool_size=tuple(shape[1:3]),
                strides=1,
                padding="valid",
                name=layer.name,
                dtype=layer.dtype_policy,
            )
            x = new(x)
            dense_seen = True
            shape = out_shape
            continue
        if isinstance(layer, keras.layers.Dense):
            config = layer.get_config()
            kernel, *rest = weights
            if flattened is not None:
                h, w, c = flattened
                kernel = np.reshape(kernel, (h, w, c, kernel.shape[-1]))
                kernel_size = (h, w)
                flattened = None
            elif dense_seen:
                kernel = kernel[None, None]
                kernel_size = (1, 1)
            else:
                raise _unsupported(
                    layer,
                    "a Dense applied before any Flatten (or global pooling)"
                    " acts on the channel axis of every position; only the "
                    "Dense layers of the classifier head are converted.",
                )
            if config.get("lora_rank"):
                raise _unsupported(layer, "LoRA Dense layers are not.")
            new = keras.layers.Conv2D(
                config["units"],
                kernel_size,
                activation=config["activation"],
                use_bias=config["use_bias"],
                name=layer.name,
                dtype=layer.dtype_policy,
            )
            x = new(x)
            new.set_weights([kernel, *rest])
            dense_seen = True
            shape = out_shape
            continue
        if flattened is not None and not isinstance(layer, _ELEMENTWISE_LAYERS):
            raise _unsupported(
                layer,
                "between Flatten and the first Dense only element-wise "
                "layers have a convolutional equivalent.",
            )
        if isinstance(layer, _SPATIAL_LAYERS):
            _check_channels_last(layer)
            if dense_seen:
                raise _unsupported(layer, "it follows the flat head.")
            new = _clone(layer)
        elif isinstance(layer, keras.layers.Softmax) and dense_seen:
            new = _fix_channel_axis(layer, "axis")
        elif (
            isinstance(
                layer,
                keras.layers.BatchNormalization
                | keras.layers.LayerNormalization,
            )
            and dense_seen
        ):
            new = _fix_channel_axis(layer, "axis")
        elif isinstance(layer, keras.layers.PReLU) and dense_seen:
            raise _unsupported(layer, "its weights are per flat feature.")
        elif isinstance(layer, _POINTWISE_LAYERS):
            if isinstance(
                layer,
                keras.layers.BatchNormalization
                | keras.layers.LayerNormalization
                | keras.layers.Softmax,
            ):
                axis = layer.get_config()["axis"]
                axes = axis if isinstance(axis, list | tuple) else [axis]
                if list(axes) not in ([3], [-1]):
                    raise _unsupported(
                        layer, f"axis={axis} is not the channel axis."
                    )
            new = _clone(layer)
        else:
            raise _unsupported(layer, "it has no convolutional equivalent.")
        x = new(x)
        if weights:
            new.set_weights(weights)
        shape = out_shape
    if flattened is not None:
        raise ValueError(
            f"Cannot convolutionalize model {model.name!r}: its Flatten is "
            "not followed by a Dense layer."
        )
    return keras.Model(inputs, x, name=name or f"{model.name}_convolutional")


def sliding_window_geometry(model: keras.Model) -> dict:
    """Window and stride of a classifier run fully convolutionally.

    Args:
        model: the classifier given to `convolutionalize` (or its result
            with a static training size it no longer knows, so pass the
            original).

    Returns:
        dict with `window` (height, width): the training input size, and
        `stride` (sy, sx): the product of the strides of the convolution
        and pooling layers. Output position (i, j) of the convolutional
        model covers input rows i * sy .. i * sy + height (and columns
        likewise).
    """
    train_shape = _input_shape(model)
    stride = [1, 1]
    for layer in _layer_chain(model):
        strides = getattr(layer, "strides", None)
        if strides is None or isinstance(layer, keras.layers.Dense):
            continue
        strides = (strides, strides) if isinstance(strides, int) else strides
        stride[0] *= int(strides[0])
        stride[1] *= int(strides[1])
    return {"window": tuple(train_shape[1:3]), "stride": tuple(stride)}
