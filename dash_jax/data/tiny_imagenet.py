"""Tiny-ImageNet (200 classes, 64x64) as a tfds dataset, from the official
archive or its unpacked folder in a manual directory.

tfds ships no Tiny-ImageNet builder, and its validation labels live in a
side file (val_annotations.txt), so the project carries one. Labels index the
sorted WordNet ids, which is the order torchvision's ImageFolder gives the
original code.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

ARCHIVE = 'tiny-imagenet-200.zip'
FOLDER = 'tiny-imagenet-200'
URL = 'http://cs231n.stanford.edu/tiny-imagenet-200.zip'
NUM_CLASSES = 200


def find_root(manual_dir: str) -> str | None:
  """The unpacked dataset folder or the archive in `manual_dir`, or None."""
  for path in (os.path.join(manual_dir, FOLDER), manual_dir):
    if os.path.isfile(os.path.join(path, 'wnids.txt')):
      return path
  archive = os.path.join(manual_dir, ARCHIVE)
  return archive if os.path.isfile(archive) else None


def _rgb(path):
  """Decoded as RGB: a few official JPEGs are greyscale (ImageFolder also
  converts them)."""
  from PIL import Image
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
  """Tiny-ImageNet-200: 100,000 training and 10,000 validation images."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Official zip; validation labels from val_annotations.txt.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Download {URL} and place {ARCHIVE} (or the unpacked {FOLDER}/ folder) '
      'in the manual directory.')

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(64, 64, 3)),
            'label': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://www.kaggle.com/c/tiny-imagenet',
        description='Tiny-ImageNet-200; the validation split is the test set.')

  def _split_generators(self, dl_manager):
    root = find_root(os.fspath(dl_manager.manual_dir))
    if root is None:
      raise FileNotFoundError(f'no {ARCHIVE} or {FOLDER}/ in {dl_manager.manual_dir}. '
                              + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    if root.endswith('.zip'):
      root = os.path.join(os.fspath(dl_manager.extract(root)), FOLDER)
    with open(os.path.join(root, 'wnids.txt')) as f:
      wnids = sorted(line.strip() for line in f if line.strip())
    if len(wnids) > NUM_CLASSES:
      raise ValueError(f'{root}/wnids.txt lists {len(wnids)} classes, '
                       f'expected at most {NUM_CLASSES}')
    label = {wnid: i for i, wnid in enumerate(wnids)}
    train = []
    for wnid in wnids:
      folder = os.path.join(root, 'train', wnid, 'images')
      train += [(os.path.join(folder, name), label[wnid])
                for name in sorted(os.listdir(folder)) if name.endswith('.JPEG')]
    val = []
    with open(os.path.join(root, 'val', 'val_annotations.txt')) as f:
      for line in f:
        if line.strip():
          name, wnid = line.split('\t')[:2]
          val.append((os.path.join(root, 'val', 'images', name), label[wnid]))
    return {'train': self._generate_examples(train),
            'validation': self._generate_examples(val)}

  def _generate_examples(self, files):
    for path, label in files:
      name = os.path.basename(path)
      yield name, {'image': _rgb(path), 'label': label, 'file_name': name}
