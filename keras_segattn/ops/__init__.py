"""Pure tensor functions (`torchvision.ops` style), one public op per file."""

from keras_segattn.ops.affine_grid import affine_grid
from keras_segattn.ops.anchors import generate_anchors
from keras_segattn.ops.anchors import num_anchors_per_location
from keras_segattn.ops.attention_grid import attention_grid
from keras_segattn.ops.batched_nms import batched_nms
from keras_segattn.ops.bilinear_upsampling_kernel import (
    bilinear_upsampling_kernel,
)
from keras_segattn.ops.box_coding import decode_boxes
from keras_segattn.ops.box_coding import encode_boxes
from keras_segattn.ops.decode_yolo_grid import decode_yolo_grid
from keras_segattn.ops.draw_filterbank import draw_filterbank
from keras_segattn.ops.generate_proposals import generate_proposals
from keras_segattn.ops.grid_sample import grid_sample
from keras_segattn.ops.match_boxes import match_boxes
from keras_segattn.ops.max_pool_with_argmax import max_pool_with_argmax
from keras_segattn.ops.max_unpool import max_unpool
from keras_segattn.ops.multilevel_roi_align import multilevel_roi_align
from keras_segattn.ops.overfeat_merge import overfeat_merge
from keras_segattn.ops.paste_masks import paste_masks
from keras_segattn.ops.postprocess_detections import postprocess_detections
from keras_segattn.ops.projective_grid import projective_grid
from keras_segattn.ops.roi_align import roi_align
from keras_segattn.ops.roi_pool import roi_pool
from keras_segattn.ops.sample_balanced import sample_balanced
from keras_segattn.ops.thin_plate_spline_grid import thin_plate_spline_grid
