"""SavedModel export for TF Serving."""

from keras_segattn.export.serving import export_for_serving
from keras_segattn.export.serving import make_segmentation_serving_fn
