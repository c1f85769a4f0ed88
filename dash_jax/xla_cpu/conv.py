"""Convolution and max-pool that are fast on XLA:CPU, lax everywhere else.

XLA's CPU convolutions are pathological at small spatial sizes (a 2x2,
512-channel conv takes seconds), so a ResNet-18 step at batch 128 took
~6-8 s on 2 cores against PyTorch eager's ~0.6 s. On CPU each conv is a
custom-VJP op whose forward, input gradient and kernel gradient each use
lax where XLA is fast (large outputs) and otherwise one matmul over patches
built from kh*kw shifted, strided slices of the padded input (their gradient
is pads and adds, where lax.conv_general_dilated_patches' gradient is again
a conv); max-pool is a max over shifted slices with a hand-written gradient
(select_and_scatter is slow). Now ~0.77 s (bench/README.md). On GPU/TPU the
same modules call lax.conv_general_dilated / nn.max_pool (cuDNN).

The path is chosen at trace time: `IMPL` ('auto' = by jax.default_backend(),
'lax' or 'matmul') or the `impl` argument of the functions.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMPL = 'auto'  # 'auto', 'lax' or 'matmul'
Padding = Sequence[tuple[int, int]]


def cpu_path(impl: Optional[str] = None) -> bool:
  """Whether the CPU implementations are in use (at trace time)."""
  return _use_matmul(impl)


def _use_matmul(impl: Optional[str]) -> bool:
  impl = impl or IMPL
  if impl == 'auto':
    return jax.default_backend() == 'cpu'
  if impl not in ('lax', 'matmul'):
    raise ValueError(f"impl must be 'auto', 'lax' or 'matmul', got {impl!r}")
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


def conv2d(x, kernel, strides=(1, 1), padding: Padding = ((0, 0), (0, 0)),
           impl: Optional[str] = None):
  """NHWC x, HWIO kernel -> NHWC, as lax.conv_general_dilated."""
  strides, padding = tuple(strides), tuple(tuple(p) for p in padding)
  if not _use_matmul(impl):
    return _lax_conv(x, kernel, strides, padding)
  return _cpu_conv(x, kernel, strides, padding)


def _lax_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _matmul_conv(x, kernel, strides, padding):
  """One matmul over patches: kh*kw shifted strided slices, concatenated."""
  kh, kw, cin, cout = kernel.shape
  x = jnp.pad(x, ((0, 0),) + padding + ((0, 0),))
  cols = _windows(x, (kh, kw), strides)
  patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
  n, ho, wo, k = patches.shape
  y = jnp.dot(patches.reshape(n * ho * wo, k), kernel.reshape(k, cout))
  return y.reshape(n, ho, wo, cout)


# Which implementation computes each piece of a CPU conv. XLA:CPU's own
# conv (Eigen) is fast for the forward pass and the input gradient of
# stride-1 convs with large outputs, but pathological (seconds) at 2x2 and
# 4x4 outputs and for strided input gradients; its kernel gradient is no
# faster than patches^T @ dy. 'laxN' = lax when the output is at least NxN
# (and, for 'dx', stride 1), else matmul. Measured on a 2-core AVX-512
# Xeon, ResNet-18 batch 128 step: all-matmul 804 ms, lax8/lax8/matmul 764
# ms, lax everywhere ~8 s (bench/README.md has the log).
POLICY = {'fwd': 'lax8', 'dx': 'lax8', 'dw': 'matmul'}


def _pick(piece, x_shape, kernel_shape, strides, padding):
  choice = POLICY[piece]
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _cpu_conv(x, kernel, strides, padding):
  impl = _pick('fwd', x.shape, kernel.shape, strides, padding)
  return _piece(impl)(x, kernel, strides, padding)


def _cpu_conv_fwd(x, kernel, strides, padding):
  return _cpu_conv(x, kernel, strides, padding), (x, kernel)


def _cpu_conv_bwd(strides, padding, res, g):
  x, kernel = res
  f = _piece(_pick('dx', x.shape, kernel.shape, strides, padding))
  dx, = jax.vjp(lambda x: f(x, kernel, strides, padding), x)[1](g)
  f = _piece(_pick('dw', x.shape, kernel.shape, strides, padding))
  dw, = jax.vjp(lambda w: f(x, w, strides, padding), kernel)[1](g)
  return dx, dw


_cpu_conv.defvjp(_cpu_conv_fwd, _cpu_conv_bwd)


def max_pool(x, window, strides, padding: Padding = ((0, 0), (0, 0)),
             impl: Optional[str] = None):
  """nn.max_pool on NHWC x (padding with -inf)."""
  window, strides = tuple(window), tuple(strides)
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
  out, (xp, cols) = _pool_fwd(x, window, strides, padding)
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
  ('kernel' (kh, kw, in, out), 'bias'), shapes, inits and param RNG use, so
  checkpoints, DASH shrink and parameter counts do not see a difference."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Padding = ((0, 0), (0, 0))
  use_bias: bool = True
  kernel_init: Callable = nn.linear.default_kernel_init
  bias_init: Callable = nn.initializers.zeros_init()
  impl: Optional[str] = None  # None = module-level IMPL

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features),
                        jnp.float32)
    y = conv2d(x, kernel, self.strides, self.padding, self.impl)
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), jnp.float32)
    return y
