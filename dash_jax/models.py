"""Models by name, with the original PyTorch inits.

Every model takes normalised NHWC float input, `train` (BatchNorm mode) and
an optional per-example `mask`, so a padded final batch leaves BatchNorm
statistics exactly as PyTorch's smaller last batch would.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dash_jax import batchnorm
from dash_jax import conv as conv_lib

# PyTorch's nn.Linear default: U(+-1/sqrt(fan_in)) for weight and bias.
torch_linear_kernel = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def torch_linear_bias(fan_in: int):
  bound = 1.0 / jnp.sqrt(max(fan_in, 1))
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


def batch_norm(train: bool, name: str | None = None):
  """PyTorch BatchNorm: momentum 0.1 (= Flax 0.9), eps 1e-5. nn.BatchNorm's
  variables and numbers, with a faster gradient on CPU (batchnorm.py)."""
  return batchnorm.BatchNorm(use_running_average=not train, momentum=0.9,
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


# ------------------------------------------------------------- convnets

# torchvision's kaiming_normal_(mode='fan_out', nonlinearity='relu'): plain
# (not truncated) normal with variance 2 / (out_channels * kh * kw).
kaiming_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# PyTorch's Conv2d default (kaiming_uniform_ with a=sqrt(5)), as its Linear.
torch_conv_kernel = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')
# torchvision VGG's Linear init.
vgg_linear_kernel = nn.initializers.normal(0.01)


def conv(features, kernel, stride=1, padding=0, bias=False, init=None, name=None):
  """nn.Conv2d with PyTorch's symmetric padding; kernel is (kh, kw, in, out).
  Default init: Kaiming normal fan_out; bias (if any) zero. conv_lib.Conv is
  nn.Conv's parameters with a fast path on CPU."""
  return conv_lib.Conv(features, (kernel, kernel), strides=(stride, stride),
                       padding=((padding, padding), (padding, padding)),
                       use_bias=bias, kernel_init=init or kaiming_fan_out,
                       bias_init=nn.initializers.zeros, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs with BatchNorm, identity or 1x1-conv+BN shortcut."""
  features: int
  stride: int = 1
  kernel_init: Optional[Callable] = None  # convs; None = Kaiming fan_out

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    bn_mask = lambda h: _bn_mask(mask, h)
    y = conv(self.features, 3, self.stride, 1, init=self.kernel_init, name='conv1')(x)
    y = nn.relu(batch_norm(train, 'bn1')(y, mask=bn_mask(y)))
    y = conv(self.features, 3, 1, 1, init=self.kernel_init, name='conv2')(y)
    y = batch_norm(train, 'bn2')(y, mask=bn_mask(y))
    if self.stride != 1 or x.shape[-1] != self.features:
      x = conv(self.features, 1, self.stride, init=self.kernel_init,
               name='down_conv')(x)
      x = batch_norm(train, 'down_bn')(x, mask=bn_mask(x))
    return nn.relu(y + x)


class ResNet18(nn.Module):
  """CIFAR-style ResNet-18: 3x3 stride-1 stem, four stages of two BasicBlocks.

  `sota=False` is the paper's standard model (torchvision ResNet with a 3x3
  stem, 3x3/2 max-pool, Kaiming fan-out convs); `sota=True` is the SoTA
  setting's model (no max-pool, PyTorch default inits everywhere).
  """
  num_classes: int
  sota: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    init = torch_conv_kernel if self.sota else kaiming_fan_out
    x = conv(64, 3, 1, 1, init=init, name='conv1')(x)
    x = nn.relu(batch_norm(train, 'bn1')(x, mask=_bn_mask(mask, x)))
    if not self.sota:
      x = conv_lib.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    for stage, features in enumerate((64, 128, 256, 512)):
      for block in range(2):
        stride = 2 if (stage > 0 and block == 0) else 1
        x = BasicBlock(features, stride, init, name=f'layer{stage + 1}_{block}')(
            x, train, mask)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=torch_linear_kernel,
                    bias_init=torch_linear_bias(x.shape[-1]), name='fc')(x)


VGG16_CFG = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M',
             512, 512, 512, 'M', 512, 512, 512, 'M')


def adaptive_avg_pool(x, size):
  """torch.nn.AdaptiveAvgPool2d on NHWC: bin i averages rows
  floor(i*H/size) .. ceil((i+1)*H/size) - 1 (so 1x1 -> 7x7 replicates)."""
  def pool_matrix(n):
    rows = []
    for i in range(size):
      lo, hi = (i * n) // size, -((-(i + 1) * n) // size)
      rows.append([1.0 / (hi - lo) if lo <= k < hi else 0.0 for k in range(n)])
    return jnp.asarray(rows, x.dtype)
  return jnp.einsum('ih,jw,nhwc->nijc', pool_matrix(x.shape[1]),
                    pool_matrix(x.shape[2]), x)


class VGGClassifier(nn.Module):
  """Linear(512*7*7, 4096)-ReLU-Dropout-Linear(4096, 4096)-ReLU-Dropout-Linear."""
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    dense = lambda n, name: nn.Dense(n, kernel_init=vgg_linear_kernel,
                                     bias_init=nn.initializers.zeros, name=name)
    for i in (1, 2):
      x = nn.Dropout(0.5, deterministic=not train)(nn.relu(dense(4096, f'fc{i}')(x)))
    return dense(self.num_classes, 'fc3')(x)


class VGG16(nn.Module):
  """VGG-16 (configuration D) with BatchNorm, as torchvision's vgg16_bn.

  A 2x2 max-pool whose input has odd size pads by 1 (the original code pads
  the third pool for 28x28 Fashion-MNIST; 32x32 and 64x64 never pad).
  Dropout needs a 'dropout' rng when train=True.
  """
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    i = 0
    for v in VGG16_CFG:
      if v == 'M':
        pad = tuple((s % 2, s % 2) for s in x.shape[1:3])
        x = conv_lib.max_pool(x, (2, 2), (2, 2), pad)
      else:
        i += 1
        x = conv(v, 3, 1, 1, bias=True, name=f'conv{i}')(x)
        x = nn.relu(batch_norm(train, f'bn{i}')(x, mask=_bn_mask(mask, x)))
    x = adaptive_avg_pool(x, 7).reshape((x.shape[0], -1))
    return VGGClassifier(self.num_classes, name='classifier')(x, train)


# ------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """How to build a model, and which top-level param entries form its head."""
  build: Callable[..., nn.Module]  # (config, num_classes) -> module
  head: Sequence[str]  # re-initialised by the `reset` training type


MODELS: dict[str, ModelSpec] = {
    'mlp': ModelSpec(lambda c, k: MLP(k, width=c.width, depth=c.depth), ('head',)),
    'resnet18': ModelSpec(lambda c, k: ResNet18(k), ('fc',)),
    'resnet18_sota': ModelSpec(lambda c, k: ResNet18(k, sota=True), ('fc',)),
    'vgg16': ModelSpec(lambda c, k: VGG16(k), ('classifier',)),
}


def resolve_name(config) -> str:
  """The model a config trains: the SoTA recipe swaps resnet18 for its
  SoTA variant, as the original code does."""
  if config.get('sota', False) and config.model == 'resnet18':
    return 'resnet18_sota'
  return config.model


def get(name: str) -> ModelSpec:
  return MODELS[name]
