"""Public API of this subpackage; see its modules."""

from keras_segattn.metrics.segmentation import MaskedPixelAccuracy
from keras_segattn.metrics.segmentation import segmentation_metrics
