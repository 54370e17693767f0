"""`SpatialTransformer`: a differentiable, learned image warp (STN)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_segattn import validation
from keras_segattn.ops.affine_grid import affine_grid
from keras_segattn.ops.attention_grid import attention_grid
from keras_segattn.ops.grid_sample import INTERPOLATIONS
from keras_segattn.ops.grid_sample import PADDING_MODES
from keras_segattn.ops.grid_sample import grid_sample
from keras_segattn.ops.projective_grid import projective_grid
from keras_segattn.ops.thin_plate_spline_grid import thin_plate_spline_grid

# Control points of the "thin_plate_spline" transform (rows, columns).
TPS_CONTROL_GRID = (3, 3)


def _tps_grid(params, output_size, align_corners):
    return thin_plate_spline_grid(
        params, output_size, TPS_CONTROL_GRID, align_corners
    )


# transform name: (number of parameters, identity parameters, grid op).
TRANSFORMS = {
    "affine": (6, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), affine_grid),
    "attention": (3, (1.0, 0.0, 0.0), attention_grid),
    "projective": (
        8,
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
        projective_grid,
    ),
    "thin_plate_spline": (18, (0.0,) * 18, _tps_grid),
}


def _check_transform(transform) -> str:
    return validation.check_one_of(transform, tuple(TRANSFORMS), "transform")


def identity_transform(transform: str = "affine") -> list[float]:
    """The parameters of the identity for `transform`.

    Args:
        transform: `"affine"` (`[1, 0, 0, 0, 1, 0]`, the flat 2x3 matrix),
            `"attention"` (`[1, 0, 0]`: scale, tx, ty), `"projective"`
            (`[1, 0, 0, 0, 1, 0, 0, 0]`) or `"thin_plate_spline"` (18
            zeros: no offset of the 3x3 control points).

    Returns:
        A list of floats.

    Raises:
        ValueError: for an unknown `transform`.
    """
    return list(TRANSFORMS[_check_transform(transform)][1])


def identity_transform_initializer(
    transform: str = "affine",
) -> keras.initializers.Initializer:
    """A bias initializer whose value is the identity for `transform`.

    A `keras.initializers.Constant` holding `identity_transform(transform)`
    (it serializes as a plain list, so `.keras` files load in safe mode).

    Args:
        transform: `"affine"`, `"attention"`, `"projective"` or
            `"thin_plate_spline"`.

    Returns:
        A `keras.initializers.Constant`.
    """
    return keras.initializers.Constant(identity_transform(transform))


def build_localization_head(
    transform: str = "affine",
    *,
    name: str | None = "localization_head",
    dtype: str | keras.DTypePolicy | None = "float32",
) -> keras.layers.Dense:
    """The last layer of a localisation network, starting at the identity.

    A `Dense` with as many units as `transform` has parameters, a zero
    kernel and the identity transform as bias, so a `SpatialTransformer`
    starts training from the identity warp (Jaderberg et al., 2015,
    initialise the regression layer this way).

    Args:
        transform: `"affine"` (6 units), `"attention"` (3),
            `"projective"` (8) or `"thin_plate_spline"` (18).
        name: layer name.
        dtype: dtype policy. Defaults to `"float32"`, so that the transform
            parameters are not rounded to float16 under a global
            `mixed_float16` policy (float16 inputs are cast up).

    Returns:
        A `keras.layers.Dense`.

    Raises:
        ValueError: for an unknown `transform`.

    Example:

    >>> localization_network = keras.Sequential(
    ...     [keras.layers.Flatten(), keras.layers.Dense(32, "relu"),
    ...      build_localization_head("affine")])
    """
    transform = _check_transform(transform)
    return keras.layers.Dense(
        TRANSFORMS[transform][0],
        kernel_initializer="zeros",
        bias_initializer=identity_transform_initializer(transform),
        name=name,
        dtype=dtype,
    )


def _check_images(images_shape, dtype=None) -> tuple:
    shape = validation.check_rank(images_shape, 4, "images")
    if dtype is not None:
        validation.check_floating(dtype, "images")
    return shape


@keras.saving.register_keras_serializable(package="keras_segattn")
class SpatialTransformer(keras.layers.Layer):
    """Warps images with a transform predicted from the images themselves.

    The spatial transformer of Jaderberg et al. (2015): a localisation
    network regresses the parameters `theta` of a transform from the input
    images, `affine_grid` (or `attention_grid`, `projective_grid`) turns
    them into a sampling grid of `output_size`, and `grid_sample` samples
    the images there, bilinearly and differentiably, so the localisation
    network learns from the loss of whatever follows. The numbers match
    PyTorch's `affine_grid` + `grid_sample` (the usual STN implementation)
    with the same `align_corners` and `padding_mode`.

    The localisation network is any Keras layer or model mapping the images
    [B, H, W, C] to [B, P] (or [B, 2, 3] for affine), where P is 6 for
    `"affine"` (the 2x3 matrix, row-major), 3 for `"attention"`
    (scale, tx, ty), 8 for `"projective"` (a homography) and 18 for
    `"thin_plate_spline"` (the (dx, dy) offsets of a 3x3 grid of control
    points, see `thin_plate_spline_grid`). End it with
    `build_localization_head(transform)` (zero kernel, identity bias), so
    training starts from the identity warp, which returns the input
    exactly. It is a sublayer: its weights are this layer's, and it is
    serialized into this layer's config.

    The layer does not autocast (`autocast=False`): under `mixed_float16`
    the sampled images are float16, but `theta` and the grid stay float32,
    so coordinates are not rounded to half precision.

    Args:
        localization_network: a `keras.layers.Layer` (or `keras.Model`), or
            its serialized config (`keras.saving.serialize_keras_object`).
        output_size: int or (height, width) of the transformed images.
        transform: `"affine"`, `"attention"`, `"projective"` or
            `"thin_plate_spline"`.
        align_corners: bool. PyTorch's `align_corners` (False: -1 and 1
            are the images' outer edges).
        padding_mode: `"zeros"`, `"border"` or `"reflection"`.
        interpolation: `"bilinear"` or `"nearest"` (no gradient to
            `theta`).
        return_theta: bool. Also return the transform parameters.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        images: float tensor [B, H, W, C].
        training: bool, passed to the localisation network.

    Returns:
        The transformed images [B, out_h, out_w, C] in `compute_dtype`;
        with `return_theta`, the tuple `(transformed, theta)` where theta
        is float32 [B, P].

    Raises:
        ValueError: in `__init__` for an invalid `output_size`,
            `transform`, `padding_mode` or `interpolation`; when built or
            called, for images not of rank 4 or a localisation output that
            is not [B, P].
        TypeError: for a `localization_network` that is not a layer or
            non-float images.

    Example:

    >>> images = keras.Input((40, 40, 1))
    >>> localization = keras.Sequential(
    ...     [keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
    ...      keras.layers.Dense(32, "relu"), build_localization_head()])
    >>> warped = SpatialTransformer(localization, (20, 20))(images)
    >>> warped.shape
    (None, 20, 20, 1)

    Reference:
        - [Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015](
          https://arxiv.org/abs/1506.02025)
        - `torch.nn.functional.affine_grid` and `grid_sample`
          (pytorch/pytorch: aten/src/ATen/native/GridSampler.cpp).
    """

    def __init__(
        self,
        localization_network: keras.layers.Layer | dict,
        output_size: int | Sequence[int],
        transform: str = "affine",
        align_corners: bool = False,
        padding_mode: str = "zeros",
        interpolation: str = "bilinear",
        return_theta: bool = False,
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)  # keep theta in float32
        if isinstance(localization_network, dict):
            localization_network = keras.saving.deserialize_keras_object(
                localization_network
            )
        if not isinstance(localization_network, keras.layers.Layer):
            raise TypeError(
                "Invalid type for argument `localization_network`. Expected "
                "a keras.layers.Layer (or keras.Model) mapping images to "
                "transform parameters, or its serialized config. Received: "
                f"localization_network={localization_network!r}."
            )
        self.localization_network = localization_network
        self.output_size = validation.standardize_size(
            output_size, "output_size"
        )
        self.transform = _check_transform(transform)
        self.align_corners = bool(align_corners)
        self.padding_mode = validation.check_one_of(
            padding_mode, PADDING_MODES, "padding_mode"
        )
        self.interpolation = validation.check_one_of(
            interpolation, INTERPOLATIONS, "interpolation"
        )
        self.return_theta = bool(return_theta)

    @property
    def num_parameters(self) -> int:
        """Number of transform parameters P the localisation net outputs."""
        return TRANSFORMS[self.transform][0]

    def _check_theta_shape(self, theta_shape) -> None:
        theta_shape = validation.static_shape(theta_shape)
        if theta_shape is None:
            return
        count = self.num_parameters
        trailing = tuple(theta_shape[1:])
        ok = trailing == (count,) or (
            self.transform == "affine" and trailing == (2, 3)
        )
        if not ok:
            expected = f"[B, {count}]" + (
                " or [B, 2, 3]" if self.transform == "affine" else ""
            )
            raise ValueError(
                "Invalid output of argument `localization_network`. Expected "
                f"{expected} parameters of the {self.transform!r} transform "
                f"(end it with build_localization_head({self.transform!r})). "
                f"Received: an output of shape {theta_shape}."
            )

    def build(self, images_shape):
        images_shape = _check_images(images_shape)
        if not self.localization_network.built:
            self.localization_network.build(images_shape)
        try:
            theta_shape = self.localization_network.compute_output_shape(
                images_shape
            )
        except Exception:  # some layers cannot tell
            theta_shape = None  # checked on the call's static shape instead
        if isinstance(theta_shape, (tuple, list)) and all(
            d is None or isinstance(d, int) for d in theta_shape
        ):
            self._check_theta_shape(theta_shape)

    def call(self, images, training=None):
        _check_images(images, images.dtype)
        theta = self.localization_network(images, training=training)
        self._check_theta_shape(theta)
        theta = ops.reshape(
            ops.cast(theta, "float32"), (-1, self.num_parameters)
        )
        grid = TRANSFORMS[self.transform][2](
            theta, self.output_size, self.align_corners
        )
        transformed = grid_sample(
            ops.cast(images, self.compute_dtype),
            grid,
            interpolation=self.interpolation,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
        )
        if self.return_theta:
            return transformed, theta
        return transformed

    def compute_output_shape(self, images_shape):
        images_shape = _check_images(images_shape)
        transformed = (images_shape[0], *self.output_size, images_shape[-1])
        if self.return_theta:
            return transformed, (images_shape[0], self.num_parameters)
        return transformed

    def compute_output_spec(self, images, training=None):
        _check_images(images, images.dtype)
        shapes = self.compute_output_shape(images.shape)
        if not self.return_theta:
            return keras.KerasTensor(shapes, dtype=self.compute_dtype)
        return (
            keras.KerasTensor(shapes[0], dtype=self.compute_dtype),
            keras.KerasTensor(shapes[1], dtype="float32"),
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "localization_network": keras.saving.serialize_keras_object(
                self.localization_network
            ),
            "output_size": self.output_size,
            "transform": self.transform,
            "align_corners": self.align_corners,
            "padding_mode": self.padding_mode,
            "interpolation": self.interpolation,
            "return_theta": self.return_theta,
        }

    @classmethod
    def from_config(cls, config: dict) -> SpatialTransformer:
        config = dict(config)
        config["localization_network"] = keras.saving.deserialize_keras_object(
            config["localization_network"]
        )
        return cls(**config)
