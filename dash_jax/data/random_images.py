"""Random pixels and labels shaped like CIFAR-10, for benchmarks and device
checks on a machine without the real data (or without TensorFlow).

Not a dataset to learn anything from: labels are independent of the images.
The name says so, and no config uses it by default. Generated in memory from
a fixed seed, so every process and every launch sees the same arrays.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from dash_jax.data import base

SEED = 0xC1FA  # fixed: the arrays are part of the dataset, not of a run
# Uniform integers 0..255: mean 127.5, std sqrt((256^2 - 1) / 12) per channel.
MEAN = 127.5
STD = math.sqrt((256 ** 2 - 1) / 12)  # 73.9


@functools.lru_cache(maxsize=4)
def random_arrays(num_train: int, num_test: int, shape: tuple, num_classes: int):
  """(train_x, train_y, test_x, test_y), read-only; built once a process."""
  rng = np.random.default_rng([SEED, num_train, num_test, num_classes, *shape])
  arrays = (rng.integers(0, 256, (num_train, *shape), dtype=np.uint8),
            rng.integers(0, num_classes, (num_train,), dtype=np.int32),
            rng.integers(0, 256, (num_test, *shape), dtype=np.uint8),
            rng.integers(0, num_classes, (num_test,), dtype=np.int32))
  for a in arrays:
    a.setflags(write=False)  # shared by every load of this process
  return arrays


@dataclasses.dataclass(frozen=True)
class RandomSet:
  """How to build one random dataset (called with the config, as loaders are)."""
  name: str
  num_train: int
  num_test: int
  shape: tuple
  num_classes: int

  def __call__(self, settings):
    del settings  # nothing to find on disk
    train_x, train_y, test_x, test_y = random_arrays(
        self.num_train, self.num_test, self.shape, self.num_classes)
    channels = self.shape[-1]
    return base.Dataset(self.name, train_x, train_y, test_x, test_y, self.num_classes,
                        mean=np.full((channels,), MEAN, np.float32),
                        std=np.full((channels,), STD, np.float32))


RANDOM_SETS = {
    'random_cifar_shape': RandomSet('random_cifar_shape', 50_000, 10_000,
                                    (32, 32, 3), 10),
}
