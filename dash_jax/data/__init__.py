"""Datasets by name: each loads once into host memory, images as uint8
pixels and features (MNIST-1D's signals) as float32. Besides the registered
names, a user's own data: PATH.npz / npz:PATH, tfds:NAME[/CONFIG] and
folder:PATH (dash_jax/data/user.py).

Chunks and batches are index arrays into these; normalisation happens on the
accelerator inside the jitted step, so the data crosses the bus once, images
as bytes.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from dash_jax.data.base import (Dataset, cache_path, data_dir, feature_stats, pixel_stats,
                                read_cache, tfds_split_arrays, write_cache)
from dash_jax.errors import UserError
from dash_jax.settings import DataSettings

__all__ = ['DATASETS', 'Dataset', 'check_unchanged', 'data_dir', 'fingerprint', 'kind', 'load',
           'noisy_labels']


# The offline builders' tfds names and versions (their modules import tfds,
# so they are repeated here; tests/test_datasets.py checks they agree).
DIGITS_NAME, DIGITS_VERSION = 'dash_digits', '1.0.0'
MNIST1D_NAME, MNIST1D_VERSION = 'dash_mnist1d', '1.0.0'


def _offline_splits(settings, name, version, builder_class):
  """Both splits of a dataset a builder generates offline: from the arrays
  kept by an earlier launch when both are there (no TensorFlow import); else
  built and read through tfds."""
  folder = os.path.join(data_dir(settings), name, version)
  splits = [read_cache(cache_path(folder, s)) for s in ('train', 'test')]
  if any(s is None for s in splits):
    builder = builder_class()(data_dir=data_dir(settings))
    builder.download_and_prepare()  # offline: the builder generates the data
    splits = [tfds_split_arrays(builder, s) for s in ('train', 'test')]
  return splits


def _digits_builder():
  from dash_jax.data import base
  base.import_tfds("dataset 'digits' (built once, offline)")
  from dash_jax.data.digits import DashDigits
  return DashDigits


def load_digits(settings) -> Dataset:
  (train_x, train_y), (test_x, test_y) = _offline_splits(
      settings, DIGITS_NAME, DIGITS_VERSION, _digits_builder)
  mean, std = pixel_stats(train_x)
  return Dataset('digits', train_x, train_y, test_x, test_y, 10,
                 mean=np.full_like(mean, mean.mean()), std=np.full_like(std, std.mean()))


def load_mnist1d(settings) -> Dataset:
  """MNIST-1D's float32 signals (N, 40); generated already standardised, so
  normalize='auto' feeds them as they are, as the benchmark's own code does.
  Generated in NumPy (no TensorFlow) and kept as arrays in the data dir; the
  arrays an earlier version kept beside its tfds build are the same arrays."""
  folders = mnist1d_folders(settings)
  for folder in folders:
    splits = [read_cache(cache_path(folder, s)) for s in ('train', 'test')]
    if all(s is not None for s in splits):
      break
  else:
    splits = _generate_mnist1d(folders[-1])
  (train_x, train_y), (test_x, test_y) = splits
  mean, std = feature_stats(train_x)
  return Dataset('mnist1d', train_x, train_y, test_x, test_y, 10, mean=mean, std=std,
                 auto_normalize='none', source=mnist1d_source())


def mnist1d_folders(settings) -> tuple:
  """Where MNIST-1D's arrays may be kept: beside a tfds build of
  mnist1d_tfds.DashMnist1d (earlier versions built one), then dash_jax's own
  folder, where a launch keeps them (not the tfds folder: a later tfds build
  there would take its arrays for a broken build and skip it)."""
  root = data_dir(settings)
  return (os.path.join(root, MNIST1D_NAME, MNIST1D_VERSION),
          os.path.join(root, 'dash_jax', f'{MNIST1D_NAME}-{MNIST1D_VERSION}'))


def _generate_mnist1d(folder):
  """Both splits from the mnist1d package, labels int32 (as a tfds read gives
  them), kept in `folder` for the next launch where it can be written."""
  from dash_jax.data.mnist1d import mnist1d_arrays
  train_x, train_y, test_x, test_y = mnist1d_arrays()
  splits = [(train_x, train_y.astype(np.int32)), (test_x, test_y.astype(np.int32))]
  for split, (x, y) in zip(('train', 'test'), splits):
    write_cache(cache_path(folder, split), x, y)
  return splits


def mnist1d_source() -> dict:
  """The generator behind MNIST-1D: package version and arguments (the
  published defaults; dash_jax/data/mnist1d.py)."""
  import importlib.metadata
  try:
    version = importlib.metadata.version('mnist1d')
  except importlib.metadata.PackageNotFoundError:
    version = None
  return {'name': 'mnist1d', 'generator': 'mnist1d.data.make_dataset',
          'mnist1d_version': version, 'tfds': f'{MNIST1D_NAME}:{MNIST1D_VERSION}',
          'args': MNIST1D_ARGS}


# mnist1d.data.get_dataset_args() of the version the data was made with
# (less its URL); repeated here so a launch from kept arrays does not import
# mnist1d; tests/test_mnist1d.py checks they agree.
MNIST1D_ARGS = {'num_samples': 5000, 'train_split': 0.8, 'template_len': 12,
                'padding': [36, 60], 'scale_coeff': 0.4, 'max_translation': 48,
                'corr_noise_scale': 0.25, 'iid_noise_scale': 2e-2, 'shear_scale': 0.75,
                'shuffle_seq': False, 'final_seq_length': 40, 'seed': 42}


def _image_sets():
  from dash_jax.data.images import IMAGE_SETS
  return IMAGE_SETS


def _random_sets():
  from dash_jax.data.random_images import RANDOM_SETS
  return RANDOM_SETS


DATASETS: dict[str, Callable[..., Dataset]] = {
    'digits': load_digits,
    'mnist1d': load_mnist1d,  # float32 signals (N, 40), generated offline
    **_image_sets(),  # cifar10, cifar100, svhn (= svhn_cropped), fashion_mnist,
                      # tiny_imagenet
    **_random_sets(),  # random_cifar_shape: noise for benchmarks, not data
}


def kind(name) -> tuple[str, str]:
  """(kind, target) of config.dataset: ('registered', name), ('npz', path),
  ('tfds', name) or ('folder', path); UserError for none of them."""
  from dash_jax.data import user
  return user.parse(name, DATASETS)


def fingerprint(dataset: str) -> str:
  """A file dataset's (npz, image folder) contents' sha256, hashed once a
  process; '' for any other dataset. The launch records it in the runs'
  settings, so its workdir guard refuses runs made from other contents."""
  from dash_jax.data import user
  k, target = kind(dataset)
  found = user.fingerprint(k, target)
  return '' if found is None else found['sha256']


def check_unchanged(settings: DataSettings, ds) -> None:
  """UserError when a file dataset's loaded contents are not the ones the
  launch hashed (settings.dataset_sha256): the file changed meanwhile, and
  no run may mix the two."""
  recorded, loaded = settings.dataset_sha256, (ds.source or {}).get('sha256')
  if recorded and loaded and recorded != loaded:
    raise UserError(f'{settings.dataset} changed while this launch ran (sha256 '
                    f'{recorded[:16]}... when it started, {loaded[:16]}... when loaded); '
                    f'it stops here so that no run mixes the two: leave the file alone '
                    f'while a launch runs, and re-run the same command')


def load(settings: DataSettings) -> Dataset:
  """The named dataset with the settings' training subset applied (the
  launch checked the fields beforehand: launch.config.validate)."""
  from dash_jax.data import user
  k, target = kind(settings.dataset)
  ds = DATASETS[target](settings) if k == 'registered' else user.LOADERS[k](settings, target)
  num_train = settings.num_train
  if num_train > len(ds.train_y):
    raise UserError(f'config.num_train={num_train} exceeds the {len(ds.train_y)} '
                    f'training examples of {settings.dataset}; lower it, or 0 for all')
  if num_train and num_train < len(ds.train_y):
    keep = np.sort(np.random.default_rng(0).permutation(len(ds.train_y))[:num_train])
    ds = dataclasses.replace(ds, train_x=ds.train_x[keep], train_y=ds.train_y[keep])
  return ds


def noisy_labels(labels, fraction, num_classes, seed) -> np.ndarray:
  """Re-draw `fraction` of the labels uniformly at random (fixed per seed)."""
  labels = labels.copy()
  if fraction <= 0:
    return labels
  rng = np.random.default_rng([seed, 0x1abe1])
  picked = rng.permutation(len(labels))[:round(fraction * len(labels))]
  labels[picked] = rng.integers(0, num_classes, size=len(picked))
  return labels
