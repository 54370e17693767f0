"""Public API of this subpackage; see its modules."""

from keras_segattn.losses.segmentation import segmentation_loss
