"""Public API of this subpackage; see its modules."""

from keras_segattn.losses.detection import binary_mask_loss
from keras_segattn.losses.detection import fast_rcnn_loss
from keras_segattn.losses.detection import mask_rcnn_loss
from keras_segattn.losses.detection import rpn_loss
from keras_segattn.losses.detection import smooth_l1
from keras_segattn.losses.segmentation import SegmentationCrossentropy
from keras_segattn.losses.segmentation import median_frequency_weights
from keras_segattn.losses.segmentation import segmentation_loss
from keras_segattn.losses.sequence import TokenCrossentropy
from keras_segattn.losses.yolo import YOLO_LOSS_NAMES
from keras_segattn.losses.yolo import yolo_v1_loss
