"""What every dataset loader shares: the Dataset record, the tfds data dir,
and a prepared split read as arrays (kept beside it, so later launches need
no TensorFlow).
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np


@dataclasses.dataclass
class Dataset:
  """Raw pixels plus the constants that normalise them (in pixel units)."""
  name: str
  train_x: np.ndarray  # (N, H, W, C) uint8
  train_y: np.ndarray  # (N,) int32
  test_x: np.ndarray
  test_y: np.ndarray
  num_classes: int
  mean: np.ndarray  # (C,) float32, pixel units 0..255
  std: np.ndarray

  @property
  def input_shape(self):
    return self.train_x.shape[1:]


def tfds_split_arrays(builder, split):
  """A split as numpy arrays, read once through tfds (TensorFlow) and then
  from an array file beside the prepared dataset, so later launches do not
  import TensorFlow (~3 s)."""
  cache = array_cache(builder, split)
  kept = read_cache(cache)
  if kept is not None:
    return kept
  import tensorflow as tf
  import tensorflow_datasets as tfds
  tf.config.set_visible_devices([], 'GPU')  # TF only reads data; JAX owns the GPU
  ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
  xs, ys = [], []  # batches of 10k (batch_size=-1 breaks mock_data)
  for x, y in tfds.as_numpy(ds.batch(10_000)):
    xs.append(x)
    ys.append(y)
  x, y = np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int32)
  if cache is not None and len(y) == builder.info.splits[split].num_examples:
    tmp = f'{cache}.{os.getpid()}.tmp.npz'
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, cache)  # atomic: a reader never sees half a file
  return x, y


def array_cache(builder, split):
  """Where a split's arrays are kept: inside the prepared dataset's own
  versioned folder (so re-preparing it drops them), or None where that folder
  holds no prepared dataset (tfds.testing.mock_data, for one)."""
  root = os.fspath(builder.data_dir)
  if not os.path.isfile(os.path.join(root, 'dataset_info.json')):
    return None
  return cache_path(root, split)


def cache_path(folder, split):
  return os.path.join(folder, 'dash_jax-' + re.sub(r'[^A-Za-z0-9_.-]', '_', split) + '.npz')


def read_cache(path):
  """(x, y) from a kept array file, or None if it is missing or unreadable."""
  if path is None or not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      return f['x'], f['y']
  except (OSError, ValueError, KeyError, EOFError):
    return None  # unreadable: the caller reads the dataset again and rewrites it


def pixel_stats(x):
  pixels = x.reshape(-1, x.shape[-1]).astype(np.float64)
  return pixels.mean(0).astype(np.float32), pixels.std(0).astype(np.float32)


def data_dir(config) -> str:
  return os.path.expanduser(config.data_dir or os.environ.get(
      'TFDS_DATA_DIR', '~/tensorflow_datasets'))
