"""Models by name, with the original PyTorch inits.

Every model takes normalised NHWC float input, `train` (BatchNorm mode) and
an optional per-example `mask`, so a padded final batch leaves BatchNorm
statistics exactly as PyTorch's smaller last batch would.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's nn.Linear default: U(+-1/sqrt(fan_in)) for weight and bias.
torch_linear_kernel = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def torch_linear_bias(fan_in: int):
  bound = 1.0 / jnp.sqrt(max(fan_in, 1))
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


def batch_norm(train: bool, name: str | None = None):
  """PyTorch BatchNorm: momentum 0.1 (= Flax 0.9), eps 1e-5."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, name=name)


class TorchDense(nn.Module):
  """nn.Linear with PyTorch's default init."""
  features: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.features, kernel_init=torch_linear_kernel,
                    bias_init=torch_linear_bias(x.shape[-1]), name='dense')(x)


class MLP(nn.Module):
  """Flatten -> [Linear -> BatchNorm1d -> ReLU] x (depth-1) -> Linear."""
  num_classes: int
  width: int = 1000
  depth: int = 2

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    x = x.reshape((x.shape[0], -1))
    for i in range(self.depth - 1):
      x = nn.Dense(self.width, kernel_init=torch_linear_kernel,
                   bias_init=torch_linear_bias(x.shape[-1]), name=f'fc{i + 1}')(x)
      x = batch_norm(train, name=f'bn{i + 1}')(x, mask=_bn_mask(mask, x))
      x = nn.relu(x)
    return nn.Dense(self.num_classes, kernel_init=torch_linear_kernel,
                    bias_init=torch_linear_bias(x.shape[-1]), name='head')(x)


def _bn_mask(mask, x):
  """Broadcast a per-example mask to BatchNorm's (batch, ..., features) shape."""
  if mask is None:
    return None
  mask = mask.astype(bool).reshape(mask.shape + (1,) * (x.ndim - 1))
  return jnp.broadcast_to(mask, x.shape)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """How to build a model, and which top-level param entries form its head."""
  build: Callable[..., nn.Module]  # (config, num_classes) -> module
  head: Sequence[str]  # re-initialised by the `reset` training type


MODELS: dict[str, ModelSpec] = {
    'mlp': ModelSpec(lambda c, k: MLP(k, width=c.width, depth=c.depth), ('head',)),
}


def get(name: str) -> ModelSpec:
  return MODELS[name]
