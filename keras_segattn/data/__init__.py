"""`tf.data` pipelines: folders, TFDS, `../shared/data` archives, synthetic.

Segmentation loaders yield `(images, masks)`: images float32 [B, H, W, 3] in
0..255 and masks int32 [B, H, W] of class ids. MNIST-family loaders yield
`(images, labels)`: images float32 [B, H, W, 1] in 0..255, labels int32.
Translation pipelines (`spa_eng`) yield teacher-forcing batches of token
ids; `digit_scenes` yields Mask R-CNN targets (boxes, classes, masks);
`text` holds the sentence standardisation they share with serving.
"""

from keras_segattn.data.camvid import CAMVID_CLASS_NAMES
from keras_segattn.data.camvid import CAMVID_NUM_CLASSES
from keras_segattn.data.camvid import CAMVID_PALETTE
from keras_segattn.data.camvid import CAMVID_VOID_LABEL
from keras_segattn.data.camvid import load_camvid
from keras_segattn.data.captions import SPECIAL_TOKENS
from keras_segattn.data.captions import CaptionVocabulary
from keras_segattn.data.captions import caption_words
from keras_segattn.data.cluttered_mnist import CLUTTERED_MNIST_FILE
from keras_segattn.data.cluttered_mnist import CLUTTERED_MNIST_IMAGE_SIZE
from keras_segattn.data.cluttered_mnist import CLUTTERED_MNIST_SAMPLE_FILE
from keras_segattn.data.cluttered_mnist import load_cluttered_mnist
from keras_segattn.data.cluttered_mnist import load_cluttered_mnist_arrays
from keras_segattn.data.cluttered_mnist import make_synthetic_cluttered_mnist
from keras_segattn.data.cluttered_mnist import (
    make_synthetic_cluttered_mnist_arrays,
)
from keras_segattn.data.coco import list_coco_instances
from keras_segattn.data.coco import load_coco_captions
from keras_segattn.data.coco import load_coco_instance_arrays
from keras_segattn.data.coco import read_coco_json
from keras_segattn.data.coco import split_held_out
from keras_segattn.data.coco_instances import index_coco_instances
from keras_segattn.data.coco_instances import load_coco_instances
from keras_segattn.data.detection_augmentation import AUGMENTATIONS
from keras_segattn.data.detection_augmentation import DetectionAugmenter
from keras_segattn.data.detection_augmentation import make_detection_augmenter
from keras_segattn.data.digit_captions import CAPTION_VOCABULARY
from keras_segattn.data.digit_captions import caption_for
from keras_segattn.data.digit_captions import make_digit_caption_arrays
from keras_segattn.data.digit_captions import make_synthetic_digit_captions
from keras_segattn.data.digit_scenes import SCENE_KEYS
from keras_segattn.data.digit_scenes import load_digit_scene_arrays
from keras_segattn.data.digit_scenes import make_digit_scene_arrays
from keras_segattn.data.digit_scenes import make_digit_scene_dataset
from keras_segattn.data.digit_scenes import make_synthetic_digit_scenes
from keras_segattn.data.mnist import MNIST_FILE
from keras_segattn.data.mnist import MNIST_TEST_POOL_START
from keras_segattn.data.mnist import binarise_stochastic
from keras_segattn.data.mnist import load_mnist
from keras_segattn.data.mnist import load_mnist_arrays
from keras_segattn.data.mnist import make_stochastic_binarised_dataset
from keras_segattn.data.mnist_addition import MNIST_ADDITION_NUM_CLASSES
from keras_segattn.data.mnist_addition import load_mnist_addition
from keras_segattn.data.mnist_addition import make_mnist_addition_arrays
from keras_segattn.data.mnist_addition import make_synthetic_mnist_addition
from keras_segattn.data.oxford_pets import PETS_CLASS_NAMES
from keras_segattn.data.oxford_pets import PETS_LABEL_MAP
from keras_segattn.data.oxford_pets import PETS_LABEL_OFFSET
from keras_segattn.data.oxford_pets import PETS_NUM_CLASSES
from keras_segattn.data.oxford_pets import list_oxford_pets
from keras_segattn.data.oxford_pets import load_oxford_pets
from keras_segattn.data.oxford_pets import load_tfds_oxford_pets
from keras_segattn.data.pets_localization import box_from_trimap
from keras_segattn.data.pets_localization import check_normalized_boxes
from keras_segattn.data.pets_localization import load_pets_localization
from keras_segattn.data.pets_localization import make_localization_dataset
from keras_segattn.data.pets_localization import (
    make_synthetic_pets_localization,
)
from keras_segattn.data.segmentation import IMAGE_EXTENSIONS
from keras_segattn.data.segmentation import MASK_EXTENSIONS
from keras_segattn.data.segmentation import SegmentationPipelineOptions
from keras_segattn.data.segmentation import load_segmentation_directory
from keras_segattn.data.segmentation import prepare_segmentation_dataset
from keras_segattn.data.selective_search import SELECTIVE_SEARCH_MODES
from keras_segattn.data.selective_search import (
    cached_selective_search_proposals,
)
from keras_segattn.data.selective_search import pad_proposals
from keras_segattn.data.selective_search import proposal_recall
from keras_segattn.data.selective_search import selective_search_proposals
from keras_segattn.data.spa_eng import DEFAULT_BUCKET_BOUNDARIES
from keras_segattn.data.spa_eng import SPA_ENG_FILE
from keras_segattn.data.spa_eng import count_too_long
from keras_segattn.data.spa_eng import load_spa_eng_pairs
from keras_segattn.data.spa_eng import make_synthetic_translation_pairs
from keras_segattn.data.spa_eng import make_text_vectorizer
from keras_segattn.data.spa_eng import make_translation_dataset
from keras_segattn.data.spa_eng import split_translation_pairs
from keras_segattn.data.spa_eng import vectorize_pairs
from keras_segattn.data.synthetic_digits import make_synthetic_digits
from keras_segattn.data.synthetic_segmentation import (
    make_synthetic_segmentation,
)
from keras_segattn.data.synthetic_segmentation import (
    make_synthetic_segmentation_arrays,
)
from keras_segattn.data.text import END_TOKEN
from keras_segattn.data.text import START_TOKEN
from keras_segattn.data.text import TextStandardizer
from keras_segattn.data.text import build_display_vocabulary
from keras_segattn.data.text import detokenize
from keras_segattn.data.text import standardize_python
from keras_segattn.data.tfds_datasets import load_tfds_coco
from keras_segattn.data.tfds_datasets import load_tfds_mnist
