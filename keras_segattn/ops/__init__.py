"""Pure tensor functions (`torchvision.ops` style), one public op per file."""

from keras_segattn.ops import validation
from keras_segattn.ops.affine_grid import affine_grid
from keras_segattn.ops.attention_grid import attention_grid
from keras_segattn.ops.bilinear_upsampling_kernel import (
    bilinear_upsampling_kernel,
)
from keras_segattn.ops.draw_filterbank import draw_filterbank
from keras_segattn.ops.grid_sample import grid_sample
from keras_segattn.ops.max_pool_with_argmax import max_pool_with_argmax
from keras_segattn.ops.max_unpool import max_unpool
from keras_segattn.ops.multilevel_roi_align import multilevel_roi_align
from keras_segattn.ops.projective_grid import projective_grid
from keras_segattn.ops.roi_align import roi_align
from keras_segattn.ops.roi_pool import roi_pool
from keras_segattn.ops.thin_plate_spline_grid import thin_plate_spline_grid
