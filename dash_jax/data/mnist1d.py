"""MNIST-1D (Greydanus & Kobak, ICML 2024), generated offline in NumPy.

The `mnist1d` package generates the benchmark from its own ten templates with
its published default arguments (4,000 training and 1,000 test signals of
length 40, 10 classes, seed 42), so the numbers are the benchmark's, nothing
is downloaded and neither TensorFlow nor tfds is needed. Signals stay
float32: they are features, not pixels. The same data as a tfds dataset, for
those who want one: dash_jax/data/mnist1d_tfds.py.
"""
import numpy as np

from dash_jax.data.base import Splits

SIGNAL_LENGTH = 40


def generator_args() -> dict:
  """The package's published default arguments, less the download URL
  (nothing is downloaded); recorded in each run's provenance."""
  from mnist1d.data import get_dataset_args
  args = get_dataset_args(as_dict=True)
  args.pop('url', None)
  return args


def mnist1d_arrays() -> Splits:
  """The package's make_dataset output,
  signals float32 (N, 40), labels int64, in the package's order."""
  from mnist1d.data import get_dataset_args, make_dataset
  d = make_dataset(get_dataset_args())
  return Splits(d['x'].astype(np.float32), d['y'].astype(np.int64),
                d['x_test'].astype(np.float32), d['y_test'].astype(np.int64))
