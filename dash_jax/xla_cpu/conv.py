"""Convolution and max-pool that are fast on XLA:CPU.

XLA's CPU convolutions are pathological at small spatial sizes (a 2x2,
512-channel conv takes seconds), so a ResNet-18 step at batch 128 took
~6-8 s on 2 cores against PyTorch eager's ~0.6 s. On CPU each conv is a
custom-VJP op whose forward, input gradient and kernel gradient each use
lax where XLA is fast (large outputs) and otherwise one matmul over patches
built from kh*kw shifted, strided slices of the padded input (their gradient
is pads and adds, where lax.conv_general_dilated_patches' gradient is again
a conv); max-pool is a max over shifted slices with a hand-written gradient
(select_and_scatter is slow). Now ~0.77 s (bench/README.md). GPUs/TPUs use
nn.Conv / nn.max_pool (cuDNN): the model registry picks.

The implementation is a field of the module / an argument of the functions
(`impl`: 'matmul' = the CPU path, 'lax' = lax's own ops; `policy`: which of
the two each piece of a 'matmul' conv uses), so it is part of what jit
compiles rather than a global read at trace time.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Padding = Sequence[tuple[int, int]]
IMPLS = ('matmul', 'lax')


def _use_matmul(impl: str) -> bool:
  if impl not in IMPLS:
    raise ValueError(f"impl must be 'matmul' or 'lax', got {impl!r}")
  return impl == 'matmul'


def _windows(x, window, strides):
  """The kh*kw shifted, strided views of (already padded) NHWC x, row-major
  over the window, each (N, Ho, Wo, C)."""
  (kh, kw), (sh, sw) = window, strides
  n, h, w, c = x.shape
  ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
  return [lax.slice(x, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                    (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]


# Which implementation computes each piece of a CPU conv. XLA:CPU's own
# conv (Eigen) is fast for the forward pass and the input gradient of
# stride-1 convs with large outputs, but pathological (seconds) at 2x2 and
# 4x4 outputs and for strided input gradients; its kernel gradient is no
# faster than patches^T @ dy. 'laxN' = lax when the output is at least NxN
# (and, for 'dx', stride 1), else matmul. Measured on a 2-core AVX-512
# Xeon, ResNet-18 batch 128 step: all-matmul 804 ms, lax8/lax8/matmul 764
# ms, lax everywhere ~8 s (bench/README.md has the log).
@dataclasses.dataclass(frozen=True)
class Policy:
  """Per piece of a 'matmul' conv: 'lax', 'matmul' or 'laxN'. Hashable, so
  it can be a module field and a custom_vjp static argument."""
  fwd: str = 'lax8'
  dx: str = 'lax8'
  dw: str = 'matmul'


def conv2d(x, kernel, strides=(1, 1), padding: Padding = ((0, 0), (0, 0)),
           impl: str = 'matmul', policy: Policy = Policy()):
  """NHWC x, HWIO kernel -> NHWC, as lax.conv_general_dilated."""
  strides, padding = tuple(strides), tuple(tuple(p) for p in padding)
  if not _use_matmul(impl):
    return _lax_conv(x, kernel, strides, padding)
  return _cpu_conv(x, kernel, strides, padding, policy)


def _lax_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _matmul_conv(x, kernel, strides, padding):
  """One matmul over patches: kh*kw shifted strided slices, concatenated."""
  kh, kw, _, cout = kernel.shape
  x = jnp.pad(x, ((0, 0),) + padding + ((0, 0),))
  cols = _windows(x, (kh, kw), strides)
  patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
  n, ho, wo, k = patches.shape
  y = jnp.dot(patches.reshape(n * ho * wo, k), kernel.reshape(k, cout))
  return y.reshape(n, ho, wo, cout)


def _pick(policy, piece, x_shape, kernel_shape, strides, padding):
  choice = getattr(policy, piece)
  if choice in ('lax', 'matmul'):
    return choice
  if not choice.startswith('lax'):
    raise ValueError(f'bad conv policy {piece}={choice!r}')
  ho = (x_shape[1] + sum(padding[0]) - kernel_shape[0]) // strides[0] + 1
  wo = (x_shape[2] + sum(padding[1]) - kernel_shape[1]) // strides[1] + 1
  big = min(ho, wo) >= int(choice[3:])
  return 'lax' if big and (piece != 'dx' or strides == (1, 1)) else 'matmul'


def _piece(impl):
  return _lax_conv if impl == 'lax' else _matmul_conv


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _cpu_conv(x, kernel, strides, padding, policy):
  impl = _pick(policy, 'fwd', x.shape, kernel.shape, strides, padding)
  return _piece(impl)(x, kernel, strides, padding)


def _cpu_conv_fwd(x, kernel, strides, padding, policy):
  return _cpu_conv(x, kernel, strides, padding, policy), (x, kernel)


def _cpu_conv_bwd(strides, padding, policy, res, g):
  x, kernel = res
  f = _piece(_pick(policy, 'dx', x.shape, kernel.shape, strides, padding))
  dx, = jax.vjp(lambda x: f(x, kernel, strides, padding), x)[1](g)
  f = _piece(_pick(policy, 'dw', x.shape, kernel.shape, strides, padding))
  dw, = jax.vjp(lambda w: f(x, w, strides, padding), kernel)[1](g)
  return dx, dw


_cpu_conv.defvjp(_cpu_conv_fwd, _cpu_conv_bwd)


def max_pool(x, window_shape, strides=None, padding: Padding = ((0, 0), (0, 0)),
             impl: str = 'matmul'):
  """nn.max_pool on NHWC x (padding with -inf); nn.max_pool's signature."""
  window = tuple(window_shape)
  strides = tuple(strides) if strides is not None else (1,) * len(window)
  padding = tuple(tuple(p) for p in padding)
  if not _use_matmul(impl):
    return nn.max_pool(x, window, strides=strides, padding=padding)
  return _slice_max_pool(x, window, strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _slice_max_pool(x, window, strides, padding):
  return _pool_fwd(x, window, strides, padding)[0]


def _pool_fwd(x, window, strides, padding):
  xp = jnp.pad(x, ((0, 0),) + padding + ((0, 0),), constant_values=-jnp.inf)
  cols = _windows(xp, window, strides)
  return functools.reduce(jnp.maximum, cols), (xp, cols)


def _pool_vjp_fwd(x, window, strides, padding):
  out, (xp, _) = _pool_fwd(x, window, strides, padding)
  return out, (xp, out)


def _pool_vjp_bwd(window, strides, padding, res, g):
  """Each output's gradient goes to the FIRST maximal element of its window
  (row-major), the tie-break of XLA's select_and_scatter and of PyTorch."""
  xp, out = res
  (kh, kw), (sh, sw) = window, strides
  _, hp, wp, _ = xp.shape
  _, ho, wo, _ = out.shape
  taken = jnp.zeros(out.shape, bool)
  dxp = jnp.zeros(xp.shape, g.dtype)
  for (i, j), col in zip([(i, j) for i in range(kh) for j in range(kw)],
                         _windows(xp, window, strides)):
    hit = (col == out) & ~taken
    taken = taken | hit
    dxp = dxp + lax.pad(jnp.where(hit, g, 0).astype(g.dtype), jnp.zeros((), g.dtype),
                        ((0, 0, 0), (i, hp - i - sh * (ho - 1) - 1, sh - 1),
                         (j, wp - j - sw * (wo - 1) - 1, sw - 1), (0, 0, 0)))
  (pt, pb), (pl, pr) = padding
  return (dxp[:, pt:hp - pb, pl:wp - pr, :],)


_slice_max_pool.defvjp(_pool_vjp_fwd, _pool_vjp_bwd)


class Conv(nn.Module):
  """nn.Conv for 2-D NHWC input with explicit padding: the same parameters
  ('kernel' (kh, kw, in, out), 'bias'), shapes, inits, param RNG use and
  dtype handling (inputs, kernel and bias cast to `dtype`; None = promote),
  so checkpoints, DASH shrink and parameter counts do not see a difference."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Padding = ((0, 0), (0, 0))
  use_bias: bool = True
  kernel_init: Callable = nn.linear.default_kernel_init
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: Any | None = None
  param_dtype: Any = jnp.float32
  impl: str = 'matmul'  # 'matmul' (the CPU path) or 'lax'
  policy: Policy = Policy()

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
    x, kernel = jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)
    y = conv2d(x, kernel, self.strides, self.padding, self.impl, self.policy)
    if bias is not None:
      y = y + jnp.asarray(bias, dtype)
    return y
