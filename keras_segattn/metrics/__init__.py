"""Public API of this subpackage; see its modules."""

from keras_segattn.metrics.cell_correlation import TEXT_FEATURES
from keras_segattn.metrics.cell_correlation import cell_correlations
from keras_segattn.metrics.cell_correlation import most_correlated_cells
from keras_segattn.metrics.cell_correlation import text_features
from keras_segattn.metrics.coco_evaluation import COCO_STAT_NAMES
from keras_segattn.metrics.coco_evaluation import coco_ground_truth
from keras_segattn.metrics.coco_evaluation import coco_results
from keras_segattn.metrics.coco_evaluation import evaluate_coco
from keras_segattn.metrics.coco_evaluation import evaluate_detections
from keras_segattn.metrics.segmentation import MaskedPixelAccuracy
from keras_segattn.metrics.segmentation import segmentation_metrics
