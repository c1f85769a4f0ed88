"""The paper's "SoTA" recipe (config.sota=True), as in the original code.

ResNet-18 SoTA variant (models.resolve_name), learning rate warm-up over the
first epoch then MultiStep decay, both restarting every experiment, and the
per-dataset augmentations. lr / weight decay / max_epoch come from the
config (the SoTA configs set 0.1 / 5e-4 / 260).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from dash_jax import augment
from dash_jax.settings import OptimSettings

# torchvision transforms of the original code, per dataset (train split only).
AUGMENTATIONS = {
    'cifar10': ('crop', 'flip'),
    'cifar100': ('crop', 'flip', 'rotate'),
    'tiny_imagenet': ('flip', 'resized_crop'),
}


@dataclasses.dataclass(frozen=True)
class WarmupMultiStep:
  """lr at batch b of epoch e (both 0-based, e counted within the experiment).

  Epoch 0 warms up linearly: lr * b / num_batches (the original's WarmUpLR,
  so an experiment's first step has lr 0); afterwards lr * gamma^k, k the
  number of milestones <= e (MultiStepLR created anew each experiment).
  """
  base_lr: float
  milestones: tuple = (60, 120, 160, 200)
  gamma: float = 0.2

  def __call__(self, epoch, batch, num_batches):
    epoch = jnp.asarray(epoch)
    passed = sum((epoch >= m).astype(jnp.float32) for m in self.milestones)
    warm = jnp.where(epoch == 0, batch / jnp.maximum(num_batches, 1), 1.0)
    return self.base_lr * warm * jnp.power(self.gamma, passed)


def lr_schedule(optim: OptimSettings):
  """The per-step schedule of the SoTA recipe, or None."""
  if not optim.sota:
    return None
  return WarmupMultiStep(float(optim.learning_rate), tuple(optim.sota_milestones),
                         float(optim.sota_gamma))


def augmentation(optim: OptimSettings, dataset_name: str):
  """The SoTA recipe's training augmentation for a dataset, or None (no
  recipe, or a dataset the original code does not augment: svhn, ...)."""
  if not optim.sota or dataset_name not in AUGMENTATIONS:
    return None
  return augment.Augment(AUGMENTATIONS[dataset_name])
