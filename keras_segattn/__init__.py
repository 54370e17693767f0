"""keras_segattn: Keras 3 layers and models for segmentation and attention."""

__version__ = "0.1.0"

from keras_segattn import data
from keras_segattn import decoding
from keras_segattn import distribute
from keras_segattn import export
from keras_segattn import initializers
from keras_segattn import layers
from keras_segattn import losses
from keras_segattn import metrics
from keras_segattn import models
from keras_segattn import ops
from keras_segattn import saving
from keras_segattn import validation
from keras_segattn import visualization
