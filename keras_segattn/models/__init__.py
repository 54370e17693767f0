"""Public API of this subpackage; see its modules."""

from keras_segattn.decoding import beam_search_decode
from keras_segattn.decoding import greedy_decode
from keras_segattn.layers.draw_core import DrawCore
from keras_segattn.models.backbones import DEFAULT_SKIP_LAYER_NAMES
from keras_segattn.models.backbones import build_resnet_small_backbone
from keras_segattn.models.backbones import build_vgg_small_backbone
from keras_segattn.models.backbones import get_backbone
from keras_segattn.models.blocks import apply_bilinear_upsampling
from keras_segattn.models.blocks import apply_conv_block
from keras_segattn.models.blocks import apply_fcn_decoder
from keras_segattn.models.blocks import apply_residual_block
from keras_segattn.models.blocks import apply_upsample_block
from keras_segattn.models.captioning import ShowAttendTellCaptioner
from keras_segattn.models.captioning import build_caption_encoder
from keras_segattn.models.convolutionalize import convolutionalize
from keras_segattn.models.convolutionalize import sliding_window_geometry
from keras_segattn.models.deconvnet import DeconvNet
from keras_segattn.models.deconvnet import SegNet
from keras_segattn.models.detection_backbones import build_feature_backbone
from keras_segattn.models.detection_backbones import build_pyramid_backbone
from keras_segattn.models.draw import DRAW
from keras_segattn.models.fast_rcnn import FastRCNN
from keras_segattn.models.faster_rcnn import FasterRCNN
from keras_segattn.models.faster_rcnn import build_faster_rcnn_components
from keras_segattn.models.fcn import FCN
from keras_segattn.models.fcn import build_fcn_segmenter
from keras_segattn.models.hypercolumn import build_hypercolumn_segmenter
from keras_segattn.models.localization import box_iou
from keras_segattn.models.localization import box_loss
from keras_segattn.models.localization import build_classifier_localizer
from keras_segattn.models.multi_scale import build_multi_scale_conv_encoder
from keras_segattn.models.multi_scale import build_multi_scale_segmenter
from keras_segattn.models.overfeat import OverfeatDetector
from keras_segattn.models.presets import SEGMENTATION_PRESETS
from keras_segattn.models.presets import build_segmentation_model
from keras_segattn.models.pretrained import PRETRAINED_MODELS
from keras_segattn.models.pretrained import list_pretrained
from keras_segattn.models.pretrained import load_pretrained
from keras_segattn.models.pretrained import read_pretrained_metadata
from keras_segattn.models.pretrained import save_pretrained
from keras_segattn.models.rcnn import RCNN
from keras_segattn.models.recurrent_refinement import (
    build_recurrent_refinement_segmenter,
)
from keras_segattn.models.recurrent_refinement import build_refinement_network
from keras_segattn.models.recurrent_refinement import (
    recurrent_refinement_inference_model,
)
from keras_segattn.models.sds import SDSRefiner
from keras_segattn.models.translation import Seq2SeqTranslator
from keras_segattn.models.two_stage_detector import TwoStageDetector
from keras_segattn.models.yolo import YOLO
