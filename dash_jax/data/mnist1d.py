"""MNIST-1D (Greydanus & Kobak, ICML 2024) as a tfds dataset, built offline.

The `mnist1d` package generates the benchmark from its own ten templates; a
builder runs that generator with the package's published default arguments
(4,000 training and 1,000 test signals of length 40, 10 classes, seed 42), so
the numbers are the benchmark's and nothing is downloaded. Signals stay
float32: they are features, not pixels.
"""
import numpy as np
import tensorflow_datasets as tfds

SIGNAL_LENGTH = 40


def generator_args() -> dict:
  """The package's published default arguments, less the download URL (the
  builder never downloads); recorded in each run's provenance."""
  from mnist1d.data import get_dataset_args
  args = get_dataset_args(as_dict=True)
  args.pop('url', None)
  return args


def mnist1d_arrays():
  """(train_x, train_y, test_x, test_y): the package's make_dataset output,
  signals float32 (N, 40), labels int64."""
  from mnist1d.data import get_dataset_args, make_dataset
  d = make_dataset(get_dataset_args())
  return (d['x'].astype(np.float32), d['y'].astype(np.int64),
          d['x_test'].astype(np.float32), d['y_test'].astype(np.int64))


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
