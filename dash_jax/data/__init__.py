"""Datasets by name: each loads once into host memory as uint8 arrays.

Chunks and batches are index arrays into these; normalisation happens on the
accelerator inside the jitted step, so the data crosses the bus once, as bytes.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from dash_jax.data.base import (Dataset, cache_path, data_dir, pixel_stats, read_cache,
                                tfds_split_arrays)
from dash_jax.errors import UserError

__all__ = ['DATASETS', 'Dataset', 'data_dir', 'load', 'noisy_labels']


# DashDigits' tfds name and version (digits.py imports tfds, so they are
# repeated here; tests/test_datasets.py checks they agree).
DIGITS_NAME, DIGITS_VERSION = 'dash_digits', '1.0.0'


def load_digits(config) -> Dataset:
  """Read from the arrays kept by an earlier launch when both splits are
  there (no TensorFlow import); else build and read through tfds."""
  folder = os.path.join(data_dir(config), DIGITS_NAME, DIGITS_VERSION)
  splits = [read_cache(cache_path(folder, s)) for s in ('train', 'test')]
  if any(s is None for s in splits):
    from dash_jax.data.digits import DashDigits
    builder = DashDigits(data_dir=data_dir(config))
    builder.download_and_prepare()  # offline: builds from scikit-learn's copy
    splits = [tfds_split_arrays(builder, s) for s in ('train', 'test')]
  (train_x, train_y), (test_x, test_y) = splits
  mean, std = pixel_stats(train_x)
  return Dataset('digits', train_x, train_y, test_x, test_y, 10,
                 mean=np.full_like(mean, mean.mean()), std=np.full_like(std, std.mean()))


def _image_sets():
  from dash_jax.data.images import IMAGE_SETS
  return IMAGE_SETS


def _random_sets():
  from dash_jax.data.random_images import RANDOM_SETS
  return RANDOM_SETS


DATASETS: dict[str, Callable[..., Dataset]] = {
    'digits': load_digits,
    **_image_sets(),  # cifar10, cifar100, svhn (= svhn_cropped), fashion_mnist,
                      # tiny_imagenet
    **_random_sets(),  # random_cifar_shape: noise for benchmarks, not data
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
  picked = rng.permutation(len(labels))[:round(fraction * len(labels))]
  labels[picked] = rng.integers(0, num_classes, size=len(picked))
  return labels
