"""BatchNorm with a hand-written training-mode gradient, for XLA:CPU.

The same variables, statistics and numbers as flax's nn.BatchNorm
(params 'scale'/'bias', batch_stats 'mean'/'var', biased variance as
E[x^2] - E[x]^2 clipped at 0, optional mask, statistics and normalisation
in float32 whatever `dtype`), but the backward pass is the textbook
two-reduction formula instead of autodiff through the statistics, which
XLA:CPU runs as many more passes over the activations (ResNet-18 step at
batch 128: BatchNorm was ~15% of it). `grad='autodiff'` is flax's gradient.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

GRADS = ('manual', 'autodiff')


class BatchNorm(nn.Module):
  """nn.BatchNorm over the last axis (momentum is Flax's: 0.9 = PyTorch 0.1).
  Output in `dtype` (None = the promoted input/parameter dtype, as flax)."""
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any | None = None
  param_dtype: Any = jnp.float32
  grad: str = 'manual'  # 'manual' (two-reduction formula) or 'autodiff'

  @nn.compact
  def __call__(self, x, mask=None):
    if self.grad not in GRADS:
      raise ValueError(f"grad must be 'manual' or 'autodiff', got {self.grad!r}")
    features = (x.shape[-1],)
    ra_mean = self.variable('batch_stats', 'mean', lambda s: jnp.zeros(s, jnp.float32),
                            features)
    ra_var = self.variable('batch_stats', 'var', lambda s: jnp.ones(s, jnp.float32),
                           features)
    scale = self.param('scale', nn.initializers.ones, features, self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, features, self.param_dtype)
    dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
    x = jnp.asarray(x, jnp.float32)  # statistics and normalisation in float32
    if self.use_running_average:
      y = _affine(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon)
      return jnp.asarray(y, dtype)
    m = jnp.ones((), x.dtype) if mask is None else mask.astype(x.dtype)
    fn = _train_bn if self.grad == 'manual' else _train_bn_impl
    y, mean, var = fn(x, m, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return jnp.asarray(y, dtype)


def _affine(x, mean, var, scale, bias, eps):
  return (x - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias


def _stats(x, m):
  axes = tuple(range(x.ndim - 1))
  count = jnp.maximum(jnp.sum(jnp.broadcast_to(m, x.shape), axes), 1.0)
  mean = jnp.sum(x * m, axes) / count
  var = jnp.maximum(0.0, jnp.sum(x * x * m, axes) / count - mean * mean)
  return mean, var, count


def _train_bn_impl(x, m, scale, bias, eps):
  """(normalised x, batch mean, batch variance); m masks the statistics."""
  mean, var, _ = _stats(x, jax.lax.stop_gradient(m))
  return _affine(x, mean, var, scale, bias, eps), mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _train_bn(x, m, scale, bias, eps):
  return _train_bn_impl(x, m, scale, bias, eps)


def _train_bn_fwd(x, m, scale, bias, eps):
  mean, var, count = _stats(x, m)
  inv = jax.lax.rsqrt(var + eps)
  y = (x - mean) * (inv * scale) + bias
  return (y, mean, var), (x, m, mean, inv, scale, count)


def _train_bn_bwd(eps, res, cotangents):
  """Gradient through the output only: the returned statistics feed the
  running averages, which are never differentiated."""
  del eps
  x, m, mean, inv, scale, count = res
  dy = cotangents[0]
  axes = tuple(range(x.ndim - 1))
  xhat = (x - mean) * inv
  dbias, dscale = jnp.sum(dy, axes), jnp.sum(dy * xhat, axes)
  # Every output (masked rows too) uses the statistics; only unmasked x
  # entered them.
  dx = (scale * inv) * (dy - m * (dbias + xhat * dscale) / count)
  return dx, jnp.zeros_like(m), dscale, dbias


_train_bn.defvjp(_train_bn_fwd, _train_bn_bwd)
