"""Datasets by name: each loads once into host memory as uint8 arrays.

Chunks and batches are index arrays into these; normalisation happens on the
accelerator inside the jitted step, so the data crosses the bus once, as bytes.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable

import numpy as np

from dash_jax.errors import UserError


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


def _tfds_split_arrays(builder, split):
  """A split as numpy arrays, read once through tfds (TensorFlow) and then
  from an array file beside the prepared dataset, so later launches do not
  import TensorFlow (~3 s)."""
  cache = _array_cache(builder, split)
  if cache is not None and os.path.isfile(cache):
    try:
      with np.load(cache, allow_pickle=False) as f:
        return f['x'], f['y']
    except (OSError, ValueError, KeyError, EOFError):
      pass  # unreadable: read the dataset again and rewrite it
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


def _array_cache(builder, split):
  """Where a split's arrays are kept: inside the prepared dataset's own
  versioned folder (so re-preparing it drops them), or None where that folder
  holds no prepared dataset (tfds.testing.mock_data, for one)."""
  root = os.fspath(builder.data_dir)
  if not os.path.isfile(os.path.join(root, 'dataset_info.json')):
    return None
  return os.path.join(root, 'dash_jax-' + re.sub(r'[^A-Za-z0-9_.-]', '_', split) + '.npz')


def _stats(x):
  pixels = x.reshape(-1, x.shape[-1]).astype(np.float64)
  return pixels.mean(0).astype(np.float32), pixels.std(0).astype(np.float32)


def data_dir(config) -> str:
  return os.path.expanduser(config.data_dir or os.environ.get(
      'TFDS_DATA_DIR', '~/tensorflow_datasets'))


def load_digits(config) -> Dataset:
  from dash_jax.data.digits import DashDigits
  builder = DashDigits(data_dir=data_dir(config))
  builder.download_and_prepare()  # offline: builds from scikit-learn's copy
  train_x, train_y = _tfds_split_arrays(builder, 'train')
  test_x, test_y = _tfds_split_arrays(builder, 'test')
  mean, std = _stats(train_x)
  return Dataset('digits', train_x, train_y, test_x, test_y, 10,
                 mean=np.full_like(mean, mean.mean()), std=np.full_like(std, std.mean()))


def _image_sets():
  from dash_jax.data.images import IMAGE_SETS
  return IMAGE_SETS


DATASETS: dict[str, Callable[..., Dataset]] = {
    'digits': load_digits,
    **_image_sets(),  # cifar10, cifar100, svhn (= svhn_cropped), fashion_mnist,
                      # tiny_imagenet
}


def load(config) -> Dataset:
  """The named dataset with the config's training subset applied."""
  if config.dataset not in DATASETS:
    raise UserError(f'unknown dataset {config.dataset!r}; valid: '
                    f'{", ".join(sorted(DATASETS))}')
  ds = DATASETS[config.dataset](config)
  if config.num_train > len(ds.train_y):
    raise UserError(f'config.num_train={config.num_train} exceeds the {len(ds.train_y)} '
                    f'training examples of {config.dataset}; lower it, or 0 for all')
  if config.num_train and config.num_train < len(ds.train_y):
    keep = np.sort(np.random.default_rng(0).permutation(
        len(ds.train_y))[:config.num_train])
    ds = dataclasses.replace(ds, train_x=ds.train_x[keep], train_y=ds.train_y[keep])
  return ds


def noisy_labels(labels, fraction, num_classes, seed) -> np.ndarray:
  """Re-draw `fraction` of the labels uniformly at random (fixed per seed)."""
  labels = labels.copy()
  if fraction <= 0:
    return labels
  rng = np.random.default_rng([seed, 0x1abe1])
  picked = rng.permutation(len(labels))[:int(round(fraction * len(labels)))]
  labels[picked] = rng.integers(0, num_classes, size=len(picked))
  return labels
