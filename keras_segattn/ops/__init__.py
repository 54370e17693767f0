"""Pure tensor functions (`torchvision.ops` style), one public op per file."""

from keras_segattn.ops import validation
