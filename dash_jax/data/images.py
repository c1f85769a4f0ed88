"""The paper's image datasets, read through tfds from a prepared data dir.

Nothing downloads unless the config asks (`download=True`): a missing dataset
is one UserError naming it, where it was looked for and how to get it.
Normalisation constants follow the original code: fixed for CIFAR-10 and
Tiny-ImageNet, computed from the training split for the others.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from dash_jax.data import base
from dash_jax.errors import UserError

SVHN_TRAIN_SIZE = 50_000  # the paper trains on a random 50k of SVHN's 73,257
SUBSET_SEED = 0  # fixed: the subset is part of the dataset, not of a run


@dataclasses.dataclass(frozen=True)
class ImageSet:
  """How to load one dataset: tfds name, splits and normalisation."""
  name: str
  tfds_name: str
  mean: Optional[tuple] = None  # fractions of 255; None = from the train split
  std: Optional[tuple] = None
  test_split: str = 'test'
  train_size: int = 0  # >0: a seeded random subset of the training split

  def __call__(self, settings):
    builder = self.builder(settings)
    train_x, train_y = base.tfds_split_arrays(builder, 'train')
    test_x, test_y = base.tfds_split_arrays(builder, self.test_split)
    if self.mean is None:
      mean, std = base.pixel_stats(train_x)  # before any subset, as the original
    else:
      mean = np.asarray(self.mean, np.float32) * 255
      std = np.asarray(self.std, np.float32) * 255
    if self.train_size and self.train_size < len(train_y):
      keep = np.sort(np.random.default_rng(SUBSET_SEED).permutation(
          len(train_y))[:self.train_size])
      train_x, train_y = train_x[keep], train_y[keep]
    num_classes = builder.info.features['label'].num_classes
    return base.Dataset(self.name, train_x, train_y, test_x, test_y, num_classes,
                        mean=mean.astype(np.float32), std=std.astype(np.float32))

  def builder(self, settings):
    """A prepared tfds builder, or a UserError that says how to prepare it."""
    tfds = base.import_tfds(f'dataset {self.name!r}')
    root = base.data_dir(settings)
    with base.quiet_missing_folders():
      builder = tfds.builder(self.tfds_name, data_dir=root)
      prepared = builder.is_prepared()
    if prepared:
      return builder
    if not settings.download:
      raise UserError(
          f'dataset {self.name!r} is not prepared in {builder.data_path}; prepare '
          f'it once with `tfds build {self.tfds_name} --data_dir {root}` (downloads '
          f'it), or rerun with --config.download=True, or point --config.data_dir '
          f'at a tfds data dir that holds it')
    builder.download_and_prepare()
    return builder


@dataclasses.dataclass(frozen=True)
class TinyImagenetSet(ImageSet):
  """Built locally from the official archive in the manual dir (no download)."""

  def builder(self, settings):
    tfds = base.import_tfds(f'dataset {self.name!r}')
    from dash_jax.data import tiny_imagenet
    root = base.data_dir(settings)
    with base.quiet_missing_folders():
      builder = tiny_imagenet.TinyImagenet(data_dir=root)
      prepared = builder.is_prepared()
    if prepared:
      return builder
    manual = os.path.expanduser(
        settings.manual_dir or os.path.join(root, 'downloads', 'manual'))
    if tiny_imagenet.find_root(manual) is None:
      raise UserError(
          f'dataset {self.name!r} is not prepared in {builder.data_path} and '
          f'{manual} holds no {tiny_imagenet.ARCHIVE} or {tiny_imagenet.FOLDER}/; '
          f'download {tiny_imagenet.URL} into that folder (or set '
          f'--config.manual_dir to where it is) and rerun: it is built once, offline')
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return builder


IMAGE_SETS = {
    'cifar10': ImageSet('cifar10', 'cifar10', mean=(0.4914, 0.4822, 0.4465),
                        std=(0.2023, 0.1994, 0.2010)),
    'cifar100': ImageSet('cifar100', 'cifar100'),
    'svhn': ImageSet('svhn', 'svhn_cropped', train_size=SVHN_TRAIN_SIZE),
    'fashion_mnist': ImageSet('fashion_mnist', 'fashion_mnist'),
    'tiny_imagenet': TinyImagenetSet(
        'tiny_imagenet', 'tiny_imagenet', mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225), test_split='validation'),
}
IMAGE_SETS['svhn_cropped'] = IMAGE_SETS['svhn']  # the tfds name, as an alias
