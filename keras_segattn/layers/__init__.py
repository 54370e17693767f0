"""Public API of this subpackage; see its modules."""

from keras_segattn.layers.anchor_labeler import AnchorLabeler
from keras_segattn.layers.bahdanau_attention import BahdanauAttention
from keras_segattn.layers.bahdanau_decoder import BahdanauDecoder
from keras_segattn.layers.box_head import BoxHead
from keras_segattn.layers.crop_to_match import CropToMatch
from keras_segattn.layers.detection_postprocessor import DetectionPostprocessor
from keras_segattn.layers.draw import DrawRead
from keras_segattn.layers.draw import DrawWrite
from keras_segattn.layers.draw_core import DrawCore
from keras_segattn.layers.dropout import Dropout
from keras_segattn.layers.feature_pyramid import FeaturePyramid
from keras_segattn.layers.graves_window_attention import GravesWindowAttention
from keras_segattn.layers.grid_coordinates import GridCoordinates
from keras_segattn.layers.hypercolumn import Hypercolumn
from keras_segattn.layers.hypercolumn_mask_head import HypercolumnMaskHead
from keras_segattn.layers.mask_head import MaskHead
from keras_segattn.layers.mask_pooling import MaskPooling
from keras_segattn.layers.mask_postprocessor import MaskPostprocessor
from keras_segattn.layers.max_pooling_with_argmax2d import (
    MaxPoolingWithArgmax2D,
)
from keras_segattn.layers.max_unpooling2d import MaxUnpooling2D
from keras_segattn.layers.multi_scale_encoder import MultiScaleEncoder
from keras_segattn.layers.multi_scale_roi_align import MultiScaleRoIAlign
from keras_segattn.layers.proposal_generator import ProposalGenerator
from keras_segattn.layers.roi_align import RoIAlign
from keras_segattn.layers.roi_pool import RoIPool
from keras_segattn.layers.roi_sampler import RoISampler
from keras_segattn.layers.rpn_head import RPNHead
from keras_segattn.layers.show_attend_tell_decoder import ShowAttendTellDecoder
from keras_segattn.layers.spatial_transformer import SpatialTransformer
from keras_segattn.layers.spatial_transformer import build_localization_head
from keras_segattn.layers.spatial_transformer import identity_transform
from keras_segattn.layers.spatial_transformer import (
    identity_transform_initializer,
)
from keras_segattn.layers.yolo_head import YOLOHead
from keras_segattn.layers.yolo_postprocessor import YOLOPostprocessor
