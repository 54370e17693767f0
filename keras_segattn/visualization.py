"""Pictures of what the models see and predict, as arrays and figures.

Masks are blended into the images by `keras.visualization
.draw_segmentation_masks` (a NumPy array out); everything else is drawn with
matplotlib's object-oriented API on a `matplotlib.figure.Figure` that is
returned, never shown: no pyplot state, no GUI backend, no figure to close,
so the functions run headless (save with `figure.savefig(path)`).
`keras.visualization.draw_bounding_boxes` is not used: it needs OpenCV,
which is not a dependency here.

- `overlay_segmentation`: class masks blended over images (array).
- `plot_segmentation`: image | ground truth | prediction rows with a legend
  of the class names.
- `plot_detections`: boxes, instance masks, class names and scores
  (ground truth and detections in rows, or overlaid in two colours).
- `plot_class_maps`: per-class score maps beside their image (Overfeat's
  dense window scores at each scale).
- `plot_attention_maps`: per-word attention weights α over the image
  (Show, Attend and Tell captioning).
- `plot_attention_locations`: the one grid cell each word attended,
  outlined on the image (hard attention's locations).
- `plot_sampling_grids`: the region each affine spatial transformer samples,
  outlined on its input, beside what it outputs (STN).
- `plot_canvas_sequence`: a canvas after each step, with glimpse windows
  when given (DRAW).
- `plot_alignment`: an alignment / attention matrix with its tokens on
  the axes (Bahdanau translation, Graves's window).
- `plot_text_activations`: text coloured per character by recurrent cell
  activations (Karpathy et al.'s interpretable cells).

matplotlib is imported when a plotting function is first called; it comes
with the `examples` and `visualization` extras.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_segattn import validation

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

BOX_FORMATS = ("yxyx", "xyxy")
LAYOUTS = ("rows", "overlay")
GROUND_TRUTH_COLOUR = "lime"
DETECTION_COLOUR = "red"


def _figure(rows: int, columns: int, figsize):
    """A headless figure and its [rows, columns] axes (no pyplot)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover
        raise ImportError(
            "keras_segattn.visualization needs matplotlib: "
            "`pip install keras-segattn[visualization]`."
        ) from error
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    # Constrained layout keeps titles, tick labels and legends inside.
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)  # a renderer for the layout and PNG output
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    return figure, axes


def class_colors(num_classes: int) -> np.ndarray:
    """Distinct RGB colours, one per class: uint8 [num_classes, 3].

    matplotlib's `tab20` palette, then evenly spaced hues beyond 20 classes.
    """
    num_classes = validation.check_positive_int(num_classes, "num_classes")
    import matplotlib

    table = matplotlib.colormaps["tab20"].colors
    if num_classes <= len(table):
        colours = np.asarray(table[:num_classes])
    else:
        hues = matplotlib.colormaps["hsv"](np.linspace(0, 1, num_classes + 1))
        colours = hues[:num_classes, :3]
    return np.round(np.asarray(colours) * 255).astype("uint8")


def _check_class_names(class_names, num_classes: int | None = None):
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(
            "Invalid type for argument `class_names`. Expected a sequence of "
            f"strings. Received: class_names={class_names!r}."
        )
    names = [str(name) for name in class_names]
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            "Invalid length for argument `class_names`. Expected one name "
            f"per class ({num_classes}). Received: {len(names)} names, "
            f"class_names={names!r}."
        )
    return names


def _batched_images(images, name: str = "images") -> np.ndarray:
    """[B, H, W, C] (C 1 or 3) from [B, H, W], [B, H, W, C] arrays."""
    images = np.asarray(images)
    validation.check_rank(images, (3, 4), name)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] not in (1, 3):
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected 1 or 3 channels "
            f"(grayscale or RGB). Received: {name}.shape={images.shape}."
        )
    return images


def _value_range(images: np.ndarray) -> tuple[float, float]:
    """(0, 1) for float images in [0, 1], else (0, 255)."""
    if images.dtype.kind == "f" and images.size and images.max() <= 1.0:
        return 0.0, 1.0
    return 0.0, 255.0


def _to_rgb_uint8(images: np.ndarray) -> np.ndarray:
    """[B, H, W, 1 or 3] in [0, 1] or [0, 255] -> uint8 [B, H, W, 3]."""
    _, high = _value_range(images)
    scaled = np.asarray(images, "float64") * (255.0 / high)
    rgb = np.clip(np.round(scaled), 0, 255).astype("uint8")
    return np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb


def _show(axis, image: np.ndarray, value_range=None) -> None:
    """imshow of one [H, W, C] image, grayscale when C == 1."""
    low, high = value_range or _value_range(image)
    if image.shape[-1] == 1:
        axis.imshow(image[..., 0], cmap="gray", vmin=low, vmax=high)
    else:
        axis.imshow(np.clip(image / high, 0.0, 1.0))


def _check_alpha(alpha) -> float:
    return validation.check_fraction(alpha, "alpha")


def overlay_segmentation(
    images,
    masks,
    num_classes: int,
    *,
    colors=None,
    alpha: float = 0.5,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Blends class masks over images with `keras.visualization`.

    Each pixel of class k becomes `(1 - alpha) * image + alpha * colors[k]`;
    pixels labelled `ignore_index` keep the image.

    Args:
        images: [B, H, W, C] or [H, W, C] (C 1 or 3) or [H, W] grayscale,
            uint8 or float in [0, 1] or [0, 255].
        masks: integer labels [B, H, W] (or [H, W] for one image) in
            [0, num_classes), or `ignore_index`.
        num_classes: int >= 1.
        colors: optional [num_classes, 3] RGB in 0..255; default
            `class_colors(num_classes)`.
        alpha: opacity of the masks in [0, 1].
        ignore_index: optional label left undrawn (a void label).

    Returns:
        uint8 RGB array, [B, H, W, 3] (or [H, W, 3] for one image).

    Raises:
        ValueError: on mismatched shapes, labels outside [0, num_classes)
            other than `ignore_index`, or a palette of the wrong shape.
    """
    import keras

    num_classes = validation.check_positive_int(num_classes, "num_classes")
    alpha = _check_alpha(alpha)
    ignore_index = validation.check_void_label(ignore_index, "ignore_index")
    masks = np.asarray(masks)
    single = masks.ndim == 2
    images = np.asarray(images)
    if single:
        images = images[None]
        masks = masks[None]
    validation.check_rank(masks, 3, "masks")
    validation.check_integer(masks.dtype, "masks")
    images = _batched_images(images)
    if images.shape[:3] != masks.shape:
        raise ValueError(
            "Invalid shape for argument `masks`. Expected the images' batch, "
            f"height and width {images.shape[:3]}. Received: "
            f"masks.shape={masks.shape}."
        )
    drawn = masks if ignore_index is None else masks[masks != ignore_index]
    if drawn.size and (drawn.min() < 0 or drawn.max() >= num_classes):
        raise ValueError(
            "Invalid value for argument `masks`. Expected labels in "
            f"[0, {num_classes}) or ignore_index={ignore_index}. Received "
            f"labels from {drawn.min()} to {drawn.max()}."
        )
    palette = class_colors(num_classes) if colors is None else colors
    palette = np.asarray(palette)
    if palette.shape != (num_classes, 3):
        raise ValueError(
            "Invalid shape for argument `colors`. Expected [num_classes, 3] = "
            f"[{num_classes}, 3]. Received: colors.shape={palette.shape}."
        )
    # keras draws labels equal to `ignore_index` (default -1) as the image.
    overlaid = keras.visualization.draw_segmentation_masks(
        _to_rgb_uint8(images),
        masks[..., None].astype("int32"),
        num_classes=num_classes,
        color_mapping={k: tuple(palette[k]) for k in range(num_classes)},
        alpha=alpha,
        ignore_index=-1 if ignore_index is None else ignore_index,
        data_format="channels_last",
    )
    overlaid = np.asarray(overlaid, "uint8")
    return overlaid[0] if single else overlaid


def _legend(figure, names: Sequence[str], colours: np.ndarray) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=np.asarray(colour) / 255.0, label=name)
        for name, colour in zip(names, colours, strict=True)
    ]
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 6),
        fontsize=8,
        frameon=False,
    )


def plot_segmentation(
    images,
    masks,
    class_names: Sequence[str],
    *,
    predictions=None,
    colors=None,
    alpha: float = 0.6,
    ignore_index: int | None = None,
) -> Figure:
    """One row per image: the image, its ground truth and/or prediction.

    Masks are blended over the image (`overlay_segmentation`) and the
    figure's legend names each class's colour.

    Args:
        images: [B, H, W, C] or [B, H, W] images.
        masks: integer ground-truth labels [B, H, W], or None.
        class_names: one name per class; their count is `num_classes`.
        predictions: optional predicted labels [B, H, W] (the last column).
        colors: optional [num_classes, 3] RGB palette (0..255).
        alpha: mask opacity in [0, 1].
        ignore_index: optional void label drawn as the bare image.

    Returns:
        A `matplotlib.figure.Figure` with B rows of 2 or 3 panels.

    Raises:
        ValueError: without `masks` and `predictions`, or on bad shapes,
            labels or class names.
    """
    if masks is None and predictions is None:
        raise ValueError(
            "Invalid value for arguments `masks` and `predictions`. Expected "
            "at least one of them. Received: both None."
        )
    names = _check_class_names(class_names)
    if not names:
        raise ValueError(
            "Invalid value for argument `class_names`. Expected at least one "
            f"class name. Received: class_names={class_names!r}."
        )
    palette = class_colors(len(names)) if colors is None else colors
    images = _batched_images(images)
    kwargs = dict(colors=palette, alpha=alpha, ignore_index=ignore_index)
    panels = [("image", _to_rgb_uint8(images))]
    if masks is not None:
        overlaid = overlay_segmentation(images, masks, len(names), **kwargs)
        panels.append(("ground truth", overlaid))
    if predictions is not None:
        overlaid = overlay_segmentation(
            images, predictions, len(names), **kwargs
        )
        panels.append(("prediction", overlaid))
    rows = len(images)
    figure, axes = _figure(rows, len(panels), (3 * len(panels), 3 * rows + 0.6))
    for row in range(rows):
        for column, (title, arrays) in enumerate(panels):
            axes[row, column].imshow(arrays[row])
            axes[row, column].set_title(title, fontsize=9)
    _legend(figure, names, np.asarray(palette))
    return figure


def _box_corners(box, box_format: str) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of one box in `box_format`."""
    if box_format == "yxyx":
        y1, x1, y2, x2 = box
    else:
        x1, y1, x2, y2 = box
    return float(x1), float(y1), float(x2), float(y2)


def _check_keys(mapping, keys: Sequence[str], name: str) -> None:
    if not hasattr(mapping, "keys"):
        raise TypeError(
            f"Invalid type for argument `{name}`. Expected a dict with keys "
            f"{list(keys)}. Received: {type(mapping).__name__}."
        )
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected keys {list(keys)}."
            f" Received keys {sorted(mapping.keys())} (missing {missing})."
        )


def _check_per_box(values, boxes: np.ndarray, name: str):
    """None, or `values` whose leading dimensions are the boxes' [B, N]."""
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape[:2] != boxes.shape[:2]:
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected leading "
            f"dimensions [B, N] = {list(boxes.shape[:2])}, one per box. "
            f"Received: {name}.shape={values.shape}."
        )
    return values


def _instances(mapping, keys, batch: int, image_sizes, name: str):
    """Checked (boxes [B, N, 4], classes [B, N], scores, masks): masks a
    list of [N, H, W] arrays, one per image of size `image_sizes[i]`."""
    boxes_key, classes_key, scores_key, masks_key = keys
    _check_keys(mapping, (boxes_key, classes_key), name)
    label = f"{name}['{boxes_key}']"
    boxes = np.asarray(mapping[boxes_key], "float64")
    validation.check_rank(boxes, 3, label)
    validation.check_static_dims(boxes, {0: batch, 2: 4}, label)
    classes = _check_per_box(
        mapping[classes_key], boxes, f"{name}['{classes_key}']"
    )
    scores = None
    if scores_key is not None:
        scores = _check_per_box(
            mapping.get(scores_key), boxes, f"{name}['{scores_key}']"
        )
    masks = mapping.get(masks_key)
    if masks is not None:
        if len(masks) != batch:
            raise ValueError(
                f"Invalid shape for argument `{name}['{masks_key}']`. "
                f"Expected one entry per image ({batch}). Received: "
                f"{len(masks)}."
            )
        masks = [np.asarray(m) for m in masks]
        for i, (mask, size) in enumerate(zip(masks, image_sizes, strict=True)):
            expected = (boxes.shape[1], *size)
            if mask.shape != expected:
                raise ValueError(
                    f"Invalid shape for argument `{name}['{masks_key}']`. "
                    f"Expected full-image masks [N, H, W] = {list(expected)}"
                    f" for image {i}. Received: shape {mask.shape}."
                )
    return boxes, classes.astype("int64"), scores, masks


def _ground_truth_items(ground_truth, batch: int, image_sizes) -> list:
    boxes, classes, _, masks = _instances(
        ground_truth,
        ("boxes", "classes", None, "masks"),
        batch,
        image_sizes,
        "ground_truth",
    )
    items = []
    for i in range(batch):
        keep = classes[i] >= 0  # negative classes pad the ground truth
        items.append(
            (
                boxes[i][keep],
                classes[i][keep],
                None,
                None if masks is None else masks[i][keep].astype(bool),
            )
        )
    return items


def _detection_items(
    detections,
    batch: int,
    image_sizes,
    score_threshold: float,
    max_detections: int | None,
    mask_threshold: float,
) -> list:
    boxes, classes, scores, masks = _instances(
        detections,
        (
            "detection_boxes",
            "detection_classes",
            "detection_scores",
            "detection_masks",
        ),
        batch,
        image_sizes,
        "detections",
    )
    counts = detections.get("num_detections")
    if counts is None:
        counts = np.full(batch, boxes.shape[1])
    counts = np.asarray(counts).astype("int64").reshape(-1)
    if counts.shape != (batch,):
        raise ValueError(
            "Invalid shape for argument `detections['num_detections']`. "
            f"Expected [B] = [{batch}]. Received: shape {counts.shape}."
        )
    items = []
    for i in range(batch):
        keep = np.arange(boxes.shape[1]) < counts[i]  # the rest is padding
        if scores is not None:
            keep &= np.asarray(scores[i], "float64") >= score_threshold
        index = np.flatnonzero(keep)[:max_detections]
        items.append(
            (
                boxes[i][index],
                classes[i][index],
                None if scores is None else np.asarray(scores[i])[index],
                None
                if masks is None
                else np.asarray(masks[i], "float64")[index] >= mask_threshold,
            )
        )
    return items


def _draw_instances(
    axis,
    image,
    items,
    *,
    names,
    colours,
    box_format: str,
    alpha: float,
) -> None:
    """Draws `image` with the masks of `items` (a list of (boxes, classes,
    scores, masks), one per source), then every box with its label.

    `colours[k]` is the colour of source k, or None to colour by class.
    """
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Rectangle

    largest = max(
        [len(names or ())]
        + [int(c.max()) + 1 for _, c, _, _ in items if len(c)]
    )
    palette = class_colors(max(largest, 10))

    def colour_of(source: int, label: int) -> np.ndarray:
        if colours[source] is not None:
            return np.asarray(to_rgb(colours[source]))
        return palette[label % len(palette)] / 255.0

    masked = [
        (source, masks, classes)
        for source, (_, classes, _, masks) in enumerate(items)
        if masks is not None and len(masks)
    ]
    if masked:
        # Each instance's pixels take its colour (later instances on top).
        labels = np.full(image.shape[:2], -1, "int32")
        table = []
        for source, masks, classes in masked:
            for mask, label in zip(masks, classes, strict=True):
                labels[mask] = len(table)
                table.append(np.round(colour_of(source, int(label)) * 255))
        overlaid = overlay_segmentation(
            image,
            labels,
            len(table),
            colors=np.asarray(table, "uint8"),
            alpha=alpha,
            ignore_index=-1,
        )
        axis.imshow(overlaid)
    else:
        _show(axis, image)
    for source, (boxes, classes, scores, _) in enumerate(items):
        for i, box in enumerate(boxes):
            x1, y1, x2, y2 = _box_corners(box, box_format)
            label = int(classes[i])
            colour = colour_of(source, label)
            axis.add_patch(
                Rectangle(
                    (x1, y1),
                    x2 - x1,
                    y2 - y1,
                    fill=False,
                    edgecolor=colour,
                    linewidth=1.2,
                )
            )
            text = (
                names[label]
                if names and 0 <= label < len(names)
                else str(label)
            )
            if scores is not None:
                text += f" {float(scores[i]):.2f}"
            axis.text(x1, y1 - 1, text, color=colour, fontsize=7)


def plot_detections(
    images,
    detections=None,
    *,
    ground_truth=None,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.5,
    max_detections: int | None = None,
    mask_threshold: float = 0.5,
    layout: str = "rows",
    titles: Sequence[str] | None = None,
    box_format: str = "yxyx",
    alpha: float = 0.5,
) -> Figure:
    """Boxes, instance masks and labels over images, one column per image.

    Args:
        images: [B, H, W, C] or [B, H, W], or a list of B [H, W, C] images
            of different sizes (then masks are lists of [N, H, W] too).
        detections: optional dict in the TF Object Detection API layout of
            the package's serving signatures: `detection_boxes` [B, N, 4] in
            image pixels, `detection_classes` [B, N]; optionally
            `detection_scores` [B, N], `num_detections` [B] (entries past it
            are padding) and `detection_masks` [B, N, H, W] (probabilities,
            drawn where >= `mask_threshold`).
        ground_truth: optional dict with `boxes` [B, M, 4], `classes`
            [B, M] (a negative class marks padding) and optionally `masks`
            [B, M, H, W].
        class_names: optional names indexed by class id (ids otherwise).
        score_threshold: detections scoring below it are left out.
        max_detections: optional cap on the detections drawn per image
            (the first ones, the highest scoring in the serving outputs).
        mask_threshold: probability from which a mask pixel is drawn.
        layout: `"rows"`: ground truth (if any) above the detections, each
            class in its colour; `"overlay"`: both on one image, ground
            truth in green and detections in red.
        titles: optional title per image (column).
        box_format: `"yxyx"` (the package's) or `"xyxy"`.
        alpha: mask opacity in [0, 1].

    Returns:
        A `matplotlib.figure.Figure`; every box is a `Rectangle` patch with
        a text label (class name or id, then the score).
    """
    layout = validation.check_one_of(layout, LAYOUTS, "layout")
    box_format = validation.check_one_of(box_format, BOX_FORMATS, "box_format")
    mask_threshold = validation.check_fraction(mask_threshold, "mask_threshold")
    alpha = _check_alpha(alpha)
    if max_detections is not None:
        max_detections = validation.check_non_negative_int(
            max_detections, "max_detections"
        )
    if detections is None and ground_truth is None:
        raise ValueError(
            "Invalid value for arguments `detections` and `ground_truth`. "
            "Expected at least one of them. Received: both None."
        )
    names = _check_class_names(class_names)
    if isinstance(images, (list, tuple)):  # images of different sizes
        images = [_batched_images(image[None])[0] for image in images]
    else:
        images = list(_batched_images(images))
    batch, image_sizes = len(images), [image.shape[:2] for image in images]
    if titles is not None and len(titles) != batch:
        raise ValueError(
            "Invalid length for argument `titles`. Expected one title per "
            f"image ({batch}). Received: {len(titles)} titles."
        )
    sources = []  # (name, colour in the overlay layout, items per image)
    if ground_truth is not None:
        items = _ground_truth_items(ground_truth, batch, image_sizes)
        sources.append(("ground truth", GROUND_TRUTH_COLOUR, items))
    if detections is not None:
        items = _detection_items(
            detections,
            batch,
            image_sizes,
            float(score_threshold),
            max_detections,
            mask_threshold,
        )
        sources.append(("detections", DETECTION_COLOUR, items))
    rows = len(sources) if layout == "rows" else 1
    figure, axes = _figure(rows, batch, (2.6 * batch, 2.8 * rows))
    for column in range(batch):
        title = None if titles is None else titles[column]
        if layout == "overlay":
            _draw_instances(
                axes[0, column],
                images[column],
                [items[column] for _, _, items in sources],
                names=names,
                colours=[colour for _, colour, _ in sources],
                box_format=box_format,
                alpha=alpha,
            )
            if title is not None:
                axes[0, column].set_title(title, fontsize=8)
            continue
        for row, (name, _, items) in enumerate(sources):
            _draw_instances(
                axes[row, column],
                images[column],
                [items[column]],
                names=names,
                colours=[None],
                box_format=box_format,
                alpha=alpha,
            )
            label = name if title is None else f"{name}: {title}"
            axes[row, column].set_title(label, fontsize=8)
    if layout == "overlay":
        figure.suptitle(
            ", ".join(
                f"{name} ({colour})" for name, colour, _ in sources
            ).replace("lime", "green"),
            fontsize=8,
        )
    return figure


def plot_class_maps(
    images,
    maps,
    *,
    class_names: Sequence[str] | None = None,
    row_titles: Sequence[str] | None = None,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    cmap: str = "magma",
) -> Figure:
    """Per-class score maps beside their image, one row per image.

    For dense classifiers that score every window (Overfeat's per-scale
    class probabilities, a segmenter's softmax): row r shows `images[r]`,
    then one panel per class with `maps[r][..., k]`.

    Args:
        images: [R, H, W, C] or a list of R images of different sizes
            (the resized inputs of an image pyramid).
        maps: [R, h, w, K] or a list of R [h, w, K] score maps (K classes;
            each map may be smaller than its image).
        class_names: optional K column titles (class ids otherwise).
        row_titles: optional title of each row's image.
        value_range: (low, high) mapped to the ends of `cmap`, or None to
            scale each map to its own range.
        cmap: matplotlib colour map of the scores.

    Returns:
        A `matplotlib.figure.Figure` of R rows and 1 + K columns.
    """
    if isinstance(images, (list, tuple)):
        images = [_batched_images(image[None])[0] for image in images]
    else:
        images = list(_batched_images(images))
    maps = [np.asarray(m, "float64") for m in maps]
    if len(maps) != len(images):
        raise ValueError(
            "Invalid length for argument `maps`. Expected one map per image "
            f"({len(images)}). Received: {len(maps)} maps."
        )
    for r, scores in enumerate(maps):
        validation.check_rank(scores, 3, f"maps[{r}]")
    classes = {scores.shape[-1] for scores in maps}
    if len(classes) != 1:
        raise ValueError(
            "Invalid shape for argument `maps`. Expected the same number of "
            "classes K (last dimension) in every map. Received: "
            f"{[scores.shape for scores in maps]}."
        )
    num_classes = classes.pop()
    names = _check_class_names(class_names, num_classes)
    names = names or [str(k) for k in range(num_classes)]
    if row_titles is not None and len(row_titles) != len(images):
        raise ValueError(
            "Invalid length for argument `row_titles`. Expected one title "
            f"per image ({len(images)}). Received: {len(row_titles)}."
        )
    low, high = (None, None) if value_range is None else value_range
    rows, columns = len(images), 1 + num_classes
    figure, axes = _figure(rows, columns, (1.3 * columns, 1.5 * rows))
    for row, (image, scores) in enumerate(zip(images, maps, strict=True)):
        _show(axes[row, 0], image)
        if row_titles is not None:
            axes[row, 0].set_title(str(row_titles[row]), fontsize=7)
        for k in range(num_classes):
            axis = axes[row, k + 1]
            axis.imshow(scores[..., k], cmap=cmap, vmin=low, vmax=high)
            if row == 0:
                axis.set_title(names[k], fontsize=7)
    return figure


def _attention_grids(attention: np.ndarray, name: str) -> np.ndarray:
    """[B, T, h, w] from [B, T, h, w] or [B, T, L] with L a square."""
    validation.check_rank(attention, (3, 4), name)
    if attention.ndim == 4:
        return attention
    side = int(round(np.sqrt(attention.shape[-1])))
    if side * side != attention.shape[-1]:
        raise ValueError(
            f"Invalid shape for argument `{name}`. Expected [B, T, h, w], or "
            "[B, T, L] with L = h * w a square number of locations. "
            f"Received: {name}.shape={attention.shape}."
        )
    return attention.reshape(*attention.shape[:2], side, side)


def _word_figure(num_images: int, words, steps: int):
    """Checks `words` (one list of at most `steps` words per image) and
    makes the figure of the per-word plots: a row per image, the image and
    then one panel per word."""
    if len(words) != num_images or any(len(w) > steps for w in words):
        raise ValueError(
            "Invalid value for argument `words`. Expected one list of at most "
            f"T={steps} words per image ({num_images} images). Received: "
            f"{len(words)} lists of lengths {[len(w) for w in words]}."
        )
    columns = 1 + max((len(w) for w in words), default=0)
    return _figure(num_images, columns, (1.6 * columns, 1.8 * num_images))


def plot_attention_maps(
    images,
    attention,
    *,
    words: Sequence[Sequence[str]] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Figure:
    """Attention weights over each image, one panel per generated word.

    Show, Attend and Tell (Xu et al., 2015) weighs the encoder's h x w
    feature locations with α_t at each step t; each panel stretches α_t
    over the whole image (nearest neighbour: each location covers its
    cell) and titles it with the word emitted at step t.

    Args:
        images: [B, H, W, C] or [B, H, W].
        attention: [B, T, h, w], or [B, T, L] with L = h * w square.
        words: optional list, per image, of the words emitted (at most T);
            one panel per word. Default: one panel per step, titled `t=...`.
        alpha: opacity of the attention map in [0, 1].
        cmap: matplotlib colour map of the attention.

    Returns:
        A `matplotlib.figure.Figure`, B rows of the image then the panels
        (each panel's second image is its [h, w] α).
    """
    alpha = _check_alpha(alpha)
    images = _batched_images(images)
    attention = _attention_grids(np.asarray(attention, "float64"), "attention")
    if attention.shape[0] != len(images):
        raise ValueError(
            "Invalid shape for argument `attention`. Expected one row per "
            f"image ({len(images)}). Received: attention.shape="
            f"{attention.shape}."
        )
    steps = attention.shape[1]
    if words is None:
        words = [[f"t={t}" for t in range(steps)]] * len(images)
    figure, axes = _word_figure(len(images), words, steps)
    height, width = images.shape[1:3]
    for row, image in enumerate(images):
        _show(axes[row, 0], image)
        axes[row, 0].set_title("input", fontsize=8)
        for step, word in enumerate(words[row]):
            axis = axes[row, step + 1]
            _show(axis, image)
            axis.imshow(
                attention[row, step],
                cmap=cmap,
                alpha=alpha,
                interpolation="nearest",
                extent=(-0.5, width - 0.5, height - 0.5, -0.5),
            )
            axis.set_title(str(word), fontsize=8)
    return figure


def plot_attention_locations(
    images,
    locations,
    grid_shape,
    *,
    words: Sequence[Sequence[str]] | None = None,
    colour: str = "red",
    dim: float = 0.6,
) -> Figure:
    """The one location each generated word attended, outlined on the image.

    Hard attention (Xu et al., 2015, section 4.1) feeds the decoder one
    annotation `a_{s_t}` per step t: the feature at one cell `s_t` of the
    encoder's h x w grid (sampled while training; at inference
    `ShowAttendTellCaptioner` takes α_t's argmax). The paper's
    hard-attention figures show that location per word; here each panel
    dims the image outside the image region of cell `s_t` (an H/h x W/w
    block) and outlines it, titled with the word emitted at step t.

    Args:
        images: [B, H, W, C] or [B, H, W].
        locations: int [B, T]: the flat index `row * w + column` of each
            step's location in the h x w grid (-1: no panel).
        grid_shape: int or (h, w), the encoder's grid.
        words: optional list, per image, of the words emitted (at most T);
            one panel per word. Default: one panel per step with a
            location, titled `t=...`.
        colour: matplotlib colour of the outline.
        dim: opacity in [0, 1] of the black veil over the rest of the
            image.

    Returns:
        A `matplotlib.figure.Figure`, B rows of the image then the panels
        (each panel's second image is the [h, w, 4] veil, its patch the
        outline).
    """
    from matplotlib.patches import Rectangle

    dim = validation.check_fraction(dim, "dim")
    images = _batched_images(images)
    grid_h, grid_w = validation.standardize_size(grid_shape, "grid_shape")
    locations = np.asarray(locations)
    validation.check_rank(locations, 2, "locations")
    if locations.dtype.kind not in "iu":
        raise TypeError(
            "Invalid dtype for argument `locations`. Expected integers. "
            f"Received: locations.dtype={locations.dtype}."
        )
    if locations.shape[0] != len(images):
        raise ValueError(
            "Invalid shape for argument `locations`. Expected one row per "
            f"image ({len(images)}). Received: locations.shape="
            f"{locations.shape}."
        )
    if locations.size and (
        locations.min() < -1 or locations.max() >= grid_h * grid_w
    ):
        raise ValueError(
            "Invalid value for argument `locations`. Expected flat indices "
            f"in [0, {grid_h * grid_w}) of the {grid_h}x{grid_w} grid, or "
            f"-1. Received: values in [{locations.min()}, "
            f"{locations.max()}]."
        )
    steps = locations.shape[1]
    if words is None:
        words = [
            [f"t={t}" for t in range(steps) if row[t] >= 0] for row in locations
        ]
    figure, axes = _word_figure(len(images), words, steps)
    height, width = images.shape[1:3]
    cell_h, cell_w = height / grid_h, width / grid_w
    for row, image in enumerate(images):
        _show(axes[row, 0], image)
        axes[row, 0].set_title("input", fontsize=8)
        for step, word in enumerate(words[row]):
            location = int(locations[row, step])
            if location < 0:
                continue
            grid_row, grid_column = divmod(location, grid_w)
            veil = np.zeros((grid_h, grid_w, 4))
            veil[..., 3] = dim
            veil[grid_row, grid_column, 3] = 0.0
            axis = axes[row, step + 1]
            _show(axis, image)
            axis.imshow(
                veil,
                interpolation="nearest",
                extent=(-0.5, width - 0.5, height - 0.5, -0.5),
            )
            axis.add_patch(
                Rectangle(
                    (grid_column * cell_w - 0.5, grid_row * cell_h - 0.5),
                    cell_w,
                    cell_h,
                    fill=False,
                    edgecolor=colour,
                    linewidth=1.5,
                )
            )
            axis.set_title(str(word), fontsize=8)
    return figure


def affine_sampling_outline(theta, image_size) -> np.ndarray:
    """Pixel outline [5, 2] of (x, y) of the region an affine theta samples.

    The output's corners (normalised -1 and 1) go through theta [2, 3]
    (x_in, y_in) = theta @ (x_out, y_out, 1) and back to pixel centres with
    `align_corners=False`, the convention of `keras_segattn.ops.affine_grid`
    (PyTorch's `affine_grid`). The first corner repeats to close the line.

    Args:
        theta: 6 numbers, [6] or [2, 3].
        image_size: (H, W) of the input image.
    """
    theta = np.asarray(theta, "float64")
    if theta.size != 6:
        raise ValueError(
            "Invalid shape for argument `theta`. Expected 6 affine "
            f"parameters, [6] or [2, 3]. Received: theta.shape={theta.shape}."
        )
    height, width = validation.standardize_size(image_size, "image_size")
    corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]])
    points = corners @ theta.reshape(2, 3).T  # normalised (x, y)
    points = (points + 1) * np.array([width, height]) / 2 - 0.5
    return np.concatenate([points, points[:1]])


def plot_sampling_grids(
    images,
    thetas=None,
    *,
    transformed=None,
    titles: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
) -> Figure:
    """Spatial transformers: the sampled regions outlined on the inputs,
    above what each transformer outputs (Jaderberg et al., 2015).

    Args:
        images: [B, H, W, C] or [B, H, W] inputs.
        thetas: optional affine parameters, [B, 6], [B, 2, 3] for one
            transformer or [B, K, 6] / [B, K, 2, 3] for K of them; each is
            outlined with `affine_sampling_outline` in its colour.
        transformed: optional outputs, one array [B, h, w, C] or a list of
            K (one row each).
        titles: optional title per image (column).
        colors: optional colour per transformer (default matplotlib's
            tab10 order).

    Returns:
        A `matplotlib.figure.Figure`: the inputs in the first row (one
        `Line2D` outline per transformer), then a row per output.
    """
    images = _batched_images(images)
    batch = len(images)
    outlines = None
    if thetas is not None:
        thetas = np.asarray(thetas, "float64")
        if thetas.ndim >= 2 and thetas.shape[-2:] == (2, 3):
            thetas = thetas.reshape(*thetas.shape[:-2], 6)
        validation.check_rank(thetas, (2, 3), "thetas")
        if thetas.ndim == 2:
            thetas = thetas[:, None]
        validation.check_static_dims(thetas, {0: batch, 2: 6}, "thetas")
        outlines = thetas
    if transformed is None:
        transformed = []
    elif not isinstance(transformed, (list, tuple)):
        transformed = [transformed]
    transformed = [
        _batched_images(t, f"transformed[{k}]")
        for k, t in enumerate(transformed)
    ]
    for k, outputs in enumerate(transformed):
        if len(outputs) != batch:
            raise ValueError(
                f"Invalid shape for argument `transformed[{k}]`. Expected "
                f"one output per image ({batch}). Received: shape "
                f"{outputs.shape}."
            )
    count = max(len(transformed), 0 if outlines is None else outlines.shape[1])
    if colors is None:
        colors = [f"C{k}" for k in range(max(count, 1))]
    if len(colors) < count:
        raise ValueError(
            "Invalid length for argument `colors`. Expected one colour per "
            f"transformer ({count}). Received: colors={list(colors)!r}."
        )
    if titles is not None and len(titles) != batch:
        raise ValueError(
            "Invalid length for argument `titles`. Expected one title per "
            f"image ({batch}). Received: {len(titles)} titles."
        )
    rows = 1 + len(transformed)
    figure, axes = _figure(rows, batch, (1.8 * batch, 1.9 * rows))
    height, width = images.shape[1:3]
    for i in range(batch):
        _show(axes[0, i], images[i])
        if outlines is not None:
            for k, theta in enumerate(outlines[i]):
                outline = affine_sampling_outline(theta, (height, width))
                axes[0, i].plot(
                    outline[:, 0], outline[:, 1], color=colors[k], lw=1.5
                )
            axes[0, i].set_xlim(-0.5, width - 0.5)
            axes[0, i].set_ylim(height - 0.5, -0.5)
        if titles is not None:
            axes[0, i].set_title(str(titles[i]), fontsize=8)
        for k, outputs in enumerate(transformed):
            _show(axes[k + 1, i], outputs[i], _value_range(outputs))
            axes[k + 1, i].set_title(
                f"transformer {k}" if len(transformed) > 1 else "transformed",
                color=colors[k],
                fontsize=8,
            )
    return figure


def plot_canvas_sequence(
    sequences,
    *,
    glimpses=None,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    box_format: str = "yxyx",
) -> Figure:
    """Canvases step by step, one row per sequence (DRAW, Gregor et al.).

    Args:
        sequences: [B, T, H, W] (or [B, T, H, W, C]) canvases in [0, 1].
        glimpses: optional [B, T, 4] window of each step in pixels (the
            read or write attention), drawn as a red rectangle.
        row_labels: optional label per row.
        title: optional figure title.
        box_format: `"yxyx"` or `"xyxy"` for `glimpses`.

    Returns:
        A `matplotlib.figure.Figure` with B rows of T panels.
    """
    from matplotlib.patches import Rectangle

    box_format = validation.check_one_of(box_format, BOX_FORMATS, "box_format")
    sequences = np.asarray(sequences)
    validation.check_rank(sequences, (4, 5), "sequences")
    if sequences.ndim == 4:
        sequences = sequences[..., None]
    rows, steps = sequences.shape[:2]
    if glimpses is not None:
        glimpses = np.asarray(glimpses, "float64")
        validation.check_rank(glimpses, 3, "glimpses")
        validation.check_static_dims(
            glimpses, {0: rows, 1: steps, 2: 4}, "glimpses"
        )
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(
            "Invalid length for argument `row_labels`. Expected one label "
            f"per sequence ({rows}). Received: {len(row_labels)} labels."
        )
    figure, axes = _figure(rows, steps, (0.8 * steps, 0.8 * rows + 0.3))
    value_range = _value_range(sequences)
    for row in range(rows):
        for t in range(steps):
            axis = axes[row, t]
            _show(axis, sequences[row, t], value_range)
            if glimpses is not None:
                x1, y1, x2, y2 = _box_corners(glimpses[row, t], box_format)
                axis.add_patch(
                    Rectangle(
                        (x1, y1),
                        x2 - x1,
                        y2 - y1,
                        fill=False,
                        edgecolor=DETECTION_COLOUR,
                        linewidth=1,
                    )
                )
        if row_labels is not None:
            axes[row, 0].set_title(str(row_labels[row]), fontsize=6, loc="left")
    if title is not None:
        figure.suptitle(title, fontsize=8)
    return figure


def plot_alignment(
    weights,
    source_tokens: Sequence | None = None,
    target_tokens: Sequence | None = None,
    *,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    cmap: str = "gray",
    value_range: tuple[float, float] | None = (0.0, 1.0),
) -> Figure:
    """Alignment matrices: target steps (rows) against source positions.

    For Bahdanau attention (Bahdanau et al., 2015, fig. 3) row t holds the
    weights of output word t over the source words; for Graves's window
    (2013) φ(t, u) over string positions u.

    Args:
        weights: one matrix [T, S], or a list of them (one panel each).
        source_tokens: optional S labels of the columns (a list of lists
            with several matrices).
        target_tokens: optional T labels of the rows (likewise).
        xlabel, ylabel, title: optional axis labels and panel title.
        cmap: matplotlib colour map.
        value_range: (low, high) mapped to the ends of `cmap`: (0, 1) for
            attention weights; None scales each matrix to its own range
            (an unnormalised window such as Graves's).

    Returns:
        A `matplotlib.figure.Figure`, one panel per matrix; each panel's
        image holds its matrix.
    """
    single = not isinstance(weights, (list, tuple))
    matrices = [weights] if single else list(weights)
    if not matrices:
        raise ValueError(
            "Invalid value for argument `weights`. Expected a matrix or a "
            "non-empty list of matrices. Received: an empty list."
        )
    matrices = [np.asarray(m, "float64") for m in matrices]
    for k, matrix in enumerate(matrices):
        validation.check_rank(
            matrix, 2, "weights" if single else f"weights[{k}]"
        )

    def per_panel(tokens, name: str):
        if tokens is None:
            return [None] * len(matrices)
        tokens = [tokens] if single else list(tokens)
        if len(tokens) != len(matrices):
            raise ValueError(
                f"Invalid length for argument `{name}`. Expected one list "
                f"of tokens per matrix ({len(matrices)}). Received: "
                f"{len(tokens)}."
            )
        return tokens

    sources = per_panel(source_tokens, "source_tokens")
    targets = per_panel(target_tokens, "target_tokens")
    count = len(matrices)
    figure, axes = _figure(1, count, (5 * count, 5))
    for k, matrix in enumerate(matrices):
        axis = axes[0, k]
        axis.axis("on")
        low, high = (None, None) if value_range is None else value_range
        axis.imshow(matrix, cmap=cmap, vmin=low, vmax=high)
        for tokens, length, set_ticks, name in (
            (sources[k], matrix.shape[1], axis.set_xticks, "source_tokens"),
            (targets[k], matrix.shape[0], axis.set_yticks, "target_tokens"),
        ):
            if tokens is None:
                continue
            if len(tokens) != length:
                raise ValueError(
                    f"Invalid length for argument `{name}`. Expected "
                    f"{length} tokens, one per matrix "
                    f"{'column' if name == 'source_tokens' else 'row'}. "
                    f"Received: {len(tokens)} tokens {list(tokens)!r}."
                )
            labels = [str(token) for token in tokens]
            if name == "source_tokens":
                set_ticks(range(length), labels, rotation=90)
            else:
                set_ticks(range(length), labels)
        if xlabel is not None:
            axis.set_xlabel(xlabel)
        if ylabel is not None:
            axis.set_ylabel(ylabel)
        if title is not None:
            axis.set_title(title)
    return figure


def _text_layout(text: str, line_width: int) -> tuple[np.ndarray, int]:
    """(row, column) [L, 2] of every character of `text` laid out in lines
    of at most `line_width`, a newline ending its line; and the row count."""
    positions = np.zeros((len(text), 2), "int64")
    row = column = 0
    for i, char in enumerate(text):
        if column == line_width:
            row, column = row + 1, 0
        positions[i] = row, column
        if char == "\n":
            row, column = row + 1, 0
        else:
            column += 1
    return positions, (int(positions[-1, 0]) + 1 if len(text) else 0)


def plot_text_activations(
    text: str,
    activations,
    *,
    labels: Sequence[str] | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    line_width: int = 80,
    cmap: str = "coolwarm",
    title: str | None = None,
) -> Figure:
    """Text coloured character by character by cell activations.

    The figures of Karpathy, Johnson & Fei-Fei, "Visualizing and
    Understanding Recurrent Networks" (2015): one panel per cell, each
    character on the colour of the cell's activation after reading it
    (blue low, red high with `"coolwarm"`). Lines wrap at `line_width`; a
    newline ends its line and is drawn as "↵".

    Args:
        text: str of L characters.
        activations: [L] or [K, L], one row per cell (e.g. tanh of the
            LSTM cell state).
        labels: optional K panel titles.
        value_range: (low, high) mapped to the colormap's ends.
        line_width: int > 0, characters per displayed line.
        cmap: a matplotlib colormap name.
        title: optional figure title.

    Returns:
        A `matplotlib.figure.Figure` with K panels, one above the other.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(
            "Invalid value for argument `text`. Expected a non-empty str. "
            f"Received: text={text!r}."
        )
    activations = np.asarray(activations, "float64")
    validation.check_rank(activations, (1, 2), "activations")
    activations = activations.reshape(-1, activations.shape[-1])
    validation.check_static_dims(activations, {1: len(text)}, "activations")
    if labels is not None and len(labels) != len(activations):
        raise ValueError(
            "Invalid length for argument `labels`. Expected one label per "
            f"row of `activations` ({len(activations)}). Received: "
            f"{len(labels)} labels."
        )
    low, high = (float(v) for v in value_range)
    if not low < high:
        raise ValueError(
            "Invalid value for argument `value_range`. Expected (low, high) "
            f"with low < high. Received: value_range={tuple(value_range)}."
        )
    line_width = validation.check_positive_int(line_width, "line_width")
    positions, rows = _text_layout(text, line_width)
    panels = len(activations)
    figure, axes = _figure(
        panels, 1, (0.09 * line_width + 0.4, panels * (0.17 * rows + 0.35))
    )
    for panel, axis in enumerate(axes[:, 0]):
        colours = np.full((rows, line_width), np.nan)
        colours[positions[:, 0], positions[:, 1]] = activations[panel]
        axis.imshow(
            np.ma.masked_invalid(colours),
            cmap=cmap,
            vmin=low,
            vmax=high,
            aspect="auto",
            interpolation="nearest",
        )
        for char, (row, column) in zip(text, positions, strict=True):
            if not char.isspace() or char == "\n":
                axis.text(
                    column,
                    row,
                    "↵" if char == "\n" else char,
                    ha="center",
                    va="center",
                    fontsize=6,
                    family="monospace",
                )
        if labels is not None:
            axis.set_title(str(labels[panel]), fontsize=7, loc="left")
    if title is not None:
        figure.suptitle(title, fontsize=8)
    return figure
