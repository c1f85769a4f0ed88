"""Models by name, with the original PyTorch inits.

Every model takes normalised NHWC float input, `train` (BatchNorm mode) and
an optional per-example `mask`, so a padded final batch leaves BatchNorm
statistics exactly as PyTorch's smaller last batch would.

Building blocks are module fields (flax examples/imagenet style): `conv`,
`norm`, `pool` default to Flax's own; the registry (`build`) swaps in the
XLA:CPU kernels (dash_jax/xla_cpu) on CPU. `dtype` is the compute dtype:
parameters, BatchNorm statistics and the returned logits stay float32.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dash_jax import xla_cpu
from dash_jax.recycle import UnitLayer

ModuleDef = Any
PRECISIONS = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# PyTorch's nn.Linear default: U(+-1/sqrt(fan_in)) for weight and bias.
torch_linear_kernel = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def torch_linear_bias(fan_in: int):
  bound = 1.0 / jnp.sqrt(max(fan_in, 1))
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


def batch_norm(norm: ModuleDef, train: bool, dtype, name: str | None = None):
  """PyTorch BatchNorm: momentum 0.1 (= Flax 0.9), eps 1e-5."""
  return norm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
              dtype=dtype, param_dtype=jnp.float32, name=name)


def dense(features, fan_in, dtype, name, kernel_init=None, bias_init=None):
  """nn.Linear; default init PyTorch's."""
  return nn.Dense(features, kernel_init=kernel_init or torch_linear_kernel,
                  bias_init=bias_init or torch_linear_bias(fan_in),
                  dtype=dtype, param_dtype=jnp.float32, name=name)


class MLP(nn.Module):
  """Flatten -> [Linear -> BatchNorm1d -> ReLU] x (depth-1) -> Linear."""
  num_classes: int
  width: int = 1000
  depth: int = 2
  norm: ModuleDef = nn.BatchNorm
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    x = jnp.asarray(x.reshape((x.shape[0], -1)), self.dtype)
    for i in range(self.depth - 1):
      x = dense(self.width, x.shape[-1], self.dtype, f'fc{i + 1}')(x)
      x = batch_norm(self.norm, train, self.dtype, f'bn{i + 1}')(
          x, mask=_bn_mask(mask, x))
      x = nn.relu(x)
    x = dense(self.num_classes, x.shape[-1], self.dtype, 'head')(x)
    return jnp.asarray(x, jnp.float32)


def batchnorm_values_per_channel(model, input_shape):
  """Fewest values per channel that any BatchNorm of `model` normalises over
  in training mode for a batch of ONE example (None: no BatchNorm). 1 is
  what PyTorch refuses ('Expected more than 1 value per channel when
  training'): BatchNorm1d on one example; Flax would zero its output."""
  seen = []

  def record(next_fun, args, kwargs, context):
    if (context.method_name == '__call__' and 'BatchNorm' in type(context.module).__name__
        and not getattr(context.module, 'use_running_average', True) and args):
      seen.append(math.prod(jnp.shape(args[0])[:-1]))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                      jnp.zeros((1,) + tuple(input_shape)), train=True))
  return min(seen) if seen else None


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


@dataclasses.dataclass(frozen=True)
class TorchConv:
  """Makes nn.Conv2d-like convs with PyTorch's symmetric padding; holds what a
  model's convs share: the module kind, the init (None: Kaiming normal
  fan_out), whether they have a bias (zero-initialised) and the compute dtype."""
  module: ModuleDef = nn.Conv
  init: Callable | None = None
  bias: bool = False
  dtype: Any = jnp.float32

  def __call__(self, features, kernel, stride=1, padding=0, name=None):
    """A kernel x kernel conv; its kernel param is (kh, kw, in, out)."""
    return self.module(features, (kernel, kernel), strides=(stride, stride),
                       padding=((padding, padding), (padding, padding)),
                       use_bias=self.bias, kernel_init=self.init or kaiming_fan_out,
                       bias_init=nn.initializers.zeros, dtype=self.dtype,
                       param_dtype=jnp.float32, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs with BatchNorm, identity or 1x1-conv+BN shortcut."""
  features: int
  stride: int = 1
  kernel_init: Callable | None = None  # convs; None = Kaiming fan_out
  conv: ModuleDef = nn.Conv
  norm: ModuleDef = nn.BatchNorm
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    cv = TorchConv(self.conv, init=self.kernel_init, dtype=self.dtype)
    bn = lambda name, h: batch_norm(self.norm, train, self.dtype, name)(
        h, mask=_bn_mask(mask, h))
    y = nn.relu(bn('bn1', cv(self.features, 3, self.stride, 1, name='conv1')(x)))
    y = bn('bn2', cv(self.features, 3, 1, 1, name='conv2')(y))
    if self.stride != 1 or x.shape[-1] != self.features:
      x = bn('down_bn', cv(self.features, 1, self.stride, name='down_conv')(x))
    return nn.relu(y + x)


class ResNet18(nn.Module):
  """CIFAR-style ResNet-18: 3x3 stride-1 stem, four stages of two BasicBlocks.

  `sota=False` is the paper's standard model (torchvision ResNet with a 3x3
  stem, 3x3/2 max-pool, Kaiming fan-out convs); `sota=True` is the SoTA
  setting's model (no max-pool, PyTorch default inits everywhere).
  """
  num_classes: int
  sota: bool = False
  conv: ModuleDef = nn.Conv
  norm: ModuleDef = nn.BatchNorm
  pool: Callable = nn.max_pool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    init = torch_conv_kernel if self.sota else kaiming_fan_out
    x = jnp.asarray(x, self.dtype)
    x = TorchConv(self.conv, init=init, dtype=self.dtype)(64, 3, 1, 1, name='conv1')(x)
    x = batch_norm(self.norm, train, self.dtype, 'bn1')(x, mask=_bn_mask(mask, x))
    x = nn.relu(x)
    if not self.sota:
      x = self.pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, features in enumerate((64, 128, 256, 512)):
      for block in range(2):
        stride = 2 if (stage > 0 and block == 0) else 1
        x = BasicBlock(features, stride, init, self.conv, self.norm, self.dtype,
                       name=f'layer{stage + 1}_{block}')(x, train, mask)
    x = jnp.mean(x, axis=(1, 2))
    x = dense(self.num_classes, x.shape[-1], self.dtype, 'fc')(x)
    return jnp.asarray(x, jnp.float32)


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
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    fc = lambda n, name: dense(n, x.shape[-1], self.dtype, name, vgg_linear_kernel,
                               nn.initializers.zeros)
    for i in (1, 2):
      x = nn.Dropout(0.5, deterministic=not train)(nn.relu(fc(4096, f'fc{i}')(x)))
    return fc(self.num_classes, 'fc3')(x)


class VGG16(nn.Module):
  """VGG-16 (configuration D) with BatchNorm, as torchvision's vgg16_bn.

  A 2x2 max-pool whose input has odd size pads by 1 (the original code pads
  the third pool for 28x28 Fashion-MNIST; 32x32 and 64x64 never pad).
  Dropout needs a 'dropout' rng when train=True.
  """
  num_classes: int
  conv: ModuleDef = nn.Conv
  norm: ModuleDef = nn.BatchNorm
  pool: Callable = nn.max_pool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    x = jnp.asarray(x, self.dtype)
    i = 0
    for v in VGG16_CFG:
      if v == 'M':
        pad = tuple((s % 2, s % 2) for s in x.shape[1:3])
        x = self.pool(x, (2, 2), strides=(2, 2), padding=pad)
      else:
        i += 1
        x = TorchConv(self.conv, bias=True, dtype=self.dtype)(v, 3, 1, 1, name=f'conv{i}')(x)
        x = batch_norm(self.norm, train, self.dtype, f'bn{i}')(x, mask=_bn_mask(mask, x))
        x = nn.relu(x)
    x = adaptive_avg_pool(x, 7).reshape((x.shape[0], -1))
    x = VGGClassifier(self.num_classes, self.dtype, name='classifier')(x, train)
    return jnp.asarray(x, jnp.float32)


def torch_linear_reset(key, head):
  """PyTorch's Linear.reset_parameters() on every Dense under `head` (a
  param subtree): kernel and bias U(+-1/sqrt(fan_in)), one key per layer."""
  if 'kernel' in head:
    bound = 1.0 / jnp.sqrt(head['kernel'].shape[0])
    draw = lambda k, w: jax.random.uniform(k, w.shape, w.dtype, -bound, bound)
    keys = jax.random.split(key, 2)
    out = dict(head, kernel=draw(keys[0], head['kernel']))
    if 'bias' in head:
      out['bias'] = draw(keys[1], head['bias'])
    return out
  names = sorted(name for name in head if isinstance(head[name], Mapping))
  keys = dict(zip(names, jax.random.split(key, max(len(names), 1))))
  return {name: torch_linear_reset(keys[name], value) if name in keys else value
          for name, value in head.items()}


# ------------------------------------------------------------- hidden units
# Where ReDo and Continual Backprop recycle units (dash_jax/recycle.py): layers
# whose output channels feed one next layer only. In a ResNet, as in the ReDo
# authors' ResNet rule, the first conv of each block (its channels feed only
# the block's second conv); the residual stream's channels are shared by
# several layers and are left alone.


def mlp_units(params) -> tuple:
  """fc_i -> bn_i -> ReLU -> fc_{i+1} (the last hidden layer feeds the head)."""
  n = sum(1 for name in params if name.startswith('fc'))
  return tuple(UnitLayer((f'fc{i}',), (f'bn{i}',), (f'fc{i + 1}',) if i < n else ('head',))
               for i in range(1, n + 1))


def resnet_units(params) -> tuple:
  """Each BasicBlock's conv1 -> bn1 -> ReLU -> conv2."""
  blocks = sorted(name for name in params if name.startswith('layer'))
  return tuple(UnitLayer((b, 'conv1'), (b, 'bn1'), (b, 'conv2')) for b in blocks)


def vgg_units(params) -> tuple:
  """conv_i -> bn_i -> ReLU -> conv_{i+1} (not the last conv, whose channels
  are pooled into the classifier), and the classifier's two hidden Linears."""
  n = sum(1 for name in params if name.startswith('conv'))
  convs = tuple(UnitLayer((f'conv{i}',), (f'bn{i}',), (f'conv{i + 1}',)) for i in range(1, n))
  return convs + (UnitLayer(('classifier', 'fc1'), None, ('classifier', 'fc2')),
                  UnitLayer(('classifier', 'fc2'), None, ('classifier', 'fc3')))


# ------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class Kernels:
  """The building blocks a model is made of."""
  conv: ModuleDef
  norm: ModuleDef
  pool: Callable


FLAX = Kernels(nn.Conv, nn.BatchNorm, nn.max_pool)
XLA_CPU = Kernels(xla_cpu.Conv, xla_cpu.BatchNorm, xla_cpu.max_pool)


def kernels(backend: str | None = None) -> Kernels:
  """XLA:CPU's fast kernels on CPU, Flax's (cuDNN on GPU) elsewhere."""
  return XLA_CPU if (backend or jax.default_backend()) == 'cpu' else FLAX


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """How to build a model, its head, and how it runs on CPU."""
  make: Callable[..., nn.Module]  # (ModelSettings, num_classes, Kernels, dtype) -> module
  head: Sequence[str]  # top-level params re-drawn by the `reset` training type
  # (key, {head name: params}) -> same, re-drawn; None = the model's own init.
  head_init: Callable | None = None
  # epoch mode 'auto' on CPU: XLA:CPU runs conv loop bodies far slower than
  # the same jitted step called from Python, so convnets use 'loop'.
  cpu_epoch_mode: str = 'loop'
  # params -> the recycle.UnitLayers ReDo and Continual Backprop act on.
  units: Callable = mlp_units

  def build(self, settings, num_classes: int, backend: str | None = None) -> nn.Module:
    """The module for `settings` (settings.ModelSettings: width, depth,
    precision) on `backend` (None = jax.default_backend()). Same parameter
    tree on every backend."""
    dtype = PRECISIONS[settings.precision]
    return self.make(settings, num_classes, kernels(backend), dtype)


MODELS: dict[str, ModelSpec] = {
    'mlp': ModelSpec(lambda c, k, kn, dt: MLP(k, c.width, c.depth, kn.norm, dt),
                     ('head',), cpu_epoch_mode='scan'),
    'resnet18': ModelSpec(
        lambda c, k, kn, dt: ResNet18(k, False, kn.conv, kn.norm, kn.pool, dt), ('fc',),
        units=resnet_units),
    'resnet18_sota': ModelSpec(
        lambda c, k, kn, dt: ResNet18(k, True, kn.conv, kn.norm, kn.pool, dt), ('fc',),
        units=resnet_units),
    # The original's reset calls reset_parameters() on the three Linears.
    'vgg16': ModelSpec(lambda c, k, kn, dt: VGG16(k, kn.conv, kn.norm, kn.pool, dt),
                       ('classifier',), head_init=torch_linear_reset, units=vgg_units),
}


def resolve_name(model: str, sota: bool) -> str:
  """The model a run trains: the SoTA recipe swaps resnet18 for its SoTA
  variant, as the original code does."""
  if sota and model == 'resnet18':
    return 'resnet18_sota'
  return model


def get(name: str) -> ModelSpec:
  return MODELS[name]


def build(settings, num_classes: int, backend: str | None = None) -> nn.Module:
  """get(settings.model).build(...): settings.model already resolved."""
  return get(settings.model).build(settings, num_classes, backend)


def epoch_mode(name: str, backend: str | None = None) -> str:
  """What epoch_mode 'auto' means for model `name` on `backend`."""
  if (backend or jax.default_backend()) == 'cpu':
    return get(name).cpu_epoch_mode
  return 'scan'
