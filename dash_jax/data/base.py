"""What every dataset loader shares: the Dataset record, the tfds data dir,
and a prepared split read as arrays (kept beside it, so later launches need
no TensorFlow).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from typing import NamedTuple

import numpy as np


class Splits(NamedTuple):
  """A generated dataset's arrays, before they become a Dataset."""
  train_x: np.ndarray
  train_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray


@dataclasses.dataclass
class Dataset:
  """Inputs as stored plus the constants that normalise them.

  Two kinds share this record: images, uint8 pixels (N, H, W, C) with mean
  and std of shape (C,) in pixel units 0..255; and float features, float32
  (N, ...) of any shape (signals, table rows, embeddings), never quantised,
  with mean and std of the feature shape (N, ...)[1:]. Either way the step
  computes (x - mean) / std, broadcasting over the leading axes.
  """
  name: str
  train_x: np.ndarray  # (N, H, W, C) uint8, or (N, ...) float32
  train_y: np.ndarray  # (N,) int32
  test_x: np.ndarray
  test_y: np.ndarray
  num_classes: int
  mean: np.ndarray  # (C,) for images, x.shape[1:] for features; float32
  std: np.ndarray
  # What normalize='auto' means: 'standard' (the statistics above), 'none'
  # (data already standardised) or 'unit'; None: the rule of the paper's
  # datasets (setup.normalisation): images 'unit' for the MLP except digits
  # and Tiny-ImageNet, else 'standard'; float features 'standard'.
  auto_normalize: str | None = None
  # Where the data came from, for results.json's provenance.dataset (a
  # generator's arguments and version, a file's path, size and sha256);
  # None: a registered dataset that needs no more than its name.
  source: dict | None = None

  @property
  def input_shape(self):
    return self.train_x.shape[1:]

  @property
  def is_image(self) -> bool:
    return self.train_x.dtype == np.uint8


# What a user without tensorflow-datasets installs to read a tfds dataset.
DATA_EXTRA = ("pip install 'dash-jax[data]' (in a checkout: pip install -r "
              "requirements.txt, as the README says)")


def import_tfds(what: str):
  """tensorflow_datasets, or a UserError naming `what` needs it and the
  extra that brings it (the wheel alone does not: MNIST-1D and the npz and
  folder datasets need no TensorFlow)."""
  try:
    import tensorflow_datasets as tfds
  except ModuleNotFoundError as e:
    if (e.name or '').split('.')[0] not in ('tensorflow_datasets', 'tensorflow'):
      raise
    from dash_jax.errors import UserError
    raise UserError(f'{what} is read through tensorflow-datasets, which is not '
                    f'installed here; install it with {DATA_EXTRA}') from None
  return tfds


class _MissingFolderFilter(logging.Filter):
  """Drops tfds's 'Variant folder X has no dataset_info.json' where X does
  not exist: the dataset is simply not prepared, which the caller says."""

  def filter(self, record):
    msg = str(record.msg)
    if msg.startswith('Variant folder') and record.args:
      return os.path.exists(os.fspath(record.args[0]))
    return True


@contextlib.contextmanager
def quiet_missing_folders():
  """Inside: tfds warns about no folder that does not exist."""
  logger = logging.getLogger('absl')
  keep = _MissingFolderFilter()
  logger.addFilter(keep)
  try:
    yield
  finally:
    logger.removeFilter(keep)


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
  x, y = np.concatenate(xs), np.concatenate(ys).astype(np.int32)
  x = x.astype(np.uint8 if np.issubdtype(x.dtype, np.integer) else np.float32)
  if cache is not None and len(y) == builder.info.splits[split].num_examples:
    write_cache(cache, x, y)
  return x, y


def write_cache(path, x, y) -> bool:
  """Keep (x, y) in `path` for later launches, atomically (a reader never
  sees half a file); False where the folder cannot be written (a read-only
  data dir: the next launch computes them again)."""
  tmp = f'{path}.{os.getpid()}.tmp.npz'
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, path)
  except OSError:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    return False
  return True


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


def feature_stats(x):
  """Per-feature (mean, std) over the examples of float features (N, ...);
  a constant feature gets std 1, so it normalises to 0 rather than NaN."""
  x64 = x.astype(np.float64)
  mean, std = x64.mean(0), x64.std(0)
  return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def pixel_stats(x):
  pixels = x.reshape(-1, x.shape[-1]).astype(np.float64)
  return pixels.mean(0).astype(np.float32), pixels.std(0).astype(np.float32)


def data_dir(settings) -> str:
  return os.path.expanduser(settings.data_dir or os.environ.get(
      'TFDS_DATA_DIR', '~/tensorflow_datasets'))
