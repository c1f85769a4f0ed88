"""scikit-learn's bundled 8x8 digits as a tfds dataset, built offline.

The default dataset must need no download, yet flow through tfds like every
other dataset, so a builder wraps the copy that ships inside scikit-learn.
"""
import numpy as np
import tensorflow_datasets as tfds

from dash_jax.data.base import Splits

SPLIT_SEED = 0  # fixed: the 70/30 split is part of the dataset, not of a run
TEST_FRACTION = 0.3


def digits_arrays() -> Splits:
  """Pixels 0..16 rescaled to uint8 0..255."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int64)
  order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
  num_test = int(round(TEST_FRACTION * len(labels)))
  test, train = order[:num_test], order[num_test:]
  return Splits(images[train], labels[train], images[test], labels[test])


class DashDigits(tfds.core.GeneratorBasedBuilder):
  """sklearn digits (1,797 8x8 grey images), 70/30 train/test split."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'sklearn load_digits, 70/30 split with seed 0.'}

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 1)),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        description='scikit-learn digits, built offline.')

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    train_x, train_y, test_x, test_y = digits_arrays()
    return {'train': self._generate_examples(train_x, train_y),
            'test': self._generate_examples(test_x, test_y)}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {'image': image, 'label': int(label)}
