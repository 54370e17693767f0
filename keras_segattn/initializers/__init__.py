"""Public API of this subpackage; see its modules."""

from keras_segattn.initializers.bilinear_upsampling import BilinearUpsampling
