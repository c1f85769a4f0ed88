"""MNIST-1D as a tfds dataset (needs `pip install 'dash-jax[data]'`): the
arrays of dash_jax/data/mnist1d.py through a tfds builder, for pipelines
that read tfds. Launches do not use it: `dataset='mnist1d'` generates the
same arrays in NumPy (tests/test_mnist1d.py checks they are equal).

    from dash_jax.data.mnist1d_tfds import DashMnist1d
    DashMnist1d(data_dir=DIR).download_and_prepare()  # nothing is downloaded
"""
import numpy as np
import tensorflow_datasets as tfds

from dash_jax.data.mnist1d import SIGNAL_LENGTH, mnist1d_arrays


class DashMnist1d(tfds.core.GeneratorBasedBuilder):
  """MNIST-1D: 4,000 / 1,000 float32 signals of length 40, 10 classes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'mnist1d.make_dataset with get_dataset_args() defaults.'}

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'signal': tfds.features.Tensor(shape=(SIGNAL_LENGTH,), dtype=np.float32),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('signal', 'label'),
        disable_shuffling=True,  # the package's order: chunk_order='given' replays it
        description='MNIST-1D, generated offline by the mnist1d package.')

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    train_x, train_y, test_x, test_y = mnist1d_arrays()
    return {'train': self._generate_examples(train_x, train_y),
            'test': self._generate_examples(test_x, test_y)}

  def _generate_examples(self, signals, labels):
    for i, (signal, label) in enumerate(zip(signals, labels)):
      yield i, {'signal': signal, 'label': int(label)}
