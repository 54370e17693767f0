"""Interpretable recurrent cells: which units track a feature of the text.

Karpathy, Johnson & Fei-Fei, "Visualizing and Understanding Recurrent
Networks" (2015) found LSTM cells of character models that follow
interpretable properties of the text: one is on inside quotes, one counts
the position in the line, others fire at word boundaries. Here,
`text_features` computes such properties per character and
`most_correlated_cells` ranks the cells by the Pearson correlation of their
activation with each property, over a text the model has read (the paper
picked its cells by eye; correlation is the automatic version of that
search).
"""

from __future__ import annotations

import numpy as np

from keras_segattn import validation

TEXT_FEATURES = ("inside_quotes", "line_position", "word_position")
"""The per-character features `text_features` returns, in order."""


def text_features(text: str, quote: str = '"') -> dict[str, np.ndarray]:
    """Per-character properties of `text`, each float64 [len(text)].

    Each value describes the state after reading the character, as a
    cell's activation at that step does:

    - `inside_quotes`: 1 from an opening `quote` up to the character
      before its closing one, else 0 (the closing quote reads 0); quotes
      pair up within a line, so an unmatched one ends at the newline.
    - `line_position`: index of the character in its line (0 for the
      first; the newline ending a line gets the line's length).
    - `word_position`: index of the character in its word, a run of
      non-whitespace characters (0 for the first letter); whitespace is 0.

    Args:
        text: str.
        quote: the quotation character (one character).

    Returns:
        A dict with the keys of `TEXT_FEATURES`.

    Raises:
        TypeError: if `text` is not a str.
        ValueError: if `quote` is not one character.
    """
    if not isinstance(text, str):
        raise TypeError(
            "Invalid type for argument `text`. Expected a str. Received: "
            f"text of type {type(text).__name__}."
        )
    if not isinstance(quote, str) or len(quote) != 1:
        raise ValueError(
            "Invalid value for argument `quote`. Expected one character. "
            f"Received: quote={quote!r}."
        )
    inside = np.zeros(len(text))
    line = np.zeros(len(text))
    word = np.zeros(len(text))
    quoted, line_index, word_index = False, 0, 0
    for i, char in enumerate(text):
        if char == quote:
            quoted = not quoted
        elif char == "\n":
            quoted = False
        inside[i] = quoted
        line[i] = line_index
        line_index = 0 if char == "\n" else line_index + 1
        if char.isspace():
            word_index = 0
        else:
            word[i] = word_index
            word_index += 1
    return {
        "inside_quotes": inside,
        "line_position": line,
        "word_position": word,
    }


def cell_correlations(activations, feature) -> np.ndarray:
    """Pearson correlation of every cell's activation with a feature.

    Args:
        activations: float array [N, units], the cells' activations at N
            steps.
        feature: float array [N], the feature at those steps.

    Returns:
        float64 [units] in [-1, 1]; 0 for a cell (or a feature) that is
        constant over the N steps, where the correlation is undefined.

    Raises:
        ValueError: for `activations` not 2-D, a `feature` of another
            length, fewer than 2 steps or non-finite values.
    """
    activations = np.asarray(activations, np.float64)
    feature = np.asarray(feature, np.float64)
    validation.check_rank(activations, 2, "activations")
    validation.check_rank(feature, 1, "feature")
    if len(feature) != len(activations) or len(feature) < 2:
        raise ValueError(
            "Invalid shape for argument `feature`. Expected one value per "
            f"step of `activations` ({len(activations)}, at least 2). "
            f"Received: feature.shape={feature.shape}."
        )
    for name, array in (("activations", activations), ("feature", feature)):
        if not np.all(np.isfinite(array)):
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected finite "
                f"values. Received: {name} with NaN or infinity."
            )
    # Constant series by their exact range: centring leaves rounding noise.
    varies = (np.ptp(activations, axis=0) > 0) & (np.ptp(feature) > 0)
    centred = activations - activations.mean(0)
    feature = feature - feature.mean()
    covariance = feature @ centred
    scale = np.sqrt((centred**2).sum(0) * (feature**2).sum())
    return np.divide(
        covariance, scale, out=np.zeros_like(covariance), where=varies
    ).clip(-1.0, 1.0)


def most_correlated_cells(
    activations, features: dict, top_k: int = 1
) -> dict[str, list[tuple[int, float]]]:
    """The cells whose activation correlates most with each feature.

    Args:
        activations: float array [N, units].
        features: dict of name -> float array [N] (e.g. `text_features`).
        top_k: int > 0, cells per feature.

    Returns:
        name -> `top_k` pairs `(cell index, Pearson r)`, by decreasing
        |r| (a cell that is off where the feature is on ranks as high as
        one that is on).

    Raises:
        ValueError: as `cell_correlations`, or for a bad `top_k`.
    """
    top_k = validation.check_positive_int(top_k, "top_k")
    result = {}
    for name, feature in features.items():
        r = cell_correlations(activations, feature)
        order = np.argsort(-np.abs(r), kind="stable")[:top_k]
        result[name] = [(int(cell), float(r[cell])) for cell in order]
    return result
