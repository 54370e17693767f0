"""SavedModel export for TF Serving."""

from keras_segattn.export.classification import export_classifier_for_serving
from keras_segattn.export.classification import make_classifier_serving_fn
from keras_segattn.export.serving import SERVING_KEY
from keras_segattn.export.serving import decode_image_bytes
from keras_segattn.export.serving import export_for_serving
from keras_segattn.export.serving import make_segmentation_serving_fn
from keras_segattn.export.serving import write_serving_archive
from keras_segattn.export.serving import write_warmup_requests
from keras_segattn.export.translation import BEAM_SERVING_KEY
from keras_segattn.export.translation import TranslationServingModule
from keras_segattn.export.translation import export_translator_for_serving
