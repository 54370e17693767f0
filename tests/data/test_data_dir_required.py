"""Library loaders have no default data folder: a missing `data_dir` is an
error that says what the folder holds and where to get it."""

import inspect

import pytest

from keras_segattn import data


@pytest.mark.parametrize(
    "loader, source",
    [
        (data.load_mnist_arrays, "keras.datasets.mnist"),
        (data.load_mnist, "keras.datasets.mnist"),
        (data.load_mnist_addition, "keras.datasets.mnist"),
        (data.load_digit_scene_arrays, "keras.datasets.mnist"),
        (data.load_cluttered_mnist_arrays, "daviddao/spatial-transformer"),
        (data.load_cluttered_mnist, "daviddao/spatial-transformer"),
    ],
)
def test_missing_data_dir_says_where_to_get_the_data(loader, source):
    default = inspect.signature(loader).parameters["data_dir"].default
    assert default is None  # never a path into a workspace folder
    with pytest.raises(ValueError, match="Received: data_dir=None") as error:
        loader()
    assert source in str(error.value)
